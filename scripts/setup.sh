#!/usr/bin/env bash
# Makes sure the services Herald needs are running on this machine:
#   - Redis on 127.0.0.1:6379 (Debian's redis-server package if missing)
#   - a MongoDB-compatible server on 127.0.0.1:27017: SecantusDB, built from
#     crates.io (secantusd-rs, about 4 minutes) or, if that cannot be built,
#     from PyPI (secantusd-py), in its durable mode (--sync-on-commit).
# That is all Herald and `scripts/demo.sh` need. A service that already
# answers on its port is reused, never started twice; a port held by
# something that does not answer as Redis (PING) or MongoDB (ping) stops the
# script with a message instead of being reused.
# Services this script starts keep their data and logs in .herald/ (or
# $HERALD_STATE_DIR) and run in the background until stopped.
#
# With --tests (or --browser, the same; scripts/test.sh passes --tests) it
# also sets up what only the tests and the benchmark use, each once:
#   - a Redis Cluster on 127.0.0.1:7100-7105 (scripts/redis-cluster.sh, in
#     seconds), for the cluster tests;
#   - schemathesis (PyPI, pinned) in a virtualenv in .herald/venv, for the
#     OpenAPI fuzz test (a venv that has it is reused);
#   - s3s-fs (crates.io, pinned, with its `binary` feature) in ~/.cargo/bin:
#     the S3 server the object-storage export tests start on loopback
#     (tests/integration/s3_server.rs). An installed s3s-fs of that version is
#     reused; the build takes about 6 minutes on one core;
#   - Debian's chromium and chromium-driver, which the dashboard's and the
#     inbox example's tests drive;
#   - Sockudo (below);
#   - the operations tools: Debian's prometheus (its `prometheus` and
#     `promtool` binaries, for the alert rules' tests; the package's own
#     service is not started) and supervisor (PyPI, pinned, in the same
#     virtualenv), which runs the Procfile in the supervision tests.
#
# With --tests, --browser or --sockudo it installs Sockudo (crates.io,
# pinned) into ~/.cargo/bin, once: a Pusher-protocol server this project did
# not write, which the inbox example's test (tests/integration/inbox_browser.rs)
# and `scripts/demo.sh --inbox` start on loopback. Its build needs Debian's
# protobuf-compiler (installed if `protoc` is missing: a dependency's build
# script compiles a .proto) and takes about 14 minutes of one core; an
# installed sockudo of that version is reused.
#
# Options (environment):
#   HERALD_MONGO_IMPL=rs|py   which SecantusDB to install if none runs (default rs,
#                             falling back to py if the build fails)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE_DIR=${HERALD_STATE_DIR:-$ROOT/.herald}
REDIS_PORT=6379
MONGO_PORT=27017
SECANTUS_CRATE_VERSION=0.5.3-beta.196
SCHEMATHESIS_VERSION=4.32.5
SUPERVISOR_VERSION=4.2.5
# The s3s-fs cargo chooses for Rust 1.95 (0.17, the newest, wants 1.96).
S3S_FS_VERSION=0.14.1
# The newest Sockudo; it declares Rust 1.95. Built with only its `local`
# feature: Herald needs the Pusher protocol on one node, not Sockudo's
# default OpenTelemetry export and v2 protocol extensions, which cost 15%
# more build time (16 instead of 14 minutes of one core, measured).
SOCKUDO_VERSION=5.2.0
SOCKUDO_FEATURES=local
MONGO_IMPL=${HERALD_MONGO_IMPL:-rs}
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf '[setup] %s\n' "$*"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port seconds name log
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    port_open "$1" && return 0
    sleep 0.1
  done
  say "$3 did not open port $1 within $2 s; its log ($4):"
  tail -n 30 "$4" >&2 || true
  exit 1
}

# Whether what listens on 127.0.0.1:$1 answers Redis's PING (a server that
# wants a password answers NOAUTH, which is still Redis).
redis_answers() {
  local reply=""
  exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
  printf 'PING\r\n' >&3
  IFS= read -r -t 3 reply <&3 || true
  exec 3<&- 3>&-
  case "$reply" in +PONG* | -NOAUTH*) return 0 ;; *) return 1 ;; esac
}

# Whether what listens on 127.0.0.1:$1 answers a MongoDB ping (OP_MSG) with
# ok: 1. Plain python3, no driver needed.
mongo_answers() {
  python3 - "$1" <<'PY'
import socket, struct, sys

def bson_ping():
    body = b"\x10ping\x00" + struct.pack("<i", 1)
    body += b"\x02$db\x00" + struct.pack("<i", 6) + b"admin\x00"
    return struct.pack("<i", len(body) + 5) + body + b"\x00"

def recv_exactly(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            sys.exit(1)
        data += chunk
    return data

payload = struct.pack("<I", 0) + b"\x00" + bson_ping()
message = struct.pack("<iiii", 16 + len(payload), 1, 0, 2013) + payload
try:
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3) as s:
        s.sendall(message)
        length, _, _, opcode = struct.unpack("<iiii", recv_exactly(s, 16))
        rest = recv_exactly(s, length - 16)
except (OSError, struct.error):
    sys.exit(1)
# The reply's document must carry ok: 1 (a double or an int32).
ok = b"\x01ok\x00" + struct.pack("<d", 1.0) in rest or b"\x10ok\x00" + struct.pack("<i", 1) in rest
sys.exit(0 if opcode == 2013 and ok else 1)
PY
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

APT_UPDATED=0
apt_install() {
  if [ "$APT_UPDATED" -eq 0 ]; then
    as_root apt-get update -qq
    APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_redis() {
  if port_open "$REDIS_PORT"; then
    if ! redis_answers "$REDIS_PORT"; then
      say "Redis: something listens on 127.0.0.1:$REDIS_PORT but does not answer PING; stop it (or fix it) and run this again"
      exit 1
    fi
    say "Redis: reusing the server on 127.0.0.1:$REDIS_PORT"
    return
  fi
  if ! command -v redis-server >/dev/null; then
    say "Redis: installing Debian's redis-server"
    apt_install redis-server
  fi
  mkdir -p "$STATE_DIR/redis"
  say "Redis: starting on 127.0.0.1:$REDIS_PORT (log $STATE_DIR/redis.log)"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" \
    --save "" --appendonly no --dir "$STATE_DIR/redis" \
    --logfile "$STATE_DIR/redis.log"
  wait_port "$REDIS_PORT" 20 Redis "$STATE_DIR/redis.log"
}

# The six-node Redis Cluster on 127.0.0.1:7100-7105 the cluster tests use
# (tests/integration/cluster.rs); scripts/redis-cluster.sh reuses a healthy
# one and recreates a broken one.
ensure_redis_cluster() {
  say "Redis Cluster: making sure it runs on 127.0.0.1:7100-7105 (scripts/redis-cluster.sh)"
  HERALD_STATE_DIR="$STATE_DIR" bash "$ROOT/scripts/redis-cluster.sh" start
}

install_secantus_rs() {
  say "SecantusDB: building secantusd-rs $SECANTUS_CRATE_VERSION from crates.io (about 4 minutes)"
  if ! command -v cmake >/dev/null || ! dpkg -s libclang-dev >/dev/null 2>&1; then
    apt_install cmake libclang-dev
  fi
  cargo install secantus-mdb --version "$SECANTUS_CRATE_VERSION" --ignore-rust-version --quiet
}

install_secantus_py() {
  say "SecantusDB: installing secantusd-py from PyPI"
  python3 -m pip install --quiet --disable-pip-version-check SecantusDB
}

mongo_server_binary() {
  if [ "$MONGO_IMPL" = rs ]; then
    command -v secantusd-rs >/dev/null || install_secantus_rs || say "SecantusDB: the Rust build failed; falling back to PyPI"
    if command -v secantusd-rs >/dev/null; then
      command -v secantusd-rs
      return
    fi
  fi
  command -v secantusd-py >/dev/null || install_secantus_py
  hash -r
  command -v secantusd-py
}

ensure_mongo() {
  if port_open "$MONGO_PORT"; then
    if ! mongo_answers "$MONGO_PORT"; then
      say "MongoDB: something listens on 127.0.0.1:$MONGO_PORT but does not answer a MongoDB ping; stop it (a SecantusDB this script started runs from $STATE_DIR/mongo, log $STATE_DIR/secantusd.log) and run this again"
      exit 1
    fi
    say "MongoDB: reusing the server on 127.0.0.1:$MONGO_PORT"
    return
  fi
  local bin
  bin=$(mongo_server_binary | tail -n 1)
  mkdir -p "$STATE_DIR/mongo"
  say "MongoDB: starting $(basename "$bin") on 127.0.0.1:$MONGO_PORT (log $STATE_DIR/secantusd.log)"
  # --sync-on-commit: a write acknowledged with j: true is on disk (fsync of
  # the WiredTiger log per commit), as mongod's journal makes it; without it
  # a killed server loses its last acknowledged writes.
  nohup "$bin" --host 127.0.0.1 --port "$MONGO_PORT" --storage-path "$STATE_DIR/mongo" \
    --sync-on-commit >"$STATE_DIR/secantusd.log" 2>&1 </dev/null &
  wait_port "$MONGO_PORT" 60 SecantusDB "$STATE_DIR/secantusd.log"
}

ensure_browser() {
  if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    say "Browser: reusing $(chromium --version 2>/dev/null | head -n 1)"
    return
  fi
  say "Browser: installing Debian's chromium and chromium-driver"
  apt_install chromium chromium-driver
}

ensure_schemathesis() {
  local venv="$STATE_DIR/venv"
  if "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    say "schemathesis: reusing $SCHEMATHESIS_VERSION in $venv"
    return
  fi
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    say "schemathesis: installing Debian's python3-venv"
    apt_install python3-venv
  fi
  say "schemathesis: installing $SCHEMATHESIS_VERSION from PyPI into $venv"
  # Only the OpenAPI fuzz test needs it: a failed install is told, not fatal
  # (that test then fails naming the missing program).
  if ! { python3 -m venv "$venv" &&
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"; }; then
    say "schemathesis: the install failed; tests/integration/openapi_fuzz.rs will fail until it succeeds"
  fi
}

ensure_ops_tools() {
  if command -v promtool >/dev/null && command -v prometheus >/dev/null; then
    say "Prometheus: reusing $(prometheus --version 2>&1 | head -n 1)"
  else
    say "Prometheus: installing Debian's prometheus (prometheus and promtool; its service is not started)"
    # A policy-rc.d that forbids starting services keeps the package's
    # postinst from starting a system Prometheus on :9090; the tests start
    # their own on free ports.
    local policy=/usr/sbin/policy-rc.d had_policy=0
    [ -e "$policy" ] && had_policy=1
    [ "$had_policy" -eq 1 ] || { printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null && as_root chmod +x "$policy"; }
    apt_install prometheus || say "Prometheus: the install failed; the alerting tests will fail until it succeeds"
    [ "$had_policy" -eq 1 ] || as_root rm -f "$policy"
  fi
  local venv="$STATE_DIR/venv"
  if "$venv/bin/supervisord" --version 2>/dev/null | grep -q "$SUPERVISOR_VERSION"; then
    say "supervisor: reusing $SUPERVISOR_VERSION in $venv"
    return
  fi
  say "supervisor: installing $SUPERVISOR_VERSION from PyPI into $venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "supervisor==$SUPERVISOR_VERSION" ||
    say "supervisor: the install failed; the supervision tests will fail until it succeeds"
}

ensure_s3s_fs() {
  if s3s-fs --version 2>/dev/null | grep -q "$S3S_FS_VERSION"; then
    say "s3s-fs: reusing $S3S_FS_VERSION ($(command -v s3s-fs))"
    return
  fi
  say "s3s-fs: building $S3S_FS_VERSION from crates.io (about 6 minutes on one core)"
  # Only the S3 export tests need it: a failed build is told, not fatal
  # (those tests then fail naming the missing program).
  if ! cargo install s3s-fs --version "$S3S_FS_VERSION" --features binary --locked --quiet; then
    say "s3s-fs: the build failed; tests/integration/exports_s3.rs will fail until it succeeds"
  fi
}

ensure_sockudo() {
  if sockudo --version 2>/dev/null | grep -q "$SOCKUDO_VERSION"; then
    say "Sockudo: reusing $SOCKUDO_VERSION ($(command -v sockudo))"
    return
  fi
  if ! command -v protoc >/dev/null; then
    say "Sockudo: installing Debian's protobuf-compiler"
    apt_install protobuf-compiler
  fi
  say "Sockudo: building $SOCKUDO_VERSION from crates.io (about 14 minutes of one core)"
  # Only the inbox example needs it: a failed build is told, not fatal (its
  # test then fails naming the missing program, and demo.sh --inbox stops).
  if ! cargo install sockudo --version "$SOCKUDO_VERSION" --locked --quiet \
    --no-default-features --features "$SOCKUDO_FEATURES"; then
    say "Sockudo: the build failed; tests/integration/inbox_browser.rs will fail until it succeeds"
  fi
}

WANT_TESTS=0
WANT_SOCKUDO=0
for arg in "$@"; do
  case "$arg" in
    --tests | --browser) WANT_TESTS=1 WANT_SOCKUDO=1 ;;
    --sockudo) WANT_SOCKUDO=1 ;;
    *) say "unknown option $arg (known: --tests, --browser, --sockudo)"; exit 2 ;;
  esac
done

mkdir -p "$STATE_DIR"
ensure_redis
ensure_mongo
if [ "$WANT_TESTS" -eq 1 ]; then
  ensure_redis_cluster
  ensure_schemathesis
  ensure_s3s_fs
  ensure_browser
  ensure_ops_tools
fi
if [ "$WANT_SOCKUDO" -eq 1 ]; then ensure_sockudo; fi
say "services ready: redis://127.0.0.1:$REDIS_PORT mongodb://127.0.0.1:$MONGO_PORT"
