#!/usr/bin/env bash
# Herald's main job end to end, on this machine:
#   1. sets up Redis and SecantusDB if they are not running (scripts/setup.sh)
#   2. builds Herald and starts the push sandbox and a worker
#   3. enqueues three messages with `herald enqueue message`
#   4. waits until the sandbox has received their new_message events, then
#      prints the events and the stored documents, and stops what it started.
# Pass --keep to leave the sandbox and worker running (the sandbox page shows
# events live at the printed URL).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
KEEP=0
[ "${1:-}" = "--keep" ] && KEEP=1

bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
echo "[demo] building herald"
cargo build --release --locked --quiet
HERALD="$ROOT/target/release/herald"
STATE_DIR=${HERALD_STATE_DIR:-$ROOT/.herald}
mkdir -p "$STATE_DIR"

# A sandbox port that is free, and settings that point the worker at it.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export HERALD_TUISONGBAO_URL="http://127.0.0.1:$PORT"
export HERALD_REDIS_NAMESPACE=herald-demo
export HERALD_MONGODB_DATABASE=herald_demo

PIDS=()
cleanup() {
  if [ "$KEEP" -eq 0 ]; then
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
  fi
}
trap cleanup EXIT

"$HERALD" push-sandbox --port "$PORT" >"$STATE_DIR/demo-sandbox.log" 2>&1 &
PIDS+=($!)
"$HERALD" worker >"$STATE_DIR/demo-worker.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

echo "[demo] checking the services"
"$HERALD" doctor

ACCOUNT=5f0c8a3e2b1d4c0012345678
USER=5f0c8a3e2b1d4c00aaaaaaaa
echo "[demo] enqueueing three messages for account $ACCOUNT"
IDS=()
IDS+=("$("$HERALD" enqueue message --account "$ACCOUNT" --title "Export ready" --content "<b>customers.csv</b> is ready")")
IDS+=("$("$HERALD" enqueue message --account "$ACCOUNT" --title "Quota at 90%" --content "Upgrade soon" --status warning)")
IDS+=("$("$HERALD" enqueue message --account "$ACCOUNT" --title "Mention" --content "Li Lei mentioned you" --to-user "$USER" --sender-user "$USER")")
printf '[demo]   message id %s\n' "${IDS[@]}"

echo "[demo] waiting for the pushes to reach the sandbox"
python3 - "$PORT" "${IDS[@]}" <<'PY'
import json, sys, time, urllib.request
port, ids = sys.argv[1], set(sys.argv[2:])
deadline = time.time() + 60
while True:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_sandbox/events") as r:
        events = json.load(r)
    got = [e for e in events if e["name"] == "new_message" and e["data"].get("messageId") in ids]
    if len(got) == len(ids):
        break
    if time.time() > deadline:
        sys.exit(f"only {len(got)} of {len(ids)} events arrived; see .herald/demo-worker.log")
    time.sleep(0.2)
print(f"[demo] the sandbox received {len(got)} new_message events:")
for e in got:
    d = e["data"]
    print(f"  #{e['seq']} HTTP {e['status']} {e['name']} -> {e['channels'][0]}")
    print(f"      id {d['messageId']}  title {d['title']!r}  status {d['status']}  sender {json.dumps(d['sender'])}")
PY

echo "[demo] the stored documents (herald_demo.message):"
python3 - "${IDS[@]}" <<'PY' || echo "  (pymongo not installed: skipped; the worker log shows each message stored)"
import sys
from bson import ObjectId
import pymongo
coll = pymongo.MongoClient("mongodb://127.0.0.1:27017", serverSelectionTimeoutMS=3000).herald_demo.message
for oid in sys.argv[1:]:
    doc = coll.find_one({"_id": ObjectId(oid)})
    print("  " + ", ".join(f"{k}={v!r}" for k, v in doc.items()))
PY

if [ "$KEEP" -eq 1 ]; then
  echo "[demo] still running: sandbox page http://127.0.0.1:$PORT/ ; worker log $STATE_DIR/demo-worker.log"
  echo "[demo] stop them with: kill ${PIDS[*]}"
else
  echo "[demo] stopping the worker (SIGTERM) and the sandbox"
fi
