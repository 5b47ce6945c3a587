//! An operation's parameters: where each is (path, query, header,
//! cookie), whether it is required, and its schema. A parameter arrives
//! as text; it is read as the JSON value its schema's type asks for (a
//! number, a boolean, an array split by the parameter's style) before the
//! schema checks it, as OpenAPI's serialization rules write it.

use crate::schema::{check, Schemas};
use crate::Invalid;
use http::HeaderMap;
use jsonschema::Validator;
use serde_json::Value;
use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum In {
    Path,
    Query,
    Header,
    Cookie,
}

impl In {
    fn name(self) -> &'static str {
        match self {
            In::Path => "path",
            In::Query => "query",
            In::Header => "header",
            In::Cookie => "cookie",
        }
    }
}

/// How one value's text becomes JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scalar {
    Integer,
    Number,
    Boolean,
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    One(Scalar),
    /// Items of this kind: each a repeated query parameter (`explode`),
    /// or the one value split at `split`.
    Many {
        item: Scalar,
        explode: bool,
        split: char,
    },
    /// An object, or a value given as `content`: required or not, its
    /// value is not checked.
    Unchecked,
}

pub(crate) struct Param {
    pub name: String,
    pub at: In,
    required: bool,
    shape: Shape,
    schema: Option<Validator>,
}

impl std::fmt::Debug for Param {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} parameter {}", self.at.name(), self.name)
    }
}

/// What a request gives for its parameters.
pub struct Given<'a> {
    pub path: &'a [(&'a str, std::borrow::Cow<'a, str>)],
    /// The query string, still encoded.
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

impl Param {
    /// Parameter `p` (already resolved), found at `pointer` in `doc`.
    pub fn compile(
        doc: &Value,
        p: &Value,
        pointer: &str,
        schemas: &Schemas,
    ) -> Result<Option<Param>, String> {
        let name = p.get("name").and_then(Value::as_str).ok_or("has no name")?;
        let at = match p.get("in").and_then(Value::as_str) {
            Some("path") => In::Path,
            Some("query") => In::Query,
            Some("header") => In::Header,
            Some("cookie") => In::Cookie,
            other => {
                return Err(format!(
                    "`in` is {other:?}, not path, query, header or cookie"
                ))
            }
        };
        // OpenAPI: these headers are described elsewhere, and ignored here.
        let described_elsewhere = ["accept", "content-type", "authorization"];
        if at == In::Header && described_elsewhere.contains(&name.to_ascii_lowercase().as_str()) {
            return Ok(None);
        }
        let required = at == In::Path || p.get("required") == Some(&Value::Bool(true));
        let Some(schema) = p.get("schema") else {
            let param = Param {
                name: name.into(),
                at,
                required,
                shape: Shape::Unchecked,
                schema: None,
            };
            return Ok(Some(param));
        };
        let shape = shape(doc, schema, at, p)?;
        // An object in the query is sent as its properties (`form`) or
        // as `name[key]` (`deepObject`), never under its own name.
        let required = required && !(shape == Shape::Unchecked && at == In::Query);
        let schema = match shape {
            Shape::Unchecked => None,
            _ => Some(schemas.compile(&format!("{pointer}/schema"))?),
        };
        Ok(Some(Param {
            name: name.into(),
            at,
            required,
            shape,
            schema,
        }))
    }

    /// This parameter in `given`: there if required, and as its schema
    /// says.
    pub fn check(&self, given: &Given<'_>) -> Result<(), Invalid> {
        if self.at == In::Header {
            let values = given.headers.get_all(self.name.as_str()).iter();
            if values.into_iter().any(|v| v.to_str().is_err()) {
                return Err(self.invalid("", "is not text (bytes past ASCII)".into()));
            }
        }
        let texts = self.texts(given);
        if texts.is_empty() {
            return match self.required {
                true => Err(self.invalid("", "is required".into())),
                false => Ok(()),
            };
        }
        let Some(schema) = &self.schema else {
            return Ok(());
        };
        let value = match self.shape {
            // A backend may read the first value or the last: one it is.
            Shape::One(_) if texts.len() > 1 => {
                let said = format!("is given {} times, and takes one value", texts.len());
                return Err(self.invalid("", said));
            }
            Shape::One(kind) => read(kind, &texts[0]),
            Shape::Many {
                item,
                explode,
                split,
            } => {
                let parts: Vec<&str> = match explode && self.at == In::Query {
                    true => texts.iter().map(|t| &**t).collect(),
                    false => texts[0].split(split).collect(),
                };
                Value::Array(parts.into_iter().map(|t| read(item, t)).collect())
            }
            Shape::Unchecked => return Ok(()),
        };
        check(schema, &value).map_err(|(pointer, message)| self.invalid(&pointer, message))
    }

    fn invalid(&self, pointer: &str, message: String) -> Invalid {
        Invalid::bad(
            format!("{} parameter {}{pointer}", self.at.name(), self.name),
            message,
        )
    }

    /// Every value given for this parameter, decoded.
    fn texts<'a>(&self, given: &Given<'a>) -> Vec<Cow<'a, str>> {
        match self.at {
            In::Path => given
                .path
                .iter()
                .filter(|(n, _)| *n == self.name)
                .map(|(_, v)| v.clone())
                .collect(),
            In::Query => {
                let query = given.query.unwrap_or("").as_bytes();
                form_urlencoded::parse(query)
                    .filter(|(n, _)| *n == self.name)
                    .map(|(_, v)| v)
                    .collect()
            }
            In::Header => {
                let values = given.headers.get_all(self.name.as_str()).iter();
                let texts: Vec<&str> = values.filter_map(|v| v.to_str().ok()).collect();
                match texts.len() {
                    0 => Vec::new(),
                    1 => vec![Cow::Borrowed(texts[0])],
                    _ => vec![Cow::Owned(texts.join(","))],
                }
            }
            In::Cookie => {
                let cookies = given.headers.get_all(http::header::COOKIE).iter();
                cookies
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(';'))
                    .filter_map(|c| c.trim().split_once('='))
                    .filter(|(n, _)| *n == self.name)
                    .map(|(_, v)| Cow::Borrowed(v))
                    .collect()
            }
        }
    }
}

/// How parameter `p`'s text is read, from its (resolved) schema's type.
fn shape(doc: &Value, schema: &Value, at: In, p: &Value) -> Result<Shape, String> {
    let schema = crate::resolve(doc, schema)?;
    match type_of(doc, schema, 0) {
        Some("array") => {
            let items = schema.get("items").unwrap_or(&Value::Null);
            let item = scalar(type_of(doc, crate::resolve(doc, items)?, 0));
            let style = p.get("style").and_then(Value::as_str);
            let explode = match p.get("explode").and_then(Value::as_bool) {
                Some(e) => e,
                None => matches!((at, style), (In::Query | In::Cookie, None | Some("form"))),
            };
            let split = match style {
                Some("spaceDelimited") => ' ',
                Some("pipeDelimited") => '|',
                _ => ',',
            };
            Ok(Shape::Many {
                item,
                explode,
                split,
            })
        }
        Some("object") => Ok(Shape::Unchecked),
        other => Ok(Shape::One(scalar(other))),
    }
}

/// The type a schema gives its values: its own `type`, else the first
/// of its `anyOf`, `oneOf` or `allOf` that has one; never `null`.
fn type_of<'d>(doc: &'d Value, schema: &'d Value, depth: u8) -> Option<&'d str> {
    match schema.get("type") {
        Some(Value::String(t)) if t != "null" => return Some(t),
        // 3.1's `[integer, "null"]`: the type that is not null.
        Some(Value::Array(types)) => {
            return types
                .iter()
                .filter_map(Value::as_str)
                .find(|t| *t != "null")
        }
        _ => {}
    }
    if depth > 8 {
        return None;
    }
    let parts = ["anyOf", "oneOf", "allOf"]
        .into_iter()
        .filter_map(|k| schema.get(k));
    let parts = parts.filter_map(Value::as_array).flatten();
    parts
        .filter_map(|s| crate::resolve(doc, s).ok())
        .find_map(|s| type_of(doc, s, depth + 1))
}

fn scalar(type_of: Option<&str>) -> Scalar {
    match type_of {
        Some("integer") => Scalar::Integer,
        Some("number") => Scalar::Number,
        Some("boolean") => Scalar::Boolean,
        _ => Scalar::Text,
    }
}

/// `text` as the JSON value `kind` asks for; as a string when it is not
/// one, so that the schema's message says what was expected.
fn read(kind: Scalar, text: &str) -> Value {
    let parsed = match kind {
        Scalar::Integer => text.parse::<i64>().ok().map(Value::from),
        Scalar::Number => serde_json::from_str::<serde_json::Number>(text)
            .ok()
            .map(Value::Number),
        Scalar::Boolean => match text {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        },
        Scalar::Text => None,
    };
    parsed.unwrap_or_else(|| Value::String(text.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_become_the_type_the_schema_names() {
        assert_eq!(read(Scalar::Integer, "42"), Value::from(42));
        assert_eq!(read(Scalar::Integer, "4.2"), Value::from("4.2"));
        assert_eq!(read(Scalar::Number, "4.5"), serde_json::json!(4.5));
        assert_eq!(read(Scalar::Number, "1e400x"), Value::from("1e400x"));
        assert_eq!(read(Scalar::Boolean, "true"), Value::Bool(true));
        assert_eq!(read(Scalar::Boolean, "yes"), Value::from("yes"));
        assert_eq!(read(Scalar::Text, "42"), Value::from("42"));
    }

    #[test]
    fn nullable_types_read_as_their_other_type() {
        let doc = serde_json::json!({"components": {"schemas": {"N": {"type": "number"}}}});
        let of = |schema: Value| scalar(type_of(&doc, &schema, 0));
        assert_eq!(
            of(serde_json::json!({"type": ["null", "integer"]})),
            Scalar::Integer
        );
        let any = serde_json::json!({"anyOf": [{"type": "null"}, {"type": "boolean"}]});
        assert_eq!(of(any), Scalar::Boolean);
        let all = serde_json::json!({"allOf": [{"$ref": "#/components/schemas/N"}]});
        assert_eq!(of(all), Scalar::Number);
        assert_eq!(of(serde_json::json!({"description": "x"})), Scalar::Text);
    }
}
