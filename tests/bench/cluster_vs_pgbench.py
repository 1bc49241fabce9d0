#!/usr/bin/python3
"""Issue 10's speed check, in one run on one machine: on one private
PostgreSQL (tests/support/pgcluster.py, fsync and synchronous_commit on),

1. pgbench: 64 clients, each transaction one single-row INSERT (a 64-byte
   payload, a bigserial key), autocommit;
2. cairn-bench at concurrency 64 against 3 cairnd replicas on that
   PostgreSQL, round-robin, one 64-byte event per append;
3. cairn-bench at concurrency 64 against one cairnd on the embedded
   SQLite store, beside them.

Prints a Markdown table of durable writes per second (and the ratio of 2
to 1, which the issue wants >= 2) and each tool's raw result.

usage: cluster_vs_pgbench.py BUILD_DIR [--seconds 20] [--rounds 3]
"""
import argparse
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
                          "--metrics-listen", "127.0.0.1:0", "--data-dir", data_dir,
                          "--log-level", "warn"] + list(flags),
                         stdout=subprocess.PIPE, env=env)
    line = p.stdout.readline().decode()
    m = re.match(r"listening on (\S+)", line)
    if not m:
        raise SystemExit("cairnd did not start: %r" % line)
    return p, m.group(1)


def cairn_bench(build, target, seconds):
    out = subprocess.run([os.path.join(build, "tests", "bench", "cairn-bench"), "--target",
                          target, "--concurrency", str(CLIENTS), "--duration", str(seconds),
                          "--payload-bytes", "64", "--json"],
                         check=True, stdout=subprocess.PIPE).stdout.decode()
    r = json.loads(out)
    return r["requests_per_s"], out.strip()


def pgbench(pg, seconds, tmp):
    script = os.path.join(tmp, "insert.sql")
    with open(script, "w") as f:
        f.write("INSERT INTO bench_insert (payload) VALUES (repeat('x', 64));\n")
    os.chmod(tmp, 0o755)
    os.chmod(script, 0o644)
    conn = ["-h", "127.0.0.1", "-p", str(pg.port), "-U", "cairn"]
    subprocess.run([os.path.join(pg.bin, "psql")] + conn + ["-d", "cairn", "-qc",
                   "DROP TABLE IF EXISTS bench_insert; "
                   "CREATE TABLE bench_insert (id bigserial PRIMARY KEY, payload text)"],
                   check=True)
    out = subprocess.run([os.path.join(pg.bin, "pgbench")] + conn +
                         ["-n", "-c", str(CLIENTS), "-j", "2", "-T", str(seconds), "-f", script,
                          "cairn"], check=True, stdout=subprocess.PIPE).stdout.decode()
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))
    return tps, " ".join(l for l in out.splitlines() if "tps" in l or "latency" in l)


def main():
    a = argparse.ArgumentParser()
    a.add_argument("build")
    a.add_argument("--seconds", type=int, default=20)
    a.add_argument("--rounds", type=int, default=3)
    args = a.parse_args()
    tmp = tempfile.mkdtemp(prefix="cairn-bench-pg-")
    pg = pgcluster.PgCluster()
    results = {"pgbench": [], "cluster": [], "sqlite": []}
    try:
        pg.start()
        for rnd in range(args.rounds):
            tps, raw = pgbench(pg, args.seconds, tmp)
            results["pgbench"].append(tps)
            print("round %d pgbench: %s" % (rnd + 1, raw), flush=True)

            env = dict(os.environ, CAIRN_PG_DSN=pg.dsn)
            replicas = [start_cairnd(args.build, os.path.join(tmp, "r%d-%d" % (rnd, i)), env,
                                     "--store", "postgres") for i in range(3)]
            try:
                rate, raw = cairn_bench(args.build, ",".join(t for _, t in replicas),
                                        args.seconds)
            finally:
                for p, _ in replicas:
                    p.terminate()
                    p.wait()
            results["cluster"].append(rate)
            print("round %d cluster: %s" % (rnd + 1, raw), flush=True)

            p, target = start_cairnd(args.build, os.path.join(tmp, "sqlite%d" % rnd),
                                     dict(os.environ))
            try:
                rate, raw = cairn_bench(args.build, target, args.seconds)
            finally:
                p.terminate()
                p.wait()
            results["sqlite"].append(rate)
            print("round %d sqlite: %s" % (rnd + 1, raw), flush=True)
    finally:
        pg.stop()
        pg.cleanup()
        subprocess.run(["rm", "-rf", tmp])

    med = {k: statistics.median(v) for k, v in results.items()}
    print("\n| writer (64 clients, %d s, median of %d) | durable writes/s | rounds |"
          % (args.seconds, args.rounds))
    print("| --- | --- | --- |")
    print("| pgbench, single-row INSERT per transaction | %.0f | %s |"
          % (med["pgbench"], ", ".join("%.0f" % x for x in results["pgbench"])))
    print("| cairn-bench, 3 cairnd replicas on that PostgreSQL | %.0f | %s |"
          % (med["cluster"], ", ".join("%.0f" % x for x in results["cluster"])))
    print("| cairn-bench, one cairnd, embedded SQLite | %.0f | %s |"
          % (med["sqlite"], ", ".join("%.0f" % x for x in results["sqlite"])))
    print("\ncluster / pgbench = %.2f" % (med["cluster"] / med["pgbench"]))


if __name__ == "__main__":
    main()
