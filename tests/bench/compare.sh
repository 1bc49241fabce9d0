#!/bin/bash
# Issue 13's comparison, run by hand (not in CI): cairn beside etcd, Redis
# and PostgreSQL on this machine, in one run, durability on everywhere,
# 200-byte single-event writes at 1 and at 64 in flight:
#   cairn AppendEvents and cairn Health (grpc-load, one connection, every
#     append distinct), each on a fresh cairnd with a fresh data dir;
#   etcd Put (grpc-load, one connection; etcd fsyncs its WAL), fresh etcd;
#   Redis XADD with appendonly yes, appendfsync always (redis-benchmark,
#     1 and 64 clients);
#   PostgreSQL single-row INSERT (pgbench, 1 and 64 clients; fsync and
#     synchronous_commit on; tests/bench/pgbench_insert.py);
#   cairn batches of 100 events from 8 callers;
#   cairn appends at 64 in flight again with idempotency keys in no order
#     (grpc-load --keys random, like hashes), beside the table's keys that
#     sort in the order sent (like libcairn's own).
# Server CPU per operation (cairnd, etcd) is utime + stime from
# /proc/PID/stat read right before and after the measured grpc-load run (a
# separate warm-up run comes first), divided by the calls it made.
# Prints the machine, a Markdown table and the issue's targets (met or
# not). Installs what it lacks with apt-get. Every server listens on
# 127.0.0.1 on a free port, keeps its data in one temporary directory and
# is stopped by its PID.
# With --rounds N every row is measured N times (in turn, so that other load
# on the machine spreads over all of them) and each figure is the median.
# usage: tests/bench/compare.sh BUILD_DIR [--seconds S] [--warmup S] [--rounds N]
set -euo pipefail

usage() {
    echo "usage: $0 BUILD_DIR [--seconds S (default 10)] [--warmup S (default 2)] [--rounds N (default 1)]" >&2
    exit 2
}

[ $# -ge 1 ] || usage
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$1" && pwd)
shift
seconds=10
warmup=2
rounds=1
while [ $# -gt 0 ]; do
    case $1 in
    --seconds) [ $# -ge 2 ] || usage; seconds=$2; shift 2 ;;
    --warmup) [ $# -ge 2 ] || usage; warmup=$2; shift 2 ;;
    --rounds) [ $# -ge 2 ] || usage; rounds=$2; shift 2 ;;
    *) usage ;;
    esac
done
for v in "$seconds" "$warmup" "$rounds"; do
    case $v in
    '' | *[!0-9]*) echo "$0: --seconds, --warmup and --rounds are whole numbers, not \"$v\"" >&2; exit 2 ;;
    esac
done
[ "$seconds" -ge 1 ] && [ "$rounds" -ge 1 ] ||
    { echo "$0: --seconds and --rounds must be at least 1" >&2; exit 2; }

PAYLOAD=200
load=$build/tests/bench/grpc-load
cairnd=$build/server/cairnd
cairnctl=$build/client/cairnctl
for f in "$load" "$cairnd" "$cairnctl"; do
    [ -x "$f" ] || { echo "$0: $f is missing: build first" >&2; exit 1; }
done

# Only what this script needs and the build does not.
install_missing() {
    local missing="" p
    for p in etcd-server redis-server redis-tools postgresql curl; do
        [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" = installed ] ||
            missing="$missing $p"
    done
    [ -z "$missing" ] && return
    echo "installing$missing" >&2
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >&2
}
install_missing

dir=$(mktemp -d "${TMPDIR:-/tmp}/cairn-compare-XXXXXX")
server_pid=""
stop_server() {
    if [ -n "$server_pid" ]; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
    fi
}
trap 'stop_server; rm -rf "$dir"' EXIT
results=$dir/results.jsonl

free_port() {
    /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

cpu_ticks() {
    awk '{print $14 + $15}' "/proc/$1/stat"
}

# Waits (polling, 30 s at most) until "$@" succeeds while server_pid lives.
await() {
    local i
    for i in $(seq 300); do
        "$@" >/dev/null 2>&1 && return 0
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "$0: server did not come up; its log:" >&2
    tail -20 "$dir/server.log" >&2
    exit 1
}

start_cairnd() {
    rm -rf "$dir/cairn" "$dir/server.out"
    "$cairnd" --listen 127.0.0.1:0 --metrics-listen off --log-level warn \
        --data-dir "$dir/cairn" >"$dir/server.out" 2>"$dir/server.log" &
    server_pid=$!
    # cairnd prints "listening on HOST:PORT" once it serves.
    await grep -q '^listening on ' "$dir/server.out"
    target=$(sed -n 's/^listening on //p' "$dir/server.out")
}

start_etcd() {
    rm -rf "$dir/etcd"
    local client peer
    client=$(free_port)
    peer=$(free_port)
    etcd --name compare --data-dir "$dir/etcd" \
        --listen-client-urls "http://127.0.0.1:$client" \
        --advertise-client-urls "http://127.0.0.1:$client" \
        --listen-peer-urls "http://127.0.0.1:$peer" \
        --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
        --initial-cluster "compare=http://127.0.0.1:$peer" \
        --logger zap --log-level warn >"$dir/server.out" 2>"$dir/server.log" &
    server_pid=$!
    # /health is true once the member is leader and serves writes.
    await sh -c "curl -sf http://127.0.0.1:$client/health | grep -q '\"health\":\"true\"'"
    target=127.0.0.1:$client
}

# grpc-load against the running server: a warm-up run, then the measured
# one between two reads of the server's CPU. Appends one result line.
# measure ROW MODE INFLIGHT BATCH [KEYS]
measure() {
    local row=$1 mode=$2 inflight=$3 batch=$4 keys=${5:-ordered} run="compare-$1-$round"
    local t0 t1 out warm
    local args=(--mode "$mode" --target "$target" --inflight "$inflight"
                --payload-bytes "$PAYLOAD" --json)
    [ "$mode" = cairn-append ] && args+=(--batch "$batch" --run "$run" --keys "$keys")
    warm=0
    if [ "$warmup" -gt 0 ]; then
        out=$("$load" "${args[@]}" --duration "$warmup")
        warm=$(json_field "$out" calls_total)
    fi
    t0=$(cpu_ticks "$server_pid")
    out=$("$load" "${args[@]}" --duration "$seconds")
    t1=$(cpu_ticks "$server_pid")
    if [ "$mode" = cairn-append ]; then
        check_events "$run" $(( (warm + $(json_field "$out" calls_total)) * batch ))
    fi
    echo "{\"row\":\"$row\",\"server_cpu_ticks\":$((t1 - t0)),\"ticks_per_s\":$(getconf CLK_TCK),\"load\":$out}" >>"$results"
    echo "$row: $out" >&2
}

json_field() {
    /usr/bin/python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"
}

# Every acknowledged append added its events, none was answered from the
# dedup table: the run holds exactly as many events as were acknowledged.
check_events() {
    local next
    next=$("$cairnctl" --target "$target" -o json get-run "$1" |
           /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["next_seq"])')
    if [ $((next - 1)) -ne "$2" ]; then
        echo "$0: run $1 holds $((next - 1)) events, $2 were acknowledged" >&2
        exit 1
    fi
    echo "run $1: $2 events acknowledged, $2 stored" >&2
}

cairn_row() {
    start_cairnd
    measure "$@"
    stop_server
}

etcd_row() {
    start_etcd
    measure "$@"
    stop_server
}

# redis-benchmark's CSV line for N XADDs of a 200-byte value (its first 12
# bytes random: -r fills __rand_int__; '*' makes every entry new anyway).
# redis_xadd PORT CLIENTS N
redis_xadd() {
    local value
    value=__rand_int__$(printf 'x%.0s' $(seq $((PAYLOAD - 12))))
    redis-benchmark -h 127.0.0.1 -p "$1" -c "$2" -n "$3" -r 1000000000 --csv \
        XADD compare '*' f "$value" | tail -1 | tr -d '"'
}

# redis-benchmark counts requests, not seconds: a short probe (also the
# warm-up) sizes the measured run to about --seconds.
redis_row() {
    local row=$1 clients=$2 port csv rps n
    rm -rf "$dir/redis"
    mkdir "$dir/redis"
    port=$(free_port)
    redis-server --port "$port" --bind 127.0.0.1 --dir "$dir/redis" --appendonly yes \
        --appendfsync always --save '' >"$dir/server.out" 2>"$dir/server.log" &
    server_pid=$!
    await redis-cli -h 127.0.0.1 -p "$port" ping
    csv=$(redis_xadd "$port" "$clients" $((clients * 50)))
    rps=$(echo "$csv" | cut -d, -f2)
    n=$(awk -v r="$rps" -v s="$seconds" 'BEGIN { n = int(r * s); print n < 1000 ? 1000 : n }')
    csv=$(redis_xadd "$port" "$clients" "$n")
    echo "$csv" | awk -F, -v row="$row" -v n="$n" '{
        printf "{\"row\":\"%s\",\"load\":{\"calls\":%d,\"ops_per_s\":%s,\"p50_ms\":%s,\"p99_ms\":%s}}\n",
            row, n, $2, $5, $7 }' >>"$results"
    echo "$row: $(echo "$csv" | cut -d, -f2-) (rps,avg,min,p50,p95,p99,max ms)" >&2
    stop_server
}

pg_rows() {
    /usr/bin/python3 "$here/pgbench_insert.py" "$seconds" "$PAYLOAD" 1 64 2>"$dir/pg.log" |
        /usr/bin/python3 -c '
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    print(json.dumps({"row": "pg-%d" % r["clients"], "load": r}))
    print("pg-%d: %s" % (r["clients"], r["pgbench"]), file=sys.stderr)' >>"$results" ||
        { cat "$dir/pg.log" >&2; exit 1; }
}

machine() {
    local commit dsync
    commit=$(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown)
    git -C "$here" diff --quiet HEAD 2>/dev/null || commit="$commit (with local changes)"
    dsync=$(dd if=/dev/zero of="$dir/dsync" bs=4k count=1000 oflag=dsync 2>&1 | tail -1 |
            sed 's/.*, //')
    rm -f "$dir/dsync"
    echo "## Machine"
    echo
    echo "- $(date -u '+%Y-%m-%d %H:%M UTC'), cairn commit $commit"
    echo "- $(nproc) CPUs: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
    echo "- $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM," \
         "Debian $(cat /etc/debian_version), kernel $(uname -r)"
    echo "- data in $dir ($(df -T "$dir" | awk 'NR == 2 {print $2 " on " $1}'));" \
         "4 KiB writes with O_DSYNC (dd): $dsync"
    echo "- load at the start:$(uptime | sed 's/.*load average:/ load average/')"
    echo "- etcd $(etcd --version | sed -n 's/^etcd Version: //p'), Redis" \
         "$(redis-server --version | sed 's/.* v=\([^ ]*\).*/\1/'), PostgreSQL" \
         "$(pg_config --version 2>/dev/null | sed 's/PostgreSQL //' || echo '?')"
    echo "- $seconds s per measurement after ${warmup} s of warm-up, $PAYLOAD-byte payloads;" \
         "median of $rounds round(s)"
}
machine >"$dir/machine.md"

echo "measuring: about $(( ((seconds + warmup) * 8 + seconds * 4 + 30) * rounds )) s" >&2
for round in $(seq "$rounds"); do
    echo "round $round of $rounds" >&2
    cairn_row append-1 cairn-append 1 1
    cairn_row append-64 cairn-append 64 1
    cairn_row append-64-random-keys cairn-append 64 1 random
    cairn_row health-1 cairn-health 1 1
    cairn_row health-64 cairn-health 64 1
    cairn_row batch-8 cairn-append 8 100
    etcd_row etcd-1 etcd-put 1 1
    etcd_row etcd-64 etcd-put 64 1
    redis_row redis-1 1
    redis_row redis-64 64
    pg_rows
done

echo "load at the end:$(uptime | sed 's/.*load average:/ load average/')" >>"$dir/machine.md"
cat "$dir/machine.md"
echo
/usr/bin/python3 - "$results" <<'EOF'
import json
import statistics
import sys

rounds = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    load = r["load"]
    if "server_cpu_ticks" in r:
        load["cpu_us"] = r["server_cpu_ticks"] * 1e6 / r["ticks_per_s"] / load["calls_total"]
    rounds.setdefault(r["row"], []).append(load)
# Each figure on its own: the median over the rounds.
rows = {row: {f: statistics.median(x[f] for x in runs)
              for f in ("ops_per_s", "events_per_s", "p50_ms", "p99_ms", "cpu_us")
              if f in runs[0]}
        for row, runs in rounds.items()}

COLS = [("cairn AppendEvents", "append"), ("cairn Health", "health"), ("etcd Put", "etcd"),
        ("Redis XADD (always)", "redis"), ("PostgreSQL INSERT", "pg")]


def cell(key, field, fmt="%.0f"):
    r = rows.get(key)
    return fmt % r[field] if r and field in r else "n/a"


print("| | " + " | ".join(c for c, _ in COLS) + " |")
print("|---" * (len(COLS) + 1) + "|")
print("| 1 in flight, ops/s | " + " | ".join(cell(k + "-1", "ops_per_s") for _, k in COLS) + " |")
print("| 64 in flight on 1 connection (Redis, PostgreSQL: 64 clients), ops/s | " +
      " | ".join(cell(k + "-64", "ops_per_s") for _, k in COLS) + " |")
for n in (1, 64):
    print("| p50 / p99 at %d in flight, ms | " % n +
          " | ".join(cell("%s-%d" % (k, n), "p50_ms", "%.2f") + " / " +
                     cell("%s-%d" % (k, n), "p99_ms", "%.2f") for _, k in COLS) + " |")
for n in (1, 64):
    print("| server CPU per op at %d in flight, us | " % n +
          " | ".join(cell("%s-%d" % (k, n), "cpu_us", "%.1f") for _, k in COLS) + " |")
if len(rounds["append-1"]) > 1:
    print("\nops/s in each round (events/s for the batches):\n")
    for row, runs in rounds.items():
        f = "events_per_s" if row.startswith("batch") else "ops_per_s"
        print("- %s: %s" % (row, ", ".join("%.0f" % x[f] for x in runs)))
r = rows["append-64-random-keys"]
print("\nAppends at 64 in flight with keys in no order (like hashes, where the table's "
      "sort in the order sent, like libcairn's): %.0f ops/s, p99 %.2f ms, server CPU %.1f us "
      "per append" % (r["ops_per_s"], r["p99_ms"], r["cpu_us"]))
b = rows["batch-8"]
print("\nBatches of 100 events from 8 callers (cairn): %.0f events/s (%.0f appends/s), "
      "p50 %.2f ms, p99 %.2f ms, server CPU %.1f us per append"
      % (b["events_per_s"], b["ops_per_s"], b["p50_ms"], b["p99_ms"], b["cpu_us"]))

a1, a64, h1, h64 = rows["append-1"], rows["append-64"], rows["health-1"], rows["health-64"]
e1, e64 = rows["etcd-1"], rows["etcd-64"]
targets = [
    ("64 in flight: appends / cairn Health", a64["ops_per_s"] / h64["ops_per_s"], ">=", 0.8),
    ("64 in flight: appends / etcd Put", a64["ops_per_s"] / e64["ops_per_s"], ">=", 2.5),
    ("server CPU per append / per Health call, 64 in flight", a64["cpu_us"] / h64["cpu_us"],
     "<=", 1.4),
    ("server CPU per append at 1 in flight, us", a1["cpu_us"], "<=", 100),
    ("1 in flight: appends / etcd Put", a1["ops_per_s"] / e1["ops_per_s"], ">=", 1.5),
    ("1 in flight: appends / PostgreSQL INSERT", a1["ops_per_s"] / rows["pg-1"]["ops_per_s"],
     ">=", 1.0),
    ("p99 of appends at 64 in flight, ms", a64["p99_ms"], "<=", 3.0),
    ("64 in flight: appends / Redis XADD at 64 clients",
     a64["ops_per_s"] / rows["redis-64"]["ops_per_s"], ">=", 0.8),
    ("batches of 100 from 8 callers, events/s", b["events_per_s"], ">=", 500000),
]
print("\nTargets:\n")
for name, value, op, bound in targets:
    met = value >= bound if op == ">=" else value <= bound
    shown = "%.0f" % value if bound >= 100 else "%.2f" % value
    print("- %s: %s (target %s %g): %s" % (name, shown, op, bound, "met" if met else "NOT met"))
print("\n(server CPU per append at 1 in flight / per Health call: %.2f)"
      % (a1["cpu_us"] / h1["cpu_us"]))
EOF
