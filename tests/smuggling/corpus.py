"""The request-smuggling corpus: raw requests and the answers each allows.

Written from RFC 9110 and RFC 9112 and from the public research: James
Kettle's "HTTP Desync Attacks" and "HTTP/1.1 must die" (PortSwigger), the
Transfer-Encoding obfuscations of Linhart et al. (2005), the h2c smuggling
write-ups (Bishop Fox, 2020) and the chunk-extension "funky chunks" work
(2025).

Every case is one write of raw bytes on a fresh connection to the proxy.
`run.py` checks, for each proxy:

- the first answer's status is in `allow` (0: the proxy closed without
  answering, allowed only where listed); no answer within 5 s fails;
- with `close`, the proxy closes the connection after answering;
- the back end, which parses strictly and records every byte, saw no
  request that did not come through the proxy's parser (each proxy adds
  `x-proxied: 1` to the requests it forwards), no ambiguous framing, no
  look-alike of a framing header, no `h2c` upgrade, no `CONNECT`, and,
  with `tail`, no request for `/smuggled` at all;
- `host`, when given, is the Host the back end saw;
- the proxy still answers a plain GET afterwards.
"""

from dataclasses import dataclass, field

HOST = "t.test"
SMUG = b"GET /smuggled HTTP/1.1\r\nHost: t.test\r\n\r\n"
OK = {200}
BAD = {400}
# A framing the proxy cannot serve: 400, or 501 for a coding it does not
# implement (RFC 9112 section 6.1).
BAD_CODING = {400, 501}
# The answer was an HTTP/2 SETTINGS frame.
H2 = 2


@dataclass
class Case:
    name: str
    category: str
    raw: bytes
    allow: set
    close: bool = False
    tail: bool = False
    host: str | None = None
    half_close: bool = False
    tags: list = field(default_factory=list)


CASES: list[Case] = []


def head(line: str, *headers: str) -> bytes:
    return (line + "\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n").encode(
        "latin-1"
    )


def post(*headers: str, host: bool = True) -> bytes:
    hs = ([f"Host: {HOST}"] if host else []) + list(headers)
    return head("POST / HTTP/1.1", *hs)


def add(name, category, raw, allow, **kw):
    CASES.append(Case(name, category, raw, set(allow), **kw))


# --- framing: Content-Length and Transfer-Encoding together ---------------

# A proxy that honours one while the back end honours the other lets the
# rest of the body become a request of its own. Refused, or normalised to
# one framing with the connection closed after it (RFC 9112 section 6.3).
CL_TE_BODY = b"0\r\n\r\n" + SMUG
add("CL then TE", "framing", post(f"Content-Length: {len(CL_TE_BODY)}", "Transfer-Encoding: chunked") + CL_TE_BODY, {200, 400}, close=True, tail=True)
add("TE then CL", "framing", post("Transfer-Encoding: chunked", f"Content-Length: {len(CL_TE_BODY)}") + CL_TE_BODY, {200, 400}, close=True, tail=True)
TE_CL_BODY = b"3e\r\n" + SMUG.ljust(0x3E, b"x") + b"\r\n0\r\n\r\n"
add("TE.CL classic", "framing", post("Content-Length: 4", "Transfer-Encoding: chunked") + TE_CL_BODY, {200, 400}, close=True, tail=True)
add("CL.TE classic", "framing", post("Content-Length: 6", "Transfer-Encoding: chunked") + b"0\r\n\r\nG" + SMUG, {200, 400}, close=True, tail=True)
add("CL, TE, CL", "framing", post("Content-Length: 5", "Transfer-Encoding: chunked", "Content-Length: 6") + CL_TE_BODY, {200, 400}, close=True, tail=True)

# Transfer-Encoding values a parser might read as chunked while another
# does not (Linhart et al.; Kettle's obfuscations). With Content-Length
# beside them, a proxy that ignores the TE would frame by length.
# Each with what it is: "bad" must be refused; "chunked" is chunked
# spelled in a way RFC 9110 allows (beside a Content-Length, the two are
# ambiguous and the connection must close); "look-alike" is a name a
# lenient back end folds into Transfer-Encoding (it must not reach one);
# "other" is no framing header at all; "fold" is obs-fold, which RFC 9112
# section 5.2 lets a proxy refuse or unfold into spaces.
TE_VARIANTS = {
    "xchunked": ("Transfer-Encoding: xchunked", "bad"),
    "chunked, identity": ("Transfer-Encoding: chunked, identity", "bad"),
    "identity": ("Transfer-Encoding: identity", "bad"),
    "identity, chunked": ("Transfer-Encoding: identity, chunked", "bad"),
    "gzip, chunked": ("Transfer-Encoding: gzip, chunked", "bad"),
    "chunked, chunked": ("Transfer-Encoding: chunked, chunked", "bad"),
    "two TE lines": ("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked", "bad"),
    "TE chunked then x": ("Transfer-Encoding: chunked\r\nTransfer-Encoding: x", "bad"),
    "TE x then chunked": ("Transfer-Encoding: x\r\nTransfer-Encoding: chunked", "bad"),
    "quoted": ('Transfer-Encoding: "chunked"', "bad"),
    "chunk": ("Transfer-Encoding: chunk", "bad"),
    "chunked;": ("Transfer-Encoding: chunked;", "bad"),
    "chunked;q=1": ("Transfer-Encoding: chunked;q=1", "bad"),
    "vertical tab": ("Transfer-Encoding: \x0bchunked", "bad"),
    "form feed": ("Transfer-Encoding: chunked\x0c", "bad"),
    "NUL inside": ("Transfer-Encoding: chun\x00ked", "bad"),
    "empty": ("Transfer-Encoding: ", "bad"),
    "space before colon": ("Transfer-Encoding : chunked", "bad"),
    "tab before colon": ("Transfer-Encoding\t: chunked", "bad"),
    "obs-fold value": ("Transfer-Encoding:\r\n chunked", "fold"),
    "obs-fold line": ("X: y\r\n Transfer-Encoding: chunked", "fold"),
    "leading space line": (" Transfer-Encoding: chunked", "fold"),
    "LF in name": ("Transfer-Encoding\n: chunked", "bad"),
    "underscore name": ("Transfer_Encoding: chunked", "look-alike"),
    "dot name": ("Transfer.Encoding: chunked", "look-alike"),
    "mixed separators": ("transfer_ENCODING: chunked", "look-alike"),
    "no separator": ("TransferEncoding: chunked", "other"),
    "upper case": ("TRANSFER-ENCODING: CHUNKED", "chunked"),
    "tab before value": ("Transfer-Encoding:\tchunked", "chunked"),
    "trailing space": ("Transfer-Encoding: chunked ", "chunked"),
    "comma first": ("Transfer-Encoding: ,chunked", "chunked"),
    # Found by fuzzing: valid lists a lenient back end reads as no framing.
    "comma last": ("Transfer-Encoding: chunked,", "chunked"),
    "empty elements": ("Transfer-Encoding: , ,chunked", "chunked"),
    "mixed case": ("Transfer-Encoding: cHuNkEd", "chunked"),
}
for label, (line, kind) in TE_VARIANTS.items():
    bad = kind == "bad"
    allow = BAD_CODING if bad else {200, 400, 501} if kind in ("chunked", "fold") else {200, 400}
    # With a Content-Length that ends before the smuggled request: unless
    # the TE is no framing header, the message is ambiguous.
    body = b"0\r\n\r\n" + SMUG
    ambiguous = kind in ("bad", "chunked")
    add(f"TE {label}, with CL", "framing", post("Content-Length: 5", line) + body, allow, close=ambiguous, tail=ambiguous)
    # Alone: a proxy that reads no framing sees no body, and the chunked
    # body's content would be the next request.
    chunk = b"%x\r\n" % len(SMUG) + SMUG + b"\r\n0\r\n\r\n"
    add(f"TE {label}, alone", "framing", post(line) + chunk, allow, close=bad, tail=True)

# Content-Length values (RFC 9110 section 8.6: 1*DIGIT).
CL_BAD = ["+5", "-5", "5a", "0x5", "5.0", "5 5", "", "1e1", "\u0665".encode("utf-8").decode("latin-1"),
          "99999999999999999999999", "5,", ",5", "5, 6", "\x0b5", "5\x00"]
for value in CL_BAD:
    add(f"CL {value!r}", "framing", post(f"Content-Length: {value}") + b"hello" + SMUG, {400, 413}, close=True, tail=True)
add("CL twice, differing", "framing", post("Content-Length: 5", "Content-Length: 6") + b"hello!" + SMUG, BAD, close=True, tail=True)
add("CL twice, same", "framing", post("Content-Length: 5", "Content-Length: 5") + b"hello", {200, 400})
add("CL list, same", "framing", post("Content-Length: 5, 5") + b"hello", {200, 400})
add("CL leading zeros", "framing", post("Content-Length: 005") + b"hello", OK)
add("CL space before colon", "framing", post("Content-Length : 5") + b"hello" + SMUG, BAD, close=True, tail=True)
add("CL obs-fold", "framing", post("Content-Length: 5\r\n 6") + b"hello!" + SMUG, BAD, close=True, tail=True)
# Look-alike names: a back end that folds `_` to `-` (CGI, WSGI, some
# frameworks) would read a second length.
add("CL look-alike underscore", "framing", post("Content-Length: 0", f"Content_Length: {len(SMUG)}") + SMUG, {200, 400})
add("CL look-alike dot", "framing", post("Content-Length: 0", f"Content.Length: {len(SMUG)}") + SMUG, {200, 400})
add("CL look-alike case", "framing", post("content_LENGTH: 5") + b"hello", {200, 400})
add("HTTP/1.0 with TE", "framing", head("POST / HTTP/1.0", f"Host: {HOST}", "Transfer-Encoding: chunked") + b"0\r\n\r\n" + SMUG, BAD, close=True, tail=True)
add("HTTP/1.0 with TE and CL", "framing", head("POST / HTTP/1.0", f"Host: {HOST}", "Transfer-Encoding: chunked", "Content-Length: 5") + b"0\r\n\r\n" + SMUG, BAD, close=True, tail=True)
# Hop-by-hop abuse: Connection naming a framing or routing field must not
# take it away from the back end.
add("Connection names Content-Length", "framing", post("Content-Length: 5", "Connection: Content-Length") + b"hello", {200, 400})
add("Connection names Transfer-Encoding", "framing", post("Transfer-Encoding: chunked", "Connection: Transfer-Encoding") + b"5\r\nhello\r\n0\r\n\r\n", {200, 400})
add("Connection names Host", "framing", head("GET / HTTP/1.1", f"Host: {HOST}", "Connection: Host"), {200, 400})
add("TE chunked, valid", "framing", post("Transfer-Encoding: chunked") + b"5\r\nhello\r\n0\r\n\r\n", OK)
add("TE mixed case value", "framing", post("Transfer-Encoding: cHuNkEd") + b"5\r\nhello\r\n0\r\n\r\n", OK)
add("GET with CL body", "framing", head("GET / HTTP/1.1", f"Host: {HOST}", "Content-Length: 5") + b"hello", OK)
add("pipelined pair", "framing", head("GET / HTTP/1.1", f"Host: {HOST}") + head("GET /second HTTP/1.1", f"Host: {HOST}"), OK)

# --- chunked bodies ---------------------------------------------------------

# A body the client framed wrong is the client's fault: 400 and close, and
# nothing after it is read as a request (RFC 9112 section 7.1).
CHUNKED_BAD = {
    "size overflow": b"fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    "size empty": b"\r\nhello\r\n0\r\n\r\n",
    "size negative": b"-5\r\nhello\r\n0\r\n\r\n",
    "size plus": b"+5\r\nhello\r\n0\r\n\r\n",
    "size 0x": b"0x5\r\nhello\r\n0\r\n\r\n",
    "size leading space": b" 5\r\nhello\r\n0\r\n\r\n",
    "size non-hex": b"g\r\nhello\r\n0\r\n\r\n",
    "size NUL": b"5\x00\r\nhello\r\n0\r\n\r\n",
    "ext bare LF": b"5;a\nb\r\nhello\r\n0\r\n\r\n",
    "ext bare CR": b"5;a\rb\r\nhello\r\n0\r\n\r\n",
    "ext huge": b"5;" + b"a" * 20000 + b"\r\nhello\r\n0\r\n\r\n",
    "size bare CR": b"5\rhello\r\n0\r\n\r\n",
    "data longer": b"5\r\nhelloXX\r\n0\r\n\r\n",
    "data shorter": b"5\r\nhell\r\n0\r\n\r\n",
    "data no CRLF": b"5\r\nhello0\r\n\r\n",
    "data bare CR": b"5\r\nhello\r0\r\n\r\n",
    "data bare LF": b"5\r\nhello\n0\r\n\r\n",
    "last chunk bare CR": b"5\r\nhello\r\n0\r\r\n",
    "trailer huge": b"0\r\nX-T: " + b"a" * 70000 + b"\r\n\r\n",
    "trailer no colon": b"0\r\nX-T\r\n\r\n",
    "trailer space before colon": b"0\r\nX-T : 1\r\n\r\n",
}
for label, body in CHUNKED_BAD.items():
    add(f"chunked {label}", "chunked", post("Transfer-Encoding: chunked") + body + SMUG, {400, 413, 431}, close=True, tail=True)
# Funky chunks: bare LF where a parser may take it for a line end, and
# whitespace where the grammar has none. A proxy that re-frames the body
# may accept these (what follows is then the client's next request); none
# may pass them on.
CHUNKED_LENIENT = {
    "size bare LF": b"5\nhello\r\n0\r\n\r\n",
    "last chunk bare LF": b"5\r\nhello\r\n0\n\r\n",
    "end bare LF": b"5\r\nhello\r\n0\r\n\n",
    "size trailing space": b"5 \r\nhello\r\n0\r\n\r\n",
    "size trailing tab": b"5\t\r\nhello\r\n0\r\n\r\n",
    "ext space before semicolon": b"5 ;a=b\r\nhello\r\n0\r\n\r\n",
    "trailer obs-fold": b"0\r\nX-T: 1\r\n 2\r\n\r\n",
}
for label, body in CHUNKED_LENIENT.items():
    add(f"chunked {label}", "chunked", post("Transfer-Encoding: chunked") + body + SMUG, {200, 400})
CHUNKED_GOOD = {
    "two chunks": b"2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n",
    "leading zeros": b"0005\r\nhello\r\n0\r\n\r\n",
    "upper hex": b"A\r\nhellohello\r\n0\r\n\r\n",
    "extension": b"5;a=b\r\nhello\r\n0\r\n\r\n",
    "quoted extension": b'5;a="b;c"\r\nhello\r\n0\r\n\r\n',
    "extension on last chunk": b"5\r\nhello\r\n0;x\r\n\r\n",
    "trailer": b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
    # A trailer must not add a framing field the back end would apply.
    "trailer Content-Length": b"5\r\nhello\r\n0\r\nContent-Length: 50\r\n\r\n",
    "trailer Transfer-Encoding": b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n",
    "empty body": b"0\r\n\r\n",
}
for label, body in CHUNKED_GOOD.items():
    add(f"chunked {label}", "chunked", post("Transfer-Encoding: chunked") + body, {200, 400})
add("chunked body cut, half-close", "chunked", post("Transfer-Encoding: chunked") + b"5\r\nhel", {0, 400}, close=True, half_close=True)
add("CL body cut, half-close", "chunked", post("Content-Length: 10") + b"hello", {0, 400}, close=True, half_close=True)
add("chunked no last chunk, half-close", "chunked", post("Transfer-Encoding: chunked") + b"5\r\nhello\r\n", {0, 400}, close=True, half_close=True)

# --- request line and target ----------------------------------------------

H = f"Host: {HOST}"
LINE_BAD = {
    "method with @": "G@T / HTTP/1.1",
    "tab separator": "GET\t/ HTTP/1.1",
    "space in target": "GET /a b HTTP/1.1",
    "NUL in target": "GET /\x00 HTTP/1.1",
    "no version": "GET / ",
    "lower-case version": "GET / http/1.1",
    "version 1.1x": "GET / HTTP/1.1x",
    "version 01.1": "GET / HTTP/01.1",
    "version 11": "GET / HTTP/11",
    "asterisk with GET": "GET * HTTP/1.1",
    "authority with GET": "GET t.test:80 HTTP/1.1",
    "absolute, bad port": "GET http://t.test:99999/ HTTP/1.1",
    "absolute, user-info": "GET http://user@t.test/ HTTP/1.1",
    "DEL in target": "GET /\x7f HTTP/1.1",
}
for label, line in LINE_BAD.items():
    add(f"request line {label}", "request-line", head(line, H) + SMUG, BAD, close=True, tail=True)
add("request line trailing space", "request-line", head("GET / HTTP/1.1 ", H) + SMUG, {400, 505}, close=True, tail=True)
add("request line double space", "request-line", head("GET  / HTTP/1.1", H), {200, 400})
add("version 2.0", "request-line", head("GET / HTTP/2.0", H) + SMUG, {400, 505}, close=True, tail=True)
add("version 1.2", "request-line", head("GET / HTTP/1.2", H), {200, 400, 505})
add("version 0.9", "request-line", b"GET /\r\n\r\n" + SMUG, {0, 400}, close=True, tail=True)
add("version 1.0", "request-line", head("GET / HTTP/1.0", H), OK, close=True)
add("method lower case", "request-line", head("get / HTTP/1.1", H), {200, 400, 404, 405, 501})
add("method long", "request-line", head("A" * 300 + " / HTTP/1.1", H), {200, 400, 404, 405, 501})
add("method very long", "request-line", head("A" * 20000 + " / HTTP/1.1", H) + SMUG, {400, 405, 414, 501}, close=True, tail=True)
add("target 9 KiB", "request-line", head("GET /" + "a" * 9216 + " HTTP/1.1", H) + SMUG, {414}, close=True, tail=True)
add("target 70 KiB", "request-line", head("GET /" + "a" * 71680 + " HTTP/1.1", H) + SMUG, {400, 414, 431}, close=True, tail=True)
add("target 4 KiB", "request-line", head("GET /" + "a" * 4096 + " HTTP/1.1", H), OK)
add("asterisk with OPTIONS", "request-line", head("OPTIONS * HTTP/1.1", H), {200, 204, 400, 404, 405, 501})
add("CONNECT", "request-line", head("CONNECT t.test:443 HTTP/1.1", "Host: t.test:443") + SMUG, {400, 403, 404, 405, 501}, close=True, tail=True)
add("CONNECT with body bytes", "request-line", head("CONNECT t.test:80 HTTP/1.1", "Host: t.test:80") + b"\x16\x03\x01" + SMUG, {400, 403, 404, 405, 501}, close=True, tail=True)
add("absolute-form wins over Host", "request-line", head("GET http://t.test/ HTTP/1.1", "Host: other.test"), {200, 400}, host=HOST)
add("absolute-form with port", "request-line", head("GET http://t.test:8080/ HTTP/1.1", "Host: other.test"), {200, 400}, host="t.test:8080")
add("absolute-form https", "request-line", head("GET https://t.test/ HTTP/1.1", H), {200, 400})
add("absolute-form no path", "request-line", head("GET http://t.test HTTP/1.1", H), {200, 400})
add("leading empty line", "request-line", b"\r\n" + head("GET / HTTP/1.1", H), {200, 400})
add("fragment in target", "request-line", head("GET /#frag HTTP/1.1", H), {200, 400})
add("double slash target", "request-line", head("GET //t.test/ HTTP/1.1", H), {200, 400})
add("percent NUL", "request-line", head("GET /%00 HTTP/1.1", H), {200, 400})

# --- Host -------------------------------------------------------------------

HOST_BAD = {
    "missing": [],
    "twice, same": [H, H],
    "twice, differing": [H, "Host: other.test"],
    "twice, differing case": [H, "host: other.test"],
    "list": ["Host: t.test, other.test"],
    "space inside": ["Host: t .test"],
    "tab inside": ["Host: t\t.test"],
    "slash": ["Host: t.test/x"],
    "back slash": ["Host: t.test\\x"],
    "user-info": ["Host: user@t.test"],
    "port letters": ["Host: t.test:abc"],
    "port too big": ["Host: t.test:99999"],
    "port signed": ["Host: t.test:+80"],
    "bracket unclosed": ["Host: [::1"],
    "two ports": ["Host: t.test:80:80"],
    "question mark": ["Host: t.test?x"],
    "hash": ["Host: t.test#x"],
    "space before colon": ["Host : t.test"],
    "obs-fold": ["Host: t.test\r\n .other"],
    "NUL": ["Host: t.test\x00"],
    "percent": ["Host: t%2etest"],
}
for label, headers in HOST_BAD.items():
    add(f"Host {label}", "host", head("GET / HTTP/1.1", *headers) + SMUG, BAD, close=True, tail=True)
add("Host missing, HTTP/1.0", "host", head("GET / HTTP/1.0"), {200, 400}, close=True)
add("Host empty", "host", head("GET / HTTP/1.1", "Host: "), {200, 400})
add("Host with port", "host", head("GET / HTTP/1.1", "Host: t.test:80"), OK)
add("Host IPv6", "host", head("GET / HTTP/1.1", "Host: [::1]"), OK)
add("Host IPv4 with port", "host", head("GET / HTTP/1.1", "Host: 127.0.0.1:80"), OK)
add("Host empty port", "host", head("GET / HTTP/1.1", "Host: t.test:"), {200, 400})
add("Host upper case", "host", head("GET / HTTP/1.1", "Host: T.TEST"), OK)
add("Host very long", "host", head("GET / HTTP/1.1", "Host: " + "a" * 10000 + ".test"), {400, 431})
add("Host look-alike underscore", "host", head("GET / HTTP/1.1", H, "Host_: other.test"), {200, 400})

# --- upgrades ---------------------------------------------------------------

# h2c upgrade smuggling (Bishop Fox): a back end that accepts it gets an
# HTTP/2 connection no route or policy sees. The recording back end
# accepts, so a proxy that forwards the upgrade fails.
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS = "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"
H2C = {
    "standard": ["Upgrade: h2c", SETTINGS, "Connection: Upgrade, HTTP2-Settings"],
    "upper case": ["Upgrade: H2C", SETTINGS, "Connection: upgrade, http2-settings"],
    "no Connection": ["Upgrade: h2c", SETTINGS],
    "Connection upgrade only": ["Upgrade: h2c", "Connection: Upgrade"],
    "listed after websocket": ["Upgrade: websocket, h2c", SETTINGS, "Connection: Upgrade, HTTP2-Settings"],
    "spaces": ["Upgrade:  h2c ", SETTINGS, "Connection: Upgrade"],
    "two Upgrade lines": ["Upgrade: foo", "Upgrade: h2c", "Connection: Upgrade"],
}
for label, headers in H2C.items():
    add(f"h2c {label}", "upgrade", head("GET / HTTP/1.1", H, *headers) + H2_PREFACE, {200, 400}, tail=True)
add("h2c on POST with body", "upgrade", head("POST / HTTP/1.1", H, "Content-Length: 5", *H2C["standard"]) + b"hello", {200, 400})
# A proxy may serve HTTP/2 with prior knowledge (H2) on a cleartext port;
# then its own HTTP/2 server parses the streams.
add("h2 prior knowledge on an HTTP/1.1 port", "upgrade", H2_PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00", {0, 400, 505, H2})
WS = ["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]
# The back end answers 200, not 101: the connection stays HTTP and the
# bytes after the request are parsed as a request by the proxy, never
# passed through raw (Kettle's WebSocket smuggling).
add("websocket refused by back end", "upgrade", head("GET /no-upgrade HTTP/1.1", H, *WS) + SMUG, {200, 400, 426})
add("websocket with a bad version", "upgrade", head("GET /no-upgrade HTTP/1.1", H, *WS[:3], "Sec-WebSocket-Version: 777") + SMUG, {200, 400, 426})
add("websocket accepted", "upgrade", head("GET /ws HTTP/1.1", H, *WS), {101})
add("websocket on HTTP/1.0", "upgrade", head("GET /no-upgrade HTTP/1.0", H, *WS), {200, 400, 426}, close=True)
add("upgrade without Connection", "upgrade", head("GET /no-upgrade HTTP/1.1", H, "Upgrade: websocket") + SMUG, {200, 400, 426})

# --- limits -----------------------------------------------------------------

add("header value 4 KiB", "limits", head("GET / HTTP/1.1", H, "X-A: " + "a" * 4096), OK)
add("header value 9 KiB", "limits", head("GET / HTTP/1.1", H, "X-A: " + "a" * 9216) + SMUG, {400, 431}, close=True, tail=True)
add("header name 9 KiB", "limits", head("GET / HTTP/1.1", H, "X" * 9216 + ": a") + SMUG, {400, 431}, close=True, tail=True)
add("header value 70 KiB", "limits", head("GET / HTTP/1.1", H, "X-A: " + "a" * 71680) + SMUG, {400, 431}, close=True, tail=True)
add("headers 40 KiB in all", "limits", head("GET / HTTP/1.1", H, *[f"X-{i}: " + "a" * 1000 for i in range(40)]) + SMUG, {400, 431}, close=True, tail=True)
add("headers 90 in number", "limits", head("GET / HTTP/1.1", H, *[f"X-{i}: a" for i in range(89)]), OK)
# The count is each proxy's own limit (strait and HAProxy: 100; nginx: none).
add("headers 101 in number", "limits", head("GET / HTTP/1.1", H, *[f"X-{i}: a" for i in range(101)]), {200, 400, 431})
add("headers 1000 in number", "limits", head("GET / HTTP/1.1", H, *[f"X-{i}: a" for i in range(1000)]) + SMUG, {400, 431}, close=True, tail=True)
add("header without colon", "limits", head("GET / HTTP/1.1", H, "X-A") + SMUG, BAD, close=True, tail=True)
add("header empty name", "limits", head("GET / HTTP/1.1", H, ": a") + SMUG, BAD, close=True, tail=True)
add("header NUL in value", "limits", head("GET / HTTP/1.1", H, "X-A: a\x00b") + SMUG, BAD, close=True, tail=True)
add("header bare CR in value", "limits", head("GET / HTTP/1.1", H, "X-A: a\rb") + SMUG, BAD, close=True, tail=True)
add("header non-ASCII value", "limits", head("GET / HTTP/1.1", H, "X-A: caf\xe9"), {200, 400})
add("header non-ASCII name", "limits", head("GET / HTTP/1.1", H, "X-\xe9: a") + SMUG, BAD, close=True, tail=True)
add("header bare LF line ends", "limits", b"GET / HTTP/1.1\nHost: t.test\n\n", {200, 400})
add("Expect 100-continue", "limits", post("Content-Length: 5", "Expect: 100-continue") + b"hello", {100, 200})
