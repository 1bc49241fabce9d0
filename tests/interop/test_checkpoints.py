#!/usr/bin/python3
"""Interop tests for worker completion, checkpoints and resume.

Shares the harness of test_coordinator.py (stub generation, the suite's
cairnd on 127.0.0.1:0 with its own temporary data dir, the helpers of
CairnTestCase) and adds what checkpoints need: client-streamed uploads,
server-streamed loads, and a few cairnd instances of their own for flags
such as --checkpoint-retention and --max-snapshot-bytes.

Run (ctest does this, see CMakeLists.txt):

    /usr/bin/python3 test_checkpoints.py --cairnd PATH --proto-dir DIR \
        --protoc PATH --grpc-plugin PATH [unittest args...]
"""

import datetime
import hashlib
import json
import logging
import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import grpc

sys.dont_write_bytecode = True  # nothing written next to the sources
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_coordinator as tc  # noqa: E402  (the shared harness)
from test_coordinator import (  # noqa: E402
    MiB, RPC_TIMEOUT_S, START_TIMEOUT_S, STOP_TIMEOUT_S, TIMESTAMP_RE, CairnTestCase)

CHECKPOINT_ID_RE = re.compile(r"^\d{8}_\d{6}_\d{6}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

pb = None  # tc.pb once setUpModule generated the stubs


def setUpModule():
    global pb
    tc.setUpModule()
    pb = tc.pb


def tearDownModule():
    tc.tearDownModule()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def created_at_of(checkpoint_id):
    """The ISO timestamp a checkpoint id YYYYMMDD_HHMMSS_ffffff stands for."""
    c = checkpoint_id
    return "%s-%s-%sT%s:%s:%s.%sZ" % (c[0:4], c[4:6], c[6:8], c[9:11], c[11:13], c[13:15],
                                      c[16:22])


class Cairnd:
    """A cairnd of its own, for a test class that needs other flags.

    Lives below the suite's temporary root (removed by tearDownModule);
    started like the suite's server and stopped by SIGTERM, which must exit 0.
    """

    def __init__(self, name, flags, data_dir=None):
        self.root = tempfile.mkdtemp(prefix=name + "-", dir=tc.S.root)
        self.data_dir = data_dir or os.path.join(self.root, "data")
        self.log_path = os.path.join(self.root, "cairnd.log")
        self.log_file = open(self.log_path, "wb")
        self.channel = None
        store_flags, env = tc.store_args(self.data_dir)
        self.proc = subprocess.Popen(preexec_fn=tc.die_with_parent, args=
            [tc.ARGS.cairnd, "--listen", "127.0.0.1:0", "--data-dir", self.data_dir,
             "--threads", "2", "--metrics-listen", "127.0.0.1:0"] + store_flags + list(flags),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.log_file,
            cwd=self.root, env=env)
        try:
            self.address = self._wait_listening()
        except BaseException:
            self._close_files()
            raise
        self.channel = grpc.insecure_channel(self.address, options=[
            ("grpc.enable_http_proxy", 0),
            ("grpc.max_send_message_length", -1),
            ("grpc.enable_retries", 0),
        ])
        self.stub = tc.pb_grpc.CoordinatorStub(self.channel)
        self.health = tc.health_grpc.HealthStub(self.channel)

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def _wait_listening(self):
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        line = b""
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while not line.endswith(b"\n"):
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    self.proc.kill()
                    self.proc.wait()
                    raise RuntimeError("cairnd did not print its address; log:\n" + self.log())
                chunk = os.read(self.proc.stdout.fileno(), 1)
                if not chunk:
                    self.proc.wait()
                    raise RuntimeError("cairnd exited (%s) before listening; log:\n%s"
                                       % (self.proc.returncode, self.log()))
                line += chunk
        finally:
            sel.close()
        m = re.fullmatch(r"listening on (127\.0\.0\.1:\d+)\n", line.decode())
        if not m:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("unexpected first line from cairnd: %r" % line)
        return m.group(1)

    def _close_files(self):
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.log_file.close()

    def stop(self):
        try:
            if self.channel is not None:
                self.channel.close()
            if self.proc.poll() is not None:
                raise AssertionError("cairnd died during the tests (exit %s); log:\n%s"
                                     % (self.proc.returncode, self.log()))
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("cairnd did not exit within %d s of SIGTERM; log:\n%s"
                                     % (STOP_TIMEOUT_S, self.log()))
            if rc != 0:
                raise AssertionError("cairnd exited with %d after SIGTERM; log:\n%s"
                                     % (rc, self.log()))
        finally:
            self._close_files()


class CkptTestCase(CairnTestCase):
    """CairnTestCase plus completion, checkpoint and resume helpers.

    A subclass with FLAGS set gets a cairnd of its own with those flags
    (self.stub then talks to it); otherwise the suite's server is used.
    """

    FLAGS = None
    server = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if cls.FLAGS is not None:
            cls.server = Cairnd(cls.__name__, cls.FLAGS)

    @classmethod
    def tearDownClass(cls):
        if cls.server is not None:
            server, cls.server = cls.server, None
            server.stop()
        super().tearDownClass()

    @property
    def stub(self):
        return self.server.stub if self.server is not None else tc.S.stub

    @property
    def health(self):
        return self.server.health if self.server is not None else tc.S.health

    @property
    def data_dir(self):
        return self.server.data_dir if self.server is not None else tc.S.data_dir

    def blob_size(self, sha):
        """The bytes stored for content sha, None when there is none."""
        return tc.blob_size(self.data_dir, sha)

    def damage_blob(self, sha, how, at=0, mask=0x01):
        tc.damage_blob(self.data_dir, sha, how, at, mask)

    def staging_files(self):
        return tc.staged(self.data_dir)

    def assertServing(self):
        resp = self.health.Check(tc.health_pb.HealthCheckRequest(service=""),
                                 timeout=RPC_TIMEOUT_S)
        self.assertEqual(resp.status, tc.health_pb.HealthCheckResponse.SERVING)

    # -- runs and workers --

    def get_run(self, rid):
        return self.stub.GetRun(pb.GetRunRequest(run_id=rid), timeout=RPC_TIMEOUT_S)

    def append_n(self, rid, n, type_="step"):
        return self.append(rid, [self.event(type_, b"%d" % i) for i in range(n)])

    def complete(self, rid, worker_id, key=None):
        """CompleteWorker; returns (response, call)."""
        return self.stub.CompleteWorker.with_call(
            pb.CompleteWorkerRequest(idempotency_key=key or self.key(), run_id=rid,
                                     worker_id=worker_id),
            timeout=RPC_TIMEOUT_S)

    # -- checkpoints --

    def header(self, rid, size, key=None, events_count=0, run_state="running",
               completed=(), sha=""):
        return pb.CheckpointHeader(
            idempotency_key=key or self.key(), run_id=rid, run_state=run_state,
            completed_workers=list(completed), events_count=events_count,
            snapshot_size=size, snapshot_sha256=sha)

    @staticmethod
    def upload(header, data, chunk_size=MiB):
        """The request stream: the header, then data in chunks."""
        yield pb.CreateCheckpointRequest(header=header)
        for i in range(0, len(data), chunk_size):
            yield pb.CreateCheckpointRequest(chunk=data[i:i + chunk_size])

    def checkpoint(self, rid, data=b"", chunk_size=MiB, **header_fields):
        """CreateCheckpoint of data (size declared exactly); returns (Checkpoint, call)."""
        h = self.header(rid, len(data), **header_fields)
        return self.stub.CreateCheckpoint.with_call(self.upload(h, data, chunk_size),
                                                    timeout=RPC_TIMEOUT_S)

    def cp(self, rid, data=b"", **kw):
        """CreateCheckpoint; returns the Checkpoint only."""
        return self.checkpoint(rid, data, **kw)[0]

    def list_cps(self, rid):
        return list(self.stub.ListCheckpoints(pb.ListCheckpointsRequest(run_id=rid),
                                              timeout=RPC_TIMEOUT_S).checkpoints)

    def list_ids(self, rid):
        return [c.checkpoint_id for c in self.list_cps(rid)]

    def check_stream(self, msgs):
        """Metadata in the first message only; data at most 1 MiB per message.
        Returns (Checkpoint, snapshot bytes)."""
        self.assertTrue(msgs, "LoadCheckpoint sent no message")
        self.assertTrue(msgs[0].HasField("checkpoint"), "first message lacks the metadata")
        for m in msgs[1:]:
            self.assertFalse(m.HasField("checkpoint"), "metadata in a later message")
        for m in msgs:
            self.assertLessEqual(len(m.data), MiB)
        return msgs[0].checkpoint, b"".join(m.data for m in msgs)

    def load(self, rid, checkpoint_id=""):
        stream = self.stub.LoadCheckpoint(
            pb.LoadCheckpointRequest(run_id=rid, checkpoint_id=checkpoint_id),
            timeout=RPC_TIMEOUT_S)
        msgs = list(stream)
        self.assertEqual(stream.code(), grpc.StatusCode.OK)
        return self.check_stream(msgs)

    def load_error(self, code, rid, checkpoint_id=""):
        """LoadCheckpoint that must end with code; returns (error, messages before it)."""
        stream = self.stub.LoadCheckpoint(
            pb.LoadCheckpointRequest(run_id=rid, checkpoint_id=checkpoint_id),
            timeout=RPC_TIMEOUT_S)
        msgs = []
        with self.assertRaises(grpc.RpcError) as cm:
            for m in stream:
                msgs.append(m)
        self.assertEqual(cm.exception.code(), code, "details: %r" % cm.exception.details())
        return cm.exception, msgs

    def cleanup(self, rid, keep_last_n, key=None):
        """CleanupCheckpoints; returns (response, call)."""
        return self.stub.CleanupCheckpoints.with_call(
            pb.CleanupCheckpointsRequest(idempotency_key=key or self.key(), run_id=rid,
                                         keep_last_n=keep_last_n),
            timeout=RPC_TIMEOUT_S)

    def resume(self, rid, all_workers=()):
        return self.stub.ResumeRun(pb.ResumeRunRequest(run_id=rid, all_workers=list(all_workers)),
                                   timeout=RPC_TIMEOUT_S)

    def assertCheckpointId(self, cp):
        self.assertRegex(cp.checkpoint_id, CHECKPOINT_ID_RE)
        self.assertRegex(cp.created_at, TIMESTAMP_RE)
        self.assertEqual(cp.created_at, created_at_of(cp.checkpoint_id))


# ---- CompleteWorker ----

class CompleteWorkerTest(CkptTestCase):

    def test_complete_worker_appends_worker_completed_event_with_returned_seq(self):
        rid = self.run_id()
        self.create_run(rid, workers=["w1", "w2"])
        self.append_n(rid, 2)
        resp, call = self.complete(rid, "w2")
        self.assertEqual(resp.seq, 3)
        self.assertFalse(resp.replayed)
        self.assertReplayTrailer(call, False)
        self.assertEqual(resp.run_state, "running")
        events = self.read_all(rid)
        self.assertEqual([e.seq for e in events], [1, 2, 3])
        ev = events[2]
        self.assertEqual((ev.seq, ev.type, ev.worker_id, ev.run_id),
                         (resp.seq, "worker.completed", "w2", rid))
        self.assertRegex(ev.created_at, TIMESTAMP_RE)
        run = self.get_run(rid)
        self.assertEqual(list(run.completed_workers), ["w2"])
        self.assertEqual(run.state, "running")
        self.assertEqual(run.next_seq, 4)

    def test_complete_all_workers_turns_run_state_completed(self):
        rid = self.run_id()
        self.create_run(rid, workers=["a", "b", "c"])
        # No event before: the first completion is the run's first event.
        states = []
        for i, w in enumerate(["c", "a", "b"]):
            resp, _ = self.complete(rid, w)
            self.assertEqual(resp.seq, i + 1)
            states.append((resp.run_state, self.get_run(rid).state))
        self.assertEqual(states, [("running", "running"), ("running", "running"),
                                  ("completed", "completed")])
        run = self.get_run(rid)
        # Completion order, not the run's worker order.
        self.assertEqual(list(run.completed_workers), ["c", "a", "b"])
        self.assertEqual(run.next_seq, 4)
        self.assertEqual([(e.type, e.worker_id) for e in self.read_all(rid)],
                         [("worker.completed", "c"), ("worker.completed", "a"),
                          ("worker.completed", "b")])

    def test_complete_worker_same_key_replays_with_trailer_and_no_second_event(self):
        rid = self.run_id()
        self.create_run(rid, workers=["w1", "w2"])
        key = self.key()
        first, call1 = self.complete(rid, "w1", key=key)
        self.append_n(rid, 1)  # the run moves on; the retry is still a replay
        second, call2 = self.complete(rid, "w1", key=key)
        self.assertAppliedThenReplayed(first, call1, second, call2)
        self.assertEqual((second.seq, second.run_state), (first.seq, first.run_state))
        events = self.read_all(rid)
        self.assertEqual([e.type for e in events], ["worker.completed", "step"])
        self.assertEqual(list(self.get_run(rid).completed_workers), ["w1"])

    def test_complete_already_completed_worker_new_key_failed_precondition(self):
        rid = self.run_id()
        self.create_run(rid, workers=["w1", "w2"])
        first, _ = self.complete(rid, "w1")
        err = self.assertRpcError(
            grpc.StatusCode.FAILED_PRECONDITION, self.stub.CompleteWorker,
            pb.CompleteWorkerRequest(idempotency_key=self.key(), run_id=rid, worker_id="w1"))
        self.assertTrue(err.details().startswith("worker_id:"), err.details())
        self.assertEqual(len(self.read_all(rid)), 1)
        self.assertEqual(self.get_run(rid).next_seq, first.seq + 1)

    def test_complete_worker_not_in_run_invalid_argument_names_worker_id(self):
        rid = self.run_id()
        self.create_run(rid, workers=["w1"])
        for worker in ("ghost", "../w1", ""):
            with self.subTest(worker_id=worker):
                err = self.assertRpcError(
                    grpc.StatusCode.INVALID_ARGUMENT, self.stub.CompleteWorker,
                    pb.CompleteWorkerRequest(idempotency_key=self.key(), run_id=rid,
                                             worker_id=worker))
                self.assertTrue(err.details().startswith("worker_id:"), err.details())
        self.assertEqual(self.read_all(rid), [])
        self.assertEqual(self.get_run(rid).state, "created")

    def test_complete_worker_unknown_run_not_found(self):
        err = self.assertRpcError(
            grpc.StatusCode.NOT_FOUND, self.stub.CompleteWorker,
            pb.CompleteWorkerRequest(idempotency_key=self.key(), run_id=self.run_id(),
                                     worker_id="w1"))
        self.assertIn("run_id", err.details())

    def test_complete_worker_without_key_invalid_argument(self):
        rid = self.run_id()
        self.create_run(rid, workers=["w1"])
        err = self.assertRpcError(grpc.StatusCode.INVALID_ARGUMENT, self.stub.CompleteWorker,
                                  pb.CompleteWorkerRequest(run_id=rid, worker_id="w1"))
        self.assertIn("idempotency_key", err.details())
        self.assertEqual(list(self.get_run(rid).completed_workers), [])


# ---- CreateCheckpoint ----

class CreateCheckpointTest(CkptTestCase):

    def test_create_checkpoint_returns_metadata_id_time_and_sha(self):
        rid = self.run_id()
        self.create_run(rid, workers=["w1", "w2"])
        self.append_n(rid, 3)
        data = b"snapshot-bytes " * 1000
        cp, call = self.checkpoint(rid, data, events_count=3, run_state="phase-1",
                                   sha=sha256(data), chunk_size=4000)
        self.assertReplayTrailer(call, False)
        self.assertFalse(cp.replayed)
        self.assertCheckpointId(cp)
        at = datetime.datetime.strptime(cp.created_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=datetime.timezone.utc)
        now = datetime.datetime.now(datetime.timezone.utc)
        # Same machine, same clock: only catches a wrong time zone or unit.
        self.assertLess(abs((at - now).total_seconds()), 300)
        self.assertEqual(cp.run_id, rid)
        self.assertEqual(cp.run_state, "phase-1")
        self.assertEqual(cp.events_count, 3)
        self.assertEqual(cp.snapshot_size, len(data))
        self.assertEqual(cp.snapshot_sha256, sha256(data))
        self.assertEqual(list(cp.completed_workers), [])
        self.assertEqual(self.list_cps(rid), [cp])
        self.assertEqual(self.get_run(rid).latest_checkpoint_id, cp.checkpoint_id)
        meta, got = self.load(rid, cp.checkpoint_id)
        self.assertEqual(meta, cp)
        self.assertEqual(got, data)
        # Content-addressed on disk under its SHA-256; nothing left in staging.
        self.assertEqual(self.blob_size(cp.snapshot_sha256), cp.snapshot_size)
        self.assertEqual(self.staging_files(), [])

    def test_create_checkpoint_without_sha_computes_it(self):
        rid = self.run_id()
        self.create_run(rid)
        data = os.urandom(5000)
        cp = self.cp(rid, data)
        self.assertEqual(cp.snapshot_sha256, sha256(data))
        self.assertRegex(cp.snapshot_sha256, SHA256_RE)

    def test_create_checkpoint_on_fresh_run_events_count_0(self):
        rid = self.run_id()
        self.create_run(rid)
        cp = self.cp(rid, b"state", events_count=0)
        self.assertEqual(cp.events_count, 0)
        self.assertEqual(self.get_run(rid).state, "created")
        self.assertEqual(self.list_ids(rid), [cp.checkpoint_id])

    def test_create_checkpoint_empty_snapshot_accepted_and_loads_empty(self):
        rid = self.run_id()
        self.create_run(rid)
        cp = self.cp(rid, b"")  # the header only, no chunk at all
        self.assertEqual(cp.snapshot_size, 0)
        self.assertEqual(cp.snapshot_sha256, sha256(b""))
        meta, data = self.load(rid)
        self.assertEqual(meta, cp)
        self.assertEqual(data, b"")

    def test_create_checkpoint_stream_ends_before_declared_size_invalid_argument(self):
        rid = self.run_id()
        self.create_run(rid)
        before = self.list_cps(rid)
        key = self.key()
        for data, size in ((b"", 10), (b"12345", 10)):
            with self.subTest(sent=len(data), declared=size):
                h = self.header(rid, size, key=key)
                err = self.assertRpcError(grpc.StatusCode.INVALID_ARGUMENT,
                                          self.stub.CreateCheckpoint, self.upload(h, data))
                self.assertTrue(err.details().startswith("snapshot_size:"), err.details())
        self.assertEqual(self.list_cps(rid), before)
        self.assertRpcError(grpc.StatusCode.NOT_FOUND, self.stub.GetLatestCheckpoint,
                            pb.GetLatestCheckpointRequest(run_id=rid))
        self.assertEqual(self.staging_files(), [])
        # Nothing was recorded under the key either.
        cp, _ = self.checkpoint(rid, b"0123456789", key=key)
        self.assertFalse(cp.replayed)

    def test_create_checkpoint_missing_snapshot_leaves_existing_list_unchanged(self):
        rid = self.run_id()
        self.create_run(rid)
        existing = self.cp(rid, b"first")
        h = self.header(rid, 100)
        self.assertRpcError(grpc.StatusCode.INVALID_ARGUMENT, self.stub.CreateCheckpoint,
                            self.upload(h, b""))
        self.assertEqual(self.list_cps(rid), [existing])

    def test_create_checkpoint_more_bytes_than_declared_invalid_argument(self):
        rid = self.run_id()
        self.create_run(rid)
        for chunks in ([b"x" * 11], [b"x" * 6, b"y" * 6], [b"x" * 10, b"z"]):
            with self.subTest(chunks=[len(c) for c in chunks]):
                msgs = [pb.CreateCheckpointRequest(header=self.header(rid, 10))]
                msgs += [pb.CreateCheckpointRequest(chunk=c) for c in chunks]
                err = self.assertRpcError(grpc.StatusCode.INVALID_ARGUMENT,
                                          self.stub.CreateCheckpoint, iter(msgs))
                self.assertTrue(err.details().startswith("chunk:"), err.details())
        self.assertEqual(self.list_cps(rid), [])
        self.assertEqual(self.staging_files(), [])

    def test_create_checkpoint_chunk_before_header_invalid_argument(self):
        rid = self.run_id()
        self.create_run(rid)
        msgs = [pb.CreateCheckpointRequest(chunk=b"abc"),
                pb.CreateCheckpointRequest(header=self.header(rid, 3))]
        err = self.assertRpcError(grpc.StatusCode.INVALID_ARGUMENT, self.stub.CreateCheckpoint,
                                  iter(msgs))
        self.assertTrue(err.details().startswith("header:"), err.details())
        # A first message with neither part set is no header either.
        msgs[0] = pb.CreateCheckpointRequest()
        err = self.assertRpcError(grpc.StatusCode.INVALID_ARGUMENT, self.stub.CreateCheckpoint,
                                  iter(msgs))
        self.assertTrue(err.details().startswith("header:"), err.details())
        self.assertEqual(self.list_cps(rid), [])

    def test_create_checkpoint_second_header_invalid_argument(self):
        rid = self.run_id()
        self.create_run(rid)
        for before in (b"", b"ab"):
            with self.subTest(bytes_before_second_header=len(before)):
                h = self.header(rid, 4)
                msgs = [pb.CreateCheckpointRequest(header=h)]
                if before:
                    msgs.append(pb.CreateCheckpointRequest(chunk=before))
                msgs += [pb.CreateCheckpointRequest(header=h),
                         pb.CreateCheckpointRequest(chunk=b"abcd")]
                err = self.assertRpcError(grpc.StatusCode.INVALID_ARGUMENT,
                                          self.stub.CreateCheckpoint, iter(msgs))
                self.assertTrue(err.details().startswith("header:"), err.details())
        self.assertEqual(self.list_cps(rid), [])
        self.assertEqual(self.staging_files(), [])

    def test_create_checkpoint_chunk_over_1mib_invalid_argument(self):
        rid = self.run_id()
        self.create_run(rid)
        data = b"\x07" * (MiB + 1)
        msg = pb.CreateCheckpointRequest(chunk=data)
        self.assertLess(msg.ByteSize(), 4 * MiB)  # within the transport limit
        err = self.assertRpcError(grpc.StatusCode.INVALID_ARGUMENT, self.stub.CreateCheckpoint,
                                  iter([pb.CreateCheckpointRequest(
                                      header=self.header(rid, len(data))), msg]))
        self.assertTrue(err.details().startswith("chunk:"), err.details())
        self.assertIn(str(MiB), err.details())
        self.assertEqual(self.list_cps(rid), [])
        # Exactly 1 MiB per chunk is fine.
        cp = self.cp(rid, data, chunk_size=MiB)
        self.assertEqual(cp.snapshot_size, MiB + 1)

    def test_create_checkpoint_wrong_sha256_invalid_argument_nothing_stored(self):
        rid = self.run_id()
        self.create_run(rid)
        data = os.urandom(3000)
        wrong = sha256(data + b"!")
        key = self.key()
        err = self.assertRpcError(
            grpc.StatusCode.INVALID_ARGUMENT, self.stub.CreateCheckpoint,
            self.upload(self.header(rid, len(data), key=key, sha=wrong), data))
        self.assertTrue(err.details().startswith("snapshot_sha256:"), err.details())
        self.assertEqual(self.list_cps(rid), [])
        self.assertIsNone(self.blob_size(sha256(data)))
        self.assertIsNone(self.blob_size(wrong))
        self.assertEqual(self.staging_files(), [])
        # The key was not consumed: the right checksum goes through with it.
        cp, call = self.checkpoint(rid, data, key=key, sha=sha256(data))
        self.assertFalse(cp.replayed)
        self.assertReplayTrailer(call, False)

    def test_create_checkpoint_malformed_sha256_invalid_argument(self):
        rid = self.run_id()
        self.create_run(rid)
        data = b"content"
        good = sha256(data)
        for bad in (good.upper(), good[:63], good + "0", "g" * 64, " " + good[1:]):
            with self.subTest(sha=bad):
                err = self.assertRpcError(
                    grpc.StatusCode.INVALID_ARGUMENT, self.stub.CreateCheckpoint,
                    self.upload(self.header(rid, len(data), sha=bad), data))
                self.assertTrue(err.details().startswith("snapshot_sha256:"), err.details())
        self.assertEqual(self.list_cps(rid), [])

    def test_create_checkpoint_events_count_past_last_seq_invalid_argument(self):
        rid = self.run_id()
        self.create_run(rid)
        for events_count in (1, 100):  # no event yet
            with self.subTest(last_seq=0, events_count=events_count):
                err = self.assertRpcError(
                    grpc.StatusCode.INVALID_ARGUMENT, self.stub.CreateCheckpoint,
                    self.upload(self.header(rid, 1, events_count=events_count), b"x"))
                self.assertTrue(err.details().startswith("events_count:"), err.details())
        self.append_n(rid, 2)
        err = self.assertRpcError(
            grpc.StatusCode.INVALID_ARGUMENT, self.stub.CreateCheckpoint,
            self.upload(self.header(rid, 1, events_count=3), b"x"))
        self.assertTrue(err.details().startswith("events_count:"), err.details())
        self.assertEqual(self.list_cps(rid), [])
        self.assertEqual(self.staging_files(), [])
        self.assertEqual(self.cp(rid, b"x", events_count=2).events_count, 2)

    def test_create_checkpoint_completed_workers_not_of_run_invalid_argument(self):
        rid = self.run_id()
        self.create_run(rid, workers=["w1", "w2"])
        err = self.assertRpcError(
            grpc.StatusCode.INVALID_ARGUMENT, self.stub.CreateCheckpoint,
            self.upload(self.header(rid, 1, completed=["w1", "ghost"]), b"x"))
        self.assertTrue(err.details().startswith("completed_workers[1]:"), err.details())
        err = self.assertRpcError(
            grpc.StatusCode.INVALID_ARGUMENT, self.stub.CreateCheckpoint,
            self.upload(self.header(rid, 1, completed=["../w1"]), b"x"))
        self.assertTrue(err.details().startswith("completed_workers[0]:"), err.details())
        self.assertEqual(self.list_cps(rid), [])

    def test_create_checkpoint_completed_workers_given_are_recorded(self):
        rid = self.run_id()
        self.create_run(rid, workers=["w1", "w2", "w3"])
        # The header is the caller's view: kept as given (deduplicated),
        # whether or not the log shows the completions.
        cp = self.cp(rid, b"x", completed=["w3", "w1", "w3"])
        self.assertEqual(list(cp.completed_workers), ["w3", "w1"])
        self.assertEqual(list(self.list_cps(rid)[0].completed_workers), ["w3", "w1"])

    def test_create_checkpoint_empty_completed_workers_filled_from_log_up_to_events_count(self):
        rid = self.run_id()
        self.create_run(rid, workers=["a", "b", "c"])
        self.append_n(rid, 1)                        # seq 1
        self.assertEqual(self.complete(rid, "b")[0].seq, 2)
        self.append_n(rid, 1)                        # seq 3
        self.assertEqual(self.complete(rid, "a")[0].seq, 4)
        cases = [(1, []), (2, ["b"]), (3, ["b"]), (4, ["b", "a"])]
        for events_count, expected in cases:
            with self.subTest(events_count=events_count):
                cp = self.cp(rid, b"s%d" % events_count, events_count=events_count)
                self.assertEqual(list(cp.completed_workers), expected)
                listed = {c.checkpoint_id: c for c in self.list_cps(rid)}
                self.assertEqual(list(listed[cp.checkpoint_id].completed_workers), expected)

    def test_create_checkpoint_unknown_run_not_found(self):
        err = self.assertRpcError(grpc.StatusCode.NOT_FOUND, self.stub.CreateCheckpoint,
                                  self.upload(self.header(self.run_id(), 3), b"abc"))
        self.assertIn("run_id", err.details())
        self.assertEqual(self.staging_files(), [])

    def test_create_checkpoint_without_key_invalid_argument(self):
        rid = self.run_id()
        self.create_run(rid)
        h = self.header(rid, 3)
        h.idempotency_key = ""
        err = self.assertRpcError(grpc.StatusCode.INVALID_ARGUMENT, self.stub.CreateCheckpoint,
                                  self.upload(h, b"abc"))
        self.assertIn("idempotency_key", err.details())
        self.assertEqual(self.list_cps(rid), [])

    def test_create_checkpoint_same_key_same_header_same_bytes_replays(self):
        rid = self.run_id()
        self.create_run(rid)
        self.append_n(rid, 2)
        data = os.urandom(300000)
        key = self.key()
        first, call1 = self.checkpoint(rid, data, key=key, events_count=2)
        self.append_n(rid, 1)  # the run moves on; the retry is still a replay
        # Other chunk boundaries, same bytes: the same request.
        second, call2 = self.checkpoint(rid, data, key=key, events_count=2, chunk_size=7777)
        self.assertAppliedThenReplayed(first, call1, second, call2)
        second.replayed = False
        self.assertEqual(second, first)
        self.assertEqual(self.list_ids(rid), [first.checkpoint_id])
        self.assertEqual(self.staging_files(), [])

    def test_concurrent_same_key_checkpoint_applies_once(self):
        rid = self.run_id()
        self.create_run(rid)
        data = os.urandom(200000)
        h = self.header(rid, len(data))
        futures = [self.stub.CreateCheckpoint.future(self.upload(h, data, chunk_size=65536),
                                                     timeout=RPC_TIMEOUT_S)
                   for _ in range(8)]
        applied, replayed = self.split_same_key_futures(futures)
        self.assertEqual(len(applied), 1)
        self.assertEqual({c.checkpoint_id for c in replayed} | {applied[0].checkpoint_id},
                         {applied[0].checkpoint_id})
        self.assertEqual(self.list_ids(rid), [applied[0].checkpoint_id])
        self.assertEqual(self.staging_files(), [])

    def test_create_checkpoint_same_key_other_bytes_or_header_already_exists(self):
        rid = self.run_id()
        self.create_run(rid)
        key = self.key()
        first = self.cp(rid, b"original", key=key)
        for what, data, fields in (("bytes", b"changed!", {}),
                                   ("run_state", b"original", {"run_state": "other"})):
            with self.subTest(differs=what):
                err = self.assertRpcError(
                    grpc.StatusCode.ALREADY_EXISTS, self.stub.CreateCheckpoint,
                    self.upload(self.header(rid, len(data), key=key, **fields), data))
                self.assertIn("idempotency_key", err.details())
                self.assertIn("reused", err.details())
        self.assertEqual(self.list_cps(rid), [first])
        self.assertEqual(self.staging_files(), [])


    def test_retried_upload_naming_its_sha_is_answered_from_the_header_alone(self):
        # The key is looked up as soon as the header arrives: a retry of a
        # committed upload need not send the snapshot again.
        rid = self.run_id()
        self.create_run(rid)
        data = os.urandom(300000)
        key = self.key()
        first, call1 = self.checkpoint(rid, data, key=key, sha=sha256(data))
        h = self.header(rid, len(data), key=key, sha=sha256(data))
        second, call2 = self.stub.CreateCheckpoint.with_call(
            iter([pb.CreateCheckpointRequest(header=h)]), timeout=RPC_TIMEOUT_S)
        self.assertAppliedThenReplayed(first, call1, second, call2)
        # The same header naming other content reused the key.
        h.snapshot_sha256 = sha256(b"other")
        err = self.assertRpcError(grpc.StatusCode.ALREADY_EXISTS, self.stub.CreateCheckpoint,
                                  iter([pb.CreateCheckpointRequest(header=h)]))
        self.assertIn("reused", err.details())
        self.assertEqual(self.list_ids(rid), [first.checkpoint_id])
        self.assertEqual(self.staging_files(), [])

    def test_same_key_for_complete_checkpoint_and_cleanup_is_independent(self):
        # The key's scope is (run, method, key).
        rid = self.run_id()
        self.create_run(rid, workers=["w1"])
        key = self.key()
        done, _ = self.complete(rid, "w1", key=key)
        cp = self.cp(rid, b"x", key=key, events_count=1)
        resp, _ = self.cleanup(rid, 1, key=key)
        self.assertEqual((done.replayed, cp.replayed, resp.replayed), (False, False, False))
        self.assertEqual(list(cp.completed_workers), ["w1"])
        self.assertEqual(self.list_cps(rid), [cp])

# ---- content byte for byte ----

class CheckpointContentTest(CkptTestCase):

    def roundtrip(self, data, chunk_size):
        rid = self.run_id()
        self.create_run(rid)
        cp = self.cp(rid, data, chunk_size=chunk_size, sha=sha256(data))
        self.assertEqual((cp.snapshot_size, cp.snapshot_sha256), (len(data), sha256(data)))
        meta, got = self.load(rid, cp.checkpoint_id)
        self.assertEqual(meta, cp)
        self.assertEqual(len(got), len(data))
        self.assertEqual(sha256(got), sha256(data))
        return got

    def test_checkpoint_unicode_text_roundtrips_as_utf8(self):
        text = ("h\u00e9llo w\u00f6rld \u2014 \u65e5\u672c\u8a9e \u2014 \U0001F389 "
                "\u0000 \uFFFD\n") * 2000
        data = text.encode("utf-8")
        # An odd chunk size cuts multi-byte sequences between chunks.
        got = self.roundtrip(data, chunk_size=4093)
        self.assertEqual(got.decode("utf-8"), text)

    def test_checkpoint_5mib_random_bytes_roundtrip(self):
        data = os.urandom(5 * MiB)
        self.assertEqual(self.roundtrip(data, chunk_size=MiB), data)

    def test_checkpoint_every_byte_value_roundtrips(self):
        data = bytes(range(256)) * 4096 + bytes(range(255, -1, -1))
        self.assertEqual(self.roundtrip(data, chunk_size=65536 + 3), data)


# ---- ListCheckpoints, GetLatestCheckpoint, LoadCheckpoint ----

class CheckpointReadTest(CkptTestCase):

    def test_list_checkpoints_empty_for_run_without_checkpoints(self):
        rid = self.run_id()
        self.create_run(rid)
        self.assertEqual(self.list_cps(rid), [])

    def test_list_checkpoints_unknown_run_not_found(self):
        self.assertRpcError(grpc.StatusCode.NOT_FOUND, self.stub.ListCheckpoints,
                            pb.ListCheckpointsRequest(run_id=self.run_id()))

    def test_list_checkpoints_oldest_first_ids_and_times_increasing(self):
        rid = self.run_id()
        self.create_run(rid)
        self.append_n(rid, 3)
        made = [self.cp(rid, b"c%d" % i, events_count=i, run_state="s%d" % i)
                for i in range(4)]
        listed = self.list_cps(rid)
        self.assertEqual(listed, made)
        ids = [c.checkpoint_id for c in listed]
        times = [c.created_at for c in listed]
        self.assertEqual(ids, sorted(set(ids)))
        self.assertEqual(times, sorted(set(times)))
        for c in listed:
            self.assertCheckpointId(c)

    def test_rapid_checkpoints_get_unique_increasing_microsecond_ids(self):
        rid = self.run_id()
        self.create_run(rid)
        made = [self.cp(rid, b"") for _ in range(20)]  # as fast as the server takes them
        ids = [c.checkpoint_id for c in made]
        self.assertEqual(len(set(ids)), 20, ids)
        self.assertEqual(ids, sorted(ids))
        self.assertEqual([c.created_at for c in made], sorted({c.created_at for c in made}))
        for c in made:
            self.assertCheckpointId(c)
        # The suite's server keeps the default retention of 5.
        self.assertEqual(self.list_ids(rid), ids[-5:])

    def test_concurrent_checkpoints_get_unique_increasing_ids(self):
        # Concurrent uploads may commit in one batch, at one server time:
        # ids must still differ and order the checkpoints.
        rid = self.run_id()
        self.create_run(rid)
        futures = [self.stub.CreateCheckpoint.future(
            self.upload(self.header(rid, 2), b"%02d" % i), timeout=RPC_TIMEOUT_S)
            for i in range(5)]
        made = [f.result() for f in futures]
        ids = [c.checkpoint_id for c in made]
        self.assertEqual(len(set(ids)), 5, ids)
        for c in made:
            self.assertCheckpointId(c)
        self.assertEqual(self.list_ids(rid), sorted(ids))
        listed = self.list_cps(rid)
        self.assertEqual([c.created_at for c in listed], sorted({c.created_at for c in listed}))

    def test_get_latest_checkpoint_none_not_found(self):
        rid = self.run_id()
        self.create_run(rid)
        self.assertRpcError(grpc.StatusCode.NOT_FOUND, self.stub.GetLatestCheckpoint,
                            pb.GetLatestCheckpointRequest(run_id=rid))
        self.assertRpcError(grpc.StatusCode.NOT_FOUND, self.stub.GetLatestCheckpoint,
                            pb.GetLatestCheckpointRequest(run_id=self.run_id("unknown")))

    def test_get_latest_checkpoint_is_newest_of_several(self):
        rid = self.run_id()
        self.create_run(rid)
        made = [self.cp(rid, b"v%d" % i) for i in range(3)]
        latest = self.stub.GetLatestCheckpoint(pb.GetLatestCheckpointRequest(run_id=rid),
                                               timeout=RPC_TIMEOUT_S)
        self.assertEqual(latest, made[-1])
        self.assertEqual(latest, self.list_cps(rid)[-1])

    def test_load_checkpoint_by_id_and_by_empty_id_latest(self):
        rid = self.run_id()
        self.create_run(rid, workers=["w1", "w2"])
        self.append_n(rid, 1)
        self.complete(rid, "w1")
        old_data, new_data = os.urandom(2 * MiB + 17), b"newest"
        old = self.cp(rid, old_data, events_count=2, run_state="old")
        new = self.cp(rid, new_data, events_count=1, run_state="new", completed=["w2"])
        listed = self.list_cps(rid)
        meta, data = self.load(rid, old.checkpoint_id)
        self.assertEqual(meta, listed[0])
        self.assertEqual(list(meta.completed_workers), ["w1"])
        self.assertEqual(data, old_data)
        meta, data = self.load(rid, "")
        self.assertEqual(meta, listed[1])
        self.assertEqual(meta, new)
        self.assertEqual(data, new_data)

    def test_load_checkpoint_unknown_checkpoint_not_found(self):
        rid = self.run_id()
        self.create_run(rid)
        err, msgs = self.load_error(grpc.StatusCode.NOT_FOUND, rid)  # none yet
        self.assertEqual(msgs, [])
        self.cp(rid, b"x")
        err, msgs = self.load_error(grpc.StatusCode.NOT_FOUND, rid, "20000101_000000_000000")
        self.assertEqual(msgs, [])
        self.assertIn("checkpoint_id", err.details())
        # Checkpoint ids are per run: another run's id is unknown here.
        other = self.run_id("other")
        self.create_run(other)
        theirs = self.cp(other, b"theirs")
        if theirs.checkpoint_id not in self.list_ids(rid):
            self.load_error(grpc.StatusCode.NOT_FOUND, rid, theirs.checkpoint_id)

    def test_load_checkpoint_unknown_run_not_found(self):
        err, msgs = self.load_error(grpc.StatusCode.NOT_FOUND, self.run_id())
        self.assertEqual(msgs, [])
        self.assertIn("run_id", err.details())

    def test_load_checkpoint_bad_checkpoint_id_invalid_argument(self):
        rid = self.run_id()
        self.create_run(rid)
        err, _ = self.load_error(grpc.StatusCode.INVALID_ARGUMENT, rid, "../etc")
        self.assertTrue(err.details().startswith("checkpoint_id:"), err.details())


# ---- CleanupCheckpoints ----

class CleanupCheckpointsTest(CkptTestCase):

    def three(self, rid):
        self.create_run(rid)
        return [self.cp(rid, b"gen%d-" % i + os.urandom(16)) for i in range(3)]

    def test_cleanup_keep_all_deletes_nothing(self):
        rid = self.run_id()
        made = self.three(rid)
        resp, call = self.cleanup(rid, 3)
        self.assertEqual((resp.deleted, list(resp.deleted_ids), resp.replayed), (0, [], False))
        self.assertReplayTrailer(call, False)
        self.assertEqual(self.list_cps(rid), made)

    def test_cleanup_keep_more_than_count_deletes_nothing(self):
        rid = self.run_id()
        made = self.three(rid)
        resp, _ = self.cleanup(rid, 1000)
        self.assertEqual((resp.deleted, list(resp.deleted_ids)), (0, []))
        self.assertEqual(self.list_cps(rid), made)

    def test_cleanup_run_without_checkpoints_deletes_nothing(self):
        rid = self.run_id()
        self.create_run(rid)
        resp, _ = self.cleanup(rid, 1)
        self.assertEqual((resp.deleted, list(resp.deleted_ids)), (0, []))

    def test_cleanup_keep_1_deletes_older_oldest_first(self):
        rid = self.run_id()
        made = self.three(rid)
        resp, _ = self.cleanup(rid, 1)
        self.assertEqual(resp.deleted, 2)
        self.assertEqual(list(resp.deleted_ids), [made[0].checkpoint_id, made[1].checkpoint_id])
        self.assertEqual(self.list_cps(rid), [made[2]])
        self.assertEqual(self.get_run(rid).latest_checkpoint_id, made[2].checkpoint_id)
        # Their snapshot files are gone, the kept one's is there.
        for c in made[:2]:
            self.assertIsNone(self.blob_size(c.snapshot_sha256), c.checkpoint_id)
            self.load_error(grpc.StatusCode.NOT_FOUND, rid, c.checkpoint_id)
        self.assertIsNotNone(self.blob_size(made[2].snapshot_sha256))

    def test_cleanup_keep_0_invalid_argument(self):
        rid = self.run_id()
        made = self.three(rid)
        err = self.assertRpcError(
            grpc.StatusCode.INVALID_ARGUMENT, self.stub.CleanupCheckpoints,
            pb.CleanupCheckpointsRequest(idempotency_key=self.key(), run_id=rid, keep_last_n=0))
        self.assertTrue(err.details().startswith("keep_last_n:"), err.details())
        self.assertEqual(self.list_cps(rid), made)

    def test_cleanup_unknown_run_not_found(self):
        self.assertRpcError(
            grpc.StatusCode.NOT_FOUND, self.stub.CleanupCheckpoints,
            pb.CleanupCheckpointsRequest(idempotency_key=self.key(), run_id=self.run_id(),
                                         keep_last_n=1))

    def test_cleanup_same_key_replays_stored_answer_and_deletes_nothing_more(self):
        rid = self.run_id()
        made = self.three(rid)
        key = self.key()
        first, call1 = self.cleanup(rid, 1, key=key)
        later = self.cp(rid, b"after the cleanup")
        second, call2 = self.cleanup(rid, 1, key=key)
        self.assertAppliedThenReplayed(first, call1, second, call2)
        self.assertEqual(list(second.deleted_ids), list(first.deleted_ids))
        self.assertEqual(second.deleted, 2)
        # Not applied again: made[2] survives although it is no longer the newest.
        self.assertEqual(self.list_cps(rid), [made[2], later])
        err = self.assertRpcError(
            grpc.StatusCode.ALREADY_EXISTS, self.stub.CleanupCheckpoints,
            pb.CleanupCheckpointsRequest(idempotency_key=key, run_id=rid, keep_last_n=2))
        self.assertIn("reused", err.details())

    def test_identical_snapshots_stored_once_and_survive_deleting_one(self):
        rid = self.run_id()
        self.create_run(rid)
        data = os.urandom(100000)
        a = self.cp(rid, data, run_state="a")
        b = self.cp(rid, data, run_state="b")
        self.assertEqual(a.snapshot_sha256, b.snapshot_sha256)
        self.assertEqual(self.blob_size(a.snapshot_sha256), len(data))  # one copy
        resp, _ = self.cleanup(rid, 1)
        self.assertEqual(list(resp.deleted_ids), [a.checkpoint_id])
        self.assertIsNotNone(self.blob_size(b.snapshot_sha256))
        meta, got = self.load(rid)
        self.assertEqual(meta, b)
        self.assertEqual(got, data)


# ---- DATA_LOSS ----

class DataLossTest(CkptTestCase):

    def test_load_corrupted_snapshot_ends_with_data_loss(self):
        rid = self.run_id()
        self.create_run(rid)
        data = os.urandom(3 * MiB + 5)
        cp = self.cp(rid, data)
        self.assertEqual(self.blob_size(cp.snapshot_sha256), len(data))
        self.damage_blob(cp.snapshot_sha256, "flip", 2 * MiB + 1)
        err, msgs = self.load_error(grpc.StatusCode.DATA_LOSS, rid, cp.checkpoint_id)
        self.assertIn(cp.checkpoint_id, err.details())
        if msgs:
            self.assertTrue(msgs[0].HasField("checkpoint"))
        self.assertServing()
        # The metadata is intact; only the bytes are bad.
        self.assertEqual(self.list_cps(rid), [cp])

    def test_load_truncated_or_extended_snapshot_data_loss(self):
        rid = self.run_id()
        self.create_run(rid)
        for how in ("truncated", "extended"):
            with self.subTest(how=how):
                cp = self.cp(rid, os.urandom(MiB + 100))
                if how == "truncated":
                    self.damage_blob(cp.snapshot_sha256, "truncate", MiB)
                else:
                    self.damage_blob(cp.snapshot_sha256, "extend")
                err, _ = self.load_error(grpc.StatusCode.DATA_LOSS, rid, cp.checkpoint_id)
                self.assertIn(cp.checkpoint_id, err.details())
        self.assertServing()

    def test_reupload_of_corrupted_content_gives_loadable_checkpoint(self):
        """Re-uploading good bytes repairs a bad stored copy.

        Identical content is stored once. When the stored copy has gone
        bad, a new upload of the same (good) bytes, which the server
        receives, hashes and fsyncs in full, replaces it: the new
        checkpoint loads. (Once, the server only added a reference to the
        bad file and discarded the good copy in hand.)"""
        rid = self.run_id()
        self.create_run(rid)
        data = os.urandom(100000)
        bad = self.cp(rid, data, run_state="first")
        self.damage_blob(bad.snapshot_sha256, "flip", 500, 0x80)
        self.load_error(grpc.StatusCode.DATA_LOSS, rid, bad.checkpoint_id)
        good = self.cp(rid, data, run_state="again", sha=sha256(data))
        meta, got = self.load(rid, good.checkpoint_id)
        self.assertEqual(meta, good)
        self.assertEqual(got, data)

    def test_load_missing_snapshot_file_data_loss(self):
        rid = self.run_id()
        self.create_run(rid)
        cp = self.cp(rid, os.urandom(1000))
        self.damage_blob(cp.snapshot_sha256, "delete")
        err, msgs = self.load_error(grpc.StatusCode.DATA_LOSS, rid)
        self.assertIn(cp.checkpoint_id, err.details())
        self.assertServing()


# ---- ResumeRun ----

class ResumeRunTest(CkptTestCase):

    def assertResume(self, res, rid, workers, checkpoint_id="", state="", from_seq=1):
        self.assertEqual(res.run_id, rid)
        self.assertEqual(list(res.workers_to_rerun), workers)
        self.assertEqual(res.checkpoint_id, checkpoint_id)
        self.assertEqual(res.resumed_from_state, state)
        self.assertEqual(res.resume_from_seq, from_seq)
        self.assertTrue(res.success)

    def test_resume_without_checkpoint_reruns_workers_not_completed_in_log(self):
        rid = self.run_id()
        self.create_run(rid, workers=["a", "b", "c", "d"])
        self.append_n(rid, 2)
        self.complete(rid, "c")
        self.complete(rid, "a")
        self.append_n(rid, 1)
        self.assertResume(self.resume(rid), rid, ["b", "d"], from_seq=1)

    def test_resume_nothing_completed_reruns_every_worker(self):
        rid = self.run_id()
        self.create_run(rid, workers=["w3", "w1", "w2"])
        self.assertResume(self.resume(rid), rid, ["w3", "w1", "w2"])
        self.append_n(rid, 5)
        cp = self.cp(rid, b"s", events_count=5, run_state="mid")
        self.assertResume(self.resume(rid), rid, ["w3", "w1", "w2"], cp.checkpoint_id, "mid", 6)

    def test_resume_partial_reruns_rest_in_run_order(self):
        rid = self.run_id()
        self.create_run(rid, workers=["a", "b", "c", "d", "e"])
        self.append_n(rid, 1)
        self.complete(rid, "d")   # seq 2
        self.complete(rid, "b")   # seq 3
        cp = self.cp(rid, b"snap", events_count=3, run_state="phase-2", completed=["d", "b"])
        self.assertResume(self.resume(rid), rid, ["a", "c", "e"], cp.checkpoint_id, "phase-2", 4)

    def test_resume_log_completions_covered_by_checkpoint_come_from_checkpoint(self):
        # Up to events_count the checkpoint's completed_workers are the
        # record; the log counts only after it (DESIGN: "minus those
        # completed in the checkpoint and those completed after it").
        rid = self.run_id()
        self.create_run(rid, workers=["a", "b", "c"])
        self.complete(rid, "a")   # seq 1
        self.complete(rid, "b")   # seq 2
        cp = self.cp(rid, b"s", events_count=2, completed=["a"])
        self.assertResume(self.resume(rid), rid, ["b", "c"], cp.checkpoint_id, "running", 3)

    def test_resume_all_complete_empty_workers_and_success(self):
        rid = self.run_id()
        self.create_run(rid, workers=["a", "b"])
        self.complete(rid, "b")
        self.complete(rid, "a")
        self.assertResume(self.resume(rid), rid, [])
        cp = self.cp(rid, b"done", events_count=2, run_state="completed")
        self.assertEqual(list(cp.completed_workers), ["b", "a"])
        self.assertResume(self.resume(rid), rid, [], cp.checkpoint_id, "completed", 3)
        self.assertEqual(self.get_run(rid).state, "completed")

    def test_resume_keeps_order_of_given_all_workers(self):
        rid = self.run_id()
        self.create_run(rid, workers=["a", "b", "c", "d"])
        self.complete(rid, "b")
        self.assertResume(self.resume(rid, ["d", "b", "a", "c"]), rid, ["d", "a", "c"])
        cp = self.cp(rid, b"s", events_count=1)
        self.assertResume(self.resume(rid, ["c", "a", "d", "b"]), rid, ["c", "a", "d"],
                          cp.checkpoint_id, "running", 2)

    def test_resume_drops_duplicate_given_workers(self):
        rid = self.run_id()
        self.create_run(rid, workers=["a", "b", "c"])
        self.complete(rid, "c")
        given = ["b", "a", "b", "c", "a", "b"]
        self.assertResume(self.resume(rid, given), rid, ["b", "a"])
        cp = self.cp(rid, b"s", events_count=1)
        self.assertResume(self.resume(rid, given), rid, ["b", "a"], cp.checkpoint_id,
                          "running", 2)

    def test_resume_given_workers_need_not_be_the_runs(self):
        rid = self.run_id()
        self.create_run(rid, workers=["a", "b"])
        self.complete(rid, "a")
        self.assertResume(self.resume(rid, ["x", "a", "b", "y"]), rid, ["x", "b", "y"])

    def test_resume_completion_after_checkpoint_subtracted_from_seq_after_checkpoint(self):
        rid = self.run_id()
        self.create_run(rid, workers=["a", "b", "c"])
        self.append_n(rid, 2)
        cp = self.cp(rid, b"s", events_count=2, run_state="before")
        self.assertResume(self.resume(rid), rid, ["a", "b", "c"], cp.checkpoint_id, "before", 3)
        self.append_n(rid, 1)              # seq 3
        self.assertEqual(self.complete(rid, "b")[0].seq, 4)
        self.assertResume(self.resume(rid), rid, ["a", "c"], cp.checkpoint_id, "before",
                          cp.events_count + 1)

    def test_resume_reports_latest_checkpoint_and_json_snapshot_loads_intact(self):
        rid = self.run_id()
        self.create_run(rid, workers=["extract", "transform", "load"])
        self.append_n(rid, 4)
        self.complete(rid, "extract")      # seq 5
        doc = {
            "version": 3,
            "cursor": {"shard": 17, "offset": 123456789012, "done": False, "token": None},
            "workers": {"extract": {"rows": 1000, "files": ["a.csv", "b.csv"]},
                        "transform": {"pending": [[1, 2], [3, [4, {"deep": "\u00e9\u6f22"}]]]}},
            "ratio": 0.125,
            "notes": "line1\nline2\t\"quoted\" \\ \U0001F600",
        }
        data = json.dumps(doc, ensure_ascii=False, sort_keys=True, indent=1).encode("utf-8")
        self.cp(rid, b"older", events_count=3)
        cp = self.cp(rid, data, events_count=5, run_state="transforming", sha=sha256(data))
        res = self.resume(rid)
        self.assertResume(res, rid, ["transform", "load"], cp.checkpoint_id, "transforming", 6)
        meta, got = self.load(rid, res.checkpoint_id)
        self.assertEqual(meta, cp)
        self.assertEqual(list(meta.completed_workers), ["extract"])
        self.assertEqual(got, data)
        self.assertEqual(json.loads(got.decode("utf-8")), doc)

    def test_resume_changes_nothing(self):
        rid = self.run_id()
        self.create_run(rid, workers=["a", "b"])
        self.append_n(rid, 2)
        self.cp(rid, b"s", events_count=1)
        before = (self.get_run(rid), self.list_cps(rid), self.read_all(rid))
        first = self.resume(rid)
        self.assertEqual(self.resume(rid), first)
        self.assertEqual((self.get_run(rid), self.list_cps(rid), self.read_all(rid)), before)

    def test_resume_bad_given_worker_id_invalid_argument_names_index(self):
        rid = self.run_id()
        self.create_run(rid, workers=["a"])
        for given, field in ((["a", "../b"], "all_workers[1]"), ([""], "all_workers[0]"),
                             (["a", "b", "x" * 129], "all_workers[2]")):
            with self.subTest(all_workers=given):
                err = self.assertRpcError(grpc.StatusCode.INVALID_ARGUMENT, self.stub.ResumeRun,
                                          pb.ResumeRunRequest(run_id=rid, all_workers=given))
                self.assertTrue(err.details().startswith(field + ":"), err.details())

    def test_resume_unknown_run_not_found(self):
        err = self.assertRpcError(grpc.StatusCode.NOT_FOUND, self.stub.ResumeRun,
                                  pb.ResumeRunRequest(run_id=self.run_id()))
        self.assertIn("run_id", err.details())


# ---- AppendEvents' events_since_checkpoint ----

class EventsSinceCheckpointTest(CkptTestCase):

    def test_events_since_checkpoint_counts_after_latest_checkpoint_events_count(self):
        rid = self.run_id()
        self.create_run(rid, workers=["w1"])
        resp = self.append_n(rid, 5)
        self.assertEqual((resp.last_seq, resp.events_since_checkpoint), (5, 5))
        self.cp(rid, b"a", events_count=3)
        resp = self.append_n(rid, 2)
        self.assertEqual((resp.last_seq, resp.events_since_checkpoint), (7, 4))
        self.cp(rid, b"b", events_count=7)
        resp = self.append_n(rid, 1)
        self.assertEqual((resp.last_seq, resp.events_since_checkpoint), (8, 1))
        # The latest checkpoint counts, even when it covers fewer events
        # than an earlier one.
        self.cp(rid, b"c", events_count=2)
        resp = self.append_n(rid, 1)
        self.assertEqual((resp.last_seq, resp.events_since_checkpoint), (9, 7))
        # A completion in between is an event too.
        self.complete(rid, "w1")  # seq 10
        resp = self.append_n(rid, 1)
        self.assertEqual((resp.last_seq, resp.events_since_checkpoint), (11, 9))


# ---- servers with other flags ----

class SnapshotLimitTest(CkptTestCase):
    FLAGS = ["--max-snapshot-bytes", "1000"]

    def test_snapshot_over_max_snapshot_bytes_invalid_argument_names_flag(self):
        rid = self.run_id()
        self.create_run(rid)
        data = os.urandom(1001)
        err = self.assertRpcError(grpc.StatusCode.INVALID_ARGUMENT, self.stub.CreateCheckpoint,
                                  self.upload(self.header(rid, len(data)), data))
        self.assertTrue(err.details().startswith("snapshot_size:"), err.details())
        self.assertIn("--max-snapshot-bytes", err.details())
        self.assertIn("1000", err.details())
        self.assertEqual(self.list_cps(rid), [])
        # Exactly the limit is fine.
        cp = self.cp(rid, data[:1000])
        self.assertEqual(cp.snapshot_size, 1000)


class CutUploadTest(CkptTestCase):
    FLAGS = []  # its own server: a cancelled upload is cleaned up asynchronously

    def test_upload_cut_midway_leaves_no_checkpoint_and_server_keeps_serving(self):
        rid = self.run_id()
        self.create_run(rid)
        existing = self.cp(rid, b"before")
        data = os.urandom(3 * MiB)
        key = self.key()

        def cut():
            yield pb.CreateCheckpointRequest(header=self.header(rid, len(data), key=key))
            yield pb.CreateCheckpointRequest(chunk=data[:MiB])
            yield pb.CreateCheckpointRequest(chunk=data[MiB:2 * MiB])
            raise RuntimeError("connection lost")  # grpcio cancels the call

        # grpcio logs the iterator's exception; keep the test output clean.
        logging.disable(logging.CRITICAL)
        try:
            with self.assertRaises(grpc.RpcError) as cm:
                self.stub.CreateCheckpoint(cut(), timeout=RPC_TIMEOUT_S)
        finally:
            logging.disable(logging.NOTSET)
        self.assertIn(cm.exception.code(), (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN))
        self.assertServing()
        self.assertEqual(self.list_cps(rid), [existing])
        # The key was never used: the whole upload goes through with it.
        cp, call = self.checkpoint(rid, data, key=key)
        self.assertFalse(cp.replayed)
        self.assertReplayTrailer(call, False)
        self.assertEqual(self.list_ids(rid), [existing.checkpoint_id, cp.checkpoint_id])
        self.assertEqual(self.load(rid)[1], data)


class RetentionTest(CkptTestCase):
    FLAGS = ["--checkpoint-retention", "2"]

    def test_retention_2_keeps_newest_two_of_four(self):
        rid = self.run_id()
        self.create_run(rid)
        made = [self.cp(rid, b"r%d-" % i + os.urandom(32)) for i in range(4)]
        self.assertEqual(self.list_cps(rid), made[2:])
        for c in made[:2]:
            self.assertIsNone(self.blob_size(c.snapshot_sha256))
        for c in made[2:]:
            self.assertIsNotNone(self.blob_size(c.snapshot_sha256))
        self.assertEqual(self.load(rid, made[2].checkpoint_id)[0], made[2])

    def test_retention_and_cleanup_skip_checkpoint_being_loaded(self):
        rid = self.run_id()
        self.create_run(rid)
        # Far above what gRPC buffers per stream (~4 MB), so the server
        # cannot finish sending (and unpin) while the client reads nothing.
        data = os.urandom(16 * MiB)
        pinned = self.cp(rid, data)
        stream = self.stub.LoadCheckpoint(
            pb.LoadCheckpointRequest(run_id=rid, checkpoint_id=pinned.checkpoint_id),
            timeout=RPC_TIMEOUT_S)
        try:
            first = next(stream)
            self.assertEqual(first.checkpoint, pinned)
            newer = [self.cp(rid, b"n%d" % i) for i in range(3)]
            # Retention 2 keeps the newest two and the pinned one.
            self.assertEqual(self.list_cps(rid), [pinned] + newer[1:])
            resp, _ = self.cleanup(rid, 1)
            self.assertNotIn(pinned.checkpoint_id, resp.deleted_ids)
            self.assertEqual(list(resp.deleted_ids), [newer[1].checkpoint_id])
            self.assertEqual(self.list_cps(rid), [pinned, newer[2]])
            self.assertIsNotNone(self.blob_size(pinned.snapshot_sha256))
            rest = list(stream)
        finally:
            stream.cancel()
        self.assertEqual(stream.code(), grpc.StatusCode.OK)
        meta, got = self.check_stream([first] + rest)
        self.assertEqual(len(got), len(data))
        self.assertEqual(sha256(got), pinned.snapshot_sha256)
        # The stream is done: nothing protects it any more.
        resp, _ = self.cleanup(rid, 1)
        self.assertEqual(list(resp.deleted_ids), [pinned.checkpoint_id])
        self.assertEqual(self.list_cps(rid), [newer[2]])
        self.assertIsNone(self.blob_size(pinned.snapshot_sha256))


class RetentionFlagTest(CkptTestCase):

    def test_checkpoint_retention_1_refuses_to_start(self):
        root = tempfile.mkdtemp(prefix="retention1-", dir=tc.S.root)
        data_dir = os.path.join(root, "data")
        store_flags, env = tc.store_args(data_dir)
        res = subprocess.run(
            [tc.ARGS.cairnd, "--listen", "127.0.0.1:0", "--data-dir", data_dir,
             "--checkpoint-retention", "1"] + store_flags,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=root, env=env, timeout=START_TIMEOUT_S, universal_newlines=True)
        self.assertEqual(res.returncode, 2, res.stderr)
        self.assertIn("--checkpoint-retention", res.stderr)
        self.assertNotIn("listening on", res.stdout)
        self.assertFalse(os.path.exists(data_dir))


if __name__ == "__main__":
    tc.main()
