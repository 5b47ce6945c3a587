#!/usr/bin/env python3
"""Writes each fuzz target's starting inputs into seeds/TARGET/: the
examples' manifests, the smuggling corpus's requests, a CSR and a
certificate from openssl, control-plane updates. run.sh calls it."""

import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "smuggling"))


def write(target, name, data):
    d = os.path.join(HERE, "seeds", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def manifests():
    ex = os.path.join(ROOT, "examples", "shop")
    for name in sorted(os.listdir(ex)):
        with open(os.path.join(ex, name), "rb") as f:
            write("manifest", name, f.read())


def heads():
    import corpus

    for i, case in enumerate(corpus.CASES):
        write("http1_head", f"{i:03}", case.raw)


def responses():
    """Backends' answers, as strait's HTTP/1.1 client reads them."""
    answers = [
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhelloHTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nx-t: 1\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\nuntil close",
        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.0 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
    ]
    for i, answer in enumerate(answers):
        write("h1_response", f"{i:03}", b"\0" + answer)
        write("h1_response", f"{i:03}-head", b"\1" + answer)


def identity():
    write("identity", "id", b"\2spiffe://td/ns/shop/sa/web")
    if shutil.which("openssl") is None:
        print("seeds.py: no openssl, so no CSR or certificate seeds", file=sys.stderr)
        return
    with tempfile.TemporaryDirectory() as tmp:
        key, csr, crt = (os.path.join(tmp, n) for n in ("k", "csr", "crt"))
        san = "subjectAltName=URI:spiffe://td/ns/shop/sa/web"
        subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey",
                        "-noout", "-out", key], check=True)
        subprocess.run(["openssl", "req", "-new", "-key", key, "-subj", "/",
                        "-addext", san, "-outform", "DER", "-out", csr], check=True)
        subprocess.run(["openssl", "req", "-x509", "-key", key, "-subj", "/CN=w",
                        "-addext", san, "-days", "1", "-outform", "DER", "-out", crt],
                       check=True)
        pem = subprocess.run(["openssl", "x509", "-inform", "DER", "-in", crt],
                             check=True, capture_output=True).stdout
        write("identity", "csr", b"\0" + open(csr, "rb").read())
        write("identity", "cert", b"\1" + open(crt, "rb").read())
        write("identity", "pem", b"\3" + pem)


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(num, data):
    if isinstance(data, int):
        return varint(num << 3) + varint(data)
    data = data.encode() if isinstance(data, str) else data
    return varint(num << 3 | 2) + varint(len(data)) + data


def update(version, base, entries=(), removed=(), more=False):
    msg = field(1, version) + field(2, base)
    for key, doc in entries:
        entry = (field(1, key) + field(2, "shop.yaml") + field(3, 0) + field(4, "")
                 + field(5, json.dumps(doc)))
        msg += field(3, entry)
    for key in removed:
        msg += field(4, key)
    if more:
        msg += field(5, 1)
    return varint(len(msg)) + msg


def deltas():
    gw = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
          "metadata": {"name": "g", "namespace": "d"},
          "spec": {"gatewayClassName": "c",
                   "listeners": [{"name": "h", "port": 80, "protocol": "HTTP"}]}}
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
             "metadata": {"name": "r", "namespace": "d"},
             "spec": {"parentRefs": [{"name": "g"}], "rules": [{}]}}
    write("control_delta", "whole", update("1", "", [("g", gw), ("r", route)]))
    write("control_delta", "delta",
          update("1", "", [("g", gw)], more=True) + update("1", "", [("r", route)])
          + update("2", "1", removed=["r"]) + update("3", "1", [("x", gw)]))


if __name__ == "__main__":
    manifests()
    heads()
    responses()
    identity()
    deltas()
