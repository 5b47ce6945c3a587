//! Phase 0, strict: the request head as RFC 9110 and RFC 9112 allow it,
//! before any other phase reads it. hyper's parser has already refused what
//! it cannot read (obs-fold, whitespace before a colon, a Content-Length
//! that is not digits or two that differ, Transfer-Encoding on HTTP/1.0 or
//! without `chunked` last; with both framings it drops Content-Length and
//! closes after the answer). A proxy must refuse more than a server: what
//! a backend behind it could read another way. Each refusal closes the
//! connection ([`ProxyError::closes`]): nothing after an ambiguous message
//! is read as a request. docs/limits.md lists every answer.

use crate::answer::ProxyError;
use crate::limits::HttpLimits;
use http::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, HOST, TRANSFER_ENCODING, UPGRADE};
use http::{Method, Request, Uri, Version};

/// Checks the head, and makes the one change RFC 9112 asks of a proxy:
/// an absolute-form target's authority replaces `Host` (§3.2.2). An
/// `h2c` upgrade is taken off, so the request is served as HTTP/1.1 and
/// no backend is asked to speak HTTP/2 past the routes.
pub fn check<B>(
    req: &mut Request<B>,
    sni: Option<&str>,
    limits: &HttpLimits,
) -> Result<(), ProxyError> {
    target(req.method(), req.uri())?;
    if req.version() > Version::HTTP_11 {
        // HTTP/2 has no framing headers and one :authority; its limits
        // are the header list's.
        return body_length(req.headers().get(CONTENT_LENGTH), limits);
    }
    request_line(req, limits)?;
    let seen = fields(req.headers(), limits)?;
    body_length(seen.content_length, limits)?;
    if seen.transfer_encoding {
        transfer_coding(req.headers())?;
    }
    let (has_host, upgrade) = (one_host(seen.hosts)?, seen.upgrade);
    host(req, has_host, sni)?;
    if upgrade {
        drop_h2c(req.headers_mut());
    }
    Ok(())
}

/// What one pass over the headers found, so that no phase here looks a
/// header up again (each lookup hashes the name).
struct Seen<'h> {
    /// The first Host and how many there are.
    hosts: (Option<&'h HeaderValue>, usize),
    content_length: Option<&'h HeaderValue>,
    transfer_encoding: bool,
    upgrade: bool,
}

/// The four forms of RFC 9112 §3.2, each with its method.
fn target(method: &Method, uri: &Uri) -> Result<(), ProxyError> {
    // A sidecar's tunnel was taken before this phase; an extended CONNECT
    // (WebSocket over HTTP/2) has a scheme and a path.
    if method == Method::CONNECT && uri.scheme().is_none() {
        return Err(ProxyError::ConnectRefused);
    }
    if uri == "*" {
        return match method == Method::OPTIONS {
            true => Ok(()),
            false => Err(ProxyError::BadTarget),
        };
    }
    match (uri.scheme_str(), uri.authority()) {
        (None, None) => Ok(()),
        (Some("http" | "https"), Some(a)) if authority(a.as_str()) => Ok(()),
        _ => Err(ProxyError::BadTarget),
    }
}

fn request_line<B>(req: &Request<B>, limits: &HttpLimits) -> Result<(), ProxyError> {
    let uri = req.uri();
    let target = uri.path_and_query().map_or(1, |p| p.as_str().len())
        + uri
            .authority()
            .map_or(0, |a| a.as_str().len() + "https://".len());
    match req.method().as_str().len() + target > limits.request_line {
        true => Err(ProxyError::UriTooLong),
        false => Ok(()),
    }
}

/// Sizes, and no name a lenient backend would fold into a framing one.
fn fields<'h>(headers: &'h HeaderMap, limits: &HttpLimits) -> Result<Seen<'h>, ProxyError> {
    let mut seen = Seen {
        hosts: (None, 0),
        content_length: None,
        transfer_encoding: false,
        upgrade: false,
    };
    let mut total = 0;
    for (name, value) in headers {
        let text = name.as_str();
        let line = text.len() + value.len() + 2;
        total += line + 2;
        if line > limits.header_line || total > limits.headers {
            return Err(ProxyError::HeadersTooLarge);
        }
        if name == HOST {
            seen.hosts = (seen.hosts.0.or(Some(value)), seen.hosts.1 + 1);
        } else if name == CONTENT_LENGTH {
            seen.content_length = Some(value);
        } else if name == TRANSFER_ENCODING {
            seen.transfer_encoding = true;
        } else if name == UPGRADE {
            seen.upgrade = true;
        } else if looks_like_framing(text) {
            return Err(ProxyError::BadFraming);
        }
    }
    Ok(seen)
}

/// `transfer_encoding`, `Content.Length`: a name that is not a framing
/// header but reads as one where `_` and other separators become `-`
/// (CGI, WSGI and frameworks after them). Names arrive lower-cased.
fn looks_like_framing(name: &str) -> bool {
    const NAMES: [&str; 2] = ["content-length", "transfer-encoding"];
    let odd = |b: u8| !(b.is_ascii_alphanumeric() || b == b'-');
    if !matches!(name.len(), 14 | 17) || !name.bytes().any(odd) {
        return false;
    }
    let folded = name.bytes().map(|b| if odd(b) { b'-' } else { b });
    NAMES
        .iter()
        .any(|n| n.len() == name.len() && folded.clone().eq(n.bytes()))
}

/// hyper took `chunked` last as the framing; anything else in the list is
/// a coding strait would pass on undecoded, and `chunked` twice is a body
/// two parsers decode differently.
fn transfer_coding(headers: &HeaderMap) -> Result<(), ProxyError> {
    let mut chunked = 0;
    for value in headers.get_all(TRANSFER_ENCODING) {
        let text = value.to_str().map_err(|_| ProxyError::UnknownCoding)?;
        for coding in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            if !coding.eq_ignore_ascii_case("chunked") {
                return Err(ProxyError::UnknownCoding);
            }
            chunked += 1;
        }
    }
    match chunked {
        0 | 1 => Ok(()),
        _ => Err(ProxyError::BadFraming),
    }
}

/// At most one Host, a host and an optional port (RFC 9112 §3.2: 400
/// otherwise); whether there is one.
fn one_host((first, count): (Option<&HeaderValue>, usize)) -> Result<bool, ProxyError> {
    match count > 1 || first.is_some_and(|h| !h.to_str().is_ok_and(authority)) {
        true => Err(ProxyError::BadHost),
        false => Ok(first.is_some()),
    }
}

/// The Host the backend gets: the absolute-form target's authority, else
/// the client's; none is a 400 on HTTP/1.1.
fn host<B>(req: &mut Request<B>, has_host: bool, sni: Option<&str>) -> Result<(), ProxyError> {
    let from_target = req.uri().authority().map(|a| a.as_str());
    let replacement = match (has_host, from_target) {
        (_, Some(a)) => a,
        (true, None) => return Ok(()),
        // HTTP/1.0 may leave Host out; 1.1 may not. The backend gets the
        // TLS server name, else the upstream's own address (as nginx's
        // `$proxy_host`), filled in when the request is sent.
        (false, None) if req.version() == Version::HTTP_10 => match sni {
            Some(name) => name,
            None => return Ok(()),
        },
        (false, None) => return Err(ProxyError::NoHost),
    };
    let value = HeaderValue::from_str(replacement).map_err(|_| ProxyError::BadHost)?;
    req.headers_mut().insert(HOST, value);
    Ok(())
}

/// `host[:port]`: a DNS name or IPv4 address (letters, digits, `.-_~`),
/// or an IPv6 literal in brackets; the port digits only, at most 65535.
/// No user-info, no list, no path: what would route one way here and
/// another way behind.
pub fn authority(text: &str) -> bool {
    let (host, port) = match text.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((ip, port)) if ip.parse::<std::net::Ipv6Addr>().is_ok() => ("v6", port),
            _ => return false,
        },
        None => match text.find(':') {
            Some(i) => (&text[..i], &text[i..]),
            None => (text, ""),
        },
    };
    let name_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~'));
    let port_ok = match port.strip_prefix(':') {
        None => port.is_empty(),
        Some("") => true,
        Some(digits) => {
            digits.len() <= 5
                && digits.bytes().all(|b| b.is_ascii_digit())
                && digits.parse::<u32>().is_ok_and(|p| p <= 65535)
        }
    };
    name_ok && port_ok
}

/// `413` at once when Content-Length is over the body limit.
fn body_length(
    content_length: Option<&HeaderValue>,
    limits: &HttpLimits,
) -> Result<(), ProxyError> {
    let length = content_length.and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    match (limits.body, length) {
        (Some(max), Some(n)) if n > max => Err(ProxyError::BodyTooLarge),
        _ => Ok(()),
    }
}

/// Takes `h2c` out of `Upgrade` (and its settings header); an `Upgrade`
/// with nothing left goes too.
fn drop_h2c(headers: &mut HeaderMap) {
    let is_h2c = |t: &str| t.trim().eq_ignore_ascii_case("h2c");
    let listed = headers
        .get_all(UPGRADE)
        .iter()
        .any(|v| v.to_str().map_or(true, |s| s.split(',').any(is_h2c)));
    if !listed {
        return;
    }
    let rest: Vec<String> = headers
        .get_all(UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .filter(|t| !t.trim().is_empty() && !is_h2c(t))
        .map(|t| t.trim().to_owned())
        .collect();
    headers.remove(UPGRADE);
    headers.remove("http2-settings");
    if let Ok(v) = HeaderValue::from_str(&rest.join(", ")) {
        if !rest.is_empty() {
            headers.insert(UPGRADE, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities() {
        for ok in [
            "a.test",
            "a.test:80",
            "127.0.0.1:8080",
            "[::1]",
            "[::1]:443",
            "a.test:",
            "A_b~c",
        ] {
            assert!(authority(ok), "{ok}");
        }
        for bad in [
            "",
            "a.test, b.test",
            "a b",
            "a/b",
            "u@a.test",
            "a.test:abc",
            "a.test:99999",
            "a.test:+80",
            "[::1",
            "[zz]",
            "a:80:80",
            "a?x",
            "a#x",
            "t%2e",
            ":80",
            "a\\b",
            "a.test:000080",
        ] {
            assert!(!authority(bad), "{bad}");
        }
    }

    #[test]
    fn framing_look_alikes() {
        for name in [
            "transfer_encoding",
            "content.length",
            "content_length",
            "transfer~encoding",
        ] {
            assert!(looks_like_framing(name), "{name}");
        }
        let others = [
            "content-length",
            "host",
            "host_",
            "x_forwarded_for",
            "transferencoding",
            "x-a",
        ];
        for name in others {
            assert!(!looks_like_framing(name), "{name}");
        }
    }

    fn head(headers: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (n, v) in headers {
            map.append(
                http::HeaderName::from_bytes(n.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        map
    }

    #[test]
    fn codings() {
        let te = |v: &[&str]| {
            transfer_coding(&head(
                &v.iter()
                    .map(|v| ("transfer-encoding", *v))
                    .collect::<Vec<_>>(),
            ))
        };
        assert_eq!(te(&["chunked"]), Ok(()));
        assert_eq!(te(&[",chunked"]), Ok(()));
        assert_eq!(te(&["gzip, chunked"]), Err(ProxyError::UnknownCoding));
        assert_eq!(te(&["chunked, chunked"]), Err(ProxyError::BadFraming));
        assert_eq!(te(&["chunked", "chunked"]), Err(ProxyError::BadFraming));
    }

    #[test]
    fn h2c_is_taken_off() {
        let mut h = head(&[("upgrade", "websocket, h2c"), ("http2-settings", "AAA")]);
        drop_h2c(&mut h);
        assert_eq!(
            h.get(UPGRADE).map(|v| v.as_bytes()),
            Some(&b"websocket"[..])
        );
        assert!(!h.contains_key("http2-settings"));
        let mut h = head(&[("upgrade", "H2C")]);
        drop_h2c(&mut h);
        assert!(!h.contains_key(UPGRADE));
    }
}
