#!/usr/bin/python3
"""Issue 10's speed check, in one run on one machine: on one private
PostgreSQL (tests/support/pgcluster.py, fsync and synchronous_commit on),

1. pgbench: 64 clients, each transaction one single-row INSERT (a 64-byte
   payload, a bigserial key), autocommit;
2. cairn-bench at concurrency 64 against 3 cairnd replicas on that
   PostgreSQL, round-robin, one 64-byte event per append, all to one run
   (the issue's case), and the same spread over 64 runs (one per client);
3. cairn-bench at concurrency 64 against one cairnd on the embedded
   SQLite store, beside them;
4. cairn-bench --health against the 3 replicas and against one cairnd:
   the transport's own ceiling on this machine, with no store behind it,
   which no store can beat.

Prints a Markdown table of durable writes per second (and the ratio of 2
to 1, which the issue wants >= 2) and each tool's raw result.

usage: cluster_vs_pgbench.py BUILD_DIR [--seconds 20] [--rounds 3]
"""
import argparse
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "support"))
import pgcluster  # noqa: E402

CLIENTS = 64


def start_cairnd(build, data_dir, env, *flags):
    p = subprocess.Popen([os.path.join(build, "server", "cairnd"), "--listen", "127.0.0.1:0",
                          "--data-dir", data_dir, "--log-level", "warn", "--metrics-listen",
                          "off"] + list(flags),
                         stdout=subprocess.PIPE, env=env)
    line = p.stdout.readline().decode()
    m = re.match(r"listening on (\S+)", line)
    if not m:
        raise SystemExit("cairnd did not start: %r" % line)
    return p, m.group(1)


def cairn_bench(build, target, seconds, *flags):
    out = subprocess.run([os.path.join(build, "tests", "bench", "cairn-bench"), "--target",
                          target, "--concurrency", str(CLIENTS), "--duration", str(seconds),
                          "--payload-bytes", "64", "--json"] + list(flags),
                         check=True, stdout=subprocess.PIPE).stdout.decode()
    r = json.loads(out)
    return r["requests_per_s"], out.strip()


def pgbench(pg, seconds, tmp, clients=CLIENTS, payload_bytes=64, log=False):
    """pgbench -T seconds with `clients` clients, each transaction one
    single-row INSERT of payload_bytes into a fresh table. Returns tps and
    pgbench's summary lines; with log, also each transaction's latency in
    ms, sorted (pgbench --log, files under tmp)."""
    script = os.path.join(tmp, "insert.sql")
    with open(script, "w") as f:
        f.write("INSERT INTO bench_insert (payload) VALUES (repeat('x', %d));\n" % payload_bytes)
    os.chmod(tmp, 0o755)
    os.chmod(script, 0o644)
    conn = ["-h", "127.0.0.1", "-p", str(pg.port), "-U", "cairn"]
    subprocess.run([os.path.join(pg.bin, "psql")] + conn + ["-d", "cairn", "-qc",
                   "DROP TABLE IF EXISTS bench_insert; "
                   "CREATE TABLE bench_insert (id bigserial PRIMARY KEY, payload text)"],
                   check=True)
    prefix = os.path.join(tmp, "pgbench_log_%d" % clients)
    out = subprocess.run([os.path.join(pg.bin, "pgbench")] + conn +
                         ["-n", "-c", str(clients), "-j", str(min(2, clients)), "-T",
                          str(seconds), "-f", script] +
                         (["--log", "--log-prefix", prefix] if log else []) + ["cairn"],
                         check=True, stdout=subprocess.PIPE).stdout.decode()
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))
    raw = " ".join(l for l in out.splitlines() if "tps" in l or "latency" in l)
    if not log:
        return tps, raw
    latencies = []
    for name in glob.glob(prefix + ".*"):
        with open(name) as f:
            # client_id transaction_no time_us script_no epoch_s epoch_us
            latencies.extend(int(line.split()[2]) / 1000.0 for line in f)
        os.unlink(name)
    return tps, raw, sorted(latencies)


# (key, table row, replicas on PostgreSQL (0: one cairnd on SQLite), cairn-bench flags)
CASES = [
    ("cluster", "cairn-bench, 3 cairnd replicas on that PostgreSQL, one run", 3, []),
    ("cluster_runs", "the same, 64 runs (one per client)", 3, ["--runs", str(CLIENTS)]),
    ("sqlite", "cairn-bench, one cairnd, embedded SQLite, one run", 0, []),
    ("cluster_health", "Health checks (no store), 3 cairnd replicas", 3, ["--health"]),
    ("health", "Health checks (no store), one cairnd", 0, ["--health"]),
]


def run_case(args, pg, tmp, rnd, key, replicas, flags):
    if replicas:
        env = dict(os.environ, CAIRN_PG_DSN=pg.dsn)
        servers = [start_cairnd(args.build, os.path.join(tmp, "%s%d-%d" % (key, rnd, i)), env,
                                "--store", "postgres") for i in range(replicas)]
    else:
        servers = [start_cairnd(args.build, os.path.join(tmp, "%s%d" % (key, rnd)),
                                dict(os.environ))]
    try:
        return cairn_bench(args.build, ",".join(t for _, t in servers), args.seconds, *flags)
    finally:
        for p, _ in servers:
            p.terminate()
            p.wait()


def main():
    a = argparse.ArgumentParser()
    a.add_argument("build")
    a.add_argument("--seconds", type=int, default=20)
    a.add_argument("--rounds", type=int, default=3)
    args = a.parse_args()
    tmp = tempfile.mkdtemp(prefix="cairn-bench-pg-")
    pg = pgcluster.PgCluster()
    results = {key: [] for key in ["pgbench"] + [c[0] for c in CASES]}
    try:
        pg.start()
        for rnd in range(args.rounds):
            tps, raw = pgbench(pg, args.seconds, tmp)
            results["pgbench"].append(tps)
            print("round %d pgbench: %s" % (rnd + 1, raw), flush=True)
            for key, _, replicas, flags in CASES:
                rate, raw = run_case(args, pg, tmp, rnd, key, replicas, flags)
                results[key].append(rate)
                print("round %d %s: %s" % (rnd + 1, key, raw), flush=True)
    finally:
        pg.stop()
        pg.cleanup()
        subprocess.run(["rm", "-rf", tmp])

    med = {k: statistics.median(v) for k, v in results.items()}
    print("\n| 64 clients, %d s, median of %d | calls/s | rounds |" % (args.seconds, args.rounds))
    print("| --- | --- | --- |")
    rows = [("pgbench", "pgbench, single-row INSERT per transaction")] + \
        [(c[0], c[1]) for c in CASES]
    for key, label in rows:
        print("| %s | %.0f | %s |" % (label, med[key],
                                     ", ".join("%.0f" % x for x in results[key])))
    print("\ncluster / pgbench = %.2f (64 runs: %.2f); Health of 3 replicas / pgbench = %.2f"
          % (med["cluster"] / med["pgbench"], med["cluster_runs"] / med["pgbench"],
             med["cluster_health"] / med["pgbench"]))


if __name__ == "__main__":
    main()
