#!/usr/bin/env bash
# Sourced by scripts/test.sh: installs and starts the servers the tests talk to, on
# loopback only, and exports their URLs. Idempotent: a server already up is reused.
#   - Redis on 127.0.0.1:6379 (the machine's own, started here if it is not running)
#   - a three-node Redis Cluster on 127.0.0.1:7101-7103, started for this run and
#     stopped by stop_services
#   - PostgreSQL on 127.0.0.1:5432 (the machine's own cluster, started here if it is not
#     running; installed from Debian when missing), database `test`, trust auth on loopback
#   - a MongoDB wire-protocol server (nx-27017, from PyPI, in a venv of its own under
#     .services) on 127.0.0.1:27017, in memory, started for this run and stopped by
#     stop_services: no MongoDB server can be installed here (see the README)
#   - Prometheus and promtool (Debian's prometheus package), Alertmanager and amtool
#     (prometheus-alertmanager): the tests check /metrics, the rules and the configs with
#     them, and start their own servers on loopback ports
set -euo pipefail

SERVICES_DIR=${SERVICES_DIR:-$(pwd)/.services}
CLUSTER_PORTS=(7101 7102 7103)

need_debian_package() {  # command package
    command -v "$1" >/dev/null && return
    echo "== installing $2"
    if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}

wait_for() {  # seconds command...
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || { echo "timed out waiting for: $*" >&2; return 1; }
        sleep 0.2
    done
}

start_redis() {
    need_debian_package redis-server redis-server
    if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
        echo "== starting redis on 127.0.0.1:6379"
        mkdir -p /var/lib/redis /var/log/redis
        redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
            --dir /var/lib/redis --logfile /var/log/redis/ci.log
        wait_for 20 redis-cli -h 127.0.0.1 -p 6379 ping
    fi
    export ASYNCMQ_TEST_REDIS_URL=redis://127.0.0.1:6379/0
}

cluster_ok() {
    redis-cli -h 127.0.0.1 -p "${CLUSTER_PORTS[0]}" cluster info 2>/dev/null | grep -q cluster_state:ok
}

start_redis_cluster() {
    if ! cluster_ok; then
        echo "== starting a three-node redis cluster on 127.0.0.1:${CLUSTER_PORTS[*]}"
        for port in "${CLUSTER_PORTS[@]}"; do
            redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || true
            rm -rf "$SERVICES_DIR/redis-$port" && mkdir -p "$SERVICES_DIR/redis-$port"
            redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --cluster-enabled yes \
                --cluster-config-file nodes.conf --dir "$SERVICES_DIR/redis-$port" --save "" \
                --appendonly no --logfile "$SERVICES_DIR/redis-$port/log" \
                --pidfile "$SERVICES_DIR/redis-$port/pid"
            wait_for 20 redis-cli -h 127.0.0.1 -p "$port" ping
        done
        redis-cli --cluster create $(printf '127.0.0.1:%s ' "${CLUSTER_PORTS[@]}") \
            --cluster-replicas 0 --cluster-yes >/dev/null
        wait_for 30 cluster_ok
    fi
    export ASYNCMQ_TEST_REDIS_CLUSTER_URL="redis+cluster://127.0.0.1:${CLUSTER_PORTS[0]}"
}

postgres_ok() {
    pg_isready -h 127.0.0.1 -p 5432 -q
}

start_postgres() {
    need_debian_package pg_ctlcluster postgresql
    if ! postgres_ok; then
        echo "== starting postgresql on 127.0.0.1:5432"
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start
        wait_for 30 postgres_ok
    fi
    if ! psql -h 127.0.0.1 -U postgres -d test -c 'SELECT 1' >/dev/null 2>&1; then
        # A fresh install: the test database, and trust for loopback (tests only).
        su postgres -c "psql -q -c 'CREATE DATABASE test'" >/dev/null 2>&1 || true
    fi
    export ASYNCMQ_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test
}

MONGO_PORT=27017
NX_VERSION=0.8.1

mongo_ok() {
    .venv/bin/python - "$MONGO_PORT" <<'PY' >/dev/null 2>&1
import socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
PY
}

start_mongo() {
    local venv="$SERVICES_DIR/nx-$NX_VERSION"
    if [ ! -x "$venv/bin/nx-27017" ]; then
        echo "== installing the MongoDB wire-protocol server nx-27017 $NX_VERSION"
        rm -rf "$venv" && python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet "nx-27017==$NX_VERSION"
    fi
    if ! mongo_ok; then
        echo "== starting nx-27017 on 127.0.0.1:$MONGO_PORT"
        mkdir -p "$SERVICES_DIR"
        "$venv/bin/python" scripts/mongo_test_server.py -d --db memory --host 127.0.0.1 -p "$MONGO_PORT" \
            --log-file "$SERVICES_DIR/nx.log" --pid-file "$SERVICES_DIR/nx.pid"
        wait_for 30 mongo_ok
    fi
    export ASYNCMQ_TEST_MONGO_URL="mongodb://127.0.0.1:$MONGO_PORT/?directConnection=true"
    # The fault tests start servers of their own with it (tests/private_servers.py).
    export ASYNCMQ_TEST_NX_PYTHON="$venv/bin/python"
}

stop_services() {
    if [ -f "$SERVICES_DIR/nx.pid" ]; then
        kill "$(cat "$SERVICES_DIR/nx.pid")" 2>/dev/null || true
        rm -f "$SERVICES_DIR/nx.pid"
    fi
    for port in "${CLUSTER_PORTS[@]}"; do
        redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || true
    done
}

start_redis
start_redis_cluster
start_postgres
start_mongo
need_debian_package promtool prometheus
need_debian_package amtool prometheus-alertmanager
