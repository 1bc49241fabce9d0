#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets into tests/fuzz/corpus/
(one directory per target, a few valid inputs each), from the .proto via
Python stubs. Run it again after a change to the wire contract:

    /usr/bin/python3 tests/fuzz/make_seeds.py [--protoc protoc] [--grpc-plugin grpc_python_plugin]

It rewrites only the seeds it makes (named seed-*); inputs merged in by
hand (libFuzzer's -merge=1, docs/testing.md) stay.
"""
import argparse
import hashlib
import os
import struct
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "support"))
import stubs  # noqa: E402


def frames(*msgs):
    """The framing of frames.h: a 16-bit little-endian length, the bytes."""
    return b"".join(struct.pack("<H", len(m)) + m for m in msgs)


def server_seeds(pb, health_pb):
    """Requests per RPC, against the fixture's run-1 (w0..w2, 3 events,
    one checkpoint) and beside it."""
    ev = pb.Event(type="step", worker_id="w0", payload=b"\x00data\xff")
    snapshot = b"snapshot-bytes"
    sha = hashlib.sha256(snapshot).hexdigest()
    header = pb.CheckpointHeader(idempotency_key="cp-1", run_id="run-1", run_state="s",
                                 completed_workers=["w1"], events_count=2,
                                 snapshot_size=len(snapshot), snapshot_sha256=sha)
    part = pb.CreateCheckpointRequest
    return {
        "create_run": {
            "replay": pb.CreateRunRequest(idempotency_key="fixture-run", run_id="run-1",
                                          workers=["w0", "w1", "w2"]),
            "new": pb.CreateRunRequest(idempotency_key="k", run_id="run-2",
                                       workers=["a", "b", "a"], labels={"env": "prod"}),
            "redefined": pb.CreateRunRequest(idempotency_key="k2", run_id="run-1",
                                             workers=["x"]),
            "bad-id": pb.CreateRunRequest(idempotency_key="k", run_id="../etc"),
        },
        "get_run": {"known": pb.GetRunRequest(run_id="run-1"),
                    "unknown": pb.GetRunRequest(run_id="nope")},
        "delete_run": {"unknown": pb.DeleteRunRequest(idempotency_key="d1", run_id="nope"),
                       "known": pb.DeleteRunRequest(idempotency_key="d2", run_id="run-1"),
                       "bad-id": pb.DeleteRunRequest(idempotency_key="d3", run_id="../etc")},
        "list_runs": {"page": pb.ListRunsRequest(page_size=1),
                      "token": pb.ListRunsRequest(page_size=2, page_token="run-1")},
        "append_events": {
            "one": pb.AppendEventsRequest(idempotency_key="a1", run_id="run-1", events=[ev]),
            "expected": pb.AppendEventsRequest(idempotency_key="a2", run_id="run-1",
                                               events=[ev, ev], expected_next_seq=4),
            "fenced": pb.AppendEventsRequest(idempotency_key="a3", run_id="run-1",
                                             events=[ev], fencing_token=1),
        },
        "read_events": {"all": pb.ReadEventsRequest(run_id="run-1", from_seq=1, max_events=10),
                        "tail": pb.ReadEventsRequest(run_id="run-1", from_seq=3)},
        "watch_events": {"from-1": pb.WatchEventsRequest(run_id="run-1", from_seq=1),
                         "ahead": pb.WatchEventsRequest(run_id="run-1", from_seq=100)},
        "acquire_worker": {"w0": pb.AcquireWorkerRequest(idempotency_key="l1", run_id="run-1",
                                                         worker_id="w0", holder="node-1",
                                                         ttl_ms=5000)},
        "renew_lease": {"w0": pb.RenewLeaseRequest(idempotency_key="r1", run_id="run-1",
                                                   worker_id="w0", lease_id="0123456789abcdef",
                                                   ttl_ms=5000)},
        "release_worker": {"w0": pb.ReleaseWorkerRequest(idempotency_key="x1", run_id="run-1",
                                                         worker_id="w0",
                                                         lease_id="0123456789abcdef")},
        "complete_worker": {"w2": pb.CompleteWorkerRequest(idempotency_key="c1", run_id="run-1",
                                                           worker_id="w2")},
        "create_checkpoint": {
            "whole": frames(part(header=header).SerializeToString(),
                            part(chunk=snapshot[:5]).SerializeToString(),
                            part(chunk=snapshot[5:]).SerializeToString()),
            "short": frames(part(header=header).SerializeToString(),
                            part(chunk=snapshot[:5]).SerializeToString()),
            "chunk-first": frames(part(chunk=snapshot).SerializeToString()),
        },
        "list_checkpoints": {"run-1": pb.ListCheckpointsRequest(run_id="run-1")},
        "get_latest_checkpoint": {"run-1": pb.GetLatestCheckpointRequest(run_id="run-1")},
        "load_checkpoint": {"latest": pb.LoadCheckpointRequest(run_id="run-1"),
                            "unknown": pb.LoadCheckpointRequest(
                                run_id="run-1", checkpoint_id="20260101_000000_000000")},
        "cleanup_checkpoints": {"keep-2": pb.CleanupCheckpointsRequest(
            idempotency_key="k1", run_id="run-1", keep_last_n=2)},
        "resume_run": {"own": pb.ResumeRunRequest(run_id="run-1"),
                       "given": pb.ResumeRunRequest(run_id="run-1", all_workers=["w2", "w0"])},
        "health_check": {"all": health_pb.HealthCheckRequest(service=""),
                         "coordinator": health_pb.HealthCheckRequest(
                             service="cairn.v1.Coordinator")},
    }


# fuzz_sequence's opcodes (fuzz_sequence.c, ops[]).
(APPEND, ACQUIRE, RENEW, RELEASE, COMPLETE, CHECKPOINT, RETRY, REUSE, CHECK, CLEANUP,
 LOAD) = range(11)


def sequence_seeds():
    return {
        "lease-cycle": [ACQUIRE, 0, APPEND, 0x20, RENEW, 0, RELEASE, 0, ACQUIRE, 0,
                        COMPLETE, 0x10, RETRY, 0, REUSE, 1, CHECK, 0],
        "appends": [APPEND, 0x42, APPEND, 0x80, APPEND, 0xc1, RETRY, 0, REUSE, 1,
                    CHECKPOINT, 3, APPEND, 0x05, CHECK, 0],
        "complete-all": [ACQUIRE, 0, ACQUIRE, 1, ACQUIRE, 2, ACQUIRE, 3, COMPLETE, 0x10,
                         COMPLETE, 0x11, COMPLETE, 2, COMPLETE, 0x13, CHECKPOINT, 9,
                         ACQUIRE, 0, CHECK, 0],
        "stale-token": [ACQUIRE, 1, RELEASE, 1, APPEND, 0x24, ACQUIRE, 1, APPEND, 0x24,
                        COMPLETE, 0x11, RENEW, 1, RELEASE, 1, CHECK, 0],
        "checkpoints": [APPEND, 2, CHECKPOINT, 1, CHECKPOINT, 2, APPEND, 0, CHECKPOINT, 0x80,
                        CHECK, 0, RETRY, 0],
        # identical snapshots (same argument) past the retention, then a cleanup
        "retention": [LOAD, 0, APPEND, 2, CHECKPOINT, 1, CHECKPOINT, 1, CHECKPOINT, 2,
                      CHECKPOINT, 1, CHECKPOINT, 1, CHECKPOINT, 1, CHECKPOINT, 1, LOAD, 0,
                      LOAD, 3, CLEANUP, 1, LOAD, 0, LOAD, 1, CHECKPOINT, 1, RETRY, 0,
                      REUSE, 0, CHECK, 0],
    }


def client_seeds(pb, health_pb):
    """Selector (fuzz_client.c, calls[]) and the server's script."""
    ok = lambda m: b"\x00" + m.SerializeToString()  # noqa: E731
    run = pb.Run(run_id="run-1", workers=["w0", "w1"], labels={"a": "b"}, state="running",
                 completed_workers=["w0"], next_seq=4, latest_checkpoint_id="20260101_000000_000001",
                 created_at="2026-01-28T10:15:30.123456Z")
    ev = pb.Event(seq=1, run_id="run-1", type="step", worker_id="w0", payload=b"\x00p",
                  created_at="2026-01-28T10:15:30.123456Z")
    cp = pb.Checkpoint(checkpoint_id="20260101_000000_000001", run_id="run-1",
                       created_at="2026-01-28T10:15:30.123456Z", run_state="s",
                       completed_workers=["w0"], events_count=3, snapshot_size=4,
                       snapshot_sha256=hashlib.sha256(b"snap").hexdigest())
    lease = pb.Lease(lease_id="0123456789abcdef", run_id="run-1", worker_id="w0", holder="h",
                     fencing_token=2, expires_at="2026-01-28T10:15:35.123456Z")
    plan = pb.ResumeResult(run_id="run-1", resumed_from_state="s",
                           checkpoint_id="20260101_000000_000001", workers_to_rerun=["w1"],
                           resume_from_seq=4, success=True)
    chunk = pb.CheckpointChunk
    return {
        "create-run": [0, ok(run)],
        "get-run": [1, ok(run)],
        "list-runs": [2, ok(pb.ListRunsResponse(runs=[run, run], next_page_token="run-1"))],
        "append-events": [3, ok(pb.AppendEventsResponse(first_seq=4, last_seq=4,
                                                        events_since_checkpoint=1))],
        "read-events": [4, ok(pb.ReadEventsResponse(events=[ev, ev], next_seq=3))],
        "complete-worker": [5, ok(pb.CompleteWorkerResponse(seq=5, run_state="running"))],
        "acquire-worker": [6, ok(lease)],
        "renew-lease": [7, ok(lease)],
        "release-worker": [8, ok(pb.ReleaseWorkerResponse(replayed=True))],
        "create-checkpoint": [9, ok(cp)],
        "list-checkpoints": [10, ok(pb.ListCheckpointsResponse(checkpoints=[cp, cp]))],
        "get-latest-checkpoint": [11, ok(cp)],
        "load-checkpoint": [12, ok(chunk(checkpoint=cp)), ok(chunk(data=b"sn")),
                            ok(chunk(data=b"ap"))],
        "cleanup-checkpoints": [13, ok(pb.CleanupCheckpointsResponse(
            deleted=2, deleted_ids=["20260101_000000_000000", "20260101_000000_000001"]))],
        "resume-run": [14, ok(plan)],
        "resume": [15, ok(plan), ok(pb.ReadEventsResponse(events=[ev], next_seq=5)),
                   ok(pb.ReadEventsResponse(next_seq=5))],
        "health-check": [16, ok(health_pb.HealthCheckResponse(status=1))],
        "watch": [17, ok(ev), ok(pb.Event(seq=2, run_id="run-1", type="t")),
                  b"\x0eserver going away"],
        "delete-run": [18, ok(pb.DeleteRunResponse(existed=True, replayed=True))],
        "error-status": [1, b"\x05run_id: no run nope"],
    }


def write(corpus, target, name, data):
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--protoc", default="protoc")
    ap.add_argument("--grpc-plugin", default="/usr/bin/grpc_python_plugin")
    args = ap.parse_args()
    corpus = os.path.join(HERE, "corpus")
    with tempfile.TemporaryDirectory() as out:
        pb, _, health_pb, _ = stubs.generate(args.protoc, os.path.join(ROOT, "proto"),
                                             args.grpc_plugin, out)
        for target, seeds in server_seeds(pb, health_pb).items():
            for name, msg in seeds.items():
                data = msg if isinstance(msg, bytes) else msg.SerializeToString()
                write(corpus, "fuzz_" + target, name, data)
        for name, program in sequence_seeds().items():
            write(corpus, "fuzz_sequence", name, bytes(program))
        for name, script in client_seeds(pb, health_pb).items():
            write(corpus, "fuzz_client", name, bytes([script[0]]) + frames(*script[1:]))


if __name__ == "__main__":
    main()
