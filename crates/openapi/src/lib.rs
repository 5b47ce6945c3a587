//! An API's OpenAPI 3.0 or 3.1 document, compiled to check requests: the
//! operation (path template and method), its parameters, and its JSON
//! request body. Everything is compiled once per configuration; a
//! request's check reads the compiled form only.
//!
//! What is checked, and what is not (said in `docs/policies.md`):
//! path templates (`/orders/{id}`, a literal segment before a templated
//! one), methods (`HEAD` as `GET` when the document has no `head`),
//! parameters of every `in` with their schemas (objects and `content`
//! parameters only for presence), and bodies whose media type is JSON
//! (`application/json`, `*/*+json`). Other media types are checked for
//! being listed, not for their content. References must stay inside the
//! document.

mod params;
mod path;
mod schema;

use http::Method;
use jsonschema::Validator;
pub use params::Given;
use params::Param;
pub use schema::cut;
use schema::Schemas;
use serde_json::Value;

/// Why a request does not fit the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// `400`, `404` (no such path), `405` (no such method), `415` (a
    /// body of a media type the operation does not take).
    pub status: u16,
    /// What failed: `body/items/0/quantity`, `query parameter limit`.
    pub at: String,
    pub message: String,
}

impl Invalid {
    /// A `400`.
    pub fn bad(at: String, message: String) -> Self {
        Invalid {
            status: 400,
            at,
            message,
        }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.at.is_empty() {
            true => write!(f, "{}", self.message),
            false => write!(f, "{}: {}", self.at, self.message),
        }
    }
}

/// The compiled document.
pub struct Api {
    /// The path every operation's template is under (`""` for `/`).
    base: String,
    paths: Vec<PathItem>,
    /// How many operations, for `strait check`.
    pub operations: usize,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Api({} operations under {:?})",
            self.operations, self.base
        )
    }
}

struct PathItem {
    segments: Vec<Segment>,
    operations: Vec<(Method, Operation)>,
}

enum Segment {
    Literal(String),
    /// `{name}` with the text around it in the segment.
    Param {
        prefix: String,
        name: String,
        suffix: String,
    },
}

pub struct Operation {
    /// `operationId`, else `METHOD template`.
    pub id: String,
    params: Vec<Param>,
    body: Option<Body>,
}

struct Body {
    required: bool,
    /// Media ranges as written (lowercase), each with its schema when
    /// its content is JSON and it has one.
    media: Vec<(String, Option<Validator>)>,
}

/// A path template's parameters' values, decoded: `(name, value)`.
pub type PathValues<'a> = Vec<(&'a str, std::borrow::Cow<'a, str>)>;

/// What a request's path and method found.
pub enum Found<'a> {
    Operation(&'a Operation, PathValues<'a>),
    /// Under no path template (`404`).
    NoPath,
    /// The path's template has no operation for the method (`405`), and
    /// these are the methods it has.
    NoMethod(String),
    /// A path not in the one form templates are matched against (`400`,
    /// however unknown operations are treated), and why.
    NotNormal(&'static str),
}

impl Api {
    /// The document `doc`. `base`: the path its templates are under,
    /// when not the path of its first `servers` URL.
    pub fn compile(doc: &Value, base: Option<&str>) -> Result<Api, String> {
        let version = doc.get("openapi").and_then(Value::as_str).unwrap_or("");
        let v30 = version.starts_with("3.0");
        if !v30 && !version.starts_with("3.1") {
            let said = match doc.get("swagger") {
                Some(_) => "a Swagger 2.0 document".to_string(),
                None => format!("openapi {version:?}"),
            };
            return Err(format!("{said}: OpenAPI 3.0 and 3.1 are read"));
        }
        let schemas = Schemas::new(doc, v30)?;
        let base = match base {
            Some(b) => b.to_string(),
            None => server_path(doc),
        };
        let base = base.trim_end_matches('/').to_string();
        let Some(paths) = doc.get("paths").and_then(Value::as_object) else {
            return Err("has no paths".into());
        };
        let mut items = Vec::new();
        for (template, item) in paths {
            let pointer = format!("/paths/{}", escape(template));
            let item = compile_path(doc, (template, item), &pointer, &schemas)
                .map_err(|e| format!("paths.{template}: {e}"))?;
            items.push(item);
        }
        items.sort_by_key(PathItem::rank);
        let operations = items.iter().map(|i| i.operations.len()).sum();
        Ok(Api {
            base,
            paths: items,
            operations,
        })
    }

    /// The path operations are under.
    pub fn base(&self) -> &str {
        match self.base.is_empty() {
            true => "/",
            false => &self.base,
        }
    }

    /// The operation `method` on `path` (without its query) names.
    pub fn find<'a>(&'a self, method: &Method, path: &'a str) -> Found<'a> {
        if let Some(why) = path::abnormal(path) {
            return Found::NotNormal(why);
        }
        let Some(rest) = path.strip_prefix(self.base.as_str()) else {
            return Found::NoPath;
        };
        let rest = match rest {
            "" => "/",
            r if r.starts_with('/') => r,
            _ => return Found::NoPath,
        };
        // A trailing `/` is matched as if absent: a backend may read it so.
        let given = rest[1..].strip_suffix('/').unwrap_or(&rest[1..]);
        let count = given.bytes().filter(|b| *b == b'/').count() + 1;
        // In rank order: the first that fits is the one OpenAPI means.
        let fits = |i: &&PathItem| i.segments.len() == count && i.fits(given);
        let Some(item) = self.paths.iter().find(fits) else {
            return Found::NoPath;
        };
        let head = *method == Method::HEAD;
        let op = item
            .operations
            .iter()
            .find(|(m, _)| m == method)
            .or_else(|| {
                head.then(|| item.operations.iter().find(|(m, _)| *m == Method::GET))
                    .flatten()
            });
        match op {
            Some((_, op)) => Found::Operation(op, item.values(given)),
            None => {
                let mut allow: Vec<&str> =
                    item.operations.iter().map(|(m, _)| m.as_str()).collect();
                let has = |m: &Method| item.operations.iter().any(|(o, _)| o == m);
                if has(&Method::GET) && !has(&Method::HEAD) {
                    allow.push("HEAD");
                }
                Found::NoMethod(allow.join(", "))
            }
        }
    }
}

impl PathItem {
    /// Whether `given` (the path after the base, without its first `/`,
    /// as many segments as the template) fits the template.
    fn fits(&self, given: &str) -> bool {
        self.segments
            .iter()
            .zip(given.split('/'))
            .all(|(segment, text)| segment.value(text).is_some())
    }

    /// The template's parameters' values in `given`, which fits it.
    fn values<'a>(&'a self, given: &'a str) -> PathValues<'a> {
        let mut values = Vec::new();
        for (segment, text) in self.segments.iter().zip(given.split('/')) {
            if let (Segment::Param { name, .. }, Some(value)) = (segment, segment.value(text)) {
                let decoded = match value.contains('%') {
                    true => percent_encoding::percent_decode_str(value).decode_utf8_lossy(),
                    false => std::borrow::Cow::Borrowed(value),
                };
                values.push((name.as_str(), decoded));
            }
        }
        values
    }

    /// A literal segment wins over a templated one, and a parameter with
    /// text around it (`{name}.json`) over a bare one, leftmost first:
    /// two bits a segment, the first the highest.
    fn rank(&self) -> u64 {
        let kind = self.segments.iter().map(|s| match s {
            Segment::Literal(_) => 0,
            Segment::Param { prefix, suffix, .. } if !prefix.is_empty() || !suffix.is_empty() => 1,
            Segment::Param { .. } => 2,
        });
        kind.take(32)
            .enumerate()
            .fold(0, |rank, (i, k)| rank | (k << (62 - 2 * i)))
    }
}

impl Segment {
    /// What `text` gives the segment: itself if literal, the parameter's
    /// (undecoded) value if templated; `None` if it does not fit.
    fn value<'a>(&self, text: &'a str) -> Option<&'a str> {
        match self {
            Segment::Literal(l) => (l == text).then_some(text),
            Segment::Param { prefix, suffix, .. } => {
                let value = text
                    .strip_prefix(prefix.as_str())?
                    .strip_suffix(suffix.as_str())?;
                (!value.is_empty()).then_some(value)
            }
        }
    }
}

impl Operation {
    /// The operation wants a body, and refuses a request without one.
    pub fn body_required(&self) -> bool {
        self.body.as_ref().is_some_and(|b| b.required)
    }

    /// The request's parameters, and its body's media type if it has a
    /// body: what `body` must then check.
    pub fn check(
        &self,
        given: &Given<'_>,
        body: Option<&str>,
    ) -> Result<Option<&Validator>, Invalid> {
        for p in &self.params {
            p.check(given)?;
        }
        let Some(spec) = &self.body else {
            return Ok(None);
        };
        let Some(content_type) = body else {
            return match spec.required {
                true => Err(Invalid::bad("body".into(), "is required".into())),
                false => Ok(None),
            };
        };
        let essence = essence(content_type);
        match spec.media_of(&essence) {
            Some(schema) => Ok(schema),
            None => {
                let listed: Vec<&str> = spec.media.iter().map(|(m, _)| m.as_str()).collect();
                Err(Invalid {
                    status: 415,
                    at: "body".into(),
                    message: format!("{essence:?} is not one of {}", listed.join(", ")),
                })
            }
        }
    }
}

/// A JSON body: parsed, then checked against `schema`.
pub fn check_json(schema: &Validator, body: &[u8]) -> Result<(), Invalid> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Invalid::bad("body".into(), format!("is not JSON: {e}")))?;
    schema::check(schema, &value)
        .map_err(|(pointer, message)| Invalid::bad(format!("body{pointer}"), message))
}

impl Body {
    /// The schema for media type `essence`, if the operation takes it:
    /// the exact type first, then `type/*`, then `*/*`.
    fn media_of(&self, essence: &str) -> Option<Option<&Validator>> {
        let range = essence.split_once('/').map(|(t, _)| format!("{t}/*"));
        let found = |want: &str| self.media.iter().find(|(m, _)| m == want);
        let hit = found(essence)
            .or_else(|| range.as_deref().and_then(found))
            .or_else(|| found("*/*"))?;
        Some(hit.1.as_ref())
    }
}

fn compile_path(
    doc: &Value,
    (template, item): (&str, &Value),
    pointer: &str,
    schemas: &Schemas,
) -> Result<PathItem, String> {
    if !template.starts_with('/') {
        return Err("a path template starts with /".into());
    }
    let segments = template[1..]
        .strip_suffix('/')
        .unwrap_or(&template[1..])
        .split('/')
        .map(segment)
        .collect::<Result<Vec<_>, _>>()?;
    // A path item given by reference: its operations are where it points.
    let (item, pointer) = resolve_at(doc, item, pointer.to_string())?;
    let pointer = pointer.as_str();
    let shared = item.get("parameters");
    let methods = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    let mut operations = Vec::new();
    for m in methods {
        let Some(op) = item.get(m) else {
            continue;
        };
        let method =
            Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|e| e.to_string())?;
        let at = format!("{pointer}/{m}");
        let op = compile_operation(
            doc,
            (template, &method, op),
            (shared, pointer),
            &at,
            schemas,
        )
        .map_err(|e| format!("{m}: {e}"))?;
        operations.push((method, op));
    }
    Ok(PathItem {
        segments,
        operations,
    })
}

fn segment(text: &str) -> Result<Segment, String> {
    let Some((prefix, rest)) = text.split_once('{') else {
        return Ok(Segment::Literal(text.into()));
    };
    let (name, suffix) = rest
        .split_once('}')
        .ok_or_else(|| format!("segment {text:?} opens {{ and does not close it"))?;
    if suffix.contains('{') {
        return Err(format!("segment {text:?}: one parameter a segment is read"));
    }
    Ok(Segment::Param {
        prefix: prefix.into(),
        name: name.into(),
        suffix: suffix.into(),
    })
}

fn compile_operation(
    doc: &Value,
    (template, method, op): (&str, &Method, &Value),
    (shared, item_pointer): (Option<&Value>, &str),
    pointer: &str,
    schemas: &Schemas,
) -> Result<Operation, String> {
    let id = match op.get("operationId").and_then(Value::as_str) {
        Some(id) => id.to_string(),
        None => format!("{method} {template}"),
    };
    // The operation's own parameters replace the path's of the same
    // name and location.
    let mut params: Vec<Param> = Vec::new();
    let lists = [
        (op.get("parameters"), pointer.to_string()),
        (shared, item_pointer.to_string()),
    ];
    for (list, at) in lists {
        let Some(list) = list else { continue };
        let list = list.as_array().ok_or("parameters is not a list")?;
        for (i, p) in list.iter().enumerate() {
            let (p, p_at) = resolve_at(doc, p, format!("{at}/parameters/{i}"))?;
            let param = Param::compile(doc, p, &p_at, schemas)
                .map_err(|e| format!("parameters[{i}]: {e}"))?;
            if let Some(param) = param {
                if !params
                    .iter()
                    .any(|q| q.name == param.name && q.at == param.at)
                {
                    params.push(param);
                }
            }
        }
    }
    let body = match op.get("requestBody") {
        None => None,
        Some(b) => {
            let (b, at) = resolve_at(doc, b, format!("{pointer}/requestBody"))?;
            Some(compile_body(b, &at, schemas).map_err(|e| format!("requestBody: {e}"))?)
        }
    };
    Ok(Operation { id, params, body })
}

fn compile_body(b: &Value, pointer: &str, schemas: &Schemas) -> Result<Body, String> {
    let content = b
        .get("content")
        .and_then(Value::as_object)
        .ok_or("has no content")?;
    let mut media = Vec::new();
    for (written, m) in content {
        // `application/json;charset=UTF-8`, as some generators write it.
        let range = essence(written);
        let schema = match (is_json(&range), m.get("schema")) {
            (true, Some(_)) => {
                let at = format!("{pointer}/content/{}/schema", escape(written));
                Some(schemas.compile(&at)?)
            }
            _ => None,
        };
        media.push((range, schema));
    }
    Ok(Body {
        required: b.get("required") == Some(&Value::Bool(true)),
        media,
    })
}

/// A media type without its parameters, lowercase.
fn essence(media_type: &str) -> String {
    let bare = media_type.split(';').next().unwrap_or("");
    bare.trim().to_ascii_lowercase()
}

fn is_json(range: &str) -> bool {
    range == "application/json" || range.ends_with("+json")
}

/// The path of the document's first `servers` URL (`/api` of
/// `https://example.com/api`); `""` without one.
fn server_path(doc: &Value) -> String {
    let mut url = doc
        .pointer("/servers/0/url")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    // `{basePath}`: the variable's default.
    let variables = doc
        .pointer("/servers/0/variables")
        .and_then(Value::as_object);
    for (name, v) in variables.into_iter().flatten() {
        if let Some(default) = v.get("default").and_then(Value::as_str) {
            url = url.replace(&format!("{{{name}}}"), default);
        }
    }
    let url = url.as_str();
    let path = match url.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("", |i| &rest[i..]),
        None => url,
    };
    path.to_string()
}

/// A JSON pointer's escaping of one key.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// `value`, or what its `$ref` (a pointer into `doc`) names.
pub(crate) fn resolve<'a>(doc: &'a Value, value: &'a Value) -> Result<&'a Value, String> {
    resolve_at(doc, value, String::new()).map(|(v, _)| v)
}

/// [`resolve`], with the pointer of what it found (`at` if `value` is not a
/// reference).
fn resolve_at<'a>(
    doc: &'a Value,
    mut value: &'a Value,
    mut at: String,
) -> Result<(&'a Value, String), String> {
    for _ in 0..16 {
        let Some(reference) = value.get("$ref").and_then(Value::as_str) else {
            return Ok((value, at));
        };
        let Some(pointer) = reference.strip_prefix('#') else {
            return Err(format!(
                "$ref {reference:?}: references outside the document are not read"
            ));
        };
        // A fragment is percent-encoded (`#/paths/~1users~1%7Bid%7D`).
        let pointer = percent_encoding::percent_decode_str(pointer).decode_utf8_lossy();
        value = doc
            .pointer(&pointer)
            .ok_or_else(|| format!("$ref {reference:?} names nothing in the document"))?;
        at = pointer.into_owned();
    }
    Err("$ref: more than 16 references in a row".into())
}

#[cfg(test)]
mod tests;
