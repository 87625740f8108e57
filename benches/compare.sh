#!/usr/bin/env bash
# benches/compare.sh: slosh against Nchan, scenario by scenario, with
# slosh-load; prints a side-by-side table of medians and ratios and the
# issue's targets judged on them.
#
#   benches/compare.sh                 # everything but the cluster (~5 min)
#   ONLY="sse-1000x200 publish" benches/compare.sh
#   ONLY="cluster-sse-1000x200 cluster-publish" benches/compare.sh
#
# Environment:
#   FANOUT_REPS  repetitions of the SSE fan-out scenarios (3)
#   REPS         repetitions of the other scenarios (1)
#   ONLY         space-separated scenario labels to run (all but cluster-*)
#   CLUSTER      1 adds the cluster-* scenarios to a run without ONLY (0)
#   SERVERS      "slosh nchan" (both); add "floor" for slosh-floor, the
#                least any server can spend per SSE delivery (SSE fan-out
#                scenarios only; see benches/README.md, "The floor")
#   SERVER_CPU / LOAD_CPU   CPUs for the servers / the generator (1 / 0)
#   OUT          where runs, logs and the table go
#                (target/compare/DATE-TIME)
#
# Each run gets a fresh server pinned to SERVER_CPU (nginx's master and its
# one worker; slosh with one tokio worker), and the generator pinned to
# LOAD_CPU. slosh and Nchan alternate within each repetition, so load from
# other work on the machine falls on both. Nchan 1.3.6 can abort on an
# assertion in spool.c (worker exits on signal 6): after each run nginx's
# error log is checked and such a run is recorded as invalid, not used.
# Everything listens on 127.0.0.1 only and every step has a time limit.
#
# The cluster-* scenarios run 3 nodes on one fresh redis-server: 3 slosh
# (--store redis://…, one tokio worker each) or 3 nginx with Nchan's Redis
# storage (peers/nchan-redis.conf, one worker each), each node on its own
# port and prefix directory, nodes and redis-server all pinned to
# SERVER_CPU. The generator spreads subscribers and publishes over the 3
# nodes, and server CPU and RSS are the sums over every node (nginx: master
# and worker) and redis-server. They only run when asked (ONLY, CLUSTER=1):
# they need Debian's redis-server.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${OUT:-$TARGET_DIR/compare/$(date +%Y%m%d-%H%M%S)}
FANOUT_REPS=${FANOUT_REPS:-3}
REPS=${REPS:-1}
SERVER_CPU=${SERVER_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
SERVERS=${SERVERS:-"slosh nchan"}
SLOSH_PORT=${SLOSH_PORT:-8711}
NCHAN_PORT=${NCHAN_PORT:-8712}
FLOOR_PORT=${FLOOR_PORT:-8713}
NCHAN_CONF=$ROOT/benches/peers/nchan.conf
NCHAN_REDIS_CONF=$ROOT/benches/peers/nchan-redis.conf
NCHAN_MODULE=/usr/lib/nginx/modules/ngx_nchan_module.so
CLUSTER=${CLUSTER:-0}
# The cluster: redis-server's port, and the nodes' ports (slosh's from
# CLUSTER_SLOSH_PORT, Nchan's from CLUSTER_NCHAN_PORT, consecutive).
REDIS_PORT=${REDIS_PORT:-8720}
CLUSTER_SLOSH_PORT=${CLUSTER_SLOSH_PORT:-8721}
CLUSTER_NCHAN_PORT=${CLUSTER_NCHAN_PORT:-8731}
CLUSTER_NODES=3
# Every process started and not yet stopped, for the exit trap.
STARTED=()

# label | slosh-load arguments | repetitions
SCENARIOS=(
    "sse-1000x200|sse-fanout --subs 1000 --msgs 200 --rate 0|$FANOUT_REPS"
    "sse-10000x20|sse-fanout --subs 10000 --msgs 20 --rate 0|$FANOUT_REPS"
    "publish|publish --conns 32 --topics 100 --secs 10|$REPS"
    "longpoll-50|longpoll --subs 1000 --msgs 100 --rate 50|$REPS"
    "longpoll-200|longpoll --subs 1000 --msgs 100 --rate 200|$REPS"
    "connect-10000|connect --subs 10000|$REPS"
    # 3 nodes on one Redis; only when asked (see the header).
    "cluster-sse-1000x200|sse-fanout --subs 1000 --msgs 200 --rate 0|$FANOUT_REPS"
    "cluster-publish|publish --conns 30 --topics 100 --secs 10|$REPS"
)

log() { printf '%s compare: %s\n' "$(date +%T)" "$*" >&2; }

install_nchan() {
    [[ " $SERVERS " == *" nchan "* ]] || return 0
    if command -v nginx >/dev/null && [ -f "$NCHAN_MODULE" ]; then
        return
    fi
    log "installing nginx and libnginx-mod-nchan from Debian"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        nginx libnginx-mod-nchan
}

# Waits until something accepts on 127.0.0.1:$1 (at most 10 s).
wait_port() {
    local i
    for i in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# Stops pid $1 (TERM, then KILL after 5 s) and reaps it.
stop() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# On any exit (an error under set -e, ^C), stops whatever is still running,
# so no server or redis-server outlives the script.
cleanup() {
    local pid
    for pid in "${STARTED[@]}"; do
        stop "$pid"
    done
    STARTED=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts one cluster node of $1 (slosh or nchan) on port $2 in its own
# directory $3; appends to NODE_PIDS, MEASURE_PIDS, BASES and NODE_DIRS.
start_node() {
    local server=$1 port=$2 dir=$3 pid worker
    mkdir -p "$dir"
    case $server in
    slosh)
        TOKIO_WORKER_THREADS=1 taskset -c "$SERVER_CPU" "$TARGET_DIR/release/slosh-cli" serve \
            --bind "127.0.0.1:$port" --queue 100 \
            --max-connections 30000 --max-subscribers 30000 \
            --store "redis://127.0.0.1:$REDIS_PORT/0" \
            >"$dir/server.log" 2>&1 &
        pid=$!
        STARTED+=("$pid")
        NODE_PIDS+=("$pid")
        MEASURE_PIDS+=("$pid")
        wait_port "$port" || return 1
        ;;
    nchan)
        mkdir -p "$dir/tmp"
        sed -e "s/@PORT@/$port/" -e "s/@REDIS_PORT@/$REDIS_PORT/" \
            "$NCHAN_REDIS_CONF" >"$dir/nchan.conf"
        taskset -c "$SERVER_CPU" nginx -p "$dir" -c "$dir/nchan.conf" \
            >"$dir/server.log" 2>&1 &
        pid=$!
        STARTED+=("$pid")
        NODE_PIDS+=("$pid")
        wait_port "$port" || return 1
        worker=$(pgrep -P "$pid" | head -n1)
        [ -n "$worker" ] || return 1
        # The master too: a cluster's cost is every process it runs.
        MEASURE_PIDS+=("$pid" "$worker")
        ;;
    esac
    BASES+=("http://127.0.0.1:$port")
    NODE_DIRS+=("$dir")
}

# Starts a fresh redis-server (REDIS_PID) and CLUSTER_NODES nodes of $1 on
# it; sets NODE_PIDS, NODE_DIRS, BASE (the nodes' bases, comma-separated)
# and MEASURE_PID (every node's pids and redis-server's, comma-separated).
start_cluster() {
    local server=$1 i port
    NODE_PIDS=() MEASURE_PIDS=() BASES=() NODE_DIRS=() REDIS_PID=""
    mkdir -p "$RUN_DIR/redis"
    taskset -c "$SERVER_CPU" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 \
        --save "" --appendonly no --dir "$RUN_DIR/redis" \
        --logfile "$RUN_DIR/redis/redis.log" &
    REDIS_PID=$!
    STARTED+=("$REDIS_PID")
    wait_port "$REDIS_PORT" || return 1
    if [ "$server" = slosh ]; then port=$CLUSTER_SLOSH_PORT; else port=$CLUSTER_NCHAN_PORT; fi
    for i in $(seq "$CLUSTER_NODES"); do
        start_node "$server" "$((port + i - 1))" "$RUN_DIR/node$i" || return 1
    done
    MEASURE_PIDS+=("$REDIS_PID")
    BASE=$(IFS=,; echo "${BASES[*]}")
    MEASURE_PID=$(IFS=,; echo "${MEASURE_PIDS[*]}")
}

# Why a cluster run cannot be used, or nothing: a node or redis-server
# gone, or an nginx error log with a crash, an assertion, or an
# emerg/alert/crit line.
cluster_note() {
    local server=$1 pid dir bad
    for pid in "${NODE_PIDS[@]}" "$REDIS_PID"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "a node or redis-server exited during the run"
            return
        fi
    done
    if [ "$server" = nchan ]; then
        for dir in "${NODE_DIRS[@]}"; do
            bad=$(grep -E 'exited on signal|assert|\[(emerg|alert|crit)\]' "$dir/error.log" |
                head -n1 | tr -d '"\\' | cut -c1-200 || true)
            if [ -n "$bad" ]; then
                echo "nginx error log ($(basename "$dir")): $bad"
                return
            fi
        done
    fi
}

# CPU ticks (utime + stime, 1/100 s) of pid $1 so far, or 0 once it is gone.
cpu_ticks() {
    # Fields counted after the command name's ")", which may hold spaces.
    sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 }' || echo 0
}

# Each measured process of the cluster with its comm and CPU ticks, one a
# line, to split the summed figure between the nodes and redis-server.
cpu_split() {
    local pid
    for pid in "${MEASURE_PIDS[@]}"; do
        printf '%s %s %s\n' "$pid" "$(cat "/proc/$pid/comm" 2>/dev/null || echo '?')" "$(cpu_ticks "$pid")"
    done
}

# Stops the nodes, then redis-server (so no node sees its store go first).
stop_cluster() {
    local pid
    for pid in "${NODE_PIDS[@]}" $REDIS_PID; do
        stop "$pid"
    done
    forget "${NODE_PIDS[@]}" $REDIS_PID
}

# Drops pids from STARTED once they are stopped.
forget() {
    local keep=() pid gone
    for pid in "${STARTED[@]}"; do
        for gone in "$@"; do
            [ "$pid" != "$gone" ] || continue 2
        done
        keep+=("$pid")
    done
    STARTED=("${keep[@]}")
}

# Starts a fresh server; sets SERVER_PID (the process that owns the
# process group we stop), MEASURE_PID (the one whose CPU and RSS count),
# BASE and RUN_DIR.
start_server() {
    local server=$1
    case $server in
    slosh)
        BASE=http://127.0.0.1:$SLOSH_PORT
        TOKIO_WORKER_THREADS=1 taskset -c "$SERVER_CPU" "$TARGET_DIR/release/slosh-cli" serve \
            --bind "127.0.0.1:$SLOSH_PORT" --queue 100 \
            --max-connections 30000 --max-subscribers 30000 \
            >"$RUN_DIR/server.log" 2>&1 &
        SERVER_PID=$!
        STARTED+=("$SERVER_PID")
        MEASURE_PID=$SERVER_PID
        wait_port "$SLOSH_PORT"
        ;;
    nchan)
        BASE=http://127.0.0.1:$NCHAN_PORT
        mkdir -p "$RUN_DIR/tmp"
        sed "s/@PORT@/$NCHAN_PORT/" "$NCHAN_CONF" >"$RUN_DIR/nchan.conf"
        taskset -c "$SERVER_CPU" nginx -p "$RUN_DIR" -c "$RUN_DIR/nchan.conf" \
            >"$RUN_DIR/server.log" 2>&1 &
        SERVER_PID=$!
        STARTED+=("$SERVER_PID")
        wait_port "$NCHAN_PORT"
        MEASURE_PID=$(pgrep -P "$SERVER_PID" | head -n1)
        [ -n "$MEASURE_PID" ]
        ;;
    floor)
        BASE=http://127.0.0.1:$FLOOR_PORT
        taskset -c "$SERVER_CPU" "$TARGET_DIR/release/slosh-floor" \
            --bind "127.0.0.1:$FLOOR_PORT" --max-subscribers 30000 \
            >"$RUN_DIR/server.log" 2>&1 &
        SERVER_PID=$!
        STARTED+=("$SERVER_PID")
        MEASURE_PID=$SERVER_PID
        wait_port "$FLOOR_PORT"
        ;;
    esac
}

# Why the run cannot be used, or nothing.
crash_note() {
    local server=$1
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "server exited during the run"
        return
    fi
    if [ "$server" = nchan ]; then
        local bad
        bad=$(grep -E 'exited on signal|assert|\[(emerg|alert|crit)\]' "$RUN_DIR/error.log" |
            head -n1 | tr -d '"\\' | cut -c1-200 || true)
        [ -z "$bad" ] || echo "nginx error log: $bad"
    fi
}

run_one() {
    local server=$1 label=$2 args=$3 rep=$4
    RUN_DIR=$OUT/$label-$server-$rep
    mkdir -p "$RUN_DIR"
    log "$label $server rep $rep: $args"
    local note="" result=null valid=true rc=0 preset=$server cluster=false started=true
    # slosh-floor speaks slosh's URLs.
    [ "$server" != floor ] || preset=slosh
    [[ $label != cluster-* ]] || cluster=true
    if $cluster; then
        start_cluster "$server" || started=false
    else
        start_server "$server" || started=false
    fi
    if ! $started; then
        note="server did not start"
        if $cluster; then
            stop_cluster
        else
            stop "$SERVER_PID"
            forget "$SERVER_PID"
        fi
    else
        ! $cluster || cpu_split >"$RUN_DIR/cpu-before.txt"
        # In the background and waited for: bash runs a trap only once the
        # foreground command is over, while `wait` lets TERM through at once
        # (and the exit trap then stops the generator too).
        # shellcheck disable=SC2086 # $args is a word list on purpose
        timeout 240 taskset -c "$LOAD_CPU" "$TARGET_DIR/release/slosh-load" \
            --preset "$preset" --base "$BASE" --server-pid "$MEASURE_PID" --timeout 120 \
            $args >"$RUN_DIR/result.json" 2>"$RUN_DIR/summary.txt" &
        local load=$!
        STARTED+=("$load")
        wait "$load" || rc=$?
        forget "$load"
        local logs=("$RUN_DIR/error.log")
        if $cluster; then
            # Over the whole run (subscribing too), unlike slosh-load's
            # figures, which start at the first publish: for the split only.
            cpu_split >"$RUN_DIR/cpu-after.txt"
            # CPU seconds per command name (slosh-cli, nginx, redis-server).
            awk 'NR == FNR { before[$1] = $3; next }
                { used[$2] += ($3 - before[$1]) / 100 }
                END { for (c in used) printf "%s %.2f s\n", c, used[c] }' \
                "$RUN_DIR/cpu-before.txt" "$RUN_DIR/cpu-after.txt" | sort >"$RUN_DIR/cpu-split.txt"
            log "CPU over the whole run: $(paste -sd, "$RUN_DIR/cpu-split.txt")"
            note=$(cluster_note "$server")
            stop_cluster
            logs=("${NODE_DIRS[@]/%//error.log}")
        else
            note=$(crash_note "$server")
            stop "$SERVER_PID"
            forget "$SERVER_PID"
        fi
        if [ -z "$note" ] && [ "$server" = nchan ]; then
            # A crash during shutdown is still a crash of this run.
            note=$(cat "${logs[@]}" 2>/dev/null | grep -E 'exited on signal|assert' |
                head -n1 | tr -d '"\\' || true)
        fi
        if [ "$rc" -ne 0 ]; then
            note="${note:+$note; }slosh-load exited with $rc"
        fi
        if [ -s "$RUN_DIR/result.json" ]; then
            result=$(head -n1 "$RUN_DIR/result.json")
        fi
    fi
    [ -z "$note" ] || valid=false
    cat "$RUN_DIR/summary.txt" >&2 2>/dev/null || true
    [ -z "$note" ] || log "INVALID: $note"
    printf '{"server":"%s","scenario":"%s","rep":%d,"valid":%s,"note":"%s","result":%s}\n' \
        "$server" "$label" "$rep" "$valid" "$note" "$result" >>"$OUT/runs.jsonl"
}

main() {
    install_nchan
    log "building release binaries"
    (cd "$ROOT" && cargo build --release -q -p slosh-cli -p benches)
    mkdir -p "$OUT"
    : >"$OUT/runs.jsonl"
    {
        echo "date: $(date -u +%FT%TZ)"
        echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
        echo "kernel: $(uname -r)"
        echo "slosh: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?') ($("$TARGET_DIR/release/slosh-cli" --version))"
        echo "nginx: $(nginx -v 2>&1 | sed 's/.*: //'), nchan $(dpkg-query -W -f '${Version}' libnginx-mod-nchan 2>/dev/null || echo '?')"
        echo "rustc: $(rustc --version)"
        echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    } >"$OUT/env.txt"
    cat "$OUT/env.txt" >&2
    local entry label args reps rep server
    for entry in "${SCENARIOS[@]}"; do
        IFS='|' read -r label args reps <<<"$entry"
        if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $label "* ]]; then
            continue
        fi
        # The cluster scenarios only when asked for: by name, or CLUSTER=1.
        if [[ $label == cluster-* ]] && [ -z "${ONLY:-}" ] && [ "$CLUSTER" != 1 ]; then
            continue
        fi
        for rep in $(seq "$reps"); do
            for server in $SERVERS; do
                # slosh-floor serves SSE fan-out and nothing else.
                if [ "$server" = floor ] && [[ $label != sse-* ]]; then
                    continue
                fi
                run_one "$server" "$label" "$args" "$rep"
            done
        done
    done
    echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/env.txt"
    "$TARGET_DIR/release/slosh-compare" "$OUT/runs.jsonl" | tee "$OUT/table.md"
    log "runs, logs and table in $OUT"
}

main "$@"
