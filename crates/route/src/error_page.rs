//! A Gateway's own error answers written its way (a JSON error format, a
//! branded page): the Gateway's `spec.infrastructure.parametersRef` names
//! a ConfigMap of its namespace whose `errorBody` is a template —
//! `{status}`, `{reason}` (the `x-strait-reason`) and `{message}` (what
//! strait says of it) are filled in, escaped as JSON strings when the
//! `errorContentType` (default `text/plain; charset=utf-8`) is JSON;
//! every other character is the template's own.

use bytes::Bytes;
use http::HeaderValue;
use strait_config::gateway::GatewaySpec;
use strait_config::Document;

#[derive(Debug)]
pub struct ErrorPage {
    pub content_type: HeaderValue,
    parts: Vec<Part>,
    escape: Escape,
}

/// How filled-in values are written: a message can carry what a client
/// sent (a token's `kid`), so a page never takes it as markup.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Escape {
    Json,
    Html,
    None,
}

#[derive(Debug, PartialEq)]
enum Part {
    Text(String),
    Status,
    Reason,
    Message,
}

/// Where the reference is, for problems.
pub const PATH: &str = "spec.infrastructure.parametersRef";

impl ErrorPage {
    pub fn new(content_type: &str, template: &str) -> Result<ErrorPage, String> {
        let content_type = HeaderValue::from_str(content_type)
            .map_err(|_| format!("errorContentType {content_type:?} is not a header value"))?;
        let kind = content_type
            .to_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let escape = match () {
            _ if kind.contains("json") => Escape::Json,
            _ if kind.contains("html") || kind.contains("xml") => Escape::Html,
            _ => Escape::None,
        };
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(at) = rest.find('{') {
            let after = &rest[at..];
            let (part, len) = [
                ("{status}", Part::Status),
                ("{reason}", Part::Reason),
                ("{message}", Part::Message),
            ]
            .into_iter()
            .find(|(p, _)| after.starts_with(p))
            .map_or((None, 1), |(p, part)| (Some(part), p.len()));
            let text = &rest[..at + if part.is_some() { 0 } else { len }];
            if !text.is_empty() {
                parts.push(Part::Text(text.to_string()));
            }
            parts.extend(part);
            rest = &rest[at + len..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(ErrorPage {
            content_type,
            parts,
            escape,
        })
    }

    pub fn render(&self, status: u16, reason: &str, message: &str) -> Bytes {
        let mut out = String::new();
        let escaped = |s: &str| match self.escape {
            Escape::Json => {
                let quoted = serde_json::Value::String(s.to_string()).to_string();
                quoted[1..quoted.len() - 1].to_string()
            }
            Escape::Html => s
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
                .replace('\'', "&#39;"),
            Escape::None => s.to_string(),
        };
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Status => out.push_str(&status.to_string()),
                Part::Reason => out.push_str(&escaped(reason)),
                Part::Message => out.push_str(&escaped(message)),
            }
        }
        Bytes::from(out)
    }
}

/// The error page Gateway `gw` of namespace `ns` names, if any, or why
/// it cannot be used (its answers then keep strait's plain text).
pub fn of_gateway(
    docs: &[Document],
    ns: &str,
    gw: &GatewaySpec,
) -> Option<Result<ErrorPage, String>> {
    let r = gw.infrastructure.as_ref()?.get("parametersRef")?;
    let field = |k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or_default();
    Some(page(
        docs,
        ns,
        (field("group"), field("kind"), field("name")),
    ))
}

fn page(
    docs: &[Document],
    ns: &str,
    (group, kind, name): (&str, &str, &str),
) -> Result<ErrorPage, String> {
    if !group.is_empty() || kind != "ConfigMap" {
        return Err(format!("{group}/{kind} is not a ConfigMap (group \"\")"));
    }
    let data = crate::extension::config_map(docs, ns, name)
        .ok_or_else(|| format!("ConfigMap {ns}/{name} not found"))?;
    let body = data
        .get("errorBody")
        .ok_or_else(|| format!("ConfigMap {ns}/{name} has no errorBody"))?;
    let content_type = data
        .get("errorContentType")
        .map_or("text/plain; charset=utf-8", String::as_str);
    ErrorPage::new(content_type, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_and_escaped_for_json() {
        let page = ErrorPage::new(
            "application/json",
            r#"{"error": {"code": {status}, "reason": "{reason}", "message": "{message}"}, "x": "{other}"}"#,
        )
        .expect("page");
        let body = page.render(404, "no_route", "no \"route\" matched\n");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(v["error"]["code"], 404);
        assert_eq!(v["error"]["message"], "no \"route\" matched\n");
        assert_eq!(
            v["x"], "{other}",
            "an unknown name is the template's own text"
        );
        let html = ErrorPage::new("text/html", "<h1>{status}</h1><p>{message}</p>{").expect("page");
        assert_eq!(
            &html.render(401, "r", "no key \"<img src=x>\"")[..],
            b"<h1>401</h1><p>no key &quot;&lt;img src=x&gt;&quot;</p>{"
        );
        let plain = ErrorPage::new("text/plain", "{status} {message}").expect("page");
        assert_eq!(&plain.render(503, "r", "<m>")[..], b"503 <m>");
        assert!(ErrorPage::new("bad\nvalue", "x").is_err());
    }
}
