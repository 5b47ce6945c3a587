#!/usr/bin/env python3
"""Slow clients: the latency of a healthy client while 500 slow ones hold
connections, and how long each proxy lets the slow ones stay; strait,
nginx and HAProxy in the same run, with the settings the request-smuggling
corpus uses (tests/smuggling/run.py), each proxy on one worker.

    python3 bench/slow.py --strait target/release/strait [--slow 500] [--seconds 40] [--no-peers]

Per proxy: the healthy client's p50 and p99 over 1,000 keep-alive
requests alone; then half the slow clients send their headers a byte a
second (slowloris) and half send a body a byte a second, while the
healthy client goes on for --seconds; its p50 and p99 then, and how many
slow clients of each kind the proxy had closed, and when (median)."""

import argparse
import asyncio
import importlib.util
import os
import shutil
import socket
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("corpus_run", os.path.join(HERE, "..", "tests", "smuggling", "run.py"))
peers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(peers)
spec = importlib.util.spec_from_file_location("idle", os.path.join(HERE, "idle.py"))
idle = importlib.util.module_from_spec(spec)
spec.loader.exec_module(idle)
answer = idle.answer

REQUEST = b"GET / HTTP/1.1\r\nHost: slow.test\r\n\r\n"


class Echo:
    """`strait echo`, the back end of every proxy here."""

    def __init__(self, binary):
        import subprocess
        self.proc = subprocess.Popen([binary, "echo", "--listen", "127.0.0.1:0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.port = int(self.proc.stdout.readline().strip().rsplit(":", 1)[1])

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def healthy(port, stop, out):
    """Keep-alive requests until `stop`; their latencies in µs, in `out`.
    A connection the proxy ends (nginx after 1,000 requests) is opened
    again, as a client would."""
    s = None
    while not stop():
        if s is None:
            s = socket.create_connection(("127.0.0.1", port))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t = time.perf_counter()
        try:
            s.sendall(REQUEST)
            status = answer(s)
        except (ConnectionError, OSError):
            s.close()
            s = None
            continue
        out.append((time.perf_counter() - t) * 1e6 if status == 200 else float("inf"))
        time.sleep(0.005)
    if s is not None:
        s.close()


def percentiles(times):
    times = sorted(times)
    return times[len(times) // 2], times[int(len(times) * 0.99)]


async def slow_client(port, kind, start, seconds):
    """Sends a byte a second; when the proxy closed it (None: it did not
    within `seconds`)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return 0.0
    if kind == "body":
        writer.write(b"POST / HTTP/1.1\r\nHost: slow.test\r\nContent-Length: 100000\r\n\r\n")
        drip = b"x"
    else:
        writer.write(b"GET / HTTP/1.1\r\nHost: slow.test\r\n")
        drip = b"a"
    writer.write(b"X-Slow: " if kind == "headers" else b"")
    closed = None
    while time.monotonic() - start < seconds:
        try:
            writer.write(drip)
            await writer.drain()
            data = await asyncio.wait_for(reader.read(4096), 1.0)
            if not data or data.startswith(b"HTTP/"):
                closed = time.monotonic() - start
                break
        except asyncio.TimeoutError:
            continue
        except OSError:
            closed = time.monotonic() - start
            break
    writer.close()
    return closed


async def slow_crowd(port, n, seconds):
    start = time.monotonic()
    kinds = ["headers", "body"] * (n // 2)
    ends = await asyncio.gather(*(slow_client(port, k, start, seconds) for k in kinds))
    out = {}
    for kind, end in zip(kinds, ends):
        out.setdefault(kind, []).append(end)
    return out


def measure(name, port, n, seconds):
    alone = []
    done = [False]
    t = threading.Thread(target=healthy, args=(port, lambda: len(alone) >= 1000, alone))
    t.start()
    t.join()
    during = []
    t = threading.Thread(target=healthy, args=(port, lambda: done[0], during))
    t.start()
    crowd = asyncio.run(slow_crowd(port, n, seconds))
    done[0] = True
    t.join()
    row = [name, *percentiles(alone), *percentiles(during), len(during)]
    for kind in ("headers", "body"):
        ends = sorted(e for e in crowd[kind] if e is not None)
        median = f"{ends[len(ends) // 2]:.1f} s" if ends else "—"
        row += [f"{len(ends)}/{len(crowd[kind])}", median]
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--strait", required=True)
    ap.add_argument("--slow", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=40)
    ap.add_argument("--no-peers", action="store_true")
    args = ap.parse_args()
    work = tempfile.mkdtemp()
    echo = Echo(args.strait)
    starts = [("strait", lambda: peers.start_strait(args.strait, echo, work))]
    if not args.no_peers:
        starts += [("nginx", lambda: peers.start_nginx(echo, work)),
                   ("haproxy", lambda: peers.start_haproxy(echo, work))]
    rows = []
    try:
        for name, start in starts:
            proxy = start()
            try:
                rows.append(measure(name, proxy.port, args.slow, args.seconds))
            finally:
                proxy.stop()
    finally:
        echo.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.slow} slow clients (half headers, half bodies, a byte a second) for {args.seconds:.0f} s\n")
    print("| proxy | p50 alone | p99 alone | p50 with them | p99 with them | requests | headers cut | median | bodies cut | median |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]:.0f} µs | {r[2]:.0f} µs | {r[3]:.0f} µs | {r[4]:.0f} µs | {r[5]} | {r[6]} | {r[7]} | {r[8]} | {r[9]} |")


if __name__ == "__main__":
    sys.exit(main())
