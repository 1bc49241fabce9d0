#!/usr/bin/python3
"""PostgreSQL's side of compare.sh: on one private cluster
(tests/support/pgcluster.py: 127.0.0.1, fsync and synchronous_commit on,
stopped by its PID), pgbench single-row INSERTs (cluster_vs_pgbench.pgbench)
for SECONDS at each client count, one JSON line per count:
{"clients": N, "ops_per_s": ..., "p50_ms": ..., "p99_ms": ..., "transactions": ...}
with the percentiles from pgbench's per-transaction log.

usage: pgbench_insert.py SECONDS PAYLOAD_BYTES CLIENTS [CLIENTS...]
"""
import json
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "support"))
sys.path.insert(0, HERE)
import pgcluster  # noqa: E402
from cluster_vs_pgbench import pgbench  # noqa: E402


def pct(sorted_ms, p):
    return sorted_ms[int(p * (len(sorted_ms) - 1) + 0.5)] if sorted_ms else 0.0


def main():
    if len(sys.argv) < 4:
        raise SystemExit(__doc__.strip().splitlines()[-1])
    seconds, payload = int(sys.argv[1]), int(sys.argv[2])
    tmp = tempfile.mkdtemp(prefix="cairn-pgbench-")
    pg = pgcluster.PgCluster()
    try:
        pg.start()
        for clients in map(int, sys.argv[3:]):
            tps, raw, lat = pgbench(pg, seconds, tmp, clients, payload, log=True)
            print(json.dumps({"clients": clients, "ops_per_s": tps, "p50_ms": pct(lat, 0.50),
                              "p99_ms": pct(lat, 0.99), "transactions": len(lat),
                              "pgbench": raw}), flush=True)
    finally:
        pg.stop()
        pg.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
