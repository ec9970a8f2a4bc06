#!/usr/bin/env bash
# Peak resident memory of a `herald worker` process that exports N rows of a
# seeded collection (N = 0: an idle worker, the baseline), and the export's
# time. Usage, after scripts/setup.sh and cargo build --release:
#   bash scripts/bench-export-memory.sh 0; bash scripts/bench-export-memory.sh 200000
# Uses its own database and namespace and removes them afterwards.
set -euo pipefail
N=$1
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
H=$ROOT/target/release/herald
python3 -c "import pymongo" 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check pymongo
export HERALD_MONGODB_DATABASE=herald_mem_$N HERALD_REDIS_NAMESPACE=herald-mem-$N
export HERALD_EXPORT_COLLECTIONS=customer HERALD_EXPORT_DIR=/tmp/mem-exports-$N
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export HERALD_TUISONGBAO_URL=http://127.0.0.1:$PORT HERALD_LOG_LEVEL=warn
ACCOUNT=5f0c8a3e2b1d4c0012345678
python3 - "$N" "$ACCOUNT" <<'PY'
import sys, datetime, pymongo
from bson import ObjectId
n, account = int(sys.argv[1]), ObjectId(sys.argv[2])
c = pymongo.MongoClient("mongodb://127.0.0.1:27017")[f"herald_mem_{n}"].customer
c.drop()
batch = []
for i in range(n):
    batch.append({"accountId": account, "seq": i, "name": f"客户 {i}", "profile": {"city": "上海"},
                  "tags": ["vip", "new"], "createdAt": datetime.datetime(2026, 1, 1) + datetime.timedelta(seconds=i)})
    if len(batch) == 10000:
        c.insert_many(batch); batch = []
if batch: c.insert_many(batch)
PY
$H push-sandbox --port "$PORT" >/dev/null 2>&1 & SANDBOX=$!
/usr/bin/time -v $H worker 2> /tmp/worker-mem-$N.time & WORKER=$!
sleep 2
if [ "$N" -gt 0 ]; then
  start=$(date +%s.%N)
  $H enqueue export --account $ACCOUNT --collection customer --field seq=No --field name=Name \
     --field profile.city=City --field tags=Tags --field createdAt=Created --sort seq:asc --key mem-$N --follow 2>/dev/null >/dev/null
  end=$(date +%s.%N)
  echo "rows=$N seconds=$(python3 -c "print(round($end-$start,2))") bytes=$(stat -c %s /tmp/mem-exports-$N/$ACCOUNT/mem-$N.csv)"
else
  sleep 3
fi
pkill -TERM -P $WORKER; wait $WORKER || true; kill $SANDBOX || true
grep "Maximum resident" /tmp/worker-mem-$N.time
python3 -c "import pymongo; pymongo.MongoClient('mongodb://127.0.0.1:27017').drop_database('herald_mem_$N')"
redis-cli --scan --pattern "herald-mem-$N:*" | xargs -r redis-cli unlink >/dev/null
rm -rf /tmp/mem-exports-$N
