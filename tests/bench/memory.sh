#!/bin/bash
# cairnd's memory at idle with many runs stored, and over a soak (issue 13):
#   1. starts cairnd on a fresh data dir;
#   2. creates RUNS runs (default 10000), each with 2 appends of 2 events
#      of 64 bytes (4 events, no checkpoint), through cairn-bench --runs;
#   3. waits until cairnd is idle (no CPU tick for 2 s) and prints VmRSS
#      and VmHWM from /proc/PID/status;
#   4. finds the peak append rate (cairn-bench --concurrency 64 for
#      PEAK_S seconds, default 10, appends spread over 100 of the runs);
#   5. appends at half that rate (--rate) for SOAK_S seconds (default 600),
#      sampling VmRSS every 10 s, and prints the samples, their min, max
#      and mean after the first WARMUP_S seconds (default 60), and whether
#      that is flat: every sample after the warm-up within +-10% of their
#      mean.
# Usage: memory.sh CAIRND CAIRN_BENCH   (RUNS, PEAK_S, SOAK_S, WARMUP_S from
# the environment). Exit status 0 when the soak was flat and every append
# acknowledged.
set -eu
cairnd=$1 bench=$2
runs=${RUNS:-10000} peak_s=${PEAK_S:-10} soak_s=${SOAK_S:-600} warmup_s=${WARMUP_S:-60}
dir=$(mktemp -d "${TMPDIR:-/tmp}/cairn-memory-XXXXXX")
pid=
trap '[ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; wait; rm -rf "$dir"' EXIT
. "$(dirname "$0")/start_cairnd.sh"
start_cairnd "$cairnd" "$dir"
kb() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$pid/status"; }
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }

echo "cairnd $pid on $addr, data in $dir/data; at start: VmRSS $(kb VmRSS) kB"
"$bench" --target "$addr" --run mem --runs "$runs" --concurrency 16 \
    --requests $((runs * 2)) --batch 2 --json
# Idle: no CPU tick spent over 2 s (60 s at most).
for _ in $(seq 30); do
    t0=$(ticks); sleep 2; [ "$(ticks)" = "$t0" ] && break
done
echo "idle with $runs runs: VmRSS $(kb VmRSS) kB  VmHWM $(kb VmHWM) kB"

peak=$("$bench" --target "$addr" --run soak --runs 100 --concurrency 64 --duration "$peak_s" \
    --json | sed -n 's/.*"requests_per_s":\([0-9.]*\).*/\1/p')
half=$(awk -v p="$peak" 'BEGIN {printf "%d", p / 2}')
echo "peak ${peak} appends/s; soak at ${half} appends/s for ${soak_s} s; VmRSS $(kb VmRSS) kB"
"$bench" --target "$addr" --run soak --runs 100 --concurrency 64 --rate "$half" \
    --duration "$soak_s" --json >"$dir/soak.json" &
bench_pid=$!
start=$(date +%s)
: >"$dir/samples"
while kill -0 "$bench_pid" 2>/dev/null; do
    sleep 10
    kill -0 "$bench_pid" 2>/dev/null || break
    echo "$(($(date +%s) - start)) $(kb VmRSS)" | tee -a "$dir/samples"
done
status=0
wait "$bench_pid" || status=1
cat "$dir/soak.json"
echo "after the soak: VmRSS $(kb VmRSS) kB  VmHWM $(kb VmHWM) kB"
awk -v w="$warmup_s" -v st="$status" '
    $1 > w { n++; s += $2; if (!n || min == "" || $2 < min) min = $2; if ($2 > max) max = $2 }
    END {
        if (!n) { print "no samples after the warm-up"; exit 1 }
        mean = s / n
        flat = min >= 0.9 * mean && max <= 1.1 * mean
        printf "after %d s: %d samples, VmRSS min %d kB, max %d kB, mean %.0f kB " \
               "(min %+.1f%%, max %+.1f%% of the mean): %s\n", w, n, min, max, mean,
               100 * (min / mean - 1), 100 * (max / mean - 1), flat ? "flat" : "NOT flat"
        exit !(flat && st == 0)
    }' "$dir/samples"
