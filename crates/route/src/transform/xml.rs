//! JSON ↔ XML, one mapping both ways (as Apigee's and Azure API
//! Management's conversions do): an element is a member named as it is;
//! `@name` members are its attributes and `#text` its text beside them;
//! repeated elements are an array; an element with only text is a
//! string, an empty one `null`. Text is never guessed into numbers.

use super::tree::Tree;
use quick_xml::escape::{escape, resolve_predefined_entity};
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// Deeper XML is refused (as `serde_json` refuses deeper JSON).
const MAX_DEPTH: usize = 128;

const DECLARATION: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>";

/// The XML for `json`. Its root: `root` when given; else the one member
/// of an object of one member; else `root`.
pub fn from_json(json: &Tree, root: Option<&str>) -> Result<String, String> {
    let mut out = String::from(DECLARATION);
    match (root, json) {
        (None, Tree::Object(members))
            if members.len() == 1 && !matches!(members[0].1, Tree::Array(_)) =>
        {
            element(&members[0].0, &members[0].1, &mut out)?;
        }
        (root, Tree::Array(items)) => {
            let name = root.unwrap_or("root");
            check_name(name)?;
            out.push_str(&format!("<{name}>"));
            for item in items {
                element("item", item, &mut out)?;
            }
            close(name, &mut out);
        }
        (root, json) => element(root.unwrap_or("root"), json, &mut out)?,
    }
    Ok(out)
}

fn element(name: &str, value: &Tree, out: &mut String) -> Result<(), String> {
    if let Tree::Array(items) = value {
        for item in items {
            element(name, item, out)?;
        }
        return Ok(());
    }
    check_name(name)?;
    out.push('<');
    out.push_str(name);
    let Tree::Object(members) = value else {
        match value {
            Tree::Null => out.push_str("/>"),
            scalar => {
                out.push('>');
                out.push_str(&escape(text_of(scalar)?));
                close(name, out);
            }
        }
        return Ok(());
    };
    for (k, v) in members {
        if let Some(attr) = k.strip_prefix('@') {
            check_name(attr)?;
            let v = text_of(v)
                .map_err(|_| format!("attribute {k:?} is not a string, number or boolean"))?;
            out.push_str(&format!(" {attr}=\"{}\"", escape(v)));
        }
    }
    out.push('>');
    for (k, v) in members {
        match k.as_str() {
            "#text" => out.push_str(&escape(text_of(v)?)),
            k if k.starts_with('@') => {}
            k => element(k, v, out)?,
        }
    }
    close(name, out);
    Ok(())
}

fn close(name: &str, out: &mut String) {
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

fn text_of(v: &Tree) -> Result<String, String> {
    match v {
        Tree::String(s) => Ok(s.clone()),
        Tree::Number(n) => Ok(n.to_string()),
        Tree::Bool(b) => Ok(b.to_string()),
        Tree::Null => Ok(String::new()),
        _ => Err("text that is an object or array".into()),
    }
}

/// XML 1.0's `Name`: a letter, `_` or `:` first; then also digits, `-`
/// and `.`.
pub(super) fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_' || c == ':');
    let rest_ok = chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | ':' | '-' | '.'));
    match first_ok && rest_ok {
        true => Ok(()),
        false => Err(format!("{name:?} cannot be an XML name")),
    }
}

/// An element being read: its attributes and children so far, its text.
struct Open {
    name: String,
    members: Vec<(String, Tree)>,
    /// Where each child's name is in `members`: siblings are many, and
    /// the client's (SipHash).
    index: std::collections::HashMap<String, usize>,
    text: String,
}

impl Open {
    fn new(start: &BytesStart<'_>) -> Result<Open, String> {
        let name = start.name().as_ref().to_string();
        let mut members = Vec::new();
        for attr in start.attributes() {
            let attr = attr.map_err(|e| format!("an attribute of <{name}>: {e}"))?;
            let key = format!("@{}", attr.key.as_ref());
            let value = attr
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| format!("attribute {key} of <{name}>: {e}"))?;
            members.push((key, Tree::String(value.into_owned())));
        }
        Ok(Open {
            name,
            members,
            index: std::collections::HashMap::new(),
            text: String::new(),
        })
    }

    /// Its member. Whitespace at either end of its text is layout.
    fn close(self) -> (String, Tree) {
        let text = self.text.trim();
        let value = match (self.members.is_empty(), text.is_empty()) {
            (true, true) => Tree::Null,
            (true, false) => Tree::String(text.to_string()),
            (false, _) => {
                let mut members = self.members;
                if !text.is_empty() {
                    members.push(("#text".into(), Tree::String(text.to_string())));
                }
                Tree::Object(members)
            }
        };
        (self.name, value)
    }

    /// A child element: a second of a name makes the member an array.
    fn add(&mut self, (name, value): (String, Tree)) {
        let Some(&i) = self.index.get(&name) else {
            self.index.insert(name.clone(), self.members.len());
            self.members.push((name, value));
            return;
        };
        match &mut self.members[i].1 {
            Tree::Array(items) => items.push(value),
            first => {
                let first_value = std::mem::replace(first, Tree::Null);
                *first = Tree::Array(vec![first_value, value]);
            }
        }
    }
}

/// The element text goes into.
fn inside(open: &mut [Open]) -> Result<&mut Open, String> {
    open.last_mut()
        .ok_or_else(|| "text outside the root element".into())
}

/// The JSON for XML `text`: an object whose one member is the root
/// element. No DOCTYPE (no entities beyond XML's five and character
/// references), one root, at most 128 deep.
pub fn to_json(text: &str) -> Result<Tree, String> {
    let mut reader = Reader::from_str(text);
    let mut open: Vec<Open> = Vec::new();
    let mut root = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("{e} (at byte {})", reader.error_position()))?;
        match event {
            Event::Start(_) | Event::Empty(_) if root.is_some() => {
                return Err("more than one root element".into());
            }
            Event::Start(start) => {
                if open.len() >= MAX_DEPTH {
                    return Err(format!("elements nested more than {MAX_DEPTH} deep"));
                }
                open.push(Open::new(&start)?);
            }
            Event::Empty(start) => {
                let done = Open::new(&start)?.close();
                match open.last_mut() {
                    Some(parent) => parent.add(done),
                    None => root = Some(done),
                }
            }
            Event::End(_) => {
                let done = open.pop().ok_or("an end tag with no start")?.close();
                match open.last_mut() {
                    Some(parent) => parent.add(done),
                    None => root = Some(done),
                }
            }
            Event::Text(t) => {
                let t = t.xml10_content();
                // Whitespace around the root is layout, not text.
                if !(open.is_empty() && t.trim().is_empty()) {
                    inside(&mut open)?.text.push_str(&t);
                }
            }
            Event::CData(t) => inside(&mut open)?.text.push_str(&t.xml10_content()),
            Event::GeneralRef(r) => {
                let name = r.xml10_content();
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => resolve_predefined_entity(&name)
                        .ok_or_else(|| format!("entity &{name}; is not one XML defines"))?
                        .to_string(),
                    Err(e) => return Err(format!("&{name};: {e}")),
                };
                inside(&mut open)?.text.push_str(&resolved);
            }
            Event::DocType(_) => {
                return Err("a DOCTYPE is not read (its entities could be anything)".into())
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    match (root, open.is_empty()) {
        (Some((name, value)), true) => Ok(Tree::Object(vec![(name, value)])),
        (_, false) => Err("the document ends inside an element".into()),
        (None, true) => Err("no root element".into()),
    }
}
