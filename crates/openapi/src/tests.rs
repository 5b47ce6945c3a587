use super::*;
use http::HeaderMap;
use serde_json::json;

fn shop() -> Value {
    json!({
        "openapi": "3.0.3",
        "servers": [{"url": "https://shop.example.com/api"}],
        "paths": {
            "/products": {
                "get": {
                    "operationId": "listProducts",
                    "parameters": [
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 50}},
                        {"name": "tag", "in": "query", "schema": {"type": "array", "items": {"type": "string", "enum": ["new", "sale"]}}},
                        {"$ref": "#/components/parameters/Trace"}
                    ]
                },
                "post": {
                    "requestBody": {"required": true, "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Product"}},
                        "text/*": {}
                    }}
                }
            },
            "/products/{id}": {
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
                "get": {"operationId": "getProduct"},
                "delete": {"parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[a-z]+$"}}]}
            },
            "/products/mine": {"get": {"operationId": "myProducts"}},
            "/files/{name}.json": {"get": {"operationId": "file"}}
        },
        "components": {
            "parameters": {"Trace": {"name": "x-trace", "in": "header", "required": true, "schema": {"type": "string", "minLength": 4}}},
            "schemas": {"Product": {"type": "object", "required": ["name", "price"], "properties": {
                "name": {"type": "string"},
                "price": {"type": "number", "minimum": 0},
                "tags": {"type": "array", "items": {"type": "string"}, "nullable": true}
            }}}
        }
    })
}

fn api() -> Result<Api, String> {
    Api::compile(&shop(), None)
}

fn op<'a>(
    api: &'a Api,
    method: Method,
    path: &'a str,
) -> Result<(&'a Operation, PathValues<'a>), String> {
    match api.find(&method, path) {
        Found::Operation(op, values) => Ok((op, values)),
        Found::NoPath => Err(format!("{path}: no path")),
        Found::NoMethod(allow) => Err(format!("{path}: no method; allow {allow}")),
        Found::NotNormal(why) => Err(format!("{path}: not normal: {why}")),
    }
}

/// A request with no path parameters and no query.
fn bare(headers: &HeaderMap) -> Given<'_> {
    Given {
        path: &[],
        query: None,
        headers,
    }
}

fn headers(pairs: &[(&'static str, &str)]) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (n, v) in pairs {
        map.append(*n, v.parse().map_err(|e| format!("{e}"))?);
    }
    Ok(map)
}

fn check(
    api: &Api,
    (method, path, query): (Method, &str, Option<&str>),
    headers: &HeaderMap,
    body: Option<&str>,
) -> Result<Result<(), Invalid>, String> {
    let (op, values) = op(api, method, path)?;
    let given = Given {
        path: &values,
        query,
        headers,
    };
    Ok(op.check(&given, body).map(|_| ()))
}

#[test]
fn paths_are_found_under_the_servers_path_literal_first() -> Result<(), String> {
    let api = api()?;
    assert_eq!(api.base(), "/api");
    assert_eq!(api.operations, 6);
    assert_eq!(op(&api, Method::GET, "/api/products")?.0.id, "listProducts");
    let (found, values) = op(&api, Method::GET, "/api/products/12")?;
    assert_eq!(found.id, "getProduct");
    assert_eq!(values, vec![("id", "12".into())]);
    assert_eq!(
        op(&api, Method::GET, "/api/products/mine")?.0.id,
        "myProducts"
    );
    assert_eq!(
        op(&api, Method::HEAD, "/api/products/mine")?.0.id,
        "myProducts"
    );
    assert_eq!(
        op(&api, Method::GET, "/api/files/a%20b.json")?.1[0].1,
        "a b"
    );
    assert_eq!(
        op(&api, Method::POST, "/api/products")?.0.id,
        "POST /products"
    );
    for path in [
        "/products",
        "/api/products/1/x",
        "/apix/products",
        "/api/files/.json",
    ] {
        assert!(
            matches!(api.find(&Method::GET, path), Found::NoPath),
            "{path}"
        );
    }
    match api.find(&Method::PUT, "/api/products/1") {
        Found::NoMethod(allow) => assert_eq!(allow, "GET, DELETE, HEAD"),
        _ => return Err("PUT found".into()),
    }
    Ok(())
}

#[test]
fn parameters_are_read_as_their_schemas_type() -> Result<(), String> {
    let api = api()?;
    let h = headers(&[("x-trace", "abcd")])?;
    let list = |query| (Method::GET, "/api/products", query);
    assert_eq!(
        check(&api, list(Some("limit=5&tag=new&tag=sale")), &h, None)?,
        Ok(())
    );
    assert_eq!(check(&api, list(None), &h, None)?, Ok(()));
    let e = check(&api, list(Some("limit=500")), &h, None)?
        .err()
        .ok_or("passed")?;
    assert_eq!((e.status, e.at.as_str()), (400, "query parameter limit"));
    assert!(e.message.contains("maximum of 50"), "{}", e.message);
    let e = check(&api, list(Some("limit=five")), &h, None)?
        .err()
        .ok_or("passed")?;
    assert!(e.message.contains("integer"), "{}", e.message);
    let e = check(&api, list(Some("tag=new&tag=old")), &h, None)?
        .err()
        .ok_or("passed")?;
    assert_eq!(e.at, "query parameter tag/1");
    // A header parameter, by reference, required.
    let e = check(&api, list(None), &HeaderMap::new(), None)?
        .err()
        .ok_or("passed")?;
    assert_eq!(
        (e.at.as_str(), e.message.as_str()),
        ("header parameter x-trace", "is required")
    );
    let short = headers(&[("x-trace", "ab")])?;
    assert!(check(&api, list(None), &short, None)?.is_err());
    // A path parameter: the path's, or the operation's in its place.
    let none = HeaderMap::new();
    let get = (Method::GET, "/api/products/abc", None);
    let e = check(&api, get, &none, None)?.err().ok_or("passed")?;
    assert_eq!(e.at, "path parameter id");
    assert_eq!(
        check(
            &api,
            (Method::DELETE, "/api/products/abc", None),
            &none,
            None
        )?,
        Ok(())
    );
    assert!(check(
        &api,
        (Method::DELETE, "/api/products/12", None),
        &none,
        None
    )?
    .is_err());
    Ok(())
}

#[test]
fn bodies_are_checked_by_media_type() -> Result<(), String> {
    let api = api()?;
    let (post, _) = op(&api, Method::POST, "/api/products")?;
    let none = HeaderMap::new();
    let given = bare(&none);
    let e = post.check(&given, None).err().ok_or("passed")?;
    assert_eq!((e.status, e.at.as_str()), (400, "body"));
    let e = post
        .check(&given, Some("application/xml"))
        .err()
        .ok_or("passed")?;
    assert_eq!(e.status, 415);
    let text = post
        .check(&given, Some("text/plain"))
        .map_err(|e| e.to_string())?;
    assert!(text.is_none(), "text/* listed, not checked");
    let schema = post
        .check(&given, Some("Application/JSON; charset=utf-8"))
        .map_err(|e| e.to_string())?
        .ok_or("no schema")?;
    assert_eq!(
        check_json(schema, br#"{"name": "pen", "price": 2.5, "tags": null}"#),
        Ok(())
    );
    let e = check_json(schema, br#"{"name": "pen", "price": -1}"#)
        .err()
        .ok_or("passed")?;
    assert_eq!(e.at, "body/price");
    let e = check_json(schema, br#"{"name": "pen"}"#)
        .err()
        .ok_or("passed")?;
    assert_eq!(e.at, "body");
    assert!(e.message.contains("price"), "{}", e.message);
    let e = check_json(schema, b"{\"name\": ").err().ok_or("passed")?;
    assert!(e.message.starts_with("is not JSON"), "{}", e.message);
    Ok(())
}

#[test]
fn documents_that_cannot_be_read_say_where() {
    let refuse = |doc: Value| Api::compile(&doc, None).err().unwrap_or_default();
    assert!(refuse(json!({"swagger": "2.0"})).contains("Swagger 2.0"));
    assert!(refuse(json!({"openapi": "3.1.0"})).contains("no paths"));
    let outside = json!({"openapi": "3.1.0", "paths": {"/a": {"get": {"parameters": [{"$ref": "other.yaml#/p"}]}}}});
    let e = refuse(outside);
    assert!(
        e.starts_with("paths./a: get: ") && e.contains("outside the document"),
        "{e}"
    );
    let open = json!({"openapi": "3.1.0", "paths": {"/a/{b": {}}});
    assert!(refuse(open).contains("does not close"));
    let bad_in = json!({"openapi": "3.1.0", "paths": {"/a": {"get": {"parameters": [{"name": "x", "in": "body"}]}}}});
    assert!(refuse(bad_in).contains("parameters[0]"));
}

#[test]
fn the_base_may_be_given() -> Result<(), String> {
    let api = Api::compile(&shop(), Some("/"))?;
    assert_eq!(api.base(), "/");
    assert!(matches!(
        api.find(&Method::GET, "/products/mine"),
        Found::Operation(..)
    ));
    Ok(())
}

/// Whatever a client sends — any path, query, header or body bytes — the
/// check answers, and never panics.
#[test]
fn any_input_is_answered() -> Result<(), String> {
    let api = api()?;
    let (post, _) = op(&api, Method::POST, "/api/products")?;
    let none = HeaderMap::new();
    let given = bare(&none);
    let schema = post
        .check(&given, Some("application/json"))
        .map_err(|e| e.to_string())?
        .ok_or("no schema")?;
    let alphabet = b"/{}%[]\":,0123456789abc.-+eE \\\x00\xff\xc3";
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..20_000 {
        let len = (next() % 40) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect();
        let _ = check_json(schema, &bytes);
        let text = String::from_utf8_lossy(&bytes);
        let path = format!("/api/{text}");
        if let Found::Operation(op, values) = api.find(&Method::GET, &path) {
            let h = headers(&[("x-trace", "abcd")])?;
            let given = Given {
                path: &values,
                query: Some(&text),
                headers: &h,
            };
            let _ = op.check(&given, None);
        }
    }
    // Deep nesting is refused as JSON, not a stack overflow.
    let deep = "[".repeat(100_000);
    assert!(check_json(schema, deep.as_bytes()).is_err());
    Ok(())
}

#[test]
fn referenced_path_items_media_parameters_and_server_variables_are_read() -> Result<(), String> {
    let doc = json!({
        "openapi": "3.0.3",
        "servers": [{"url": "https://{host}/{base}", "variables": {"host": {"default": "x"}, "base": {"default": "v2"}}}],
        "paths": {
            "/users/{id}": {"$ref": "#/x-items/user"},
            "/files/{name}": {"get": {"operationId": "bare"}},
            "/files/{name}.json": {"get": {"operationId": "json"}},
            "/orders": {"post": {"requestBody": {"content": {"application/json;charset=UTF-8": {"schema": {"type": "object", "required": ["n"]}}}}}}
        },
        "x-items": {"user": {"get": {"operationId": "user", "parameters": [
            {"$ref": "#/paths/~1users~1%7Bid%7D/x-p"}
        ]}, "x-p": {"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}}}
    });
    // The parameter's reference points into the path item as written,
    // percent-encoded as bundlers write it: it resolves through the
    // item's own reference.
    let doc = {
        let mut d = doc;
        let p = d.pointer("/x-items/user/x-p").cloned().ok_or("x-p")?;
        if let Some(Value::Object(m)) = d.pointer_mut("/paths") {
            m.insert(
                "/users/{id}".into(),
                json!({"$ref": "#/x-items/user", "x-p": p}),
            );
        }
        d
    };
    let api = Api::compile(&doc, None)?;
    assert_eq!(api.base(), "/v2");
    let none = HeaderMap::new();
    let (user, values) = op(&api, Method::GET, "/v2/users/abc")?;
    assert_eq!(user.id, "user");
    let given = Given {
        path: &values,
        query: None,
        headers: &none,
    };
    assert!(user.check(&given, None).is_err(), "id is an integer");
    assert_eq!(op(&api, Method::GET, "/v2/files/a.json")?.0.id, "json");
    assert_eq!(op(&api, Method::GET, "/v2/files/a.txt")?.0.id, "bare");
    let (post, _) = op(&api, Method::POST, "/v2/orders")?;
    let given = bare(&none);
    let schema = post
        .check(&given, Some("application/json"))
        .map_err(|e| e.to_string())?
        .ok_or("the body's schema, under a key with parameters")?;
    assert!(check_json(schema, b"{}").is_err());
    match api.find(&Method::DELETE, "/v2/files/a") {
        Found::NoMethod(allow) => assert_eq!(allow, "GET, HEAD"),
        _ => return Err("DELETE found".into()),
    }
    Ok(())
}
