//! Header rules every proxy hop follows (RFC 9110 §7.6.1).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::IpAddr;

/// Envoy's header for the caller's certificate, as Istio sets it.
static CLIENT_CERT: HeaderName = HeaderName::from_static("x-forwarded-client-cert");
// Statics: a name made with `from_static` at run time is checked byte by
// byte on every request.
static FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// On a request a sidecar hands its workload: `x-forwarded-client-cert:
/// By=<own SPIFFE ID>;URI=<caller's>`, or none when the caller proved no
/// identity. Whatever the caller sent under that name is dropped first,
/// so it cannot be forged.
pub fn client_cert(headers: &mut HeaderMap, own: Option<&str>, peer: Option<&str>) {
    headers.remove(&CLIENT_CERT);
    let Some(peer) = peer else {
        return;
    };
    if let Some(own) = own {
        if let Ok(v) = HeaderValue::from_str(&format!("By={own};URI={peer}")) {
            headers.insert(CLIENT_CERT.clone(), v);
        }
    }
}

/// At a gateway: the client certificate its listener verified, as
/// `Hash=..;Subject="..";URI=..;DNS=..`.
pub fn gateway_client_cert(headers: &mut HeaderMap, described: &HeaderValue) {
    headers.insert(CLIENT_CERT.clone(), described.clone());
}

/// The fixed hop-by-hop names, strait's own one-hop header (the
/// sidecars' peer exchange, read before it goes: [`crate::peer`]), and
/// `x-forwarded-client-cert`: each hop says what it verified itself
/// (Envoy's `SANITIZE_SET`), so a client cannot forge it. A
/// match on the lower-case name (which is what a `HeaderName` holds)
/// costs a length test and a compare, where comparing against eight
/// `HeaderName`s cost one comparison each.
fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "x-strait-peer"
            | "x-strait-peer-service"
            | "x-forwarded-client-cert"
    )
}

/// Removes hop-by-hop headers, including those the `Connection` header names.
///
/// The `Connection` tokens are read once; one pass over the names finds the
/// fixed hop-by-hop ones. Only what is present is removed, so the common
/// case (nothing, or `Connection: keep-alive`) allocates nothing and parses
/// no name.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let mut doomed: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(header::CONNECTION) {
        let Ok(value) = value.to_str() else { continue };
        for token in value.split(',').map(str::trim) {
            // `close` names no header; fixed hop-by-hop names are found below.
            if token.is_empty()
                || token.eq_ignore_ascii_case("close")
                || token.eq_ignore_ascii_case("keep-alive")
            {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                // Connection may not take away what routes and frames
                // the request (`Connection: host` would leave none).
                let kept = name == header::HOST || name == header::CONTENT_LENGTH;
                if !kept && !is_hop_by_hop(name.as_str()) && headers.contains_key(&name) {
                    doomed.push(name);
                }
            }
        }
    }
    doomed.extend(
        headers
            .keys()
            .filter(|n| is_hop_by_hop(n.as_str()))
            .cloned(),
    );
    for name in doomed {
        headers.remove(name);
    }
}

/// The client address as a header value, made once per connection.
pub fn client_value(client: IpAddr) -> HeaderValue {
    HeaderValue::from_str(&client.to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Who the client is: with `hops` trusted proxies in front, each having
/// appended the address it saw, the entry `hops` from the right of
/// `X-Forwarded-For` (every copy of the header, in order, as one list;
/// Envoy's `xff_num_trusted_hops`). With fewer entries, the leftmost: all
/// of them were written by trusted proxies. With no entry (or no trusted
/// hop), the connection's peer. `None` when the chosen entry is not an
/// address: unknown, never the trusted proxy's own address. Entries are
/// split as bytes, so a client's odd byte in its part of a line cannot
/// hide the trusted proxies' part.
pub fn client_address(headers: &HeaderMap, peer: IpAddr, hops: usize) -> Option<IpAddr> {
    if hops == 0 {
        return Some(peer);
    }
    let entries: Vec<&[u8]> = headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .collect();
    if entries.is_empty() {
        return Some(peer);
    }
    let at = entries.len().saturating_sub(hops);
    let entry = std::str::from_utf8(entries[at]).ok()?;
    entry.parse().ok()
}

/// Appends the client to `X-Forwarded-For` and sets `X-Forwarded-Proto`.
pub fn add_forwarded(headers: &mut HeaderMap, client: &HeaderValue, proto: &'static str) {
    let value = match headers.get(&FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prior) => {
            let joined = format!("{prior}, {}", client.to_str().unwrap_or(""));
            HeaderValue::from_str(&joined).ok()
        }
        None => Some(client.clone()),
    };
    if let Some(v) = value {
        headers.insert(FORWARDED_FOR.clone(), v);
    }
    headers.insert(FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
}

/// Takes cookie `name` out of the `Cookie` headers (a header left empty
/// goes).
pub fn remove_cookie(headers: &mut HeaderMap, name: &str) {
    let kept: Vec<HeaderValue> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| {
            let text = v.to_str().ok()?;
            let rest: Vec<&str> = text
                .split(';')
                .map(str::trim)
                .filter(|pair| pair.split_once('=').is_none_or(|(k, _)| k.trim() != name))
                .collect();
            HeaderValue::from_str(&rest.join("; "))
                .ok()
                .filter(|v| !v.is_empty())
        })
        .collect();
    headers.remove(header::COOKIE);
    for v in kept {
        headers.append(header::COOKIE, v);
    }
}

/// `uri` without query parameter `name`, however its name is encoded
/// (`None` when it has no query).
pub fn without_param(uri: &http::Uri, name: &str) -> Option<http::Uri> {
    let query = uri.query()?;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
            !strait_route::authn::is_param(key, name)
        })
        .collect();
    let path_and_query = match kept.is_empty() {
        true => uri.path().to_string(),
        false => format!("{}?{}", uri.path(), kept.join("&")),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = path_and_query.parse().ok();
    http::Uri::from_parts(parts).ok()
}

/// A message's one `Content-Type`, as text; `Ok(None)` when it has none.
/// More than one, or one that is not text, is an error: a backend might
/// read another type than the one checked.
pub fn content_type(headers: &HeaderMap) -> Result<Option<&str>, &'static str> {
    let mut all = headers.get_all(http::header::CONTENT_TYPE).iter();
    match (all.next(), all.next()) {
        (_, Some(_)) => Err("is given more than once"),
        (None, None) => Ok(None),
        (Some(v), None) => v
            .to_str()
            .map(Some)
            .map_err(|_| "is not text (bytes past ASCII)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_and_a_query_parameter_are_taken_out_alone() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; token=x; b=2"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("token=y"));
        remove_cookie(&mut headers, "token");
        let left: Vec<_> = headers.get_all(header::COOKIE).iter().collect();
        assert_eq!(left, ["a=1; b=2"]);
        let uri: http::Uri = "/cart?page=2&token=x&tokens=3".parse().expect("uri");
        let out = without_param(&uri, "token").expect("changed");
        assert_eq!(out, "/cart?page=2&tokens=3");
        let only: http::Uri = "/cart?token=x".parse().expect("uri");
        assert_eq!(without_param(&only, "token").expect("changed"), "/cart");
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn the_client_is_as_many_entries_from_the_right_as_trusted_hops() {
        let peer: IpAddr = "10.0.0.9".parse().expect("ip");
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 198.51.100.7"),
        );
        h.append("x-forwarded-for", HeaderValue::from_static("203.0.113.5"));
        let at = |hops| client_address(&h, peer, hops).map(|a| a.to_string());
        assert_eq!(
            at(0).as_deref(),
            Some("10.0.0.9"),
            "no trusted hop: the peer"
        );
        assert_eq!(at(1).as_deref(), Some("203.0.113.5"));
        assert_eq!(at(2).as_deref(), Some("198.51.100.7"));
        assert_eq!(at(3).as_deref(), Some("6.6.6.6"));
        assert_eq!(
            at(9).as_deref(),
            Some("6.6.6.6"),
            "fewer entries: the leftmost"
        );
        let mut odd = HeaderMap::new();
        odd.insert("x-forwarded-for", HeaderValue::from_static("unknown"));
        assert_eq!(
            client_address(&odd, peer, 1),
            None,
            "not an address: unknown"
        );
        // A byte that is not text in the client's part of the line the
        // load balancer appended to: the balancer's entry still counts.
        let line = HeaderValue::from_bytes(b"\xff\xfe, 203.0.113.9").expect("value");
        odd.insert("x-forwarded-for", line);
        assert_eq!(client_address(&odd, peer, 1), "203.0.113.9".parse().ok());
        assert_eq!(client_address(&odd, peer, 2), None);
        assert_eq!(client_address(&HeaderMap::new(), peer, 1), Some(peer));
    }

    #[test]
    fn forwarded_for_appends() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        add_forwarded(
            &mut h,
            &client_value("127.0.0.1".parse().expect("ip")),
            "http",
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
    }
}
