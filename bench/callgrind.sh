#!/usr/bin/env bash
# Instructions per proxied request, counted by callgrind (repeatable on a
# noisy machine): an nginx backend, `strait gateway` (one worker) under
# valgrind --tool=callgrind, N keep-alive GETs from Python, then SIGTERM.
# Prints the program total. Per request: run at two N and divide the
# difference (start-up cancels out).
#   bench/callgrind.sh STRAIT_BIN N
# JWT=1: a SecurityPolicy on the route (an Ed25519 key made with openssl)
# and every request carrying a token it accepts. RATELIMIT=1: a
# RateLimitPolicy on the route whose local rule counts every request
# (RATELIMIT=quiet: without the RateLimit headers on its answers).
# SCHEMA=get|post: requests `GET /items/42?limit=10` or `POST /reviews`
# with a 63-byte JSON body, checked by an ApiSchemaPolicy's document;
# SCHEMA=get-bare|post-bare: the same requests without the policy.
# Needs valgrind, nginx and python3.
set -euo pipefail
[[ $# -eq 2 ]] || { sed -n "2,14p" "$0"; exit 2; }
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
BIN=$1; N=$2; D=$(mktemp -d)
P=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
B=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
nginx_dir=$D/ng; mkdir -p $nginx_dir
cat > $nginx_dir/n.conf <<NG
daemon off; master_process off; worker_processes 1; error_log $nginx_dir/e.log; pid $nginx_dir/p;
events {} http { access_log off; server { listen 127.0.0.1:$B; location / { return 200 "ok"; } } }
NG
nginx -c $nginx_dir/n.conf -p $nginx_dir & NG=$!
{
    gateway_yaml "{name: http, port: $P, protocol: HTTP}"
    route_yaml r b
    backend_yaml b "$B"
    [[ -z ${JWT:-} ]] || jwt_yaml "$D"
    [[ -z ${RATELIMIT:-} ]] || ratelimit_yaml "$RATELIMIT"
    [[ ${SCHEMA:-} != get && ${SCHEMA:-} != post ]] || apischema_yaml
} > $D/gw.yaml
# STRAIT_FLAGS: more gateway flags, to measure a setting.
STRAIT_LOG=warn valgrind --tool=callgrind --callgrind-out-file=$D/cg.out $BIN gateway --config $D --workers 1 --bind-address 127.0.0.1 ${STRAIT_FLAGS:-} >$D/log 2>&1 & V=$!
python3 - $P $N "$(cat $D/token 2>/dev/null)" "${SCHEMA:-}" <<'PY'
import http.client,sys,time
p,n=int(sys.argv[1]),int(sys.argv[2])
auth={"Authorization":"Bearer "+sys.argv[3]} if sys.argv[3] else {}
method,path,body="GET","/",None
if sys.argv[4].startswith("get"): path="/items/42?limit=10"
if sys.argv[4].startswith("post"):
    method,path,body="POST","/reviews",b'{"product": 42, "stars": 4, "text": "works as it says it does"}'
    auth={**auth,"Content-Type":"application/json"}
for _ in range(200):
    try:
        c=http.client.HTTPConnection("127.0.0.1",p,timeout=5); c.request("GET","/",headers={"Host":"a",**auth}); r=c.getresponse(); r.read()
        if r.status==200: break
    except Exception: time.sleep(0.5)
for i in range(n):
    c.request(method,path,body=body,headers={"Host":"a","User-Agent":"cg","Accept":"*/*",**auth}); r=c.getresponse(); r.read()
    assert r.status==200
PY
kill -TERM $V; wait $V || true; kill $NG; wait $NG 2>/dev/null || true
grep -E '^summary|^totals' $D/cg.out | head -1 | awk '{print $2}'
[ -z "${KEEP:-}" ] || cp $D/cg.out "$KEEP"
rm -rf $D
