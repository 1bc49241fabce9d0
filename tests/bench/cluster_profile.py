#!/usr/bin/python3
"""Where the cluster's appends spend their time (by hand, not in CI): one
private PostgreSQL (tests/support/pgcluster.py), 3 cairnd replicas on it
(cluster_vs_pgbench.py's start_cairnd), cairn-bench at concurrency 64,
one 64-byte event per append, round-robin over the replicas.

Prints the append rate and the CPU each side took in the middle of the
run (utime + stime from /proc/PID/stat: PostgreSQL is the postmaster and
its children, cairnd the three replicas, cairn-bench itself), as a share
of one core and in microseconds per append. With --log-statements,
PostgreSQL logs every statement's duration (log_min_duration_statement =
0, which costs some throughput) and the script sums them by statement:
executions, total and mean time (wall time in the server, lock waits
included).

usage: cluster_profile.py BUILD_DIR [--runs 1] [--seconds 8] [--log-statements]
"""
import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "support"))
sys.path.insert(0, HERE)
import pgcluster  # noqa: E402
from cluster_vs_pgbench import start_cairnd  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def stat_of(pid):
    """(ppid, utime + stime in ticks) of pid, or None once it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(fields[1]), int(fields[11]) + int(fields[12])


def tree_ticks(root):
    """CPU ticks of root and its children (a postmaster's backends)."""
    total = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = stat_of(int(name))
        if st and (int(name) == root or st[0] == root):
            total += st[1]
    return total


def ticks(pids):
    return sum((stat_of(p) or (0, 0))[1] for p in pids)


def statement_summary(log, top=12):
    """Durations of the log summed by statement (execute lines; the
    parse and bind of unnamed statements are left out)."""
    agg = collections.defaultdict(lambda: [0, 0.0])
    pattern = re.compile(r"duration: ([\d.]+) ms  (execute|statement) ?([^:]*): (.{0,60})")
    with open(log, errors="replace") as f:
        for line in f:
            m = pattern.search(line)
            if m:
                key = ("%s %s" % (m.group(3), m.group(4))).strip()
                agg[key][0] += 1
                agg[key][1] += float(m.group(1))
    rows = sorted(agg.items(), key=lambda kv: -kv[1][1])[:top]
    print("\n| statement | executions | total ms | mean us |")
    print("| --- | --- | --- | --- |")
    for key, (n, ms) in rows:
        print("| `%s` | %d | %.0f | %.1f |" % (key.replace("|", "/"), n, ms, 1000 * ms / n))


def main():
    a = argparse.ArgumentParser()
    a.add_argument("build")
    a.add_argument("--runs", type=int, default=1)
    a.add_argument("--seconds", type=int, default=8)
    a.add_argument("--log-statements", action="store_true")
    args = a.parse_args()
    tmp = tempfile.mkdtemp(prefix="cairn-cluster-profile-")
    pg = pgcluster.PgCluster()
    servers = []
    try:
        pg.start()
        if args.log_statements:
            pg.query("cairn", "ALTER SYSTEM SET log_min_duration_statement = 0")
            pg.query("cairn", "SELECT pg_reload_conf()")
        env = dict(os.environ, CAIRN_PG_DSN=pg.dsn)
        servers = [start_cairnd(args.build, os.path.join(tmp, "r%d" % i), env, "--store",
                                "postgres") for i in range(3)]
        bench = subprocess.Popen(
            [os.path.join(args.build, "tests", "bench", "cairn-bench"), "--target",
             ",".join(t for _, t in servers), "--concurrency", "64", "--duration",
             str(args.seconds), "--payload-bytes", "64", "--runs", str(args.runs), "--json"],
            stdout=subprocess.PIPE)
        # The middle half of the run: past the start, before the end.
        bench_ticks = lambda: ticks([bench.pid])  # noqa: E731
        time.sleep(args.seconds / 4)  # a fixed window of a timed run: nothing to wait on
        t0 = (tree_ticks(pg.proc.pid), ticks([p.pid for p, _ in servers]), bench_ticks(),
              time.monotonic())
        time.sleep(args.seconds / 2)
        t1 = (tree_ticks(pg.proc.pid), ticks([p.pid for p, _ in servers]), bench_ticks(),
              time.monotonic())
        r = json.loads(bench.communicate()[0].decode())
        if bench.returncode != 0 or r["failed"]:
            raise SystemExit("cairn-bench failed: %r" % r)
        rate = r["requests_per_s"]
        wall = t1[3] - t0[3]
        print("3 replicas, %d run(s), 64 clients, %d s: %.0f appends/s" % (args.runs,
                                                                          args.seconds, rate))
        print("\n| process | CPU (cores) | us per append |")
        print("| --- | --- | --- |")
        for i, name in enumerate(["PostgreSQL", "3 cairnd", "cairn-bench"]):
            cores = (t1[i] - t0[i]) / CLK_TCK / wall
            print("| %s | %.2f | %.0f |" % (name, cores, 1e6 * cores / rate))
        if args.log_statements:
            statement_summary(pg.log)
    finally:
        for p, _ in servers:
            p.terminate()
            p.wait()
        pg.stop()
        pg.cleanup()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
