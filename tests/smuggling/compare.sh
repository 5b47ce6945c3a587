#!/usr/bin/env bash
# The request-smuggling corpus against strait, nginx and HAProxy in one run,
# each forwarding to the same recording back end; prints the three scores
# and every failed case. Installs nginx and HAProxy from Debian when they
# are missing (as root, with apt-get; their packaged services are not
# started). Uses target/release/strait, built here when cargo is present;
# STRAIT_BIN overrides.
#   bash tests/smuggling/compare.sh [--verbose]
set -euo pipefail
cd "$(dirname "$0")/../.."
source bench/lib.sh
install_missing nginx haproxy
STRAIT_BIN=${STRAIT_BIN:-target/release/strait}
rebuild_default_strait
log "strait: $STRAIT_BIN; $(nginx -v 2>&1); $(haproxy -v 2>&1 | sed -n 1p)"
exec python3 tests/smuggling/run.py --strait "$STRAIT_BIN" --peers "$@"
