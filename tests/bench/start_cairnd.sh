# Sourced by the bench scripts: start_cairnd CAIRND DIR starts CAIRND on
# 127.0.0.1 with a free port and DIR/data as its data dir (its stdout in
# DIR/out, its log in DIR/log), waits until it serves, and sets pid and
# addr (HOST:PORT). Exits with its log when it dies first.
start_cairnd() {
    "$1" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --data-dir "$2/data" \
        >"$2/out" 2>"$2/log" &
    pid=$!
    # cairnd prints "listening on HOST:PORT" once it serves.
    while ! grep -q '^listening on ' "$2/out"; do
        kill -0 "$pid" 2>/dev/null || { cat "$2/log" >&2; exit 1; }
        sleep 0.05
    done
    addr=$(sed -n 's/^listening on //p' "$2/out")
}
