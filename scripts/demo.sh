#!/usr/bin/env bash
# The demo: a worker on the in-memory backend fed by a demo producer, with a live view and
# a summary, serving Prometheus metrics on 127.0.0.1:9100 (another free port if 9100 is
# taken; the address is printed) until Ctrl-C. Extra arguments go to `asyncmq demo`
# (scripts/demo.sh --jobs 1000; --duration 30 ends it 30 s after the start).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/asyncmq demo --metrics-port 9100 "$@"
