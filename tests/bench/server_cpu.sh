#!/bin/bash
# Runs cairn-bench against a fresh cairnd and prints one line:
#   LABEL SERVER_CPU_TICKS JSON
# where the ticks (1/100 s) are the server's utime + stime over the run,
# read from /proc/PID/stat, and JSON is cairn-bench's --json result.
# Usage: server_cpu.sh CAIRND CAIRN_BENCH LABEL [cairn-bench args...]
# Comparing two servers with one cairn-bench binary isolates the server:
#   server_cpu.sh old/build/server/cairnd old/build/tests/bench/cairn-bench before \
#       --concurrency 64 --requests 100000
set -eu
cairnd=$1 bench=$2 label=$3
shift 3
dir=$(mktemp -d "${TMPDIR:-/tmp}/cairn-bench-XXXXXX")
trap 'rm -rf "$dir"' EXIT
. "$(dirname "$0")/start_cairnd.sh"
start_cairnd "$cairnd" "$dir"
t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
result=$("$bench" --target "$addr" --json "$@")
t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
kill -TERM "$pid"
wait "$pid"
echo "$label $((t1 - t0)) $result"
