use crate::chunked::{chunk_head, last_chunk, MAX_LINE};
use crate::*;
use bytes::BytesMut;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Version};

fn parse_response(buf: &mut BytesMut, head: bool) -> Result<Option<ResponseHead>, HeadError> {
    ResponseParser::default().parse(buf, head)
}

fn parse(text: &str) -> Result<Option<ResponseHead>, HeadError> {
    parse_response(&mut BytesMut::from(text), false)
}

fn head(text: &str) -> ResponseHead {
    match parse(text) {
        Ok(Some(head)) => head,
        other => panic!("{text:?}: {other:?}"),
    }
}

fn refused(text: &str) -> HeadError {
    match parse(text) {
        Err(e) => e,
        other => panic!("{text:?} was not refused: {other:?}"),
    }
}

#[test]
fn a_request_head_carries_its_own_framing_only() {
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("shop.example"));
    headers.append("x-many", HeaderValue::from_static("a"));
    headers.append("x-many", HeaderValue::from_static("b"));
    headers.insert("content-length", HeaderValue::from_static("99"));
    headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
    let cases = [
        (RequestFraming::None, ""),
        (RequestFraming::Length(12), "content-length: 12\r\n"),
        (RequestFraming::Chunked, "transfer-encoding: chunked\r\n"),
    ];
    for (framing, line) in cases {
        let mut out = BytesMut::new();
        encode_request(&Method::POST, "/a?b=c", &headers, framing, &mut out);
        let want = format!(
            "POST /a?b=c HTTP/1.1\r\nhost: shop.example\r\nx-many: a\r\nx-many: b\r\n{line}\r\n"
        );
        assert_eq!(std::str::from_utf8(&out), Ok(want.as_str()));
    }
}

#[test]
fn a_response_head_is_read_and_taken_off_the_buffer() {
    let mut buf =
        BytesMut::from("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\nhello");
    let head = match parse_response(&mut buf, false) {
        Ok(Some(head)) => head,
        other => panic!("{other:?}"),
    };
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.version, Version::HTTP_11);
    assert_eq!(head.framing, ResponseFraming::Length(5));
    assert!(head.keep_alive);
    let values: Vec<_> = head.headers.get_all("x-a").iter().collect();
    assert_eq!(values, ["1", "2"]);
    assert_eq!(&buf[..], b"hello");
}

#[test]
fn fields_that_only_framed_this_hop_are_spent() {
    let spent = head("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nServer: x\r\n\r\n");
    let names: Vec<_> = spent.headers.keys().map(|n| n.as_str()).collect();
    assert_eq!(names, ["server"]);
    // A Connection that names a field stays, for the proxy to drop that field too.
    let named = head("HTTP/1.1 200 OK\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(
        named.headers.get("connection").map(|v| v.as_bytes()),
        Some(&b"close, X-Secret"[..])
    );
    assert!(!named.keep_alive);
}

#[test]
fn an_incomplete_head_asks_for_more_at_every_length() {
    let text = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nServer: x\r\n\r\n";
    for end in 0..text.len() {
        assert!(matches!(parse(&text[..end]), Ok(None)), "{end}");
    }
    assert_eq!(head(text).status, StatusCode::NOT_FOUND);
}

#[test]
fn framing_follows_rfc_9112() {
    let cases = [
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            ResponseFraming::Chunked,
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\ntransfer-encoding:  Chunked \r\n\r\n",
            ResponseFraming::Chunked,
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\n\r\n",
            ResponseFraming::UntilClose,
            false,
        ),
        (
            "HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n",
            ResponseFraming::None,
            true,
        ),
        (
            "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
            ResponseFraming::None,
            true,
        ),
        ("HTTP/1.1 100 Continue\r\n\r\n", ResponseFraming::None, true),
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
            ResponseFraming::None,
            false,
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
            ResponseFraming::Length(3),
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive, Close\r\n\r\n",
            ResponseFraming::Length(3),
            false,
        ),
        (
            "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n",
            ResponseFraming::Length(3),
            false,
        ),
        (
            "HTTP/1.0 200 OK\r\n\r\n",
            ResponseFraming::UntilClose,
            false,
        ),
    ];
    for (text, framing, keep_alive) in cases {
        let head = head(text);
        assert_eq!(
            (head.framing, head.keep_alive),
            (framing, keep_alive),
            "{text:?}"
        );
    }
    let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n");
    let head = parse_response(&mut buf, true)
        .ok()
        .flatten()
        .map(|h| h.framing);
    assert_eq!(head, Some(ResponseFraming::None), "the answer to a HEAD");
}

#[test]
fn heads_that_could_be_read_two_ways_are_refused() {
    let framing = [
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 0x3\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n",
        "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    ];
    for text in framing {
        assert!(matches!(refused(text), HeadError::Field(_)), "{text:?}");
    }
    let syntax = [
        "HTTP/1.1 200 OK\r\nContent-Length : 3\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX\0A: 1\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/2 200 OK\r\n\r\n",
        "ICY 200 OK\r\n\r\n",
    ];
    for text in syntax {
        assert!(matches!(refused(text), HeadError::Malformed(_)), "{text:?}");
    }
}

#[test]
fn heads_over_the_bounds_are_refused() {
    let long = format!(
        "HTTP/1.1 200 OK\r\nX-A: {}\r\n\r\n",
        "a".repeat(crate::head::MAX_HEAD)
    );
    assert_eq!(refused(&long), HeadError::TooLarge);
    let unfinished = format!(
        "HTTP/1.1 200 OK\r\nX-A: {}",
        "a".repeat(crate::head::MAX_HEAD)
    );
    assert_eq!(refused(&unfinished), HeadError::TooLarge);
    let many = format!(
        "HTTP/1.1 200 OK\r\n{}\r\n",
        "X-A: 1\r\n".repeat(crate::head::MAX_HEADERS + 1)
    );
    assert_eq!(refused(&many), HeadError::TooLarge);
    let most = format!(
        "HTTP/1.1 200 OK\r\n{}\r\n",
        "X-A: 1\r\n".repeat(crate::head::MAX_HEADERS)
    );
    assert_eq!(head(&most).headers.len(), crate::head::MAX_HEADERS);
}

/// Decodes `wire` fed in pieces of `step` bytes: the data, the trailers.
fn decode(wire: &[u8], step: usize) -> Result<(Vec<u8>, Option<HeaderMap>, bool), ChunkedError> {
    let mut decoder = Decoder::default();
    let mut buf = BytesMut::new();
    let (mut data, mut trailers) = (Vec::new(), None);
    let mut fed = 0;
    loop {
        match decoder.decode(&mut buf)? {
            Decoded::Data(d) => data.extend_from_slice(&d),
            Decoded::Trailers(t) => trailers = Some(t),
            Decoded::End => return Ok((data, trailers, buf.is_empty())),
            Decoded::More if fed == wire.len() => return Ok((data, trailers, false)),
            Decoded::More => {
                let end = (fed + step).min(wire.len());
                buf.extend_from_slice(&wire[fed..end]);
                fed = end;
            }
        }
    }
}

#[test]
fn chunks_are_read_however_the_bytes_are_split() {
    let wire = b"5\r\nhello\r\n1;name=\"v;al\"\r\n \r\nA \t;x\r\n0123456789\r\n0\r\nX-T: 1\r\nx-u: 2\r\n\r\n";
    for step in 1..wire.len() {
        let (data, trailers, ended) = decode(wire, step).expect("valid");
        assert_eq!(data, b"hello 0123456789", "step {step}");
        assert!(ended, "step {step}");
        let trailers = trailers.expect("trailers");
        assert_eq!(trailers.get("x-t").map(|v| v.as_bytes()), Some(&b"1"[..]));
        assert_eq!(trailers.len(), 2);
    }
    let (data, trailers, ended) = decode(b"000\r\n\r\n", 1).expect("valid");
    assert!(data.is_empty() && trailers.is_none() && ended);
}

#[test]
fn malformed_chunks_are_refused() {
    let bad: [&[u8]; 16] = [
        b"0\r\nX-T: 1\n\n",
        b"0\r\n\nX-T: 1\r\n\r\n",
        b"5\nhello\r\n0\r\n\r\n",
        b"5\r\nhello\n0\r\n\r\n",
        b"5\r\nhelloX\r\n0\r\n\r\n",
        b"\r\n",
        b";x\r\n",
        b"-5\r\nhello\r\n0\r\n\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b"5 5\r\nhello\r\n0\r\n\r\n",
        b"5;a\nb\r\nhello\r\n0\r\n\r\n",
        b"5;a\0\r\nhello\r\n0\r\n\r\n",
        b"10000000000000000\r\n",
        b"00000000000000001\r\nx\r\n0\r\n\r\n",
        b"0\r\nX-T 1\r\n\r\n",
        b"0\r\nX-T: 1\n\r\n\r\n",
    ];
    for wire in bad {
        let got = decode(wire, 1);
        assert!(got.is_err(), "{:?}: {got:?}", String::from_utf8_lossy(wire));
    }
    let long = format!("1;{}\r\nx\r\n0\r\n\r\n", "e".repeat(MAX_LINE));
    assert!(decode(long.as_bytes(), 64).is_err());
    let endless = format!("0\r\nX-T: {}", "a".repeat(crate::chunked::MAX_TRAILERS + 1));
    assert!(decode(endless.as_bytes(), 1024).is_err());
}

#[test]
fn bytes_after_the_last_chunk_stay_in_the_buffer() {
    let (data, _, ended) = decode(b"2\r\nok\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n", 100).expect("valid");
    assert_eq!(data, b"ok");
    assert!(!ended, "the next response's bytes are left for it");
}

#[test]
fn what_is_encoded_decodes_to_the_same_bytes() {
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..2_000 {
        let mut wire = BytesMut::new();
        let mut sent = Vec::new();
        for _ in 0..rng.usize(0..6) {
            let chunk: Vec<u8> = (0..rng.usize(1..300)).map(|_| rng.u8(..)).collect();
            chunk_head(chunk.len(), &mut wire);
            wire.extend_from_slice(&chunk);
            wire.extend_from_slice(b"\r\n");
            sent.extend_from_slice(&chunk);
        }
        let trailers = rng.bool();
        match trailers {
            true => wire.extend_from_slice(b"0\r\ngrpc-status: 0\r\n\r\n"),
            false => last_chunk(&mut wire),
        }
        let (data, got, ended) = decode(&wire, rng.usize(1..64)).expect("valid");
        assert_eq!(data, sent);
        assert!(ended);
        assert_eq!(got.is_some(), trailers);
    }
}

#[test]
fn random_bytes_never_panic_and_never_yield_more_than_was_read() {
    let mut rng = fastrand::Rng::with_seed(11);
    let alphabet = b"0123456789abcdefABCDEFxX;= \t\r\n\0:";
    for _ in 0..20_000 {
        let wire: Vec<u8> = (0..rng.usize(0..80))
            .map(|_| match rng.u8(0..4) {
                0 => rng.u8(..),
                _ => alphabet[rng.usize(0..alphabet.len())],
            })
            .collect();
        if let Ok((data, _, _)) = decode(&wire, rng.usize(1..8)) {
            assert!(data.len() <= wire.len());
        }
        let mut text = b"HTTP/1.1 200 OK\r\n".to_vec();
        text.extend_from_slice(&wire);
        let _ = parse_response(&mut BytesMut::from(&text[..]), rng.bool());
    }
}
