#!/usr/bin/python3
"""Power-loss proof for the embedded store.

cairnd runs with powercut.c preloaded (its header states the model). Eight
callers (Python grpcio, one thread each) work through the workers of a
run: AcquireWorker, appends under the fencing token, now and then
RenewLease or a CreateCheckpoint upload, CompleteWorker. Every operation is
recorded as invoked, then acknowledged, failed (a definite error) or
unknown (no answer before the cut); one that gets no answer is retried
with the same key until the cut. At a seeded moment (a count of
acknowledgements) cairnd is killed with SIGKILL, powercut_revert.py drops
what was never synced, and the check runs on a copy (PRAGMA
integrity_check of cairn.db and pins.db) and on a restarted cairnd:

  every acknowledged append present exactly once at the seqs it was told,
  unknown ones at most once (all of a batch or none), failed ones and
  anything never sent absent, seqs dense; every acknowledged completion's
  worker.completed event at its seq, unknown ones at most once; every
  acknowledged checkpoint listed once under its id and loading with its
  SHA-256, unknown ones at most once.

Then every operation is sent again with its key: acknowledged ones must
replay their first answer (the idempotency record survived with its
effect), unknown ones apply now; each acknowledged lease still renews and,
released, is followed by a larger fencing token. The next round runs on
the same cairnd and data dir, and rechecks the runs of every earlier round.

Negative controls (powercut_sql.c), which must make the check fail:
synchronous=OFF under the shim (acknowledged events lost), and
deduplication disabled behind faultproxy.py losing responses (duplicates).

Run: test_powercut.py --cairnd PATH --shim PATH --proxy PATH --proto-dir DIR
       --protoc PATH --grpc-plugin PATH [--seed N] [--rounds N] [unittest args]
Processes listen on 127.0.0.1:0 and are stopped by PID; each child dies
with the test (PR_SET_PDEATHSIG). Nothing waits by sleeping: the harness
waits for printed lines, process exits and call answers (the callers'
retry backoff is a pause between attempts, not a synchronisation).
"""
import argparse
import ctypes
import hashlib
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import unittest

# Each round forks a new cairnd (Popen with preexec_fn) while this
# process's channels still have gRPC threads at work; grpcio's fork
# handlers then wait for its thread pool to idle, which can be forever
# ("Waiting for thread pool to idle before forking", seen in CI). The
# children exec at once and never use gRPC: no fork support is needed.
os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "false"
import grpc  # noqa: E402

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import powercut_revert  # noqa: E402
import stubs  # noqa: E402

ARGS = None
pb = pb_grpc = None
WAIT_S = 120          # a bound on any single wait, not a synchronisation
RPC_S = 30            # per call
CALLERS = 8
WORKERS_EACH = 60     # more than a caller reaches before the cut
TTL_MS = 600000       # leases outlive the test
CHUNK = 16 * 1024
DEFINITE = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION,
            grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.NOT_FOUND,
            grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.PERMISSION_DENIED,
            grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNIMPLEMENTED,
            grpc.StatusCode.DATA_LOSS}


def die_with_parent():
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def generate_stubs(out):
    global pb, pb_grpc
    pb, pb_grpc, _, _ = stubs.generate(ARGS.protoc, ARGS.proto_dir, ARGS.grpc_plugin, out)


def channel(target):
    # Reconnect at once after a reset (the proxy's lost responses).
    return grpc.insecure_channel(target, options=[
        ("grpc.enable_http_proxy", 0), ("grpc.enable_retries", 0),
        ("grpc.initial_reconnect_backoff_ms", 20), ("grpc.min_reconnect_backoff_ms", 20),
        ("grpc.max_reconnect_backoff_ms", 100)])


# ---- processes ----

class Cairnd:
    """cairnd on data_dir, with the shim when side_dir is given (a fresh
    undo log there) and the controls' environment in extra_env."""

    def __init__(self, data_dir, log, side_dir=None, extra_env=None):
        env = dict(os.environ)
        env.pop("LD_PRELOAD", None)
        if side_dir is not None or extra_env:
            env["LD_PRELOAD"] = ARGS.shim
            # cairnd may be built with ASan: the shim comes first, which
            # ASan accepts with this (as tests/fault/test_fsync.c does).
            env["ASAN_OPTIONS"] = "verify_asan_link_order=0:" + env.get("ASAN_OPTIONS", "")
        if side_dir is not None:
            env["CAIRN_POWERCUT_DIR"] = data_dir
            env["CAIRN_POWERCUT_LOG"] = side_dir
        env.update(extra_env or {})
        self.log_path = log
        with open(log, "ab") as lf:
            self.proc = subprocess.Popen(
                [ARGS.cairnd, "--listen", "127.0.0.1:0", "--data-dir", data_dir,
                 "--threads", "2", "--checkpoint-retention", "100000",
                 "--metrics-listen", "127.0.0.1:0"],
                stdout=subprocess.PIPE, stderr=lf, env=env, preexec_fn=die_with_parent)
        line = self.proc.stdout.readline().decode()
        m = re.match(r"listening on (127\.0\.0\.1:\d+)", line)
        if not m:
            self.proc.wait()
            raise AssertionError("cairnd did not start: %r\n%s" % (line, self.log_tail()))
        self.target = m.group(1)
        self.channel = channel(self.target)
        self.stub = pb_grpc.CoordinatorStub(self.channel)

    def assert_clean_log(self):
        """cairnd's log holds no sanitizer report."""
        with open(self.log_path, errors="replace") as f:
            text = f.read()
        for bad in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            if bad in text:
                raise AssertionError("cairnd's log: %s" % text[max(0, text.index(bad) - 200):][:3000])

    def assert_clean(self):
        """cairnd still runs (a sanitizer's report or a crash would have
        ended it) and its log holds no sanitizer report."""
        self.assert_clean_log()
        if self.proc.poll() is not None:
            raise AssertionError("cairnd exited (%s) before the cut:\n%s" % (
                self.proc.returncode, self.log_tail()))

    def log_tail(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()[-3000:]

    def kill(self, close=True):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=WAIT_S)
        if close:
            self.close()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=WAIT_S)
        self.close()
        return rc

    def close(self):
        self.channel.close()
        self.proc.stdout.close()


class Proxy:
    def __init__(self, upstream, seed, lose):
        self.proc = subprocess.Popen(
            [sys.executable, ARGS.proxy, "--upstream", upstream, "--seed", str(seed),
             "--lose", str(lose)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=die_with_parent)
        m = re.match(r"listening on (127\.0\.0\.1:\d+)", self.proc.stdout.readline().decode())
        if not m:
            raise AssertionError("faultproxy did not start")
        self.target = m.group(1)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=WAIT_S)
        return err.decode().strip().splitlines()[-1]


# ---- operations and callers ----

class Op:
    """One client operation: its request (sent again as is on a retry)
    and what became of it."""

    def __init__(self, kind, key, worker, **kw):
        self.kind, self.key, self.worker = kind, key, worker
        self.status = "invoked"
        self.result = None
        self.__dict__.update(kw)


class Book:
    """Every operation of every run, and the count of acknowledgements."""

    def __init__(self):
        self.cv = threading.Condition()
        self.acked = 0
        self.cut = False   # no more retries: what has no answer is unknown
        self.stop = False  # no new operations
        self.runs = {}     # run_id -> [Op]

    def add(self, run_id, op):
        with self.cv:
            self.runs.setdefault(run_id, []).append(op)

    def ack(self):
        with self.cv:
            self.acked += 1
            self.cv.notify_all()


def call(stub, op, run_id):
    """One attempt; returns the answer or raises grpc.RpcError."""
    k = op.kind
    if k == "append":
        evs = [pb.Event(type="step", worker_id=op.worker, payload=p) for p in op.payloads]
        return stub.AppendEvents(pb.AppendEventsRequest(
            idempotency_key=op.key, run_id=run_id, events=evs, fencing_token=op.token),
            timeout=RPC_S)
    if k == "acquire":
        return stub.AcquireWorker(pb.AcquireWorkerRequest(
            idempotency_key=op.key, run_id=run_id, worker_id=op.worker, holder=op.holder,
            ttl_ms=TTL_MS), timeout=RPC_S)
    if k == "renew":
        return stub.RenewLease(pb.RenewLeaseRequest(
            idempotency_key=op.key, run_id=run_id, worker_id=op.worker, lease_id=op.lease_id,
            ttl_ms=TTL_MS), timeout=RPC_S)
    if k == "release":
        return stub.ReleaseWorker(pb.ReleaseWorkerRequest(
            idempotency_key=op.key, run_id=run_id, worker_id=op.worker, lease_id=op.lease_id),
            timeout=RPC_S)
    if k == "complete":
        return stub.CompleteWorker(pb.CompleteWorkerRequest(
            idempotency_key=op.key, run_id=run_id, worker_id=op.worker, fencing_token=op.token),
            timeout=RPC_S)
    if k == "checkpoint":
        head = pb.CheckpointHeader(
            idempotency_key=op.key, run_id=run_id, run_state=op.state,
            events_count=op.events_count, snapshot_size=len(op.data), snapshot_sha256=op.sha)
        msgs = [pb.CreateCheckpointRequest(header=head)] + [
            pb.CreateCheckpointRequest(chunk=op.data[i:i + CHUNK])
            for i in range(0, len(op.data), CHUNK)]
        return stub.CreateCheckpoint(iter(msgs), timeout=RPC_S)
    raise ValueError(k)


def perform(book, stub, run_id, op, attempts=200):
    """Sends op until it is answered, fails for good, or the cut comes."""
    for attempt in range(attempts):
        try:
            op.result = call(stub, op, run_id)
            op.status = "acked"
            book.ack()
            return True
        except grpc.RpcError as e:
            if e.code() in DEFINITE:
                op.status, op.error = "failed", "%s: %s" % (e.code().name, e.details())
                return False
            if book.cut:
                op.status = "unknown"
                return False
            time.sleep(min(0.01 * (attempt + 1), 0.2))  # backoff before the retry
    op.status = "unknown"
    return False


def caller(book, stub, run_id, c, rng):
    """Works through worker w<c>-<i> after worker until told to stop."""
    n = 0
    last_seq = 0
    for i in range(WORKERS_EACH):
        w = "w%d-%d" % (c, i)
        if book.stop or book.cut:
            return

        def new(kind, **kw):
            nonlocal n
            n += 1
            op = Op(kind, "%s.c%d.o%d" % (run_id, c, n), w, **kw)
            book.add(run_id, op)
            return op

        lease = new("acquire", holder="c%d" % c)
        if not perform(book, stub, run_id, lease):
            return
        token, lease_id = lease.result.fencing_token, lease.result.lease_id
        for _ in range(rng.randint(2, 8)):
            if book.stop or book.cut:
                return
            op = new("append", token=token,
                     payloads=[b"%s.c%d.o%d/%d" % (run_id.encode(), c, n + 1, j)
                               for j in range(rng.randint(1, 3))])
            if not perform(book, stub, run_id, op):
                return
            last_seq = op.result.last_seq
            r = rng.random()
            if r < 0.15:
                if not perform(book, stub, run_id, new("renew", lease_id=lease_id)):
                    return
            elif r < 0.27:
                tag = b"%s.c%d.o%d;" % (run_id.encode(), c, n + 1)
                data = tag + rng.randbytes(rng.randint(256, 96 * 1024))
                op = new("checkpoint", state="s%d" % n, events_count=last_seq, data=data,
                         sha=hashlib.sha256(data).hexdigest())
                if not perform(book, stub, run_id, op):
                    return
        if not perform(book, stub, run_id, new("complete", token=token)):
            return


def create_run(book, stub, run_id):
    workers = ["w%d-%d" % (c, i) for c in range(CALLERS) for i in range(WORKERS_EACH)]
    op = Op("create", "create." + run_id, "")
    try:
        stub.CreateRun(pb.CreateRunRequest(idempotency_key=op.key, run_id=run_id,
                                           workers=workers), timeout=RPC_S)
    except grpc.RpcError as e:
        raise AssertionError("CreateRun %s: %s" % (run_id, e))
    op.status = "acked"
    book.add(run_id, op)


def caller_main(book, stub, run_id, c, rng):
    try:
        caller(book, stub, run_id, c, rng)
    finally:
        with book.cv:
            book.cv.notify_all()  # wait_acked also waits for the callers' end


def drive(book, stub, run_id, seed):
    """Starts the callers of run_id; returns their threads."""
    threads = []
    for c in range(CALLERS):
        t = threading.Thread(target=caller_main, args=(book, stub, run_id, c,
                                                       random.Random(seed * 100 + c)),
                             daemon=True)
        t.start()
        threads.append(t)
    return threads


def wait_acked(book, n, threads):
    with book.cv:
        ok = book.cv.wait_for(
            lambda: book.acked >= n or not any(t.is_alive() for t in threads), timeout=WAIT_S)
    if not ok:
        raise AssertionError("callers made no progress for %d s" % WAIT_S)


# ---- the check ----

class Verdict:
    KINDS = ("lost", "partial", "duplicates", "never_sent", "misplaced", "failed_applied", "seq_gaps",
             "checkpoints_lost", "checkpoints_duplicated", "checkpoints_bad", "integrity",
             "replay_mismatch", "leases")

    def __init__(self):
        self.counts = dict.fromkeys(self.KINDS, 0)
        self.notes = []
        self.acked_events = self.unknown_ops = self.unknown_present = self.lost_events = 0

    def bad(self, kind, note):
        self.counts[kind] += 1
        if len(self.notes) < 20:
            self.notes.append("%s: %s" % (kind, note))

    @property
    def ok(self):
        return not any(self.counts.values())

    def __str__(self):
        head = "PASS" if self.ok else "FAIL"
        nz = ", ".join("%s %d" % kv for kv in self.counts.items() if kv[1])
        return ("%s%s (acked events checked %d, of which lost %d; unknown ops %d, of which "
                "present %d)%s" % (head, " " + nz if nz else "", self.acked_events,
                                   self.lost_events, self.unknown_ops, self.unknown_present,
                                   "".join("\n  " + n for n in self.notes)))


def read_log(stub, run_id):
    events, seq = [], 1
    while True:
        page = stub.ReadEvents(pb.ReadEventsRequest(run_id=run_id, from_seq=seq,
                                                    max_events=1000), timeout=RPC_S)
        if not page.events:
            return events
        events.extend(page.events)
        seq = page.next_seq


def list_checkpoints(stub, run_id):
    out, token = [], ""
    while True:
        page = stub.ListCheckpoints(pb.ListCheckpointsRequest(run_id=run_id, page_token=token),
                                    timeout=RPC_S)
        out.extend(page.checkpoints)
        token = page.next_page_token
        if not token:
            return out


def load_sha(stub, run_id, checkpoint_id):
    h, n, meta = hashlib.sha256(), 0, None
    for chunk in stub.LoadCheckpoint(pb.LoadCheckpointRequest(
            run_id=run_id, checkpoint_id=checkpoint_id), timeout=RPC_S):
        if chunk.HasField("checkpoint"):
            meta = chunk.checkpoint
        h.update(chunk.data)
        n += len(chunk.data)
    return meta, h.hexdigest(), n


def check_run(stub, run_id, ops, v):
    try:
        events = read_log(stub, run_id)
        run = stub.GetRun(pb.GetRunRequest(run_id=run_id), timeout=RPC_S)
        cps = list_checkpoints(stub, run_id)
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.NOT_FOUND:
            raise
        events, run, cps = [], None, []
        if any(o.kind == "create" and o.status == "acked" for o in ops):
            v.bad("lost", "run %s is gone" % run_id)
    for i, e in enumerate(events):
        if e.seq != i + 1:
            v.bad("seq_gaps", "%s: event %d has seq %d" % (run_id, i + 1, e.seq))
            break
    if run is not None and run.next_seq != len(events) + 1:
        v.bad("seq_gaps", "%s: next_seq %d after %d events" % (run_id, run.next_seq, len(events)))

    steps, completions = {}, {}
    for e in events:
        if e.type == "worker.completed":
            completions.setdefault(e.worker_id, []).append(e.seq)
        else:
            steps.setdefault(e.payload, []).append(e.seq)
    sent = set()
    for op in ops:
        if op.kind == "append":
            seqs = [steps.get(p, []) for p in op.payloads]
            sent.update(op.payloads)
            counts = [len(s) for s in seqs]
            if op.status == "acked":
                v.acked_events += len(op.payloads)
                if 0 in counts:
                    v.lost_events += counts.count(0)
                    v.bad("lost", "%s (acked, seqs %d..%d)" % (op.key, op.result.first_seq,
                                                               op.result.last_seq))
                elif max(counts) > 1:
                    v.bad("duplicates", "%s at seqs %s" % (op.key, seqs))
                elif [s[0] for s in seqs] != list(range(op.result.first_seq,
                                                        op.result.last_seq + 1)):
                    v.bad("misplaced", "%s acked at %d..%d, found at %s" % (
                        op.key, op.result.first_seq, op.result.last_seq, seqs))
            elif op.status == "unknown":
                v.unknown_ops += 1
                v.unknown_present += max(counts) > 0
                if max(counts) > 1:
                    v.bad("duplicates", "%s (unknown) at seqs %s" % (op.key, seqs))
                elif min(counts) != max(counts):
                    v.bad("partial", "%s (unknown) only partly there: %s" % (op.key, seqs))
            elif max(counts) > 0:
                v.bad("failed_applied", "%s (%s) at seqs %s" % (op.key, op.status, seqs))
        elif op.kind == "complete":
            seqs = completions.get(op.worker, [])
            if op.status == "acked":
                if not seqs:
                    v.bad("lost", "completion %s (acked, seq %d)" % (op.key, op.result.seq))
                elif len(seqs) > 1:
                    v.bad("duplicates", "completion of %s at %s" % (op.worker, seqs))
                elif seqs[0] != op.result.seq:
                    v.bad("misplaced", "completion %s acked at %d, found at %d" % (
                        op.key, op.result.seq, seqs[0]))
            elif op.status == "unknown":
                v.unknown_ops += 1
                v.unknown_present += len(seqs) > 0
                if len(seqs) > 1:
                    v.bad("duplicates", "completion of %s at %s" % (op.worker, seqs))
            elif seqs and not any(o.kind == "complete" and o.worker == op.worker and
                                  o.status != "failed" for o in ops):
                v.bad("failed_applied", "completion %s (%s) at %s" % (op.key, op.status, seqs))
        elif op.kind in ("acquire", "renew", "release") and op.status == "unknown":
            v.unknown_ops += 1
    for payload, seqs in steps.items():
        if payload not in sent:
            v.bad("never_sent", "%r at %s" % (payload, seqs))
    invoked = {o.worker for o in ops if o.kind == "complete"}
    for worker, seqs in completions.items():
        if worker not in invoked:
            v.bad("never_sent", "completion of %s at %s" % (worker, seqs))
    if run is not None and sorted(run.completed_workers) != sorted(completions):
        v.bad("misplaced", "%s: completed_workers %s, log %s" % (
            run_id, sorted(run.completed_workers), sorted(completions)))

    by_sha = {}
    for cp in cps:
        by_sha.setdefault(cp.snapshot_sha256, []).append(cp)
    shas = set()
    for op in ops:
        if op.kind != "checkpoint":
            continue
        shas.add(op.sha)
        found = by_sha.get(op.sha, [])
        if op.status == "acked":
            if not found:
                v.bad("checkpoints_lost", "%s (acked as %s)" % (op.key, op.result.checkpoint_id))
            elif len(found) > 1:
                v.bad("checkpoints_duplicated", "%s: %s" % (op.key, [c.checkpoint_id for c in found]))
            elif found[0].checkpoint_id != op.result.checkpoint_id:
                v.bad("checkpoints_lost", "%s acked as %s, listed as %s" % (
                    op.key, op.result.checkpoint_id, found[0].checkpoint_id))
        elif op.status == "unknown":
            v.unknown_ops += 1
            v.unknown_present += len(found) > 0
            if len(found) > 1:
                v.bad("checkpoints_duplicated", "%s (unknown): %d" % (op.key, len(found)))
        elif found:
            v.bad("failed_applied", "checkpoint %s (%s)" % (op.key, op.status))
        for cp in found:
            try:
                meta, sha, n = load_sha(stub, run_id, cp.checkpoint_id)
            except grpc.RpcError as e:
                v.bad("checkpoints_bad", "%s: LoadCheckpoint %s" % (cp.checkpoint_id, e.code()))
                continue
            if sha != op.sha or n != len(op.data) or meta is None:
                v.bad("checkpoints_bad", "%s loads %d bytes, sha %s" % (cp.checkpoint_id, n, sha))
    for sha, found in by_sha.items():
        if sha not in shas:
            v.bad("never_sent", "checkpoint %s" % found[0].checkpoint_id)


def integrity(data_dir, scratch, v):
    """PRAGMA integrity_check of each database, on a copy of the data dir
    as the cut left it (opening runs SQLite's recovery in the copy)."""
    copy = os.path.join(scratch, "copy")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(data_dir, copy, ignore=shutil.ignore_patterns("blobs"))
    for db in ("cairn.db", "pins.db"):
        path = os.path.join(copy, db)
        if not os.path.exists(path):
            v.bad("integrity", "%s is missing" % db)
            continue
        conn = sqlite3.connect(path)
        try:
            res = conn.execute("PRAGMA integrity_check").fetchall()
        except sqlite3.DatabaseError as e:
            res = [(str(e),)]
        finally:
            conn.close()
        if res != [("ok",)]:
            v.bad("integrity", "%s: %s" % (db, res[:5]))
    shutil.rmtree(copy)


def resend(book, stub, run_id, v):
    """Every operation again with its key: acknowledged ones replay their
    answer, unknown ones apply now; then each held lease is renewed,
    released and acquired again with a larger fencing token."""
    ops = [o for o in book.runs[run_id] if o.status in ("acked", "unknown")
           and o.kind in ("append", "complete", "checkpoint", "acquire", "renew")]
    for op in ops:
        before, status = op.result, op.status
        try:
            op.result = call(stub, op, run_id)
            op.status = "acked"
        except grpc.RpcError as e:
            v.bad("replay_mismatch", "%s (%s) sent again: %s %s" % (op.key, status, e.code(),
                                                                    e.details()))
            continue
        if status != "acked":
            continue
        same = op.result.replayed and {
            "append": lambda a, b: (a.first_seq, a.last_seq) == (b.first_seq, b.last_seq),
            "complete": lambda a, b: a.seq == b.seq,
            "checkpoint": lambda a, b: a.checkpoint_id == b.checkpoint_id,
            "acquire": lambda a, b: (a.lease_id, a.fencing_token) == (b.lease_id, b.fencing_token),
            "renew": lambda a, b: (a.lease_id, a.expires_at) == (b.lease_id, b.expires_at),
        }[op.kind](op.result, before)
        if not same:
            v.bad("replay_mismatch", "%s: first %s, now %s" % (
                op.key, str(before).replace("\n", " "), str(op.result).replace("\n", " ")))
    completed = {o.worker for o in book.runs[run_id] if o.kind == "complete"}
    for op in list(book.runs[run_id]):
        if op.kind != "acquire" or op.status != "acked" or op.worker in completed:
            continue
        tokens = [o.result.fencing_token for o in book.runs[run_id]
                  if o.kind == "acquire" and o.worker == op.worker and o.status == "acked"]
        steps = [Op("renew", op.key + ".renew", op.worker, lease_id=op.result.lease_id),
                 Op("release", op.key + ".release", op.worker, lease_id=op.result.lease_id),
                 Op("acquire", op.key + ".again", op.worker, holder="checker")]
        for s in steps:
            book.add(run_id, s)
            try:
                s.result = call(stub, s, run_id)
                s.status = "acked"
            except grpc.RpcError as e:
                s.status = "failed"
                v.bad("leases", "%s: %s %s" % (s.key, e.code(), e.details()))
                break
        else:
            if steps[2].result.fencing_token <= max(tokens):
                v.bad("leases", "%s: token %d after %s" % (op.worker, steps[2].result.fencing_token,
                                                          tokens))
            done = Op("release", op.key + ".done", op.worker, lease_id=steps[2].result.lease_id)
            book.add(run_id, done)
            call(stub, done, run_id)
            done.status = "acked"


# ---- the scenarios ----

class Scratch:
    def __init__(self, name):
        self.root = tempfile.mkdtemp(prefix="cairn-%s-" % name)
        self.data = os.path.join(self.root, "data")
        self.side = os.path.join(self.root, "side")
        os.mkdir(self.data, 0o700)
        os.mkdir(self.side, 0o700)
        self.log = os.path.join(self.root, "cairnd.log")

    def close(self, keep=False):
        if not keep and not os.environ.get("CAIRN_TEST_KEEP"):
            shutil.rmtree(self.root, ignore_errors=True)
        else:
            print("kept %s" % self.root, file=sys.stderr)


def cut_round(s, server, book, run_id, seed, extra_env=None):
    """Runs the callers on run_id, cuts the power at a seeded moment,
    reverts and restarts; returns (new server, revert counts, cut_at)."""
    rng = random.Random(seed)
    create_run(book, server.stub, run_id)
    cut_at = book.acked + rng.randint(20, 300)
    threads = drive(book, server.stub, run_id, seed)
    wait_acked(book, cut_at, threads)
    server.assert_clean()
    book.cut = True
    server.kill(close=False)  # the callers' calls fail; none may use a closed channel
    for t in threads:
        t.join(timeout=WAIT_S)
        if t.is_alive():
            raise AssertionError("a caller did not stop after the cut")
    server.close()
    counts = powercut_revert.revert(s.side, s.data)
    powercut_revert.reset(s.side)
    book.cut = False
    return counts, cut_at


class PowerCut(unittest.TestCase):
    def test_power_cut_rounds_keep_every_acknowledged_operation(self):
        rounds, seed = ARGS.rounds, ARGS.seed
        print("seed %d, %d rounds" % (seed, rounds), file=sys.stderr)
        s = Scratch("powercut")
        book = Book()
        totals = {"acked": 0, "unknown": 0, "present": 0, "undone": 0, "wal_undone": 0}
        seen = {"wal": 0, "wal_syncs": 0, "blobs": 0, "dir_syncs": 0}
        server = Cairnd(s.data, s.log, s.side)
        ok = False
        try:
            for r in range(rounds):
                run_id = "r%02d" % r
                t0 = time.monotonic()
                counts, cut_at = cut_round(s, server, book, run_id, seed * 1000 + r)
                v = Verdict()
                integrity(s.data, s.root, v)
                server = Cairnd(s.data, s.log, s.side)
                for rid, ops in book.runs.items():
                    check_run(server.stub, rid, ops, v)
                acked_now = sum(len(o.payloads) for o in book.runs[run_id]
                                if o.kind == "append" and o.status == "acked")
                resend(book, server.stub, run_id, v)
                after = Verdict()
                for rid, ops in book.runs.items():
                    check_run(server.stub, rid, ops, after)
                seen["wal"] += counts["data cairn.db-wal"]
                seen["wal_syncs"] += counts["syncs cairn.db-wal"]
                seen["blobs"] += sum(n for k, n in counts.items() if k.startswith("data blobs/"))
                seen["dir_syncs"] += counts["syncs ."] + counts["syncs blobs"]
                totals["acked"] += acked_now
                totals["unknown"] += v.unknown_ops
                totals["present"] += v.unknown_present
                totals["undone"] += counts["undone"]
                totals["wal_undone"] += counts["undone data cairn.db-wal"]
                print("round %d: cut after %d acks, %d records, %d undone (%d of the WAL); %s; "
                      "after resending: %s  [%.1f s]" % (
                          r, cut_at, counts["records"], counts["undone"],
                          counts["undone data cairn.db-wal"], v, after,
                          time.monotonic() - t0), file=sys.stderr)
                self.assertTrue(v.ok, "round %d (seed %d): %s" % (r, seed * 1000 + r, v))
                self.assertTrue(after.ok, "round %d after resending: %s" % (r, after))
            self.assertEqual(server.stop(), 0)
            server.assert_clean_log()
            final = Verdict()
            integrity(s.data, s.root, final)
            self.assertTrue(final.ok, str(final))
            print("powercut: %d/%d rounds passed, %d acknowledged events (each rechecked in "
                  "every later round), %d unknown ops (%d present after the cut), %d records "
                  "undone (%d WAL writes); shim saw %s" % (
                      rounds, rounds, totals["acked"], totals["unknown"], totals["present"],
                      totals["undone"], totals["wal_undone"], seen), file=sys.stderr)
            # The shim was in the path: SQLite's WAL and the blob files
            # went through it, and so did syncs of files and directories.
            for k, n in seen.items():
                self.assertGreater(n, 0, "the shim saw no %s: %s" % (k, seen))
            self.assertGreater(totals["undone"], 0)
            ok = True
        finally:
            if server.proc.poll() is None:
                server.kill()
            s.close(keep=not ok)

    def test_control_synchronous_off_loses_acknowledged_events(self):
        rounds = 3
        failed = lost = lost_events = 0
        for r in range(rounds):
            s = Scratch("powercut-sync-off")
            book = Book()
            server = Cairnd(s.data, s.log, s.side, {"CAIRN_POWERCUT_SYNC_OFF": "1"})
            try:
                counts, cut_at = cut_round(s, server, book, "off%d" % r, ARGS.seed * 1000 + 500 + r)
                with open(s.log, errors="replace") as f:
                    self.assertIn("synchronous = FULL rewritten to OFF", f.read())
                self.assertEqual(counts["syncs cairn.db-wal"], 0, counts)
                v = Verdict()
                integrity(s.data, s.root, v)
                server = Cairnd(s.data, s.log, s.side, {"CAIRN_POWERCUT_SYNC_OFF": "1"})
                for rid, ops in book.runs.items():
                    check_run(server.stub, rid, ops, v)
                print("control sync off, round %d: cut after %d acks: %s" % (r, cut_at, v),
                      file=sys.stderr)
                failed += not v.ok
                lost += v.counts["lost"] + v.counts["checkpoints_lost"]
                lost_events += v.lost_events
                self.assertGreater(v.counts["lost"], 0, str(v))
                self.assertEqual(server.stop(), 0)
                server.assert_clean_log()
            finally:
                if server.proc.poll() is None:
                    server.kill()
                s.close()
        print("control sync off: checker failed %d/%d rounds, %d acknowledged operations lost "
              "(%d acknowledged events)" % (failed, rounds, lost, lost_events), file=sys.stderr)

    def no_dedup_round(self, no_dedup):
        s = Scratch("powercut-no-dedup")
        book = Book()
        env = {"CAIRN_POWERCUT_NO_DEDUP": "1"} if no_dedup else {"CAIRN_POWERCUT_NONE": "1"}
        server = Cairnd(s.data, s.log, None, env)
        proxy = Proxy(server.target, ARGS.seed, 0.1)
        ch = channel(proxy.target)
        try:
            create_run(book, server.stub, "nd")
            threads = drive(book, pb_grpc.CoordinatorStub(ch), "nd", ARGS.seed * 1000 + 900)
            wait_acked(book, 400, threads)
            book.stop = True
            for t in threads:
                t.join(timeout=WAIT_S)
            totals = proxy.stop()
            v = Verdict()
            check_run(server.stub, "nd", book.runs["nd"], v)
            with open(s.log, errors="replace") as f:
                said = f.read()
            self.assertEqual(server.stop(), 0)
            server.assert_clean_log()
            return v, totals, said
        finally:
            ch.close()
            if server.proc.poll() is None:
                server.kill()
            if proxy.proc.poll() is None:
                proxy.proc.kill()
            s.close()

    def test_control_no_dedup_behind_lost_responses_duplicates(self):
        v, totals, said = self.no_dedup_round(True)
        print("control no dedup: %s; proxy %s" % (v, totals), file=sys.stderr)
        self.assertIn("idempotency lookups find nothing", said)
        self.assertIn("idempotency records replace earlier ones", said)
        self.assertFalse(v.ok)
        self.assertGreater(v.counts["duplicates"] + v.counts["checkpoints_duplicated"], 0, str(v))
        # The same through the same proxy with deduplication: the checker passes.
        v, totals, _ = self.no_dedup_round(False)
        print("with dedup, same proxy: %s; proxy %s" % (v, totals), file=sys.stderr)
        self.assertTrue(v.ok, str(v))
        self.assertNotRegex(totals, r"\blost=0\b")


def setUpModule():
    global STUBS
    STUBS = tempfile.mkdtemp(prefix="cairn-powercut-stubs-")
    generate_stubs(STUBS)


def tearDownModule():
    shutil.rmtree(STUBS, ignore_errors=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    for flag in ("cairnd", "shim", "proxy", "proto-dir", "protoc", "grpc-plugin"):
        p.add_argument("--" + flag, required=True)
    p.add_argument("--seed", type=int, default=int(os.environ.get("CAIRN_POWERCUT_SEED", "9011")))
    p.add_argument("--rounds", type=int, default=20)
    ARGS, rest = p.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
