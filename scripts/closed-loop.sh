#!/usr/bin/env bash
# Closed training loop, once, at a small scale (docs/LOOP.md):
#   serve days 8-10 -> impression logs -> world labeler -> shards day-008..010
#   -> combined world (out/world-small days 0-7 + labeled days) -> retrain feed-ctr
#   -> new version lands in the repo the running server watches -> validation gate -> canary 20%.
# Everything lives in a temp dir under ${TMPDIR:-/tmp}; the server is stopped on exit.
# Knobs (env): REQUESTS CANDIDATES TOPK CONCURRENCY CANARY_REQUESTS CANARY_PERCENT SCALE TEACHER
#              THREADS KEEP_WORK=1 (keep the temp dir) USERS SEED (only to generate a missing
#              BASE_WORLD; requests and label read the world config from its index.json).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
PY=/usr/bin/python3

USERS=${USERS:-4000}          # a missing out/world-small is generated with --days 8 --users 4000 --seed 42
SEED=${SEED:-42}
BASE_WORLD=${BASE_WORLD:-out/world-small}
DAYS=(8 9 10)
REQUESTS=${REQUESTS:-1500}
CANDIDATES=${CANDIDATES:-30}
TOPK=${TOPK:-10}
CONCURRENCY=${CONCURRENCY:-4}
CANARY_REQUESTS=${CANARY_REQUESTS:-1500}
CANARY_PERCENT=${CANARY_PERCENT:-20}
SCALE=${SCALE:-tiny}
THREADS=${THREADS:-2}
TASK=feed-ctr
ADMIN_TOKEN="closed-loop-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"

T0=$(date +%s)
step() { printf '\n[%4ss] == %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
note() { printf '[%4ss]    %s\n' "$(( $(date +%s) - T0 ))" "$*"; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/closed-loop.XXXXXX")
SERVER_PID=""
stop_server() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$SERVER_PID" 2>/dev/null && kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}
cleanup() {
  local rc=$?
  stop_server
  if [[ "${KEEP_WORK:-0}" == 1 || $rc -ne 0 ]]; then
    echo "work dir kept: $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
PORT=$(free_port)
ADMIN_PORT=$(free_port)
while [[ "$ADMIN_PORT" == "$PORT" ]]; do ADMIN_PORT=$(free_port); done
URL="http://127.0.0.1:$PORT"
ADMIN="http://127.0.0.1:$ADMIN_PORT"
admin() { curl -sS -H "authorization: Bearer $ADMIN_TOKEN" "$@"; }

# start_server IMPRESSION_LOG_FILE SERVER_LOG_FILE
start_server() {
  PORT=$PORT HOST=127.0.0.1 MODEL_REPO="$WORK/repo" ADMIN_PORT=$ADMIN_PORT ADMIN_TOKEN=$ADMIN_TOKEN \
    IMPRESSION_LOG="$1" LOG_LEVEL=${LOG_LEVEL:-info} POOL_SIZE=${POOL_SIZE:-1} \
    node --max-semi-space-size=64 --initial-old-space-size=128 dist/src/main.js >"$2" 2>&1 &  # src/runtime-flags.ts
  SERVER_PID=$!
  local t=$(date +%s)
  until curl -sf "$URL/v2/health/ready" >/dev/null 2>&1; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then echo "server exited; log: $2" >&2; tail -20 "$2" >&2; exit 1; fi
    if (( $(date +%s) - t > 120 )); then echo "server not ready after 120 s; log: $2" >&2; tail -20 "$2" >&2; exit 1; fi
    sleep 0.3
  done
  note "server pid $SERVER_PID ready on $URL (admin $ADMIN) in $(( $(date +%s) - t )) s"
}

step "0. prerequisites (work dir $WORK)"
if [[ ! -f dist/src/main.js || ! -f dist/world/cli.js ]]; then
  note "building TypeScript (dist/ missing)"; npx tsc -p tsconfig.json
fi
if [[ ! -f "$BASE_WORLD/index.json" ]]; then
  note "generating $BASE_WORLD"; node dist/world/cli.js generate --days 8 --users "$USERS" --seed "$SEED" --out "$BASE_WORLD"
fi
mkdir -p "$WORK/reqs" "$WORK/logs" "$WORK/labeled" "$WORK/state"
cp -r models "$WORK/repo"
note "repo copied: $(cd "$WORK/repo" && ls -d */*/ | tr '\n' ' ')"

step "1. requests for days ${DAYS[*]}: $REQUESTS x $CANDIDATES candidates (feed), + $CANARY_REQUESTS for the canary phase"
for d in "${DAYS[@]}"; do
  node dist/world/cli.js requests --count "$REQUESTS" --candidates "$CANDIDATES" --surface feed \
    --world "$BASE_WORLD" --day "$d" --first $(( d * 100000 )) --out "$WORK/reqs/d$d.jsonl" 2>"$WORK/reqs/d$d.err"
  note "day $d: $(tail -1 "$WORK/reqs/d$d.err")"
done
# canary traffic: the day after the last labeled one, different users' requests
CD=$(( ${DAYS[-1]} + 1 ))
node dist/world/cli.js requests --count "$CANARY_REQUESTS" --candidates "$CANDIDATES" --surface feed \
  --world "$BASE_WORLD" --day "$CD" --first $(( CD * 100000 )) --out "$WORK/reqs/canary.jsonl" 2>"$WORK/reqs/canary.err"
note "canary (day $CD): $(tail -1 "$WORK/reqs/canary.err")"

step "2. serve days ${DAYS[*]} (topK $TOPK, concurrency $CONCURRENCY) with IMPRESSION_LOG"
start_server "$WORK/logs/impressions.jsonl" "$WORK/logs/server-serve.log"
admin "$ADMIN/admin/models" >"$WORK/state/models-before.json"
for d in "${DAYS[@]}"; do
  node scripts/send-traffic.mjs --file "$WORK/reqs/d$d.jsonl" --url "$URL" --concurrency "$CONCURRENCY" \
    --topk "$TOPK" --prefix "d$d-" >"$WORK/state/traffic-d$d.json"
  note "day $d: $(cat "$WORK/state/traffic-d$d.json")"
done
stop_server   # SIGTERM flushes the asynchronous impression log
PREFIXES=(); for d in "${DAYS[@]}"; do PREFIXES+=("d$d-=$d"); done
# Split per day (the labeler stamps impressions on the simulated clock of the day it labels).
node scripts/split-log.mjs "$WORK/logs/impressions.jsonl" "$WORK/logs" "${PREFIXES[@]}" >"$WORK/state/split.json"
note "impression log split per day: $(cat "$WORK/state/split.json")"

step "3. label each day's log with the world's ground truth"
LABELED=()
for d in "${DAYS[@]}"; do
  node dist/world/cli.js label --log "$WORK/logs/d$d.jsonl" --out "$WORK/labeled/d$d" \
    --world "$BASE_WORLD" --day "$d" 2>"$WORK/labeled/d$d.err"
  note "day $d: $(grep '^labeled' "$WORK/labeled/d$d.err" | tail -1)"
  LABELED+=("$WORK/labeled/d$d")
done

step "4. combined world: $BASE_WORLD days 0-7 (symlinks) + labeled days ${DAYS[*]}"
node scripts/merge-world.mjs --base "$BASE_WORLD" --out "$WORK/world" "${LABELED[@]}" >"$WORK/state/merge.json"
note "$(cat "$WORK/state/merge.json")"

step "5. retrain $TASK (scale $SCALE) while the server watches the repo"
start_server "$WORK/logs/canary-impressions.jsonl" "$WORK/logs/server-loop.log"
TEACHER_ARGS=()
if [[ -z "${TEACHER:-}" ]]; then
  # a teacher from an earlier run of the same scale (run ids end in -<scale>), newest first
  TEACHER=$(ls -1t pipeline/runs/*-"$SCALE"/teacher.pt 2>/dev/null | head -1 || true)
fi
if [[ -n "${TEACHER:-}" ]]; then TEACHER_ARGS=(--teacher "$TEACHER"); note "reusing teacher $TEACHER"; else note "no teacher.pt for scale $SCALE under pipeline/runs: training one"; fi
# The pipeline publishes straight into the repo the server watches (atomic rename of a hidden temp
# dir) with --rollout keep: rollout.json is left alone, so the new version arrives loaded but
# unrouted, and goes live only through the canary set below via the admin API.
# The version serving is the stable one rollout.json routes; the newest on disk may be a newer,
# unrouted one. loop-summary.mjs checks it against the labeled shards' imp_model_version.
OLDV=$(node scripts/stable-version.mjs "$WORK/repo" "$TASK")
NEWEST_BEFORE=$(ls "$WORK/repo/$TASK" | grep -E '^[0-9]+$' | sort -n | tail -1)
PT0=$(date +%s)
"$PY" -m pipeline.gemlite.cli run --world "$WORK/world" --repo "$WORK/repo" --rollout keep --scale "$SCALE" \
  --tasks "$TASK" --seeds 1 --threads "$THREADS" --out "$WORK/run" "${TEACHER_ARGS[@]}" 2>&1 | tee "$WORK/state/pipeline.log" | sed -u "s/^/      | /"
echo "$(( $(date +%s) - PT0 ))" >"$WORK/state/pipeline-seconds"
NEWV=$(ls "$WORK/repo/$TASK" | grep -E '^[0-9]+$' | sort -n | tail -1)
if [[ "$NEWV" == "$NEWEST_BEFORE" ]]; then echo "pipeline published no new $TASK version" >&2; exit 1; fi
echo "$NEWV" >"$WORK/state/newv"
SHIPPED=$(date +%s%N)
note "pipeline published $TASK v$NEWV into the served repo; rollout.json still says $TASK: $(node -e "console.log(JSON.stringify(require('$WORK/repo/rollout.json').models['$TASK']))")"

step "6. hot swap: wait for $TASK v$NEWV to pass or fail the gate"
STATE=""
for _ in $(seq 1 400); do
  admin "$ADMIN/admin/models/$TASK" >"$WORK/state/model-after.json" || true
  STATE=$(node -e "const m=JSON.parse(require('fs').readFileSync('$WORK/state/model-after.json','utf8'));const v=(m.versions||[]).find(x=>x.version===$NEWV);console.log(v?v.state:'absent')" 2>/dev/null || echo "?")
  [[ "$STATE" == ready || "$STATE" == failed ]] && break
  sleep 0.3
done
echo "$(( ($(date +%s%N) - SHIPPED) / 1000000 ))" >"$WORK/state/swap-ms"
note "$TASK v$NEWV: $STATE after $(cat "$WORK/state/swap-ms") ms"
if [[ "$STATE" == ready ]]; then
  admin -X PATCH -H 'content-type: application/json' \
    -d "{\"canary\":{\"version\":$NEWV,\"percent\":$CANARY_PERCENT}}" "$ADMIN/admin/models/$TASK/flags" >"$WORK/state/patch.json"
  note "PATCH canary: $(cat "$WORK/state/patch.json")"
  for _ in $(seq 1 50); do
    admin "$ADMIN/admin/models" >"$WORK/state/models-canary.json"
    node -e "const m=JSON.parse(require('fs').readFileSync('$WORK/state/models-canary.json','utf8')).models['$TASK'];process.exit(m.serving&&m.serving.canary&&m.serving.canary.version===$NEWV?0:1)" && break
    sleep 0.2
  done
  node scripts/send-traffic.mjs --file "$WORK/reqs/canary.jsonl" --url "$URL" --concurrency "$CONCURRENCY" \
    --topk "$TOPK" --prefix "canary-" >"$WORK/state/traffic-canary.json"
  note "canary traffic: $(cat "$WORK/state/traffic-canary.json")"
  admin "$ADMIN/admin/canary" >"$WORK/state/canary-verdicts.json"
  admin "$ADMIN/admin/models" >"$WORK/state/models-end.json"
else
  note "gate reason: $(node -e "const m=JSON.parse(require('fs').readFileSync('$WORK/state/model-after.json','utf8'));const v=(m.versions||[]).find(x=>x.version===$NEWV);console.log(JSON.stringify(v&&{reason:v.reason,gate:v.gate}))")"
fi
stop_server
echo "$(( $(date +%s) - T0 ))" >"$WORK/state/total-seconds"

step "summary"
node scripts/loop-summary.mjs "$WORK" "$TASK" "$OLDV" "$NEWV" "$STATE" "${DAYS[@]}"
