#!/usr/bin/env python3
"""Runs the request-smuggling corpus (corpus.py) against proxies on 127.0.0.1.

    run.py --strait BIN                 strait only (what the test suite runs)
    run.py --strait BIN --peers         strait, nginx and HAProxy, same run
    run.py ... --only NAME --verbose    one case, with what each side saw

Each proxy forwards to one recording back end (started here) that parses
strictly and keeps every byte; see corpus.py for what a case checks. Exit
status 1 when strait fails a case, or a case passes for a peer and fails for
strait. nginx and HAProxy must be on PATH for --peers (tests/smuggling/
compare.sh installs them from Debian).
"""

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from corpus import CASES, H2  # noqa: E402

ANSWER_DEADLINE = 5.0
CLOSE_DEADLINE = 3.0
FRAMING = {"content-length", "transfer-encoding", "host"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fold(name):
    """A header name as a lenient back end might read it (CGI, WSGI)."""
    return re.sub(r"[^a-z0-9]", "-", name.lower())


# --- the recording back end ---------------------------------------------------


class Reader:
    def __init__(self, conn):
        self.conn, self.buf = conn, b""

    def fill(self):
        data = self.conn.recv(65536)
        if not data:
            raise EOFError
        self.buf += data

    def line(self):
        while b"\r\n" not in self.buf:
            if len(self.buf) > 1 << 20:
                raise ValueError("line over 1 MiB")
            self.fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exactly(self, n):
        while len(self.buf) < n:
            self.fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


class Backend:
    """Parses what proxies send by RFC 9112, strictly, and records every
    request and every problem (a problem is a case failure)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.requests, self.problems = [], []
        threading.Thread(target=self.accept, daemon=True).start()

    def take(self):
        with self.lock:
            out = (self.requests, self.problems)
            self.requests, self.problems = [], []
            return out

    def problem(self, text):
        with self.lock:
            self.problems.append(text)

    def accept(self):
        while True:
            conn, _ = self.sock.accept()
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        conn.settimeout(30)
        r = Reader(conn)
        try:
            while self.one(r, conn):
                pass
        except (EOFError, OSError):
            pass
        except ValueError as e:
            self.problem(f"back end could not parse what it was sent: {e}")
        finally:
            conn.close()

    def one(self, r, conn):
        """Serves one request; False when the connection is handed over."""
        line = r.line()
        parts = line.split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            raise ValueError(f"request line {line[:80]!r}")
        method, target = parts[0].decode("latin-1"), parts[1].decode("latin-1")
        headers = self.headers(r)
        req = {"method": method, "target": target, "headers": headers}
        with self.lock:
            self.requests.append(req)
        names = [n for n, _ in headers]
        lower = [n.lower() for n in names]
        for n in names:
            if fold(n) in FRAMING and n.lower() != fold(n):
                self.problem(f"look-alike header {n!r} reached the back end")
        if "x-proxied" not in lower:
            self.problem(f"{method} {target[:60]} reached the back end without passing the proxy")
        if method == "CONNECT":
            self.problem("CONNECT reached the back end")
        hosts = [v for n, v in headers if n.lower() == "host"]
        if len(hosts) != 1:
            self.problem(f"{len(hosts)} Host headers reached the back end")
        req["host"] = hosts[0] if hosts else None
        upgrade = ",".join(v for n, v in headers if n.lower() == "upgrade").lower()
        if "h2c" in upgrade:
            self.problem("an h2c upgrade reached the back end")
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
            return False
        req["body"] = self.body(r, headers)
        if "websocket" in upgrade and target.startswith("/ws"):
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                         b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
            return False
        body = b"ok"
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        return True

    def headers(self, r):
        out = []
        while True:
            line = r.line()
            if not line:
                return out
            if line[:1] in (b" ", b"\t"):
                raise ValueError("obs-fold")
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip():
                raise ValueError(f"header line {line[:80]!r}")
            out.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))

    def body(self, r, headers):
        cl = [v for n, v in headers if n.lower() == "content-length"]
        te = [v for n, v in headers if n.lower() == "transfer-encoding"]
        if cl and te:
            self.problem("Content-Length and Transfer-Encoding both reached the back end")
        if len(cl) > 1:
            self.problem(f"{len(cl)} Content-Length headers reached the back end")
        if te:
            # One spelling only: a back end that skips empty list elements
            # or folds case is not the only kind behind a proxy.
            if te != ["chunked"]:
                self.problem(f"Transfer-Encoding {te!r} reached the back end")
            return self.chunked(r)
        if cl:
            if not cl[0].isdigit():
                raise ValueError(f"Content-Length {cl[0]!r}")
            return r.exactly(int(cl[0]))
        return b""

    def chunked(self, r):
        out = b""
        while True:
            size = r.line().split(b";", 1)[0]
            if not re.fullmatch(rb"[0-9a-fA-F]{1,15}", size):
                raise ValueError(f"chunk size {size[:40]!r}")
            n = int(size, 16)
            if n == 0:
                break
            out += r.exactly(n)
            if r.exactly(2) != b"\r\n":
                raise ValueError("chunk data not followed by CRLF")
        for name, _ in self.headers(r):
            if fold(name) in FRAMING:
                self.problem(f"trailer {name!r} reached the back end")
        return out


# --- proxies ------------------------------------------------------------------


class Proxy:
    def __init__(self, name, argv, port, workdir):
        self.name, self.port = name, port
        log = open(os.path.join(workdir, f"{name}.log"), "wb")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{name} exited at start (see {workdir}/{name}.log)")
            status, _ = exchange(port, b"GET / HTTP/1.1\r\nHost: t.test\r\n\r\n", False, False)
            if status == 200:
                return
            time.sleep(0.2)
        raise SystemExit(f"{name} did not serve on 127.0.0.1:{port} within 20 s")

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)


def start_strait(binary, backend, workdir):
    port = free_port()
    cfg = os.path.join(workdir, "strait")
    os.makedirs(cfg, exist_ok=True)
    with open(os.path.join(cfg, "gateway.yaml"), "w") as f:
        f.write(f"""apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: strait}}
spec: {{controllerName: strait.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge}}
spec:
  gatewayClassName: strait
  listeners: [{{name: http, port: {port}, protocol: HTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: all}}
spec:
  parentRefs: [{{name: edge}}]
  rules:
  - filters: [{{type: RequestHeaderModifier, requestHeaderModifier: {{set: [{{name: x-proxied, value: "1"}}]}}}}]
    backendRefs: [{{name: backend, port: 80}}]
---
apiVersion: v1
kind: Service
metadata: {{name: backend}}
spec: {{ports: [{{port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: backend, labels: {{kubernetes.io/service-name: backend}}}}
addressType: IPv4
endpoints: [{{addresses: ["127.0.0.1"]}}]
ports: [{{port: {backend.port}}}]
""")
    argv = [binary, "gateway", "--config", cfg, "--bind-address", "127.0.0.1", "--admin", "127.0.0.1:0", "--workers", "1"]
    return Proxy("strait", argv, port, workdir)


def start_nginx(backend, workdir):
    port = free_port()
    d = os.path.join(workdir, "nginx")
    os.makedirs(d, exist_ok=True)
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""daemon off;
master_process off;
worker_processes 1;
error_log {d}/error.log info;
pid {d}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream backend {{ server 127.0.0.1:{backend.port}; keepalive 16; }}
    map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header X-Proxied 1;
        }}
    }}
}}
""")
    return Proxy("nginx", ["nginx", "-c", conf, "-p", d], port, workdir)


def start_haproxy(backend, workdir):
    port = free_port()
    conf = os.path.join(workdir, "haproxy.cfg")
    with open(conf, "w") as f:
        f.write(f"""global
    nbthread 1
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-request 10s
    timeout tunnel 30s
frontend edge
    bind 127.0.0.1:{port}
    http-request set-header X-Proxied 1
    default_backend backend
backend backend
    server backend 127.0.0.1:{backend.port}
""")
    return Proxy("haproxy", ["haproxy", "-db", "-f", conf], port, workdir)


# --- one exchange ---------------------------------------------------------------


def exchange(port, raw, close, half_close):
    """(status, closed): the first answer's status (0: closed without one,
    None: nothing within the deadline) and whether the proxy closed after
    it (checked only when `close`)."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
    except OSError:
        return None, False
    with s:
        try:
            s.sendall(raw)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the proxy may close before it has read everything
        buf, deadline = b"", time.time() + ANSWER_DEADLINE
        status = None
        while time.time() < deadline:
            s.settimeout(max(0.05, deadline - time.time()))
            try:
                data = s.recv(65536)
            except socket.timeout:
                break
            except OSError:
                data = b""
            if not data:
                m = re.match(rb"HTTP/1\.[01] (\d{3})", buf)
                return (int(m.group(1)) if m else 0), True
            buf += data
            if len(buf) >= 9 and buf[3] == 4 and not buf.startswith(b"HTTP/"):
                return H2, False
            m = re.match(rb"HTTP/1\.[01] (\d{3})", buf)
            # 100 Continue is interim; the answer is what follows it.
            while m and m.group(1) == b"100" and b"\r\n\r\n" in buf:
                buf = buf.split(b"\r\n\r\n", 1)[1]
                m = re.match(rb"HTTP/1\.[01] (\d{3})", buf)
            if m and b"\r\n\r\n" in buf:
                status = int(m.group(1))
                break
        if status is None or not close:
            return status, False
        return status, wait_close(s)


def wait_close(s):
    deadline = time.time() + CLOSE_DEADLINE
    while time.time() < deadline:
        s.settimeout(max(0.05, deadline - time.time()))
        try:
            if not s.recv(65536):
                return True
        except socket.timeout:
            return False
        except OSError:
            return True
    return False


def run_case(proxy, backend, case):
    """The reasons `case` fails against `proxy`; empty when it passes."""
    backend.take()
    status, closed = exchange(proxy.port, case.raw, case.close, case.half_close)
    time.sleep(0.15)  # what the proxy forwards after answering
    requests, problems = backend.take()
    why = list(problems)
    if status is None:
        why.append(f"no answer within {ANSWER_DEADLINE:.0f} s")
    elif status not in case.allow:
        why.append(f"answered {status or 'nothing (closed)'}, allowed {sorted(case.allow)}")
    if case.close and status is not None and not closed:
        why.append("kept the connection open")
    if case.tail and any("/smuggled" in r["target"] for r in requests):
        why.append("the request after the malformed one reached the back end")
    if case.host is not None and status == 200:
        seen = [r.get("host") for r in requests]
        if seen != [case.host]:
            why.append(f"back end saw Host {seen}, expected {case.host!r}")
    health, _ = exchange(proxy.port, b"GET / HTTP/1.1\r\nHost: t.test\r\n\r\n", False, False)
    backend.take()
    if health != 200:
        why.append(f"a plain GET afterwards got {health}")
    return why, status


# --- the report -------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strait", required=True, help="the strait binary")
    ap.add_argument("--peers", action="store_true", help="also run nginx and HAProxy")
    ap.add_argument("--only", help="run only cases whose name contains this")
    ap.add_argument("--verbose", action="store_true", help="print every case")
    args = ap.parse_args()
    cases = [c for c in CASES if not args.only or args.only in c.name]
    workdir = tempfile.mkdtemp(prefix="strait-smuggling-")
    backend = Backend()
    proxies = []
    try:
        proxies.append(start_strait(args.strait, backend, workdir))
        if args.peers:
            for name, start in (("nginx", start_nginx), ("haproxy", start_haproxy)):
                if shutil.which(name) is None:
                    raise SystemExit(f"--peers: {name} is not on PATH (tests/smuggling/compare.sh installs it)")
                proxies.append(start(backend, workdir))
        return report(proxies, backend, cases, args.verbose)
    finally:
        for p in proxies:
            p.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def report(proxies, backend, cases, verbose):
    results = {p.name: {} for p in proxies}
    for case in cases:
        for p in proxies:
            results[p.name][case.name] = run_case(p, backend, case)
        if verbose:
            cells = "  ".join(f"{p.name}={results[p.name][case.name][1]}" for p in proxies)
            print(f"{case.category:12} {case.name:45} {cells}")
    print(f"\n{len(cases)} cases")
    for p in proxies:
        failed = [(n, why) for n, (why, _) in results[p.name].items() if why]
        print(f"{p.name:8} passed {len(cases) - len(failed)} of {len(cases)}")
        for name, why in failed:
            print(f"    FAIL {name}: {'; '.join(why)}")
    bad = [n for n, (why, _) in results["strait"].items() if why]
    worse = [n for n in bad if any(not results[p.name][n][0] for p in proxies if p.name != "strait")]
    if worse:
        print(f"\npassed by a peer and failed by strait: {', '.join(worse)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
