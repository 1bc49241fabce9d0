#!/usr/bin/python3
"""Bad input: a table of malformed requests, each answered with the
expected status and a message naming the field, while the server keeps
serving and no stored byte changes.

The requests are raw bytes, hand-encoded below (varints, length-delimited
fields, fixed32/64, wrong wire types, lengths past the end), sent through
grpcio with no serializer, so they can be anything a generated client would
never send. Before the table the test seeds a store (runs, events, a
checkpoint, a lease) and takes a checksum of the store's content through
the public API (every run, every event page, every checkpoint and its
bytes), which works on both stores, and one of the store itself: with
SQLite every row of every table of cairn.db (through the sqlite3 module,
not the file's bytes, which WAL checkpoints move) and the blobs/ tree;
with PostgreSQL every row of every table of the server's database. Both
are taken again after the table and must be equal. After every row a
health check and a GetRun of a seeded run must succeed, and at the end
cairnd is still the same process and exits 0 on SIGTERM (the harness's
tearDownModule).

Each row: (category, name, method, request, expected code, the text the
message must contain). The expected code is the contract's (docs/api.md:
a malformed message, an invalid string anywhere or a field over its limit
is INVALID_ARGUMENT naming the field; a message over 4 MiB is gRPC's own
RESOURCE_EXHAUSTED), not whatever the server answered when the row was
written. Unknown fields are accepted and ignored (protobuf's rule; the
fingerprint of a mutation leaves them out), so their rows expect OK; an
unknown field that is itself malformed makes the message malformed.

Run (ctest does this, see CMakeLists.txt):

    /usr/bin/python3 test_bad_input.py --cairnd PATH --proto-dir DIR \\
        --protoc PATH --grpc-plugin PATH [unittest args...]
"""

import hashlib
import os
import sqlite3
import struct
import sys
import unittest

import grpc

sys.dont_write_bytecode = True  # nothing written next to the sources
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_coordinator as tc  # noqa: E402  (the shared harness)
from test_coordinator import RPC_TIMEOUT_S, S  # noqa: E402
from test_checkpoints import Cairnd  # noqa: E402  (a cairnd with flags of its own)

MiB = 1024 * 1024
SVC = "/cairn.v1.Coordinator/"
HEALTH = "/grpc.health.v1.Health/Check"

# A token with a control byte (or DEL, or a byte past ASCII) cannot be
# sent: grpcio refuses such metadata before the call leaves ("metadata was
# invalid"), as gRPC core does for any client. cairnd's own check of those
# bytes is tested without the network, in tests/unit/test_tokens.c.
CONTROL_BYTE_SKIP = ("grpcio refuses to send it (ValueError: metadata was invalid); cairnd's "
                     "check is in tests/unit/test_tokens.c")

pb = None


def setUpModule():
    global pb
    tc.setUpModule()
    pb = tc.pb


def tearDownModule():
    tc.tearDownModule()


# ---- a tiny protobuf encoder ----

def varint(n):
    """Unsigned varint; a negative n is encoded as protobuf encodes a
    negative int32/int64: its 64-bit two's complement, ten bytes."""
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def tag(field, wire_type):
    return varint(field << 3 | wire_type)


def f_varint(field, v):
    return tag(field, 0) + varint(v)


def f_bytes(field, data):
    if isinstance(data, str):
        data = data.encode()
    return tag(field, 2) + varint(len(data)) + data


def f_fixed64(field, v):
    return tag(field, 1) + struct.pack("<Q", v)


def f_fixed32(field, v):
    return tag(field, 5) + struct.pack("<I", v)


def f_cut(field, declared, data):
    """A length-delimited field declaring more bytes than follow."""
    return tag(field, 2) + varint(declared) + data


# Field numbers, from coordinator.proto.
KEY, RUN = 1, 2  # idempotency_key and run_id of the mutations


def event(type_="step", worker_id="", payload=b"", extra=b""):
    out = f_bytes(3, type_) if type_ is not None else b""
    if worker_id:
        out += f_bytes(4, worker_id)
    if payload:
        out += f_bytes(5, payload)
    return out + extra


def header(run_id, size, key="bad-input-ckpt", state="s", events_count=0, sha="",
           completed=(), extra=b""):
    out = f_bytes(1, key) + f_bytes(2, run_id) + f_bytes(3, state)
    for w in completed:
        out += f_bytes(4, w)
    if events_count:
        out += f_varint(5, events_count)
    out += f_varint(6, size)
    if sha:
        out += f_bytes(7, sha)
    return f_bytes(1, out + extra)  # CreateCheckpointRequest.header


def chunk(data):
    return f_bytes(2, data)  # CreateCheckpointRequest.chunk


# ---- the store's checksums ----

def _hash_update(h, *parts):
    for p in parts:
        if isinstance(p, str):
            p = p.encode()
        h.update(struct.pack("<Q", len(p)) + p)


def api_checksum(stub):
    """SHA-256 over what the public API returns: every run (ListRuns), every
    event (ReadEvents pages), every checkpoint (ListCheckpoints pages, and
    GetLatestCheckpoint) and its snapshot bytes (LoadCheckpoint)."""
    h = hashlib.sha256()
    token, runs = "", []
    while True:
        page = stub.ListRuns(pb.ListRunsRequest(page_size=1000, page_token=token),
                             timeout=RPC_TIMEOUT_S)
        runs.extend(page.runs)
        token = page.next_page_token
        if not token:
            break
    for run in runs:
        _hash_update(h, "run", run.SerializeToString(deterministic=True))
        seq = 1
        while True:
            page = stub.ReadEvents(pb.ReadEventsRequest(run_id=run.run_id, from_seq=seq,
                                                        max_events=1000), timeout=RPC_TIMEOUT_S)
            if not page.events:
                break
            for ev in page.events:
                _hash_update(h, "event", ev.SerializeToString(deterministic=True))
            seq = page.next_seq
        token = ""
        while True:
            page = stub.ListCheckpoints(pb.ListCheckpointsRequest(run_id=run.run_id,
                                                                  page_token=token),
                                        timeout=RPC_TIMEOUT_S)
            for cp in page.checkpoints:
                _hash_update(h, "checkpoint", cp.SerializeToString(deterministic=True))
                for part in stub.LoadCheckpoint(
                        pb.LoadCheckpointRequest(run_id=run.run_id,
                                                 checkpoint_id=cp.checkpoint_id),
                        timeout=RPC_TIMEOUT_S):
                    _hash_update(h, "bytes", part.data)
            token = page.next_page_token
            if not token:
                break
        if run.latest_checkpoint_id:
            latest = stub.GetLatestCheckpoint(pb.GetLatestCheckpointRequest(run_id=run.run_id),
                                              timeout=RPC_TIMEOUT_S)
            _hash_update(h, "latest", latest.SerializeToString(deterministic=True))
    return "%d runs, api %s" % (len(runs), h.hexdigest())


# Rows the checksum's own reads write: LoadCheckpoint pins the checkpoint
# it streams (a row with an expiry, removed when the stream ends).
VOLATILE_TABLES = {"pins"}


def sqlite_checksum(data_dir):
    """SHA-256 over every row of every table of cairn.db (read-only, through
    SQLite, so WAL and checkpoint timing do not matter), rows sorted (WITHOUT
    ROWID tables have no rowid to order by), and over the blobs/ tree
    (names and sizes, staging included)."""
    h = hashlib.sha256()
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(data_dir, "cairn.db"), uri=True,
                         timeout=RPC_TIMEOUT_S)
    try:
        tables = [r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        for t in tables:
            if t in VOLATILE_TABLES:
                continue
            rows = sorted(repr(r) for r in db.execute('SELECT * FROM "%s"' % t))
            _hash_update(h, "table", t, str(len(rows)))
            for r in rows:
                _hash_update(h, r)
    finally:
        db.close()
    blobs = os.path.join(data_dir, "blobs")
    for dirpath, dirnames, filenames in sorted(os.walk(blobs)):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            _hash_update(h, "blob", os.path.relpath(path, blobs), str(os.path.getsize(path)))
    return "sqlite %s" % h.hexdigest()


def postgres_checksum(data_dir):
    """md5 over every row of every table of the server's database, each
    table's rows in their text form sorted (stages and chunk rows of
    uploads included: a refused upload must leave none)."""
    tables = tc._pg(data_dir, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                              "ORDER BY tablename").split()
    parts = ["SELECT '%s', count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY "
             "t::text), '')) FROM \"%s\" t" % (t, t) for t in tables
             if t not in VOLATILE_TABLES]
    return "postgres " + tc._pg(data_dir, " UNION ALL ".join(parts) + " ORDER BY 1")


def store_checksum(data_dir):
    return postgres_checksum(data_dir) if tc.PG is not None else sqlite_checksum(data_dir)


# ---- the table ----

OK = grpc.StatusCode.OK
INVALID = grpc.StatusCode.INVALID_ARGUMENT
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


class Row:
    """One malformed request. kind: "unary", "client" (a client stream: the
    request is a list of messages) or "server" (a server stream). check,
    for rows expected OK, is called with the response bytes."""

    def __init__(self, category, name, method, request, code, text, kind="unary", check=None,
                 why=""):
        self.category, self.name, self.method = category, name, method
        self.request, self.code, self.text = request, code, text
        self.kind, self.check, self.why = kind, check, why


def build_rows(seed):
    """The table, over the seeded runs (seed: run ids, workers, the
    replayable append)."""
    r1 = seed["r1"]
    ghost = "bad-input-never-created"  # a run the table never creates
    key = f_bytes(KEY, "bad-input-key")
    rows = []

    def add(*args, **kw):
        rows.append(Row(*args, **kw))

    # -- wrong wire types: the field is known, its bytes are of another kind
    c = "wrong wire type"
    add(c, "GetRun run_id as a varint", "GetRun", f_varint(1, 7), INVALID,
        "run_id: sent with wire type 0 (varint)")
    add(c, "GetRun run_id as a group start", "GetRun", tag(1, 3), INVALID,
        "run_id: sent with wire type 3")
    add(c, "AppendEvents expected_next_seq as a string", "AppendEvents",
        key + f_bytes(RUN, r1) + f_bytes(3, event()) + f_bytes(4, "7"), INVALID,
        "expected_next_seq: sent with wire type 2")
    add(c, "AppendEvents events[0] as a varint", "AppendEvents",
        key + f_bytes(RUN, r1) + f_varint(3, 1), INVALID, "events[0]: sent with wire type 0")
    add(c, "AppendEvents events[1].type as a fixed32", "AppendEvents",
        key + f_bytes(RUN, r1) + f_bytes(3, event()) + f_bytes(3, f_fixed32(3, 1)), INVALID,
        "events[1].type: sent with wire type 5")
    add(c, "AcquireWorker ttl_ms as a fixed32", "AcquireWorker",
        key + f_bytes(RUN, r1) + f_bytes(3, "w2") + f_bytes(4, "h") + f_fixed32(5, 5000),
        INVALID, "ttl_ms: sent with wire type 5")
    add(c, "ReadEvents from_seq as a fixed64", "ReadEvents", f_bytes(1, r1) + f_fixed64(2, 1),
        INVALID, "from_seq: sent with wire type 1")
    add(c, "CreateCheckpoint header as a varint", "CreateCheckpoint", [f_varint(1, 1)],
        INVALID, "header: sent with wire type 0", kind="client")

    # -- truncated frames: a length, varint or tag running past the end
    c = "truncated frame"
    add(c, "GetRun run_id declares 5 bytes, 2 follow", "GetRun", f_cut(1, 5, b"ab"), INVALID,
        "run_id: declares 5 bytes but only 2 remain")
    add(c, "AppendEvents events[0] cut short", "AppendEvents",
        key + f_bytes(RUN, r1) + f_cut(3, 40, event()), INVALID, "events[0]: declares 40 bytes")
    add(c, "AppendEvents events[0].type runs past its event", "AppendEvents",
        key + f_bytes(RUN, r1) + f_bytes(3, f_cut(3, 9, b"st")), INVALID,
        "events[0].type: declares 9 bytes")
    add(c, "ListRuns page_size varint never ends", "ListRuns", tag(1, 0) + b"\x80\x80",
        INVALID, "page_size: its varint is cut short")
    add(c, "GetRun tag cut short after a good field", "GetRun", f_bytes(1, r1) + b"\x80",
        INVALID, "request: byte %d" % len(f_bytes(1, r1)))
    add(c, "GetRun unknown fixed64 with 3 bytes", "GetRun", tag(99, 1) + b"abc", INVALID,
        "request: unknown field 99: needs 8 bytes")
    add(c, "CreateCheckpoint chunk message cut short", "CreateCheckpoint",
        [header(r1, 4), f_cut(2, 4, b"ab")], INVALID, "chunk: declares 4 bytes", kind="client")

    # -- garbage bytes: not protobuf at all
    c = "garbage"
    add(c, "GetRun 0xff 0xff 0xff", "GetRun", b"\xff\xff\xff", INVALID,
        "request: byte 0 of the cairn.v1.GetRunRequest")
    add(c, "GetRun field number 0", "GetRun", b"\x00\x01", INVALID, "field number 0")
    add(c, "GetRun wire type 6", "GetRun", b"\xfe\x01", INVALID,
        "request: unknown field 31: wire type 6 (not a wire type)")
    add(c, "CreateRun an HTTP request line", "CreateRun", b"GET / HTTP/1.1\r\n\r\n", INVALID,
        "request: unknown field 8: wire type 7")
    add(c, "ReadEvents JSON", "ReadEvents", b'{"run_id": "x"}', INVALID,
        "request: unknown field 15: wire type 3")
    add(c, "Health/Check 0xff", HEALTH, b"\xff", INVALID, "request: byte 0")
    add(c, "CreateCheckpoint first message 0x80", "CreateCheckpoint", [b"\x80"], INVALID,
        "request: byte 0", kind="client")

    # -- huge repeated fields: counts past their limits
    c = "huge repeated"
    workers = b"".join(f_bytes(3, "w%d" % i) for i in range(100000))
    add(c, "CreateRun 100000 workers", "CreateRun", key + f_bytes(RUN, ghost) + workers,
        INVALID, "workers: must hold 1..10000 items, got 100000")
    workers = b"".join(f_bytes(3, "w%d" % i) for i in range(10001))
    add(c, "CreateRun 10001 workers", "CreateRun", key + f_bytes(RUN, ghost) + workers,
        INVALID, "workers: must hold 1..10000 items, got 10001")
    add(c, "AppendEvents 1001 events", "AppendEvents",
        key + f_bytes(RUN, r1) + f_bytes(3, event()) * 1001, INVALID,
        "events: must hold 1..1000 items, got 1001")
    labels = b"".join(f_bytes(4, f_bytes(1, "k%d" % i) + f_bytes(2, "v")) for i in range(65))
    add(c, "CreateRun 65 labels", "CreateRun",
        key + f_bytes(RUN, ghost) + f_bytes(3, "w1") + labels, INVALID,
        "labels: at most 64 labels, got 65")
    add(c, "ResumeRun 10001 all_workers", "ResumeRun",
        f_bytes(1, r1) + b"".join(f_bytes(2, "w%d" % i) for i in range(10001)), INVALID,
        "all_workers: must hold 0..10000 items, got 10001")
    add(c, "CreateCheckpoint 10001 completed_workers", "CreateCheckpoint",
        [header(r1, 1, completed=["w%d" % i for i in range(10001)]), chunk(b"x")], INVALID,
        "completed_workers: must hold 0..10000 items, got 10001", kind="client")
    add(c, "AppendEvents 5 events of 1 MiB (a 5 MiB message)", "AppendEvents",
        key + f_bytes(RUN, r1) + f_bytes(3, event(payload=b"p" * MiB)) * 5, EXHAUSTED,
        "larger than max",
        why="over the 4 MiB message limit: gRPC's own check and message (docs/api.md, Errors)")

    # -- invalid UTF-8 in string fields
    c = "invalid UTF-8"
    add(c, "GetRun run_id 0xff 0xfe", "GetRun", f_bytes(1, b"\xff\xfe"), INVALID,
        "run_id: must be UTF-8")
    add(c, "AppendEvents events[0].type overlong '/'", "AppendEvents",
        key + f_bytes(RUN, r1) + f_bytes(3, event(type_=None, extra=f_bytes(3, b"a\xc0\xaf"))),
        INVALID, "events[0].type: must be UTF-8")
    add(c, "CreateRun labels[0].value a lone continuation byte", "CreateRun",
        key + f_bytes(RUN, ghost) + f_bytes(3, "w1")
        + f_bytes(4, f_bytes(1, "zone") + f_bytes(2, b"eu\x80")), INVALID,
        "labels[0].value: must be UTF-8")
    add(c, "CreateCheckpoint header.run_state a surrogate", "CreateCheckpoint",
        [f_bytes(1, f_bytes(1, "k") + f_bytes(2, r1) + f_bytes(3, b"\xed\xa0\x80")
                 + f_varint(6, 1)), chunk(b"x")], INVALID, "header.run_state: must be UTF-8",
        kind="client")
    add(c, "AcquireWorker holder a cut sequence", "AcquireWorker",
        key + f_bytes(RUN, r1) + f_bytes(3, "w2") + f_bytes(4, b"h\xe2\x82")
        + f_varint(5, 5000), INVALID, "holder: must be UTF-8")
    add(c, "CompleteWorker idempotency_key 0xf5 (past U+10FFFF)", "CompleteWorker",
        f_bytes(KEY, b"k\xf5\x80\x80\x80") + f_bytes(RUN, r1) + f_bytes(3, "w2"), INVALID,
        "idempotency_key: must be UTF-8")

    # -- NUL bytes inside ids (protobuf-c would cut the string there)
    c = "NUL in id"
    add(c, "GetRun run_id with a NUL", "GetRun", f_bytes(1, r1.encode() + b"\0x"), INVALID,
        "run_id: must be UTF-8 without NUL bytes")
    add(c, "CreateRun workers[1] with a NUL", "CreateRun",
        key + f_bytes(RUN, ghost) + f_bytes(3, "w1") + f_bytes(3, b"w\x002"), INVALID,
        "workers[1]: must be UTF-8 without NUL bytes")
    add(c, "LoadCheckpoint checkpoint_id with a NUL", "LoadCheckpoint",
        f_bytes(1, r1) + f_bytes(2, b"2026\0"), INVALID,
        "checkpoint_id: must be UTF-8 without NUL bytes", kind="server")
    add(c, "CompleteWorker worker_id only a NUL", "CompleteWorker",
        key + f_bytes(RUN, r1) + f_bytes(3, b"\0"), INVALID,
        "worker_id: must be UTF-8 without NUL bytes")
    add(c, "WatchEvents run_id with a NUL", "WatchEvents", f_bytes(1, b"\0" + r1.encode()),
        INVALID, "run_id: must be UTF-8 without NUL bytes", kind="server")

    # -- zero and negative sizes
    c = "zero or negative size"
    acquire = key + f_bytes(RUN, r1) + f_bytes(3, "w2") + f_bytes(4, "h")
    add(c, "AcquireWorker ttl_ms 0", "AcquireWorker", acquire + f_varint(5, 0), INVALID,
        "ttl_ms: must be 1000..600000, got 0")
    add(c, "AcquireWorker ttl_ms int32 -1", "AcquireWorker", acquire + f_varint(5, -1),
        INVALID, "ttl_ms: 18446744073709551615 does not fit")
    add(c, "RenewLease ttl_ms 2^32 + 5000 (would truncate to 5000)", "RenewLease",
        key + f_bytes(RUN, r1) + f_bytes(3, "w1") + f_bytes(4, seed["lease_id"])
        + f_varint(5, (1 << 32) + 5000), INVALID, "ttl_ms: 4294972296 does not fit")
    add(c, "ListRuns page_size int32 -1", "ListRuns", f_varint(1, -1), INVALID,
        "page_size: 18446744073709551615 does not fit")
    add(c, "ListRuns page_size 1001", "ListRuns", f_varint(1, 1001), INVALID,
        "page_size: must be 0..1000")
    add(c, "ReadEvents max_events int32 -1", "ReadEvents", f_bytes(1, r1) + f_varint(3, -1),
        INVALID, "max_events: 18446744073709551615 does not fit")
    add(c, "CleanupCheckpoints keep_last_n 0", "CleanupCheckpoints",
        key + f_bytes(RUN, r1) + f_varint(3, 0), INVALID, "keep_last_n: must be at least 1")
    add(c, "CleanupCheckpoints keep_last_n int32 -1", "CleanupCheckpoints",
        key + f_bytes(RUN, r1) + f_varint(3, -1), INVALID,
        "keep_last_n: 18446744073709551615 does not fit")
    add(c, "AppendEvents zero events", "AppendEvents", key + f_bytes(RUN, r1), INVALID,
        "events: must hold 1..1000 items, got 0")
    add(c, "CreateCheckpoint snapshot_size 2^64-1", "CreateCheckpoint",
        [header(r1, (1 << 64) - 1), chunk(b"x")], INVALID, "snapshot_size: must be at most",
        kind="client")
    add(c, "CreateCheckpoint snapshot_size 0, then a byte", "CreateCheckpoint",
        [header(r1, 0), chunk(b"x")], INVALID,
        "chunk: the stream carries more than the 0 bytes snapshot_size declared",
        kind="client")

    # -- CreateCheckpoint streams out of order or inconsistent
    c = "checkpoint stream"
    add(c, "a chunk before the header", "CreateCheckpoint", [chunk(b"abc"), header(r1, 3)],
        INVALID, "header: the first message must be the header, got a snapshot chunk",
        kind="client")
    add(c, "two headers", "CreateCheckpoint", [header(r1, 3), header(r1, 3), chunk(b"abc")],
        INVALID, "header: a second header after 0 bytes", kind="client")
    add(c, "header declares 10 bytes, 5 follow", "CreateCheckpoint",
        [header(r1, 10), chunk(b"12345")], INVALID,
        "snapshot_size: the header declared 10 bytes but the stream ended after 5",
        kind="client")
    add(c, "header declares 3 bytes, 5 follow", "CreateCheckpoint",
        [header(r1, 3), chunk(b"12345")], INVALID,
        "chunk: the stream carries more than the 3 bytes snapshot_size declared",
        kind="client")
    add(c, "no message at all", "CreateCheckpoint", [], INVALID,
        "header: the stream ended before its first message", kind="client")
    add(c, "first message empty (no header, no chunk)", "CreateCheckpoint", [b""], INVALID,
        "got a message with neither header nor chunk", kind="client")
    add(c, "a chunk of 1 MiB + 1", "CreateCheckpoint",
        [header(r1, 2 * MiB), chunk(b"c" * (MiB + 1))], INVALID,
        "chunk: must be at most 1048576 bytes", kind="client")
    add(c, "snapshot_sha256 of other bytes", "CreateCheckpoint",
        [header(r1, 3, sha=hashlib.sha256(b"xyz").hexdigest()), chunk(b"abc")], INVALID,
        "snapshot_sha256: the header says", kind="client")
    add(c, "snapshot_sha256 in upper case", "CreateCheckpoint",
        [header(r1, 3, sha=hashlib.sha256(b"abc").hexdigest().upper()), chunk(b"abc")],
        INVALID, "snapshot_sha256: must be empty or 64 lowercase hex digits", kind="client")
    add(c, "events_count past the run's last seq", "CreateCheckpoint",
        [header(r1, 3, events_count=999), chunk(b"abc")], INVALID,
        "events_count: 999 is past the run's last seq", kind="client")
    add(c, "completed_workers[0] not a worker of the run", "CreateCheckpoint",
        [header(r1, 3, completed=["stranger"]), chunk(b"abc")], INVALID,
        "completed_workers[0]: \"stranger\" is not a worker of run", kind="client")

    # -- ids, keys and tokens in the wrong format
    c = "bad id or key"
    add(c, "GetRun run_id ../etc", "GetRun", f_bytes(1, "../etc"), INVALID,
        "run_id: must match [A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
    add(c, "GetRun run_id of 129 characters", "GetRun", f_bytes(1, "r" * 129), INVALID,
        "run_id: must match")
    add(c, "CompleteWorker without idempotency_key", "CompleteWorker",
        f_bytes(RUN, r1) + f_bytes(3, "w2"), INVALID, "idempotency_key: required")
    add(c, "DeleteRun without idempotency_key", "DeleteRun", f_bytes(RUN, r1), INVALID,
        "idempotency_key: required")
    add(c, "DeleteRun run_id ../etc", "DeleteRun", key + f_bytes(RUN, "../etc"), INVALID,
        "run_id: must match [A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
    add(c, "AppendEvents idempotency_key with a control byte", "AppendEvents",
        f_bytes(KEY, "k\x01") + f_bytes(RUN, r1) + f_bytes(3, event()), INVALID,
        "idempotency_key: must be 1..128 printable ASCII")
    add(c, "ListRuns page_token not from ListRuns", "ListRuns", f_bytes(2, "abc"), INVALID,
        "page_token: must be empty or a next_page_token from ListRuns")
    add(c, "ListCheckpoints page_token ../x", "ListCheckpoints",
        f_bytes(1, r1) + f_bytes(2, "../x"), INVALID, "page_token: must match")
    add(c, "AppendEvents events[0].type worker.completed", "AppendEvents",
        key + f_bytes(RUN, r1) + f_bytes(3, event(type_="worker.completed")), INVALID,
        "events[0].type: \"worker.completed\" is reserved")
    add(c, "AppendEvents events[0].payload 1 MiB + 1", "AppendEvents",
        key + f_bytes(RUN, r1) + f_bytes(3, event(payload=b"p" * (MiB + 1))), INVALID,
        "events[0].payload: must be at most 1048576 bytes")

    # -- unknown fields: accepted and ignored (protobuf's rule), unless
    # malformed themselves
    c = "unknown field"

    def is_r1(raw):
        run = pb.Run.FromString(raw)
        return run.run_id == r1 or "run_id %r, expected %r" % (run.run_id, r1)

    add(c, "GetRun with unknown varint and unknown non-UTF-8 bytes", "GetRun",
        f_bytes(1, r1) + f_varint(99, 5) + f_bytes(100, b"\xff\0"), OK, "", check=is_r1,
        why="unknown fields are ignored; bytes of an unknown field are not a string")

    def replayed(raw):
        resp = pb.AppendEventsResponse.FromString(raw)
        want = seed["append"]
        return (resp.replayed and resp.first_seq == want.first_seq
                or "replayed %s first_seq %d, expected a replay of %d"
                % (resp.replayed, resp.first_seq, want.first_seq))

    add(c, "AppendEvents retry with an unknown field at the top", "AppendEvents",
        seed["append_raw"] + f_bytes(99, "from a newer client"), OK, "", check=replayed,
        why="the fingerprint leaves unknown fields out: the same request, a replay")
    add(c, "AppendEvents retry with an unknown field inside events[0]", "AppendEvents",
        seed["append_raw_event_extra"], OK, "", check=replayed,
        why="unknown fields of nested messages are left out of the fingerprint too")
    add(c, "Health/Check with an unknown field", HEALTH, f_bytes(1000, "x" * 100), OK, "",
        why="probes from newer clients are answered")
    add(c, "GetRun unknown field with wire type 7", "GetRun", f_bytes(1, r1) + tag(99, 7),
        INVALID, "request: unknown field 99: wire type 7",
        why="an unknown field must still be well formed")
    add(c, "GetRun unknown field declaring 9 bytes, 1 follows", "GetRun",
        f_bytes(1, r1) + f_cut(100, 9, b"x"), INVALID,
        "request: unknown field 100: declares 9 bytes")
    return rows


SKIPPED_ROWS = [("bad token", "a token with a control byte", CONTROL_BYTE_SKIP)]

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


def token_rows(good):
    """(name, metadata, expected code, text the message must hold) for a
    cairnd whose tokens file holds `good`."""
    header = "authorization header: "
    bad_form = header + 'must be "authorization: Bearer TOKEN"'
    return [
        ("no authorization header", [], UNAUTHENTICATED, header + "missing"),
        ("Basic scheme", [("authorization", "Basic x")], UNAUTHENTICATED, bad_form),
        ("Bearer with nothing after it", [("authorization", "Bearer")], UNAUTHENTICATED,
         bad_form),
        ("Bearer and a space, no token", [("authorization", "Bearer ")], UNAUTHENTICATED,
         header + "the token must be 1..4096 bytes, got 0"),
        ("token with a space", [("authorization", "Bearer " + good[:8] + " " + good[8:])],
         UNAUTHENTICATED, header + "the token must be printable ASCII without spaces"),
        ("token over 4096 bytes", [("authorization", "Bearer " + "t" * 4097)],
         UNAUTHENTICATED, header + "the token must be 1..4096 bytes, got 4097"),
        ("token not in the file", [("authorization", "Bearer " + good + "x")],
         UNAUTHENTICATED, header + "the token is not one of cairnd's"),
        ("the token without its scheme", [("authorization", good)], UNAUTHENTICATED,
         bad_form),
        ("two authorization headers", [("authorization", "Bearer " + good),
                                       ("authorization", "Bearer " + good)],
         UNAUTHENTICATED, header + "sent more than once"),
        ("the scheme in lower case", [("authorization", "bearer " + good)], OK, ""),
    ]


class BadInputTest(tc.CairnTestCase):

    def seed(self):
        """Runs, events, a checkpoint and a lease; returns what rows need."""
        r1, r2 = self.run_id("r1"), self.run_id("r2")
        self.create_run(r1, workers=["w1", "w2", "w3"], labels={"team": "bad-input"})
        self.create_run(r2, workers=["solo"])
        req = pb.AppendEventsRequest(
            idempotency_key=self.key(), run_id=r1,
            events=[self.event("step", b"payload-%d" % i, "w1") for i in range(5)])
        append = self.stub.AppendEvents(req, timeout=RPC_TIMEOUT_S)
        self.append(r2, [self.event("only")])
        data = os.urandom(3000)

        def upload():
            yield pb.CreateCheckpointRequest(header=pb.CheckpointHeader(
                idempotency_key=self.key(), run_id=r1, run_state="seeded", events_count=5,
                snapshot_size=len(data)))
            yield pb.CreateCheckpointRequest(chunk=data)
        self.stub.CreateCheckpoint(upload(), timeout=RPC_TIMEOUT_S)
        lease = self.stub.AcquireWorker(pb.AcquireWorkerRequest(
            idempotency_key=self.key(), run_id=r1, worker_id="w1", holder="seed",
            ttl_ms=600000), timeout=RPC_TIMEOUT_S)
        raw = req.SerializeToString()
        # The same request with an unknown field (99) inside its first event.
        with_extra = pb.AppendEventsRequest()
        with_extra.CopyFrom(req)
        del with_extra.events[:]
        extra = b""
        for i, ev in enumerate(req.events):
            body = ev.SerializeToString() + (f_bytes(99, "newer") if i == 0 else b"")
            extra += f_bytes(3, body)
        head = pb.AppendEventsRequest(idempotency_key=req.idempotency_key,
                                      run_id=r1).SerializeToString()
        return {"r1": r1, "r2": r2, "append": append, "append_raw": raw,
                "append_raw_event_extra": head + extra, "lease_id": lease.lease_id}

    def call(self, row):
        """Sends the row's request; returns (code, details, response bytes)."""
        path = row.method if row.method.startswith("/") else SVC + row.method
        try:
            if row.kind == "unary":
                resp = S.channel.unary_unary(path)(row.request, timeout=RPC_TIMEOUT_S)
            elif row.kind == "client":
                resp = S.channel.stream_unary(path)(iter(row.request), timeout=RPC_TIMEOUT_S)
            else:
                resp = b"".join(S.channel.unary_stream(path)(row.request,
                                                             timeout=RPC_TIMEOUT_S))
            return OK, "", resp
        except grpc.RpcError as e:
            return e.code(), e.details() or "", None

    def still_serving(self, r1):
        """None, or what failed: a health check and a GetRun of a seeded run."""
        try:
            h = S.health.Check(tc.health_pb.HealthCheckRequest(), timeout=RPC_TIMEOUT_S)
            if h.status != tc.health_pb.HealthCheckResponse.SERVING:
                return "health: %s" % h.status
            run = self.stub.GetRun(pb.GetRunRequest(run_id=r1), timeout=RPC_TIMEOUT_S)
            if run.run_id != r1:
                return "GetRun answered run %r" % run.run_id
        except grpc.RpcError as e:
            return "%s: %s" % (e.code().name, e.details())
        if S.proc.poll() is not None:
            return "cairnd exited with %s" % S.proc.returncode
        return None

    def test_bad_input_table_each_refused_naming_the_field_store_unchanged(self):
        pid = S.proc.pid
        seed = self.seed()
        rows = build_rows(seed)
        api_before = api_checksum(self.stub)
        store_before = store_checksum(S.data_dir)
        failures, counts = [], {}
        print("\n%-22s %-58s %-18s %s" % ("category", "row", "code", "message"))
        for row in rows:
            code, details, resp = self.call(row)
            problems = []
            if code != row.code:
                problems.append("expected %s, got %s" % (row.code.name, code.name))
            elif row.text not in details:
                problems.append("the message lacks %r" % row.text)
            elif row.check is not None:
                verdict = row.check(resp)
                if verdict is not True:
                    problems.append(verdict)
            down = self.still_serving(seed["r1"])
            if down:
                problems.append("not serving after it: " + down)
            counts[row.category] = counts.get(row.category, 0) + 1
            print("%-22s %-58s %-18s %s%s" % (row.category, row.name[:58], code.name,
                                              details[:100].replace("\n", " "),
                                              "  <-- " + "; ".join(problems) if problems
                                              else ""))
            if problems:
                failures.append("%s / %s: %s (details %r)" % (row.category, row.name,
                                                             "; ".join(problems), details))
                if down:
                    break  # nothing after this row would mean anything
        for category, name, why in SKIPPED_ROWS:
            print("%-22s %-58s %-18s %s" % (category, name, "SKIP", why))
        print("rows by category: %s; %d rows run, %d skipped" % (
            ", ".join("%s %d" % kv for kv in counts.items()), len(rows), len(SKIPPED_ROWS)))

        if S.proc.poll() is None:
            api_after = api_checksum(self.stub)
            if api_after != api_before:
                failures.append("the store's content changed (public API): %s -> %s"
                                % (api_before, api_after))
        store_after = store_checksum(S.data_dir)
        if store_after != store_before:
            failures.append("the store's content changed (its rows): %s -> %s"
                            % (store_before, store_after))
        self.assertFalse(failures, "\n" + "\n".join(failures))
        self.assertGreaterEqual(len(rows), 40)
        self.assertIsNone(S.proc.poll(), "cairnd exited")
        self.assertEqual(S.proc.pid, pid)

    def test_token_in_wrong_format_refused_naming_the_authorization_header(self):
        """A cairnd with --auth-tokens: each malformed authorization header
        is UNAUTHENTICATED naming the header, never echoing the token, on a
        unary call, a server stream and a client stream alike; Health stays
        open whatever the header; nothing is stored; cairnd serves on."""
        good = "interop-" + os.urandom(16).hex()
        tokens = os.path.join(S.root, "bad-input-tokens")
        fd = os.open(tokens, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("interop %s admin *\n" % hashlib.sha256(good.encode()).hexdigest())
        server = Cairnd("bad-token", ["--auth-tokens", tokens])
        try:
            self._token_rows(server, good)
        finally:
            server.stop()

    def _token_rows(self, server, good):
        auth = [("authorization", "Bearer " + good)]
        stub = tc.pb_grpc.CoordinatorStub(server.channel)
        run_id = self.run_id("token")
        stub.CreateRun(pb.CreateRunRequest(idempotency_key=self.key(), run_id=run_id,
                                           workers=["w1"]), metadata=auth, timeout=RPC_TIMEOUT_S)
        get_run = f_bytes(1, run_id)
        append = f_bytes(KEY, "bad-token-key") + f_bytes(RUN, run_id) + f_bytes(3, event())
        upload = [header(run_id, 1, key="bad-token-ckpt"), chunk(b"x")]
        calls = [("GetRun", lambda md: server.channel.unary_unary(SVC + "GetRun")(
                      get_run, metadata=md, timeout=RPC_TIMEOUT_S)),
                 ("AppendEvents", lambda md: server.channel.unary_unary(SVC + "AppendEvents")(
                      append, metadata=md, timeout=RPC_TIMEOUT_S)),
                 ("WatchEvents", lambda md: next(iter(server.channel.unary_stream(
                      SVC + "WatchEvents")(get_run, metadata=md, timeout=RPC_TIMEOUT_S)))),
                 ("CreateCheckpoint", lambda md: server.channel.stream_unary(
                      SVC + "CreateCheckpoint")(iter(upload), metadata=md,
                                                timeout=RPC_TIMEOUT_S))]
        failures = []
        print("\n%-34s %-18s %-18s %s" % ("row", "method", "code", "message"))
        for name, md, code, text in token_rows(good):
            for method, call in calls:
                if code == OK and method != "GetRun":
                    continue  # one call shows the form is accepted
                try:
                    call(md)
                    got, details = OK, ""
                except grpc.RpcError as e:
                    got, details = e.code(), e.details() or ""
                print("%-34s %-18s %-18s %s" % (name, method, got.name, details[:90]))
                if got != code or text not in details or good in details:
                    failures.append("%s / %s: expected %s %r, got %s %r"
                                    % (name, method, code.name, text, got.name, details))
            try:
                h = tc.health_grpc.HealthStub(server.channel).Check(
                    tc.health_pb.HealthCheckRequest(), metadata=md, timeout=RPC_TIMEOUT_S)
                if h.status != tc.health_pb.HealthCheckResponse.SERVING:
                    failures.append("%s / Health: %s" % (name, h.status))
            except grpc.RpcError as e:
                failures.append("%s / Health: %s %s" % (name, e.code().name, e.details()))
        # A method cairnd does not serve: refused before any handler, by
        # gRPC core's auth metadata processor on the server's credentials
        # (only it sees such calls), UNIMPLEMENTED only with a token.
        unknown = server.channel.unary_unary(SVC + "NoSuchMethod")
        for md, code in (([], UNAUTHENTICATED), (auth, grpc.StatusCode.UNIMPLEMENTED)):
            try:
                unknown(b"", metadata=md, timeout=RPC_TIMEOUT_S)
                failures.append("NoSuchMethod answered OK")
            except grpc.RpcError as e:
                if e.code() != code:
                    failures.append("NoSuchMethod with %d headers: expected %s, got %s %r"
                                    % (len(md), code.name, e.code().name, e.details()))
        # Nothing got in: no event, no checkpoint; and cairnd still serves.
        run = stub.GetRun(pb.GetRunRequest(run_id=run_id), metadata=auth,
                          timeout=RPC_TIMEOUT_S)
        self.assertEqual(run.next_seq, 1)
        self.assertEqual(run.latest_checkpoint_id, "")
        self.assertIsNone(server.proc.poll(), "cairnd exited")
        self.assertFalse(failures, "\n" + "\n".join(failures))


if __name__ == "__main__":
    tc.main()
