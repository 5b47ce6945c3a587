//! A `BodyTransform` filter, compiled: for each direction, a conversion
//! between JSON and XML and edits of the JSON at pointers, applied to a
//! body read whole within a bound. Pure: the proxy reads and replaces
//! the bodies.

mod tree;
mod xml;

use http::HeaderMap;
use std::sync::Arc;
use strait_config::traffic::{BodyEdit, BodyTransformSpec, JsonEdit};
use strait_config::Object;
use tree::{pointer, Tree};

const DEFAULT_MAX_BODY: u64 = 1024 * 1024;
const MOST_MAX_BODY: u64 = 16 * 1024 * 1024;

#[derive(Debug)]
pub struct BodyTransform {
    /// `namespace/name`, for answers and logs.
    pub name: Arc<str>,
    pub max_body: u64,
    pub request: Option<Side>,
    pub response: Option<Side>,
}

/// What a body must be to be transformed, and what it becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "JSON",
            Format::Xml => "XML",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Xml => "application/xml; charset=utf-8",
        }
    }

    /// Whether a `Content-Type` says this format: `application/json` or
    /// a `+json` type; `application/xml`, `text/xml` or a `+xml` type.
    pub fn is(self, content_type: &str) -> bool {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match self {
            Format::Json => essence == "application/json" || essence.ends_with("+json"),
            Format::Xml => {
                matches!(essence.as_str(), "application/xml" | "text/xml")
                    || essence.ends_with("+xml")
            }
        }
    }
}

#[derive(Debug)]
pub struct Side {
    pub from: Format,
    pub to: Format,
    /// JSON to XML: the root element, when named.
    root: Option<String>,
    edits: Vec<Edit>,
}

#[derive(Debug)]
enum Edit {
    Set(Vec<String>, Value),
    Remove(Vec<String>),
    Rename(Vec<String>, Vec<String>),
}

#[derive(Debug)]
enum Value {
    Json(Tree),
    /// A string with `{{ request.… }}` in it.
    Template(Vec<Piece>),
}

#[derive(Debug, PartialEq)]
enum Piece {
    Text(String),
    Method,
    Path,
    Header(http::HeaderName),
}

/// What a template may say of the request.
pub struct RequestFacts<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub headers: &'a HeaderMap,
}

impl Side {
    /// The request headers its templates name: all an edit of this side
    /// needs of the request's headers.
    pub fn headers_named(&self) -> impl Iterator<Item = &http::HeaderName> {
        let pieces = self.edits.iter().filter_map(|e| match e {
            Edit::Set(_, Value::Template(pieces)) => Some(pieces),
            _ => None,
        });
        pieces.flatten().filter_map(|p| match p {
            Piece::Header(name) => Some(name),
            _ => None,
        })
    }

    /// `body` transformed. `Err` says why it cannot be (not the format
    /// it must be, an edit that cannot apply, JSON that XML cannot hold).
    pub fn apply(&self, body: &[u8], facts: &RequestFacts<'_>) -> Result<Vec<u8>, String> {
        let mut json = match self.from {
            Format::Json => Tree::from_json(body)?,
            Format::Xml => {
                let text = std::str::from_utf8(body).map_err(|_| "not XML: not UTF-8")?;
                xml::to_json(text).map_err(|e| format!("not XML: {e}"))?
            }
        };
        for edit in &self.edits {
            edit.apply(&mut json, facts)?;
        }
        Ok(match self.to {
            Format::Json => json.to_json(),
            Format::Xml => xml::from_json(&json, self.root.as_deref())?.into_bytes(),
        })
    }
}

impl Edit {
    fn apply(&self, json: &mut Tree, facts: &RequestFacts<'_>) -> Result<(), String> {
        match self {
            Edit::Set(path, value) => {
                let value = match value {
                    Value::Json(v) => v.clone(),
                    Value::Template(pieces) => Tree::String(fill(pieces, facts)),
                };
                json.set(path, value)
            }
            Edit::Remove(path) => {
                json.take(path);
                Ok(())
            }
            Edit::Rename(from, to) => match json.take(from) {
                Some(value) => json.set(to, value),
                None => Ok(()),
            },
        }
    }
}

fn fill(pieces: &[Piece], facts: &RequestFacts<'_>) -> String {
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Method => out.push_str(facts.method),
            Piece::Path => out.push_str(facts.path),
            Piece::Header(name) => {
                let value = facts.headers.get(name).and_then(|v| v.to_str().ok());
                out.push_str(value.unwrap_or_default());
            }
        }
    }
    out
}

/// The filter of object `t`, or why it cannot apply (with the field).
pub fn compile(t: &Object<BodyTransformSpec>) -> Result<BodyTransform, String> {
    let name = format!("{}/{}", t.metadata.namespace(), t.metadata.name);
    let bad = |field: &str, why: String| format!("BodyTransform {name}: {field}: {why}");
    let max_body = t.spec.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY);
    if max_body == 0 || max_body > MOST_MAX_BODY {
        let why = format!("{max_body} is not 1 to {MOST_MAX_BODY}");
        return Err(bad("spec.maxBodyBytes", why));
    }
    let side = |edit: &Option<BodyEdit>, field: &str| {
        edit.as_ref()
            .map(|e| side(e).map_err(|(at, why)| bad(&format!("spec.{field}{at}"), why)))
            .transpose()
    };
    Ok(BodyTransform {
        request: side(&t.spec.request, "request")?,
        response: side(&t.spec.response, "response")?,
        name: name.as_str().into(),
        max_body,
    })
}

/// One direction, or the field below it that is wrong and why.
fn side(e: &BodyEdit) -> Result<Side, (String, String)> {
    let (from, to) = match e.convert.as_deref() {
        None => (Format::Json, Format::Json),
        Some("JSONToXML") => (Format::Json, Format::Xml),
        Some("XMLToJSON") => (Format::Xml, Format::Json),
        Some(other) => {
            let why = format!("{other:?} is not JSONToXML or XMLToJSON");
            return Err((".convert".into(), why));
        }
    };
    if let Some(root) = &e.root_element {
        if to != Format::Xml {
            return Err((".rootElement".into(), "applies only to JSONToXML".into()));
        }
        xml::check_name(root).map_err(|why| (".rootElement".to_string(), why))?;
    }
    let edits = e
        .edits
        .iter()
        .enumerate()
        .map(|(i, edit)| self::edit(edit).map_err(|(at, why)| (format!(".edits[{i}]{at}"), why)))
        .collect::<Result<_, _>>()?;
    Ok(Side {
        from,
        to,
        root: e.root_element.clone(),
        edits,
    })
}

fn edit(e: &JsonEdit) -> Result<Edit, (String, String)> {
    let path = pointer(&e.path).map_err(|why| (".path".to_string(), why))?;
    let unused = |field: &str, set: bool| match set {
        true => Err((format!(".{field}"), format!("is not used by {}", e.op))),
        false => Ok(()),
    };
    match e.op.as_str() {
        "Set" => {
            unused("to", e.to.is_some())?;
            let value = e
                .value
                .as_ref()
                .ok_or_else(|| (".value".to_string(), "Set needs a value".to_string()))?;
            let value = match value {
                serde_json::Value::String(s) if s.contains("{{") => {
                    Value::Template(template(s).map_err(|why| (".value".to_string(), why))?)
                }
                v => Value::Json(Tree::from_value(v)),
            };
            Ok(Edit::Set(path, value))
        }
        "Remove" => {
            unused("value", e.value.is_some())?;
            unused("to", e.to.is_some())?;
            Ok(Edit::Remove(path))
        }
        "Rename" => {
            unused("value", e.value.is_some())?;
            let to =
                e.to.as_deref()
                    .ok_or_else(|| (".to".to_string(), "Rename needs a pointer to".to_string()))?;
            let to = pointer(to).map_err(|why| (".to".to_string(), why))?;
            Ok(Edit::Rename(path, to))
        }
        other => Err((
            ".op".into(),
            format!("{other:?} is not Set, Remove or Rename"),
        )),
    }
}

/// `{{ request.method }}`, `{{ request.path }}`, `{{ request.header.NAME }}`
/// in a string.
fn template(s: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut rest = s;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            pieces.push(Piece::Text(rest[..open].to_string()));
        }
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| format!("{s:?}: a {{{{ with no }}}}"))?;
        let name = after[..close].trim();
        pieces.push(match name {
            "request.method" => Piece::Method,
            "request.path" => Piece::Path,
            _ => match name.strip_prefix("request.header.") {
                Some(h) => Piece::Header(
                    http::HeaderName::try_from(h)
                        .map_err(|_| format!("{h:?} is not a header name"))?,
                ),
                None => {
                    return Err(format!(
                    "{{{{ {name} }}}} is not request.method, request.path or request.header.NAME"
                ))
                }
            },
        });
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_string()));
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests;
