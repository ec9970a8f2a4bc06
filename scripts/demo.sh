#!/usr/bin/env bash
# Herald's whole job end to end, on this machine:
#   1. sets up Redis and SecantusDB if they are not running (scripts/setup.sh,
#      without what only the tests use), builds the `herald` binary alone, and
#      starts the push sandbox, a worker and `herald web` (the producers' API
#      and the dashboard) with a random operator token, for a new account
#   2. messages: enqueues three with `herald enqueue message` and a fourth
#      over the producers' HTTP API (POST /v1/messages, with an API token from
#      `herald token create`), waits until the sandbox has received their
#      new_message events, then prints the events and the stored documents as
#      the read side serves them (GET /v1/accounts/ID/messages)
#   3. an export: enqueues 3,000 more messages over HTTP, starts a CSV export
#      of the account's messages as a producer would (POST /v1/exports, to
#      local storage), prints its export_progress events as they reach the
#      sandbox up to export_finish, then its status record (GET
#      /v1/exports/KEY), the file's path and its first lines
#   4. prints the dashboard's address and the operator token to sign in
#      with, and stops what it started.
# Two settings of the demo's worker differ from the defaults, so that an
# export of 3,000 rows, which takes some 20 ms at the defaults (one progress
# event, at 100%), shows its progress: it reads one document per cursor batch
# instead of 500 (export.batch_size) and reports every 50 ms instead of
# every 500 (export.progress_interval_ms), which spreads the export over a
# few tenths of a second and about five export_progress events.
# Pass --keep to leave the sandbox, worker and web server running (the
# sandbox page shows events live, the dashboard the queues and the export).
#
# Pass --inbox for the browser's side instead: it starts Sockudo (a
# Pusher-protocol server, installed by `scripts/setup.sh --sockudo`), a
# worker and `herald web` pushing to it, enqueues a few messages (one to the
# demo user only), and prints two URLs of the inbox example page
# (examples/inbox): the user's, with a token bound to that user (the bell,
# the list, Mark read, live over the account's and the user's channels), and
# one with a token bound to the account, as the app's server would hold,
# whose Export button also works (a live progress bar). It runs until Ctrl-C.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
KEEP=0
INBOX=0
for arg in "$@"; do
  case "$arg" in
    --keep) KEEP=1 ;;
    --inbox) INBOX=1 ;;
    *) echo "[demo] unknown option $arg (known: --keep, --inbox)" >&2; exit 2 ;;
  esac
done

if [ "$INBOX" -eq 1 ]; then bash scripts/setup.sh --sockudo; else bash scripts/setup.sh; fi
export PATH="$HOME/.cargo/bin:$PATH"
echo "[demo] building herald and the push sandbox"
cargo build --release --locked --quiet -p herald --bin herald -p herald-push-sandbox --bin herald-push-sandbox
HERALD="$ROOT/target/release/herald"
SANDBOX="$ROOT/target/release/herald-push-sandbox"
STATE_DIR=${HERALD_STATE_DIR:-$ROOT/.herald}
mkdir -p "$STATE_DIR"

# Free ports for the sandbox, the dashboard and the worker's probes (so a
# worker already running here keeps its own), and settings that use them.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
WEB_PORT=$(free_port)
OPS_PORT=$(free_port)
export HERALD_TUISONGBAO_URL="http://127.0.0.1:$PORT"
export HERALD_WEB_BIND="127.0.0.1:$WEB_PORT"
# `herald web` has no built-in credentials: this run's operator token, random
# (printed at the end), unless one is set already.
if [ -n "${HERALD_WEB_TOKEN:-}" ]; then
  SIGN_IN="the HERALD_WEB_TOKEN you set"
else
  HERALD_WEB_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
  SIGN_IN="this run's operator token: $HERALD_WEB_TOKEN"
fi
export HERALD_WEB_TOKEN
export HERALD_WORKER_OPS_BIND="127.0.0.1:$OPS_PORT"
export HERALD_REDIS_NAMESPACE=herald-demo
export HERALD_MONGODB_DATABASE=herald_demo
export HERALD_EXPORT_DIR=${HERALD_EXPORT_DIR:-$STATE_DIR/exports}

PIDS=()
cleanup() {
  if [ "$KEEP" -eq 0 ]; then
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
  fi
}
trap cleanup EXIT

wait_ports() {
  local port
  for port in "$@"; do
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  done
}

ACCOUNT=5f0c8a3e2b1d4c0012345678
USER=5f0c8a3e2b1d4c00aaaaaaaa
# Messages the export section enqueues in bulk, for rows to export.
BULK=3000

if [ "$INBOX" -eq 1 ]; then
  # Sockudo with one app, configured through its environment only, run from
  # its own folder (it would read a config/config.toml of its working
  # directory); no metrics listener, no Redis, no API rate limit.
  command -v sockudo >/dev/null || { echo "[demo] sockudo is missing: run bash scripts/setup.sh --sockudo" >&2; exit 1; }
  APP_KEY=herald-demo-key
  mkdir -p "$STATE_DIR/sockudo"
  (cd "$STATE_DIR/sockudo" && exec env HOST=127.0.0.1 PORT="$PORT" \
    SOCKUDO_DEFAULT_APP_ID=herald-demo SOCKUDO_DEFAULT_APP_KEY="$APP_KEY" \
    SOCKUDO_DEFAULT_APP_SECRET=herald-demo-secret METRICS_ENABLED=false \
    QUEUE_DRIVER=memory RATE_LIMITER_ENABLED=false SHUTDOWN_GRACE_PERIOD=1 sockudo) \
    >"$STATE_DIR/demo-sockudo.log" 2>&1 &
  PIDS+=($!)
  export HERALD_PUSH_PROVIDER=pusher HERALD_PUSHER_URL="http://127.0.0.1:$PORT" \
    HERALD_PUSHER_APP_ID=herald-demo HERALD_PUSHER_KEY="$APP_KEY" HERALD_PUSHER_SECRET=herald-demo-secret \
    HERALD_WEB_EXAMPLES=true
  wait_ports "$PORT"
  "$HERALD" worker >"$STATE_DIR/demo-worker.log" 2>&1 &
  PIDS+=($!)
  "$HERALD" web >"$STATE_DIR/demo-web.log" 2>&1 &
  PIDS+=($!)
  wait_ports "$WEB_PORT"
  # What a browser should hold: a token bound to the user (their inbox and
  # channels only). The app's server holds one bound to the account.
  USER_TOKEN=$("$HERALD" token create --name inbox-demo-user --account "$ACCOUNT" --user "$USER" 2>/dev/null)
  ACCOUNT_TOKEN=$("$HERALD" token create --name inbox-demo-app --account "$ACCOUNT" 2>/dev/null)
  "$HERALD" enqueue message --account "$ACCOUNT" --title "Welcome to Acme" --content "Your workspace is ready" >/dev/null
  "$HERALD" enqueue message --account "$ACCOUNT" --title "Quota at 90%" --content "Upgrade before the end of the month" --status warning >/dev/null
  "$HERALD" enqueue message --account "$ACCOUNT" --title "Import failed" --content "customers.xlsx: row 12 has no name" --status error >/dev/null
  "$HERALD" enqueue message --account "$ACCOUNT" --title "Li Lei mentioned you" --content "in Q3 pipeline review" --to-user "$USER" >/dev/null
  PAGE="http://127.0.0.1:$WEB_PORT/examples/inbox/#account=$ACCOUNT&user=$USER&key=$APP_KEY&wsHost=127.0.0.1&wsPort=$PORT"
  echo "[demo] the inbox example page (Sockudo on 127.0.0.1:$PORT, logs in $STATE_DIR/demo-*.log)"
  echo "[demo] as user $USER (a token bound to the user: inbox, live messages, badges):"
  echo "  $PAGE&token=$USER_TOKEN"
  echo "[demo] as the app's server would (account token; exports too):"
  echo "  $PAGE&token=$ACCOUNT_TOKEN"
  echo "[demo] new messages appear live (open the first URL twice: Mark read on one, the other follows); try:"
  echo "  $HERALD enqueue message --account $ACCOUNT --title Hello --content 'from the CLI'"
  echo "  $HERALD enqueue message --account $ACCOUNT --title 'Just you' --content 'to one user' --to-user $USER"
  echo "[demo] (an SSH tunnel reaches it from your machine: ssh -L $WEB_PORT:127.0.0.1:$WEB_PORT -L $PORT:127.0.0.1:$PORT HOST)"
  echo "[demo] press Ctrl-C to stop"
  KEEP=0
  # Ctrl-C (or SIGTERM) ends the wait; the EXIT trap stops what was started.
  trap 'exit 130' INT TERM
  wait
  exit 0
fi

# This run's account: a new one, so what is listed and exported is this
# run's alone (the database keeps earlier runs' messages).
ACCOUNT=$(python3 -c 'import os, time; print("%08x%s" % (int(time.time()), os.urandom(8).hex()))')

"$SANDBOX" --port "$PORT" >"$STATE_DIR/demo-sandbox.log" 2>&1 &
PIDS+=($!)
# The demo's only departures from the defaults (see the header).
HERALD_EXPORT_BATCH_SIZE=1 HERALD_EXPORT_PROGRESS_INTERVAL_MS=50 "$HERALD" worker >"$STATE_DIR/demo-worker.log" 2>&1 &
PIDS+=($!)
"$HERALD" web >"$STATE_DIR/demo-web.log" 2>&1 &
PIDS+=($!)
wait_ports "$PORT" "$WEB_PORT"

echo "[demo] checking the services"
"$HERALD" doctor

echo "[demo] == messages =="
echo "[demo] enqueueing three messages for account $ACCOUNT with herald enqueue message"
IDS=()
IDS+=("$("$HERALD" enqueue message --account "$ACCOUNT" --title "Export ready" --content "<b>customers.csv</b> is ready")")
IDS+=("$("$HERALD" enqueue message --account "$ACCOUNT" --title "Quota at 90%" --content "Upgrade soon" --status warning)")
IDS+=("$("$HERALD" enqueue message --account "$ACCOUNT" --title "Mention" --content "Li Lei mentioned you" --to-user "$USER" --sender-user "$USER")")
echo "[demo] creating an API token bound to the account, and enqueueing a fourth message over HTTP"
TOKEN=$("$HERALD" token create --name demo --account "$ACCOUNT" 2>/dev/null)
IDS+=("$(python3 - "$WEB_PORT" "$TOKEN" <<'PY'
import json, sys, urllib.request
port, token = sys.argv[1], sys.argv[2]
body = json.dumps({"title": "Sent over HTTP", "content": "POST /v1/messages", "status": "success"}).encode()
request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/messages", data=body, method="POST",
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
with urllib.request.urlopen(request) as r:
    assert r.status == 202, r.status
    print(json.load(r)["messageId"])
PY
)")
printf '[demo]   message id %s\n' "${IDS[@]}"

echo "[demo] waiting for the pushes to reach the sandbox"
python3 - "$PORT" "$STATE_DIR" "${IDS[@]}" <<'PY'
import json, sys, time, urllib.request
port, state_dir, ids = sys.argv[1], sys.argv[2], set(sys.argv[3:])
deadline = time.time() + 60
while True:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_sandbox/events") as r:
        events = json.load(r)
    got = [e for e in events if e["name"] == "new_message" and e["data"].get("messageId") in ids]
    # A message to one user is two events: in full on the user's channel,
    # a notice (no title) on the account's.
    if {e["data"]["messageId"] for e in got} == ids and len(got) == len(ids) + 1:
        break
    if time.time() > deadline:
        sys.exit(f"only {len(got)} events for {len(ids)} messages arrived; see {state_dir}/demo-worker.log")
    time.sleep(0.2)
print(f"[demo] the sandbox received {len(got)} new_message events:")
for e in got:
    d = e["data"]
    title = repr(d["title"]) if "title" in d else "(a notice: the message is another user's)"
    print(f"  #{e['seq']} HTTP {e['status']} {e['name']} -> {e['channels'][0]}")
    print(f"      id {d['messageId']}  title {title}  status {d['status']}  sender {json.dumps(d['sender'])}")
PY

echo "[demo] the stored documents, as GET /v1/accounts/$ACCOUNT/messages serves them:"
python3 - "$WEB_PORT" "$TOKEN" "$ACCOUNT" <<'PY'
import json, sys, urllib.request
port, token, account = sys.argv[1:4]
request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/accounts/{account}/messages?limit=10",
                                 headers={"Authorization": f"Bearer {token}"})
with urllib.request.urlopen(request) as r:
    page = json.load(r)
for m in page["messages"]:
    print(f"  {m['id']} {m['createdAt']} {m['status']:7} isRead={m['isRead']} to={m['to']['target']} {m['title']!r}")
PY

echo "[demo] == an export =="
echo "[demo] enqueueing $BULK more messages over HTTP (POST /v1/messages, 4 connections), for rows to export"
python3 - "$WEB_PORT" "$TOKEN" "$BULK" "$PORT" "$STATE_DIR" <<'PY'
import http.client, json, sys, threading, time, urllib.request
port, token, count, sandbox, state_dir = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
statuses = ["success", "success", "warning", "error"]
failures = []
started = time.time()

def send(numbers):
    connection = http.client.HTTPConnection("127.0.0.1", int(port), timeout=30)
    for n in numbers:
        body = {"title": f"Order #{100000 + n} shipped", "content": f"Parcel {n} of the spring campaign is on its way",
                "status": statuses[n % len(statuses)], "idempotencyKey": f"demo-order-{n}"}
        connection.request("POST", "/v1/messages", json.dumps(body), headers)
        response = connection.getresponse()
        response.read()
        if response.status != 202:
            failures.append(response.status)
            return

threads = [threading.Thread(target=send, args=(range(i, count, 4),)) for i in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
if failures:
    sys.exit(f"POST /v1/messages answered {failures[0]}; see {state_dir}/demo-web.log")
enqueued = time.time()
print(f"[demo]   enqueued in {enqueued - started:.1f} s; waiting until the worker has stored and pushed them")
# The four messages above made five events; each of these makes one.
deadline = time.time() + 300
while True:
    with urllib.request.urlopen(f"http://127.0.0.1:{sandbox}/_sandbox/stats") as r:
        pushed = json.load(r)["byStatus"].get("200", 0) - 5
    if pushed >= count:
        break
    if time.time() > deadline:
        sys.exit(f"only {pushed} of {count} messages were pushed in 5 minutes; see {state_dir}/demo-worker.log")
    time.sleep(0.2)
print(f"[demo]   all {count} stored and pushed {time.time() - enqueued:.1f} s later")
PY

echo "[demo] starting an export of the account's messages to CSV (POST /v1/exports), its events as the sandbox receives them"
echo "[demo] (this demo's worker reads 1 document per batch and reports every 50 ms, not 500 and 500 ms, for the progress to show)"
EXPORT_KEY=$(python3 - "$WEB_PORT" "$TOKEN" "$PORT" "$STATE_DIR" <<'PY'
import json, sys, time, urllib.request
port, token, sandbox, state_dir = sys.argv[1:5]
headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
with urllib.request.urlopen(f"http://127.0.0.1:{sandbox}/_sandbox/events") as r:
    last_seq = max((e["seq"] for e in json.load(r)), default=0)
body = {
    "collection": "message",
    "fields": [{"path": "createdAt", "title": "Created"}, {"path": "status", "title": "Status"},
               {"path": "to.target", "title": "To"}, {"path": "title", "title": "Title"},
               {"path": "content", "title": "Content"}],
    "sort": [{"path": "createdAt", "order": "asc"}],
}
request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/exports", data=json.dumps(body).encode(),
                                 method="POST", headers=headers)
started_ms = time.time() * 1000
with urllib.request.urlopen(request) as r:
    assert r.status == 202, r.status
    key = json.load(r)["key"]
print(f"  POST /v1/exports -> 202 key {key}", file=sys.stderr)
deadline = time.time() + 120
while True:
    with urllib.request.urlopen(f"http://127.0.0.1:{sandbox}/_sandbox/events") as r:
        events = [e for e in json.load(r) if e["seq"] > last_seq]
    for e in events:
        last_seq = e["seq"]
        if e["name"] not in ("export_progress", "export_finish", "export_failed") or e["data"].get("key") != key:
            continue
        d = e["data"]
        at = f"  +{(e['receivedAtMs'] - started_ms) / 1000:5.2f} s  #{e['seq']} {e['name']:15}"
        if e["name"] == "export_progress":
            total = d["total"] if d["total"] is not None else "?"
            print(f"{at} processed {d['processed']:>5} / {total}  {d['percent']}%", file=sys.stderr)
        elif e["name"] == "export_finish":
            print(f"{at} key {d['key']}", file=sys.stderr)
            print(key)
            sys.exit(0)
        else:
            sys.exit(f"{at} {d.get('error')}")
    if time.time() > deadline:
        sys.exit(f"no export_finish in 2 minutes; see {state_dir}/demo-worker.log")
    time.sleep(0.05)
PY
)

echo "[demo] the export's record (GET /v1/exports/$EXPORT_KEY), and its file:"
python3 - "$WEB_PORT" "$TOKEN" "$EXPORT_KEY" "$HERALD_EXPORT_DIR" <<'PY'
import json, os, sys, urllib.request
port, token, key, export_dir = sys.argv[1:5]
auth = {"Authorization": f"Bearer {token}"}
with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/v1/exports/{key}", headers=auth)) as r:
    record = json.load(r)
print(f"  status {record['status']}  rows {record['rows']}  fileSize {record['fileSize']}  fileLocation {record['fileLocation']}")
path = os.path.join(export_dir, record["fileLocation"])
print(f"  {path}, its first lines (UTF-8 with a byte order mark):")
with open(path, encoding="utf-8-sig") as f:
    for _, line in zip(range(7), f):
        print(f"    {line.rstrip()}")
with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/v1/exports/{key}/file", headers=auth)) as r:
    served = r.read()
same = "the same bytes" if served == open(path, "rb").read() else "DIFFERENT bytes"
print(f"  GET /v1/exports/{key}/file serves {same} ({len(served)}, {r.headers['Content-Type']})")
PY

echo "[demo] == the dashboard =="
echo "[demo] http://127.0.0.1:$WEB_PORT/ (queues, failed jobs, exports, the audit trail); sign in with"
echo "  $SIGN_IN"
if [ "$KEEP" -eq 1 ]; then
  echo "[demo] still running: the dashboard above; sandbox page http://127.0.0.1:$PORT/ ; worker log $STATE_DIR/demo-worker.log"
  echo "[demo] (an SSH tunnel reaches them from your machine: ssh -L $WEB_PORT:127.0.0.1:$WEB_PORT -L $PORT:127.0.0.1:$PORT HOST)"
  echo "[demo] stop them with: kill ${PIDS[*]}"
else
  echo "[demo] (it stops with this run: pass --keep to leave it, the sandbox page and the worker running)"
  echo "[demo] stopping the worker and the web server (SIGTERM) and the sandbox"
fi
