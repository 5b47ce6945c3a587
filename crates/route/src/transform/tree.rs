//! A JSON value that keeps its members in the order they were written
//! (XML elements have an order; `serde_json`'s maps are sorted), read and
//! written with serde, and edited at JSON pointers.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq)]
pub enum Tree {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Tree>),
    /// Members in order; a name given twice is refused when read.
    Object(Vec<(String, Tree)>),
}

impl Tree {
    /// `bytes` as JSON: one value, nothing after it, no member named twice
    /// (two readers could pick different ones), nesting at most 128 deep.
    pub fn from_json(bytes: &[u8]) -> Result<Tree, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))
    }

    pub fn to_json(&self) -> Vec<u8> {
        // A tree of strings, numbers and ordered members always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The value from `serde_json` (the configuration's form).
    pub fn from_value(v: &serde_json::Value) -> Tree {
        match v {
            serde_json::Value::Null => Tree::Null,
            serde_json::Value::Bool(b) => Tree::Bool(*b),
            serde_json::Value::Number(n) => Tree::Number(n.clone()),
            serde_json::Value::String(s) => Tree::String(s.clone()),
            serde_json::Value::Array(a) => Tree::Array(a.iter().map(Tree::from_value).collect()),
            serde_json::Value::Object(o) => Tree::Object(
                o.iter()
                    .map(|(k, v)| (k.clone(), Tree::from_value(v)))
                    .collect(),
            ),
        }
    }

    /// The value at `path` (pointer tokens), if there is one.
    pub fn take(&mut self, path: &[String]) -> Option<Tree> {
        let (last, parents) = path.split_last()?;
        let mut at = self;
        for token in parents {
            at = at.child(token)?;
        }
        match at {
            Tree::Object(members) => {
                let i = members.iter().position(|(k, _)| k == last)?;
                Some(members.remove(i).1)
            }
            Tree::Array(items) => {
                let i = index(last, items.len())?;
                Some(items.remove(i))
            }
            _ => None,
        }
    }

    /// Puts `value` at `path`, making the objects on the way that are
    /// missing. `Err` when a value on the way is neither object nor
    /// array, or an array index is past its end (`-` appends).
    pub fn set(&mut self, path: &[String], value: Tree) -> Result<(), String> {
        let Some((last, parents)) = path.split_last() else {
            *self = value;
            return Ok(());
        };
        let mut at = self;
        for token in parents {
            if let Tree::Object(members) = at {
                if !members.iter().any(|(k, _)| k == token) {
                    members.push((token.clone(), Tree::Object(Vec::new())));
                }
            }
            at = at
                .child(token)
                .ok_or_else(|| format!("no object or array at {token:?}"))?;
        }
        match at {
            Tree::Object(members) => match members.iter_mut().find(|(k, _)| k == last) {
                Some((_, old)) => *old = value,
                None => members.push((last.clone(), value)),
            },
            Tree::Array(items) if last == "-" => items.push(value),
            Tree::Array(items) => {
                let i = index(last, items.len()).ok_or_else(|| format!("no item {last}"))?;
                items[i] = value;
            }
            _ => return Err(format!("no object or array to hold {last:?}")),
        }
        Ok(())
    }

    fn child(&mut self, token: &str) -> Option<&mut Tree> {
        match self {
            Tree::Object(members) => members.iter_mut().find(|(k, _)| k == token).map(|(_, v)| v),
            Tree::Array(items) => {
                let i = index(token, items.len())?;
                items.get_mut(i)
            }
            _ => None,
        }
    }
}

/// An array index token (RFC 6901: digits, no leading zero) under `len`.
fn index(token: &str, len: usize) -> Option<usize> {
    let digits = !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit());
    if !digits || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    token.parse().ok().filter(|i| *i < len)
}

/// A JSON pointer (RFC 6901) as its tokens: `""` is the whole value.
pub fn pointer(text: &str) -> Result<Vec<String>, String> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = text.strip_prefix('/') else {
        return Err(format!("{text:?} is not a JSON pointer (it starts with /)"));
    };
    rest.split('/')
        .map(|t| {
            if t.replace("~0", "").replace("~1", "").contains('~') {
                return Err(format!("{text:?}: ~ must be ~0 or ~1"));
            }
            Ok(t.replace("~1", "/").replace("~0", "~"))
        })
        .collect()
}

impl Serialize for Tree {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Tree::Null => s.serialize_unit(),
            Tree::Bool(b) => s.serialize_bool(*b),
            Tree::Number(n) => n.serialize(s),
            Tree::String(v) => s.serialize_str(v),
            Tree::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Tree::Object(members) => {
                let mut map = s.serialize_map(Some(members.len()))?;
                for (k, v) in members {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Tree, D::Error> {
        d.deserialize_any(TreeVisitor)
    }
}

struct TreeVisitor;

impl<'de> Visitor<'de> for TreeVisitor {
    type Value = Tree;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Tree, E> {
        Ok(Tree::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Tree, E> {
        Ok(Tree::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Tree, E> {
        Ok(Tree::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Tree, E> {
        Ok(Tree::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Tree, E> {
        serde_json::Number::from_f64(v)
            .map(Tree::Number)
            .ok_or_else(|| E::custom("a number JSON cannot hold"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Tree, E> {
        Ok(Tree::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Tree, E> {
        Ok(Tree::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tree, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Tree::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tree, A::Error> {
        let mut members: Vec<(String, Tree)> = Vec::new();
        // SipHash: the names are the client's.
        let mut seen = std::collections::HashSet::new();
        while let Some((k, v)) = map.next_entry::<String, Tree>()? {
            if !seen.insert(k.clone()) {
                return Err(de::Error::custom(format!("member {k:?} given twice")));
            }
            members.push((k, v));
        }
        Ok(Tree::Object(members))
    }
}
