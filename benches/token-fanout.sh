#!/usr/bin/env bash
# benches/token-fanout.sh: SSE fan-out (1 000 subscribers × 200 messages,
# back-to-back) on one slosh server, open against every subscriber (and
# the publisher) presenting a signed token: a token is checked when a
# subscriber connects, never per message, so CPU per delivery should not
# move (issue 18: within 5 %).
#
#   cargo build --release -p slosh-cli -p benches
#   REPS=5 benches/token-fanout.sh
#
# The two cases alternate within each repetition, each on a fresh server
# pinned to SERVER_CPU (one tokio worker), the generator on LOAD_CPU;
# loopback only, every step time-limited. Prints each run and the medians.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
REPS=${REPS:-5}
SERVER_CPU=${SERVER_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
PORT=${PORT:-8751}
SECRET=token-fanout-secret
OUT=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$OUT"' EXIT

TOKEN=$("$BIN/slosh-cli" token --secret "$SECRET" --subscribe '*' --publish '*' --ttl 1h)

run() { # $1 = open | token
    local flags=() query=""
    if [[ $1 == token ]]; then
        flags=(--jwt-secret "$SECRET" --private '*')
        query="?access_token=$TOKEN"
    fi
    TOKIO_WORKER_THREADS=1 taskset -c "$SERVER_CPU" "$BIN/slosh-cli" serve \
        --bind "127.0.0.1:$PORT" --max-connections 30000 "${flags[@]}" 2>"$OUT/serve.log" &
    local pid=$!
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break
        sleep 0.05
    done
    timeout 120 taskset -c "$LOAD_CPU" "$BIN/slosh-load" --base "http://127.0.0.1:$PORT" \
        --server-pid "$pid" --timeout 60 \
        --sub-url "{base}/topics/{topic}.sse$query" \
        --publish-url "{base}/topics/{topic}$query" \
        sse-fanout --subs 1000 --msgs 200 --rate 0 | head -1 >>"$OUT/$1.jsonl"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}

for rep in $(seq "$REPS"); do
    for case in open token; do
        echo "rep $rep: $case" >&2
        run "$case"
    done
done

python3 - "$OUT" <<'PY'
import json, statistics, sys
out = sys.argv[1]
medians = {}
for case in ("open", "token"):
    runs = [json.loads(line) for line in open(f"{out}/{case}.jsonl")]
    for r in runs:
        r["p50_us"], r["p99_us"] = r["latency_us"]["p50"], r["latency_us"]["p99"]
        print(case, {k: r.get(k) for k in ("deliveries_per_s", "server_cpu_per_delivery_us", "p50_us", "p99_us", "lost", "publish_errors")})
        assert r["lost"] == 0 and r["publish_errors"] == 0 and r["failed_subs"] == 0, r
    medians[case] = {k: statistics.median(r[k] for r in runs) for k in ("deliveries_per_s", "server_cpu_per_delivery_us", "p50_us", "p99_us")}
print("| figure | open | token | token ÷ open |")
print("|---|---:|---:|---:|")
for k in medians["open"]:
    o, t = medians["open"][k], medians["token"][k]
    print(f"| {k} | {o:g} | {t:g} | {t / o:.3f} |")
PY
