#!/usr/bin/python3
"""Cluster faults: three cairnd replicas on one private PostgreSQL, and
cairn-bench (libcairn, default retry policy, the three spread round-robin)
appending at concurrency 32 with --verify. Mid-run, (a) one replica is
SIGKILLed and restarted, (b) PostgreSQL restarts (a fast shutdown, like
`pg_ctl restart -m fast`). Either way clients see UNAVAILABLE, retry with
the same keys, and finish: zero lost, zero duplicated acknowledged events,
seqs dense.

Run: test_cluster.py --cairnd PATH --bench PATH. Exits 77 (skipped, with
the reason) when PostgreSQL cannot run on this machine.
"""
import argparse
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import pgcluster  # noqa: E402
import test_fault  # noqa: E402
from test_fault import Lines, bench  # noqa: E402

REPLICAS = 3
REQUESTS = 6000


class ClusterTest(test_fault.Harness):
    def setUp(self):
        super().setUp()
        self.pg = pgcluster.PgCluster()  # not in self.dir: its user must reach it
        self.pg.start()
        self.replicas = [self.start_replica(i) for i in range(REPLICAS)]

    def tearDown(self):
        super().tearDown()
        self.pg.cleanup()

    def start_replica(self, i, port=0):
        # Each replica has a data dir of its own for its lock and nothing
        # else: the store is PostgreSQL.
        data = os.path.join(self.dir, "replica%d" % i)
        c = test_fault.Cairnd(data, self.log, port,
                              ["--store", "postgres", "--pg-dsn", self.pg.dsn])
        self.procs.append(c.proc)
        return c

    def target(self):
        return ",".join("127.0.0.1:%d" % r.port for r in self.replicas)

    def run_bench_with(self, fault):
        b = bench(self.target(), "--requests", str(REQUESTS), "--concurrency", "32",
                  "--verify", "--progress", "500")
        self.procs.append(b)
        progress = Lines(b.stderr)
        progress.wait_for(r"^progress 2000$")
        fault()
        out = b.stdout.read().decode()  # stderr is read by `progress`
        b.wait(timeout=test_fault.WAIT_S * 5)
        sys.stderr.write(out)
        self.assert_exactly_once(b.returncode, out, "\n".join(progress.all), REQUESTS)
        # The fault reached the clients: calls failed (UNAVAILABLE) and were
        # retried with their keys.
        retries = int(re.search(r"retries (\d+)", out).group(1))
        self.assertGreater(retries, 0, out)
        for r in self.replicas:
            self.assertEqual(r.stop(), 0)

    def test_a_replica_killed_and_restarted_mid_run(self):
        def kill_one():
            victim = self.replicas[1]
            victim.kill()
            self.replicas[1] = self.start_replica(1, victim.port)
        self.run_bench_with(kill_one)

    def test_postgres_restarted_mid_run(self):
        self.run_bench_with(self.pg.restart)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--cairnd", required=True)
    p.add_argument("--bench", required=True)
    test_fault.ARGS, rest = p.parse_known_args()
    try:
        pgcluster.bindir()
    except pgcluster.Unavailable as e:
        print("SKIPPED: %s" % e)
        sys.exit(77)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
