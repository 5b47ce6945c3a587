#!/usr/bin/env python3
"""Idle keep-alive connections: memory per connection, and the latency of
new requests while they are held open.

    python3 bench/idle.py --strait target/release/strait [--connections 20000]

Starts `strait echo` and `strait gateway` (one route to the echo), then:
gateway RSS and the latency of 500 requests on a fresh connection; opens
N connections that each make one keep-alive request and stay open; RSS
and the 500-request latency again; checks every connection is still open
and answers a second request. Raises the open-file limit of itself and the
gateway up to the hard limit (raising that needs CAP_SYS_RESOURCE; below
N, the script measures as many as the limit allows and says so). The gateway's idle
keep-alive limit (`--header-read-timeout`) is set to 300 s so that the
connections outlive the measurement."""

import argparse
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time

REQUEST = b"GET / HTTP/1.1\r\nHost: idle.test\r\n\r\n"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def raise_fd_limit(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, n)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, PermissionError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def answer(s):
    """Reads one response; its status."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed in the body")
        body += chunk
    return int(head.split(b" ")[1])


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def latency(port, n=500):
    s = socket.create_connection(("127.0.0.1", port))
    times = []
    for _ in range(n):
        t = time.perf_counter()
        s.sendall(REQUEST)
        assert answer(s) == 200
        times.append((time.perf_counter() - t) * 1e6)
    s.close()
    times.sort()
    return times[len(times) // 2], times[int(len(times) * 0.99)]


def wait_port(port, proc):
    for _ in range(200):
        if proc.poll() is not None:
            sys.exit(f"the gateway exited: {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit("the gateway did not listen")


def config(port, echo_port):
    return f"""apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: strait}}
spec: {{controllerName: strait.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw}}
spec: {{gatewayClassName: strait, listeners: [{{name: http, port: {port}, protocol: HTTP}}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r}}
spec:
  parentRefs: [{{name: gw}}]
  rules: [{{backendRefs: [{{name: echo, port: 80}}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: echo}}
spec: {{ports: [{{port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: echo-1, labels: {{kubernetes.io/service-name: echo}}}}
addressType: IPv4
ports: [{{port: {echo_port}}}]
endpoints: [{{addresses: [127.0.0.1]}}]
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--strait", required=True)
    ap.add_argument("--connections", type=int, default=20000)
    args = ap.parse_args()
    n = args.connections
    limit = raise_fd_limit(n + 1000)
    if limit < n + 100:
        # The gateway needs a descriptor per connection, plus its own.
        print(f"open-file hard limit {limit}: measuring {limit - 200} connections, not {n}")
        n = limit - 200
    echo = subprocess.Popen([args.strait, "echo", "--listen", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    echo_port = int(echo.stdout.readline().strip().rsplit(":", 1)[1])
    port = free_port()
    tmp = tempfile.mkdtemp()
    with open(os.path.join(tmp, "gw.yaml"), "w") as f:
        f.write(config(port, echo_port))
    gw = subprocess.Popen([args.strait, "gateway", "--config", tmp, "--header-read-timeout", "300s"],
                          stderr=subprocess.DEVNULL)
    try:
        wait_port(port, gw)
        latency(port, 200)  # warm: the upstream pool, allocator arenas
        base = rss_kib(gw.pid)
        p50, p99 = latency(port)
        held = []
        start = time.time()
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(REQUEST)
            assert answer(s) == 200, i
            held.append(s)
        opened = time.time() - start
        time.sleep(1)
        loaded = rss_kib(gw.pid)
        q50, q99 = latency(port)
        # Every held connection still answers.
        alive = 0
        for s in held:
            try:
                s.sendall(REQUEST)
                alive += answer(s) == 200
            except OSError:
                pass
        after = rss_kib(gw.pid)
        for s in held:
            s.close()
        per = (loaded - base) * 1024 / n
        print(f"{n} idle keep-alive connections opened in {opened:.1f} s; {alive} answered again")
        print(f"gateway RSS: {base / 1024:.1f} MiB before, {loaded / 1024:.1f} MiB with them idle "
              f"({per / 1024:.1f} KiB per connection), {after / 1024:.1f} MiB after each answered again")
        print(f"500 requests on another connection: p50 {p50:.0f} µs, p99 {p99:.0f} µs before; "
              f"p50 {q50:.0f} µs, p99 {q99:.0f} µs with them open")
        if alive != n:
            sys.exit(f"{n - alive} held connections were closed")
    finally:
        gw.terminate()
        echo.terminate()
        gw.wait()
        echo.wait()


if __name__ == "__main__":
    main()
