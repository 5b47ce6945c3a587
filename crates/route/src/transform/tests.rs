use super::tree::Tree;
use super::*;

fn spec(yaml: &str) -> Object<BodyTransformSpec> {
    let text = format!(
        "apiVersion: policy.strait.dev/v1alpha1\nkind: BodyTransform\n\
         metadata: {{name: t, namespace: shop}}\nspec:\n{yaml}"
    );
    serde_saphyr::from_str(&text).expect("spec")
}

fn facts(headers: &HeaderMap) -> RequestFacts<'_> {
    RequestFacts {
        method: "POST",
        path: "/orders",
        headers,
    }
}

fn request_side(yaml: &str) -> Side {
    compile(&spec(yaml))
        .expect("compiles")
        .request
        .expect("a request side")
}

fn apply(side: &Side, body: &str) -> Result<String, String> {
    let headers = HeaderMap::new();
    side.apply(body.as_bytes(), &facts(&headers))
        .map(|b| String::from_utf8(b).expect("utf-8"))
}

#[test]
fn xml_reads_as_json_by_one_mapping() {
    let json = xml::to_json(
        r#"<?xml version="1.0"?>
        <!-- a comment -->
        <order id="7" xmlns:p="urn:p">
          <item sku="a1">2</item>
          <item>3</item>
          <note><![CDATA[<fragile> & "dry"]]></note>
          <gift/>
          <to>A &amp; B &#x263A;</to>
          <p:tag>x</p:tag>
        </order>"#,
    )
    .expect("reads");
    assert_eq!(
        String::from_utf8(json.to_json()).expect("utf-8"),
        r##"{"order":{"@id":"7","@xmlns:p":"urn:p","item":[{"@sku":"a1","#text":"2"},"3"],"note":"<fragile> & \"dry\"","gift":null,"to":"A & B ☺","p:tag":"x"}}"##
    );
}

#[test]
fn json_writes_as_xml_by_the_same_mapping() {
    let json = Tree::from_json(
        br##"{"order":{"@id":7,"item":[{"@sku":"a1","#text":2},"3"],"note":"<a> & b","gift":null,"ok":true}}"##,
    )
    .expect("json");
    assert_eq!(
        xml::from_json(&json, None).expect("xml"),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><order id=\"7\"><item sku=\"a1\">2</item>\
         <item>3</item><note>&lt;a&gt; &amp; b</note><gift/><ok>true</ok></order>"
    );
    // Not an object of one member: wrapped in the root asked for, or `root`.
    let two = Tree::from_json(br#"{"a":1,"b":2}"#).expect("json");
    assert!(xml::from_json(&two, None)
        .expect("xml")
        .ends_with("<root><a>1</a><b>2</b></root>"));
    assert!(xml::from_json(&two, Some("req"))
        .expect("xml")
        .ends_with("<req><a>1</a><b>2</b></req>"));
    let list = Tree::from_json(br#"[1,{"x":2}]"#).expect("json");
    assert!(xml::from_json(&list, None)
        .expect("xml")
        .ends_with("<root><item>1</item><item><x>2</x></item></root>"));
    let bad = Tree::from_json(br#"{"a b":1,"c":2}"#).expect("json");
    let e = xml::from_json(&bad, None).expect_err("not a name");
    assert!(e.contains("\"a b\" cannot be an XML name"), "{e}");
}

#[test]
fn xml_to_json_and_back_is_the_same_document() {
    let doc = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><a x=\"1\"><b>t</b><b>u</b>\
               <c y=\"&amp;\">v</c><d/></a>";
    let json = xml::to_json(doc).expect("reads");
    assert_eq!(xml::from_json(&json, None).expect("writes"), doc);
}

#[test]
fn xml_that_is_unsafe_or_broken_is_refused() {
    let cases = [
        ("<!DOCTYPE a [<!ENTITY e \"x\">]><a>&e;</a>", "DOCTYPE"),
        ("<a>&e;</a>", "entity &e;"),
        ("<a/><b/>", "more than one root"),
        ("<a><b></a>", "expected `</b>`"),
        ("<a>", "ends inside an element"),
        ("", "no root element"),
        ("text<a/>", "outside the root"),
        ("<a>&#0;</a>", "&#0;"),
    ];
    for (doc, why) in cases {
        let e = xml::to_json(doc).expect_err(doc);
        assert!(e.contains(why), "{doc}: {e}");
    }
    let deep = "<a>".repeat(129) + &"</a>".repeat(129);
    let e = xml::to_json(&deep).expect_err("too deep");
    assert!(e.contains("more than 128 deep"), "{e}");
    let fine = "<a>".repeat(128) + &"</a>".repeat(128);
    xml::to_json(&fine).expect("128 deep is read");
}

#[test]
fn json_that_two_readers_could_read_two_ways_is_refused() {
    for (doc, why) in [
        (r#"{"a":1,"a":2}"#, "given twice"),
        (r#"{"a":1} x"#, "trailing"),
        ("[", "EOF"),
    ] {
        let e = Tree::from_json(doc.as_bytes()).expect_err(doc);
        assert!(e.contains(why), "{doc}: {e}");
    }
}

#[test]
fn edits_set_remove_and_rename_in_order() {
    let side = request_side(
        r#"  request:
    edits:
    - {op: Remove, path: /password}
    - {op: Rename, path: /userName, to: /user/name}
    - {op: Set, path: /source, value: "{{ request.method }} {{request.path}} by {{ request.header.x-client }}"}
    - {op: Set, path: /tags/-, value: {kind: new}}
    - {op: Set, path: /tags/0, value: 1}
    - {op: Remove, path: /missing/deeper}
"#,
    );
    let mut headers = HeaderMap::new();
    headers.insert("x-client", http::HeaderValue::from_static("shop-web"));
    let out = side
        .apply(
            br#"{"userName":"ann","password":"p","tags":["a"],"a~b":{"c/d":1}}"#,
            &facts(&headers),
        )
        .expect("applies");
    assert_eq!(
        String::from_utf8(out).expect("utf-8"),
        r#"{"tags":[1,{"kind":"new"}],"a~b":{"c/d":1},"user":{"name":"ann"},"source":"POST /orders by shop-web"}"#
    );
    let escaped = request_side("  request:\n    edits: [{op: Remove, path: /a~0b/c~1d}]\n");
    assert_eq!(
        apply(&escaped, r#"{"a~b":{"c/d":1,"e":2}}"#).expect("applies"),
        r#"{"a~b":{"e":2}}"#
    );
    let e = apply(&side, r#"{"tags":"not an array"}"#).expect_err("cannot set");
    assert!(e.contains("no object or array"), "{e}");
    let named: Vec<&str> = side.headers_named().map(|h| h.as_str()).collect();
    assert_eq!(named, ["x-client"], "only the headers a template names");
    assert_eq!(escaped.headers_named().count(), 0);
}

#[test]
fn conversions_with_edits_on_the_json_side() {
    let to_xml = request_side(
        "  request:\n    convert: JSONToXML\n    rootElement: request\n    \
         edits: [{op: Set, path: /via, value: strait}]\n",
    );
    assert_eq!(to_xml.to, Format::Xml);
    assert!(apply(&to_xml, r#"{"id":3}"#)
        .expect("converts")
        .ends_with("<request><id>3</id><via>strait</via></request>"));
    let to_json = request_side(
        "  request:\n    convert: XMLToJSON\n    edits: [{op: Rename, path: /order/@id, to: /order/id}]\n",
    );
    assert_eq!(to_json.from, Format::Xml);
    assert_eq!(
        apply(&to_json, r#"<order id="9"><n>1</n></order>"#).expect("converts"),
        r#"{"order":{"n":"1","id":"9"}}"#
    );
    let e = apply(&to_json, "{}").expect_err("not XML");
    assert!(e.starts_with("not XML"), "{e}");
    let e = apply(&to_xml, "<a/>").expect_err("not JSON");
    assert!(e.starts_with("not JSON"), "{e}");
}

#[test]
fn a_wrong_field_is_named_with_its_path() {
    let cases = [
        ("  maxBodyBytes: 0\n", "spec.maxBodyBytes"),
        ("  request: {convert: CSV}\n", "spec.request.convert"),
        (
            "  response: {rootElement: r}\n",
            "spec.response.rootElement",
        ),
        (
            "  request: {convert: JSONToXML, rootElement: \"1x\"}\n",
            "spec.request.rootElement",
        ),
        (
            "  request: {edits: [{op: Set, path: /a}]}\n",
            "spec.request.edits[0].value",
        ),
        (
            "  request: {edits: [{op: Set, path: a, value: 1}]}\n",
            "spec.request.edits[0].path",
        ),
        (
            "  request: {edits: [{op: Remove, path: /a, to: /b}]}\n",
            "spec.request.edits[0].to",
        ),
        (
            "  request: {edits: [{op: Rename, path: /a}]}\n",
            "spec.request.edits[0].to",
        ),
        (
            "  request: {edits: [{op: Copy, path: /a}]}\n",
            "spec.request.edits[0].op",
        ),
        (
            "  request: {edits: [{op: Set, path: /a, value: \"{{ request.body }}\"}]}\n",
            "spec.request.edits[0].value",
        ),
        (
            "  request: {edits: [{op: Set, path: /a, value: \"{{ request.path\"}]}\n",
            "spec.request.edits[0].value",
        ),
        (
            "  request: {edits: [{op: Set, path: /a~2, value: 1}]}\n",
            "spec.request.edits[0].path",
        ),
    ];
    for (yaml, field) in cases {
        let e = compile(&spec(yaml)).expect_err(yaml);
        assert!(
            e.starts_with(&format!("BodyTransform shop/t: {field}: ")),
            "{yaml}: {e}"
        );
    }
}

#[test]
fn content_types_name_their_format() {
    assert!(Format::Json.is("application/json; charset=utf-8"));
    assert!(Format::Json.is("Application/Problem+JSON"));
    assert!(!Format::Json.is("text/plain"));
    assert!(Format::Xml.is("text/xml"));
    assert!(Format::Xml.is("application/soap+xml; charset=utf-8"));
    assert!(!Format::Xml.is("application/json"));
}

/// Random and mutated input never panics either reader, and whatever the
/// XML reader accepts writes back as XML it accepts again.
#[test]
fn random_input_never_panics() {
    let seeds: [&[u8]; 4] = [
        b"<a x=\"1\"><b>t&amp;</b><b/><![CDATA[z]]></a>",
        b"{\"a\":[1,{\"@b\":\"c\",\"#text\":\"d\"}],\"e\":null}",
        b"<?xml version=\"1.0\"?><r>&#65;&lt;</r>",
        b"[1,2.5e3,\"\\u00e9\",true]",
    ];
    let mut rng = fastrand::Rng::with_seed(17);
    for _ in 0..20_000 {
        let mut input = seeds[rng.usize(..seeds.len())].to_vec();
        for _ in 0..rng.usize(1..6) {
            let at = rng.usize(..=input.len());
            match rng.u8(..3) {
                0 if at < input.len() => {
                    input.remove(at);
                }
                1 => input.insert(at, b"<>&;\"/![]{}:,#@x\xff"[rng.usize(..17)]),
                _ => input.insert(at, rng.u8(..)),
            }
        }
        let _ = Tree::from_json(&input);
        if let Ok(text) = std::str::from_utf8(&input) {
            if let Ok(json) = xml::to_json(text) {
                if let Ok(again) = xml::from_json(&json, None) {
                    xml::to_json(&again).expect("what was written reads again");
                }
            }
        }
    }
}
