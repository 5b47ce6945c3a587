//! JSON Schemas of one OpenAPI document, compiled once: each a reference
//! into the whole document (registered under one URI), so that a schema's
//! own `$ref`s to `#/components/...` resolve as the document means them.
//! OpenAPI 3.1's schemas are JSON Schema 2020-12; 3.0's are a dialect of
//! draft 4, read as draft 4 once `nullable` is spelled as a type.

use jsonschema::{Draft, Registry, Validator};
use serde_json::Value;

/// Where the document is registered: no retrieval ever happens, so the
/// name only has to be a URI.
const BASE: &str = "urn:strait:openapi";

/// What a JSON pointer in a URI's fragment has percent-encoded (RFC
/// 6901, section 6): path templates have `{` and `}`.
const FRAGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// An error message past this is cut: it may quote the client's value.
const MAX_MESSAGE: usize = 200;

pub(crate) struct Schemas {
    registry: Registry<'static>,
    draft: Draft,
}

impl Schemas {
    /// The document's schemas, `doc` as the version `openapi` names it.
    pub fn new(doc: &Value, version_3_0: bool) -> Result<Schemas, String> {
        let (doc, draft) = match version_3_0 {
            true => {
                let mut doc = doc.clone();
                spell_nullable(&mut doc);
                (doc, Draft::Draft4)
            }
            false => (doc.clone(), Draft::Draft202012),
        };
        let registry = Registry::new()
            .draft(draft)
            .add(BASE, doc)
            .and_then(|b| b.prepare())
            .map_err(|e| format!("its schemas cannot be read: {e}"))?;
        Ok(Schemas { registry, draft })
    }

    /// The schema at `pointer` (a JSON pointer into the document).
    pub fn compile(&self, pointer: &str) -> Result<Validator, String> {
        let fragment = percent_encoding::utf8_percent_encode(pointer, FRAGMENT);
        let schema = serde_json::json!({ "$ref": format!("{BASE}#{fragment}") });
        jsonschema::options()
            .with_draft(self.draft)
            .with_registry(&self.registry)
            .should_validate_formats(true)
            .offline()
            .build(&schema)
            .map_err(|e| cut(e.to_string()))
    }
}

/// `value` checked against `schema`: the first failure's JSON pointer in
/// the value and what is wrong there.
pub(crate) fn check(schema: &Validator, value: &Value) -> Result<(), (String, String)> {
    // Most requests are valid: the quick check first, the one that says
    // why only for those that are not.
    if schema.is_valid(value) {
        return Ok(());
    }
    match schema.validate(value) {
        Ok(()) => Ok(()),
        Err(e) => Err((cut(e.instance_path().to_string()), cut(e.to_string()))),
    }
}

/// `text` cut at 200 bytes: a message may quote what the client sent.
pub fn cut(mut text: String) -> String {
    if text.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// OpenAPI 3.0's `nullable: true` as JSON Schema says it: `null` one of
/// the schema's types (and of its `enum`, if it has one).
fn spell_nullable(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.get("nullable") == Some(&Value::Bool(true)) {
                if let Some(Value::String(t)) = map.get("type") {
                    let both = Value::Array(vec![Value::String(t.clone()), "null".into()]);
                    map.insert("type".into(), both);
                }
                if let Some(Value::Array(values)) = map.get_mut("enum") {
                    if !values.contains(&Value::Null) {
                        values.push(Value::Null);
                    }
                }
            }
            map.values_mut().for_each(spell_nullable);
        }
        Value::Array(items) => items.iter_mut().for_each(spell_nullable),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "components": {"schemas": {
                "Item": {"type": "object", "required": ["sku"], "properties": {
                    "sku": {"type": "string", "minLength": 3},
                    "note": {"type": "string", "nullable": true},
                    "quantity": {"type": "integer", "minimum": 1, "exclusiveMaximum": true, "maximum": 100}
                }},
                "Order": {"type": "object", "properties": {
                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}}
                }}
            }}
        })
    }

    #[test]
    fn refs_resolve_inside_the_document_and_name_the_failing_value() -> Result<(), String> {
        let schemas = Schemas::new(&doc(), true)?;
        let order = schemas.compile("/components/schemas/Order")?;
        let good = json!({"items": [{"sku": "abc", "quantity": 2, "note": null}]});
        assert_eq!(check(&order, &good), Ok(()));
        let bad = json!({"items": [{"sku": "abc"}, {"sku": "abcd", "quantity": 0}]});
        let (pointer, message) = check(&order, &bad).err().ok_or("passed")?;
        assert_eq!(pointer, "/items/1/quantity");
        assert!(message.contains("minimum of 1"), "{message}");
        // 3.0's boolean exclusiveMaximum, as draft 4 reads it.
        let edge = json!({"items": [{"sku": "abc", "quantity": 100}]});
        assert!(check(&order, &edge).is_err());
        Ok(())
    }

    #[test]
    fn nullable_is_only_3_0s() -> Result<(), String> {
        let item = json!({"sku": "abc", "note": null});
        let v30 = Schemas::new(&doc(), true)?.compile("/components/schemas/Item")?;
        assert_eq!(check(&v30, &item), Ok(()));
        let mut doc31 = doc();
        let quantity = doc31.pointer_mut("/components/schemas/Item/properties/quantity");
        if let Some(Value::Object(q)) = quantity {
            // 3.0's boolean form is not 2020-12's: refused when compiled.
            q.remove("exclusiveMaximum");
        }
        let v31 = Schemas::new(&doc31, false)?.compile("/components/schemas/Item")?;
        let (pointer, _) = check(&v31, &item).err().ok_or("passed")?;
        assert_eq!(pointer, "/note");
        Ok(())
    }

    #[test]
    fn a_reference_outside_the_document_is_refused_when_compiled() -> Result<(), String> {
        let doc = json!({"components": {"schemas": {"A": {"$ref": "https://example.com/a.json"}}}});
        let schemas = Schemas::new(&doc, false)?;
        assert!(schemas.compile("/components/schemas/A").is_err());
        let missing = schemas.compile("/components/schemas/B");
        assert!(missing.is_err());
        Ok(())
    }

    #[test]
    fn long_messages_are_cut() {
        let text = "é".repeat(300);
        let cut = cut(text);
        assert!(cut.len() <= MAX_MESSAGE + '…'.len_utf8());
    }
}
