#!/usr/bin/python3
"""Interop tests for worker leases, fencing tokens and WatchEvents.

Shares the harness of test_coordinator.py (stub generation, the suite's
cairnd on 127.0.0.1:0 with its own temporary data dir, the helpers of
CairnTestCase) and the Cairnd class of test_checkpoints.py for the few
tests that need a server of their own (a restart on the same data dir, a
SIGTERM under a parked watch).

Lease expiry is wall-clock time by definition (a lease is live while the
server's now < expires_at). The one test that needs an expired lease takes
a 1000 ms lease and waits until the expires_at the server returned has
passed on this machine's clock, plus a small margin: waiting for the clock,
not for another thread. Nothing else sleeps; threads are synchronised with
threading primitives, and every wait is bounded.

Run (ctest does this, see CMakeLists.txt):

    /usr/bin/python3 test_leases_watch.py --cairnd PATH --proto-dir DIR \
        --protoc PATH --grpc-plugin PATH [unittest args...]
"""

import datetime
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import grpc

sys.dont_write_bytecode = True  # nothing written next to the sources
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_coordinator as tc  # noqa: E402  (the shared harness)
from test_coordinator import (  # noqa: E402
    RPC_TIMEOUT_S, STOP_TIMEOUT_S, TIMESTAMP_RE, CairnTestCase)
from test_checkpoints import Cairnd  # noqa: E402  (a cairnd of its own)

pb = None  # tc.pb once setUpModule generated the stubs

# The server's in-memory ring per watched run (server/watch.c RING_EVENTS).
WATCH_RING_EVENTS = 4096
# Long enough that no lease in these tests expires by accident.
LONG_TTL_MS = 60000
# Past expires_at on this machine's clock before a lease counts as lapsed
# here: the server's clock is the same clock, the margin covers rounding.
EXPIRY_MARGIN_S = 0.05
# cairnd's default --shutdown-grace-ms.
SHUTDOWN_GRACE_S = 5


def setUpModule():
    global pb
    tc.setUpModule()
    pb = tc.pb


def tearDownModule():
    tc.tearDownModule()


def parse_ts(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc)


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def wait_until_expired(lease):
    """Waits for the clock (not for a thread): until the lease's expires_at
    has passed, plus a small margin."""
    until = parse_ts(lease.expires_at) + datetime.timedelta(seconds=EXPIRY_MARGIN_S)
    while True:
        left = (until - utcnow()).total_seconds()
        if left <= 0:
            return
        time.sleep(left)


def read_line(proc, timeout=RPC_TIMEOUT_S):
    """The next line proc writes to its stdout (bounded), "" at its end."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    line = b""
    deadline = time.monotonic() + timeout
    try:
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise AssertionError("no line within %d s, got %r" % (timeout, line))
            chunk = os.read(proc.stdout.fileno(), 1)
            if not chunk:
                break
            line += chunk
    finally:
        sel.close()
    return line.decode()


class OwnCairnd(Cairnd):
    """Cairnd on a data dir chosen by the test, so a second instance can
    start on the data dir of the first."""

    def __init__(self, name, data_dir, flags=()):
        super().__init__(name, flags, data_dir=data_dir)


class Watcher:
    """One WatchEvents call, read by a thread of its own.

    until: cancel the call once this many events arrived.
    pause_after: after this many events, stop reading (set `paused`) until
    `resume` is set; the call stays open, so the server must hold back.
    """

    def __init__(self, stub, run_id, from_seq=1, until=None, pause_after=None,
                 timeout=RPC_TIMEOUT_S):
        self.until = until
        self.pause_after = pause_after
        self.paused = threading.Event()
        self.resume = threading.Event()
        self.events = []
        self.error = None
        self.done = False
        self.cond = threading.Condition()
        self.call = stub.WatchEvents(pb.WatchEventsRequest(run_id=run_id, from_seq=from_seq),
                                     timeout=timeout)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            for ev in self.call:
                with self.cond:
                    self.events.append(ev)
                    n = len(self.events)
                    self.cond.notify_all()
                if self.pause_after is not None and n == self.pause_after:
                    self.paused.set()
                    self.resume.wait(RPC_TIMEOUT_S)
                if self.until is not None and n >= self.until:
                    self.call.cancel()
                    break
        except grpc.RpcError as e:
            self.error = e
        finally:
            with self.cond:
                self.done = True
                self.cond.notify_all()

    def wait_count(self, n, timeout=RPC_TIMEOUT_S):
        """True once n events arrived (False if the call ended first or the
        bound passed)."""
        with self.cond:
            self.cond.wait_for(lambda: len(self.events) >= n or self.done, timeout)
            return len(self.events) >= n

    def join(self, timeout=RPC_TIMEOUT_S):
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def close(self):
        self.resume.set()
        self.call.cancel()
        self.thread.join(RPC_TIMEOUT_S)

    def seqs(self):
        with self.cond:
            return [e.seq for e in self.events]


class LeaseTestCase(CairnTestCase):
    """CairnTestCase plus lease, fenced-write and watch helpers."""

    def get_run(self, rid, stub=None):
        return (stub or self.stub).GetRun(pb.GetRunRequest(run_id=rid), timeout=RPC_TIMEOUT_S)

    def acquire_req(self, rid, worker, holder, ttl_ms=LONG_TTL_MS, key=None):
        return pb.AcquireWorkerRequest(idempotency_key=key or self.key(), run_id=rid,
                                       worker_id=worker, holder=holder, ttl_ms=ttl_ms)

    def acquire(self, rid, worker, holder, ttl_ms=LONG_TTL_MS, key=None, stub=None):
        return (stub or self.stub).AcquireWorker(
            self.acquire_req(rid, worker, holder, ttl_ms, key), timeout=RPC_TIMEOUT_S)

    def renew(self, rid, worker, lease_id, ttl_ms=LONG_TTL_MS, key=None):
        return self.stub.RenewLease(
            pb.RenewLeaseRequest(idempotency_key=key or self.key(), run_id=rid,
                                 worker_id=worker, lease_id=lease_id, ttl_ms=ttl_ms),
            timeout=RPC_TIMEOUT_S)

    def release_req(self, rid, worker, lease_id, key=None):
        return pb.ReleaseWorkerRequest(idempotency_key=key or self.key(), run_id=rid,
                                       worker_id=worker, lease_id=lease_id)

    def release(self, rid, worker, lease_id, key=None, stub=None):
        return (stub or self.stub).ReleaseWorker(self.release_req(rid, worker, lease_id, key),
                                                 timeout=RPC_TIMEOUT_S)

    def fenced_req(self, rid, worker, token, n=1, key=None, tag="fenced"):
        return pb.AppendEventsRequest(
            idempotency_key=key or self.key(), run_id=rid, fencing_token=token,
            events=[self.event(tag, b"%d" % i, worker_id=worker) for i in range(n)])

    def fenced_append(self, rid, worker, token, n=1, key=None):
        return self.stub.AppendEvents(self.fenced_req(rid, worker, token, n, key),
                                      timeout=RPC_TIMEOUT_S)

    def complete_req(self, rid, worker, token, key=None):
        return pb.CompleteWorkerRequest(idempotency_key=key or self.key(), run_id=rid,
                                        worker_id=worker, fencing_token=token)

    def assertFenced(self, fn, req):
        err = self.assertRpcError(grpc.StatusCode.FAILED_PRECONDITION, fn, req)
        self.assertIn("fenced", err.details())
        self.assertTrue(err.details().startswith("fencing_token:"), err.details())
        return err

    def assertLeaseHeld(self, rid, worker, holder, expires_at):
        """Another holder's acquire fails, naming holder and expires_at."""
        err = self.assertRpcError(grpc.StatusCode.FAILED_PRECONDITION, self.stub.AcquireWorker,
                                  self.acquire_req(rid, worker, "probe-holder"))
        self.assertIn(holder, err.details())
        self.assertIn(expires_at, err.details())
        return err

    def watcher(self, rid, stub=None, **kw):
        w = Watcher(stub or self.stub, rid, **kw)
        self.addCleanup(w.close)
        return w

    def append_n(self, rid, n, tag="e", start=0, stub=None):
        """n events whose payloads are their running numbers start..start+n-1."""
        return (stub or self.stub).AppendEvents(
            pb.AppendEventsRequest(idempotency_key=self.key(), run_id=rid,
                                   events=[self.event(tag, b"%d" % (start + i))
                                           for i in range(n)]),
            timeout=RPC_TIMEOUT_S)

    def assertServing(self, health=None):
        resp = (health or tc.S.health).Check(tc.health_pb.HealthCheckRequest(service=""),
                                             timeout=RPC_TIMEOUT_S)
        self.assertEqual(resp.status, tc.health_pb.HealthCheckResponse.SERVING)


# ---- AcquireWorker ----

class AcquireWorkerTest(LeaseTestCase):

    def test_acquire_returns_lease_with_holder_token_1_and_expiry_now_plus_ttl(self):
        rid = self.run_id()
        self.create_run(rid, workers=["w1", "w2"])
        before = utcnow()
        lease, call = self.stub.AcquireWorker.with_call(
            self.acquire_req(rid, "w1", "node-a:1234", ttl_ms=30000), timeout=RPC_TIMEOUT_S)
        after = utcnow()
        self.assertEqual(lease.run_id, rid)
        self.assertEqual(lease.worker_id, "w1")
        self.assertEqual(lease.holder, "node-a:1234")
        self.assertEqual(lease.fencing_token, 1)
        self.assertTrue(lease.lease_id)
        self.assertFalse(lease.replayed)
        self.assertReplayTrailer(call, False)
        self.assertRegex(lease.expires_at, TIMESTAMP_RE)
        expires = parse_ts(lease.expires_at)
        ttl = datetime.timedelta(milliseconds=30000)
        # Same machine, same clock; a little slack for the microsecond cut.
        slack = datetime.timedelta(milliseconds=5)
        self.assertGreaterEqual(expires, before + ttl - slack)
        self.assertLessEqual(expires, after + ttl + slack)
        # Tokens are per worker: the other worker's first lease is 1 too.
        other = self.acquire(rid, "w2", "node-a:1234")
        self.assertEqual(other.fencing_token, 1)
        self.assertNotEqual(other.lease_id, lease.lease_id)

    def test_acquire_leased_worker_by_other_holder_failed_precondition_naming_holder_and_expiry(
            self):
        rid = self.run_id()
        self.create_run(rid)
        lease = self.acquire(rid, "w1", "holder-a")
        err = self.assertRpcError(grpc.StatusCode.FAILED_PRECONDITION, self.stub.AcquireWorker,
                                  self.acquire_req(rid, "w1", "holder-b"))
        self.assertIn("holder-a", err.details())
        self.assertIn(lease.expires_at, err.details())
        self.assertNotIn("fenced", err.details())

    def test_acquire_leased_worker_by_same_holder_failed_precondition(self):
        rid = self.run_id()
        self.create_run(rid)
        lease = self.acquire(rid, "w1", "holder-a")
        err = self.assertRpcError(grpc.StatusCode.FAILED_PRECONDITION, self.stub.AcquireWorker,
                                  self.acquire_req(rid, "w1", "holder-a"))
        self.assertIn("holder-a", err.details())
        self.assertIn(lease.expires_at, err.details())
        # The lease is untouched: renewing it still works, same token.
        renewed = self.renew(rid, "w1", lease.lease_id)
        self.assertEqual(renewed.fencing_token, lease.fencing_token)

    def test_acquire_worker_not_in_run_invalid_argument(self):
        rid = self.run_id()
        self.create_run(rid, workers=["w1"])
        err = self.assertRpcError(grpc.StatusCode.INVALID_ARGUMENT, self.stub.AcquireWorker,
                                  self.acquire_req(rid, "w9", "holder-a"))
        self.assertTrue(err.details().startswith("worker_id:"), err.details())
        self.assertIn("w9", err.details())

    def test_acquire_unknown_run_not_found(self):
        err = self.assertRpcError(grpc.StatusCode.NOT_FOUND, self.stub.AcquireWorker,
                                  self.acquire_req(self.run_id(), "w1", "holder-a"))
        self.assertIn("run_id", err.details())

    def test_acquire_ttl_outside_1000_to_600000_invalid_argument_naming_ttl_ms(self):
        rid = self.run_id()
        self.create_run(rid, workers=["w1", "w2"])
        for ttl in (0, 999, 600001, 2 ** 32 - 1):
            with self.subTest(ttl_ms=ttl):
                err = self.assertRpcError(grpc.StatusCode.INVALID_ARGUMENT,
                                          self.stub.AcquireWorker,
                                          self.acquire_req(rid, "w1", "holder-a", ttl_ms=ttl))
                self.assertTrue(err.details().startswith("ttl_ms:"), err.details())
                self.assertIn("1000", err.details())
                self.assertIn("600000", err.details())
        # Nothing was leased; both bounds are accepted.
        self.assertEqual(self.acquire(rid, "w1", "holder-a", ttl_ms=600000).fencing_token, 1)
        self.assertEqual(self.acquire(rid, "w2", "holder-a", ttl_ms=1000).fencing_token, 1)

    def test_acquire_bad_holder_invalid_argument_naming_holder(self):
        rid = self.run_id()
        self.create_run(rid)
        for holder in ("", "../h", "a b", "-h", ".h", "h/1", "h" * 129):
            with self.subTest(holder=holder):
                err = self.assertRpcError(grpc.StatusCode.INVALID_ARGUMENT,
                                          self.stub.AcquireWorker,
                                          self.acquire_req(rid, "w1", holder))
                self.assertTrue(err.details().startswith("holder:"), err.details())
        self.assertEqual(self.acquire(rid, "w1", "h" * 128).fencing_token, 1)

    def test_lease_calls_without_idempotency_key_invalid_argument(self):
        rid = self.run_id()
        self.create_run(rid)
        calls = [
            ("AcquireWorker", self.stub.AcquireWorker,
             pb.AcquireWorkerRequest(run_id=rid, worker_id="w1", holder="h", ttl_ms=5000)),
            ("RenewLease", self.stub.RenewLease,
             pb.RenewLeaseRequest(run_id=rid, worker_id="w1", lease_id="x", ttl_ms=5000)),
            ("ReleaseWorker", self.stub.ReleaseWorker,
             pb.ReleaseWorkerRequest(run_id=rid, worker_id="w1", lease_id="x")),
        ]
        for method, fn, req in calls:
            with self.subTest(method=method):
                err = self.assertRpcError(grpc.StatusCode.INVALID_ARGUMENT, fn, req)
                self.assertTrue(err.details().startswith("idempotency_key:"), err.details())
        # Nothing was leased.
        self.assertEqual(self.acquire(rid, "w1", "h").fencing_token, 1)

    def test_acquire_same_key_twice_replays_same_lease_without_new_token(self):
        rid = self.run_id()
        self.create_run(rid)
        req = self.acquire_req(rid, "w1", "holder-a")
        first, call1 = self.stub.AcquireWorker.with_call(req, timeout=RPC_TIMEOUT_S)
        second, call2 = self.stub.AcquireWorker.with_call(req, timeout=RPC_TIMEOUT_S)
        self.assertAppliedThenReplayed(first, call1, second, call2)
        second.replayed = False
        self.assertEqual(second, first)
        # The replay comes before the lease checks: still a replay after the
        # lease was given up.
        self.assertFalse(self.release(rid, "w1", first.lease_id).replayed)
        third, call3 = self.stub.AcquireWorker.with_call(req, timeout=RPC_TIMEOUT_S)
        self.assertTrue(third.replayed)
        self.assertReplayTrailer(call3, True)
        self.assertEqual(third.lease_id, first.lease_id)
        # No replay took a token: the next real acquire gets 2.
        self.assertEqual(self.acquire(rid, "w1", "holder-b").fencing_token, 2)

    def test_acquire_same_key_different_request_already_exists(self):
        rid = self.run_id()
        self.create_run(rid, workers=["w1", "w2"])
        key = self.key()
        self.acquire(rid, "w1", "holder-a", key=key)
        err = self.assertRpcError(grpc.StatusCode.ALREADY_EXISTS, self.stub.AcquireWorker,
                                  self.acquire_req(rid, "w2", "holder-a", key=key))
        self.assertIn("idempotency_key", err.details())
        self.assertEqual(self.acquire(rid, "w2", "holder-a").fencing_token, 1)


# ---- expiry, RenewLease, ReleaseWorker ----

class LeaseLifecycleTest(LeaseTestCase):

    def test_expired_lease_taken_over_with_larger_token_old_lease_not_renewable_and_fenced(
            self):
        rid = self.run_id()
        self.create_run(rid)
        old = self.acquire(rid, "w1", "holder-a", ttl_ms=1000)
        self.assertLeaseHeld(rid, "w1", "holder-a", old.expires_at)
        self.fenced_append(rid, "w1", old.fencing_token)
        wait_until_expired(old)
        # Lapsed, not yet taken over: neither renewable nor a valid token.
        err = self.assertRpcError(grpc.StatusCode.FAILED_PRECONDITION, self.stub.RenewLease,
                                  pb.RenewLeaseRequest(idempotency_key=self.key(), run_id=rid,
                                                       worker_id="w1", lease_id=old.lease_id,
                                                       ttl_ms=LONG_TTL_MS))
        self.assertIn(old.lease_id, err.details())
        self.assertFenced(self.stub.AppendEvents, self.fenced_req(rid, "w1", old.fencing_token))
        # Another holder takes it at once, with a strictly larger token.
        new = self.acquire(rid, "w1", "holder-b")
        self.assertEqual(new.holder, "holder-b")
        self.assertGreater(new.fencing_token, old.fencing_token)
        self.assertNotEqual(new.lease_id, old.lease_id)
        # Taken over: the old lease stays dead, its token fenced.
        err = self.assertRpcError(grpc.StatusCode.FAILED_PRECONDITION, self.stub.RenewLease,
                                  pb.RenewLeaseRequest(idempotency_key=self.key(), run_id=rid,
                                                       worker_id="w1", lease_id=old.lease_id,
                                                       ttl_ms=LONG_TTL_MS))
        self.assertIn(old.lease_id, err.details())
        self.assertFenced(self.stub.AppendEvents, self.fenced_req(rid, "w1", old.fencing_token))
        self.assertFenced(self.stub.CompleteWorker,
                          self.complete_req(rid, "w1", old.fencing_token))
        self.assertEqual(self.fenced_append(rid, "w1", new.fencing_token).first_seq, 2)
        self.assertEqual(len(self.read_all(rid)), 2)

    def test_renew_extends_expires_at_and_keeps_lease_and_token(self):
        rid = self.run_id()
        self.create_run(rid)
        lease = self.acquire(rid, "w1", "holder-a", ttl_ms=1000)
        renewed = self.renew(rid, "w1", lease.lease_id, ttl_ms=LONG_TTL_MS)
        self.assertEqual((renewed.lease_id, renewed.holder, renewed.fencing_token),
                         (lease.lease_id, "holder-a", lease.fencing_token))
        self.assertRegex(renewed.expires_at, TIMESTAMP_RE)
        self.assertGreater(parse_ts(renewed.expires_at), parse_ts(lease.expires_at))
        self.assertGreaterEqual(parse_ts(renewed.expires_at),
                                parse_ts(lease.expires_at) + datetime.timedelta(seconds=50))
        # The server holds the new expiry.
        self.assertLeaseHeld(rid, "w1", "holder-a", renewed.expires_at)

    def test_renew_with_wrong_lease_id_failed_precondition(self):
        rid = self.run_id()
        self.create_run(rid, workers=["w1", "w2"])
        lease = self.acquire(rid, "w1", "holder-a")
        other = self.acquire(rid, "w2", "holder-a")
        for wrong in ("0000000000000000", other.lease_id):
            with self.subTest(lease_id=wrong):
                err = self.assertRpcError(
                    grpc.StatusCode.FAILED_PRECONDITION, self.stub.RenewLease,
                    pb.RenewLeaseRequest(idempotency_key=self.key(), run_id=rid,
                                         worker_id="w1", lease_id=wrong, ttl_ms=LONG_TTL_MS))
                self.assertTrue(err.details().startswith("lease_id:"), err.details())
        # The real lease is unchanged.
        self.assertLeaseHeld(rid, "w1", "holder-a", lease.expires_at)

    def test_release_ends_lease_so_another_holder_acquires_at_once_with_next_token(self):
        rid = self.run_id()
        self.create_run(rid)
        lease = self.acquire(rid, "w1", "holder-a")
        resp, call = self.stub.ReleaseWorker.with_call(
            self.release_req(rid, "w1", lease.lease_id), timeout=RPC_TIMEOUT_S)
        self.assertFalse(resp.replayed)
        self.assertReplayTrailer(call, False)
        new = self.acquire(rid, "w1", "holder-b")
        self.assertEqual(new.holder, "holder-b")
        self.assertEqual(new.fencing_token, lease.fencing_token + 1)
        # The released lease can no longer be renewed.
        self.assertRpcError(grpc.StatusCode.FAILED_PRECONDITION, self.stub.RenewLease,
                            pb.RenewLeaseRequest(idempotency_key=self.key(), run_id=rid,
                                                 worker_id="w1", lease_id=lease.lease_id,
                                                 ttl_ms=LONG_TTL_MS))

    def test_release_released_lease_again_with_new_key_is_no_op(self):
        rid = self.run_id()
        self.create_run(rid)
        lease = self.acquire(rid, "w1", "holder-a")
        key = self.key()
        self.assertFalse(self.release(rid, "w1", lease.lease_id, key=key).replayed)
        again, call = self.stub.ReleaseWorker.with_call(
            self.release_req(rid, "w1", lease.lease_id), timeout=RPC_TIMEOUT_S)
        self.assertFalse(again.replayed)
        self.assertReplayTrailer(call, False)
        replay, call = self.stub.ReleaseWorker.with_call(
            self.release_req(rid, "w1", lease.lease_id, key=key), timeout=RPC_TIMEOUT_S)
        self.assertTrue(replay.replayed)
        self.assertReplayTrailer(call, True)
        # Still free, and no token was taken by the no-ops.
        self.assertEqual(self.acquire(rid, "w1", "holder-b").fencing_token, 2)

    def test_release_with_taken_over_lease_id_failed_precondition(self):
        rid = self.run_id()
        self.create_run(rid)
        old = self.acquire(rid, "w1", "holder-a")
        self.release(rid, "w1", old.lease_id)
        new = self.acquire(rid, "w1", "holder-b")
        err = self.assertRpcError(grpc.StatusCode.FAILED_PRECONDITION, self.stub.ReleaseWorker,
                                  self.release_req(rid, "w1", old.lease_id))
        self.assertTrue(err.details().startswith("lease_id:"), err.details())
        self.assertIn(old.lease_id, err.details())
        # The new holder's lease is untouched.
        self.assertLeaseHeld(rid, "w1", "holder-b", new.expires_at)
        self.assertEqual(self.fenced_append(rid, "w1", new.fencing_token).first_seq, 1)


class TokenRestartTest(LeaseTestCase):

    def test_fencing_token_keeps_growing_across_restart_on_same_data_dir(self):
        data_dir = os.path.join(tempfile.mkdtemp(prefix="restart-", dir=tc.S.root), "data")
        rid = self.run_id()
        first = OwnCairnd("restart-1", data_dir)
        try:
            first.stub.CreateRun(pb.CreateRunRequest(idempotency_key=self.key(), run_id=rid,
                                                     workers=["w1"]), timeout=RPC_TIMEOUT_S)
            tokens = []
            for holder in ("holder-a", "holder-b"):
                lease = self.acquire(rid, "w1", holder, stub=first.stub)
                tokens.append(lease.fencing_token)
                self.release(rid, "w1", lease.lease_id, stub=first.stub)
            self.assertEqual(tokens, [1, 2])
        finally:
            first.stop()
        second = OwnCairnd("restart-2", data_dir)
        try:
            lease = self.acquire(rid, "w1", "holder-c", stub=second.stub)
            self.assertEqual(lease.fencing_token, 3)
        finally:
            second.stop()


# ---- fenced writes ----

class FencedAppendTest(LeaseTestCase):

    def test_fenced_append_with_current_token_accepted(self):
        rid = self.run_id()
        self.create_run(rid)
        lease = self.acquire(rid, "w1", "holder-a")
        resp = self.fenced_append(rid, "w1", lease.fencing_token, n=3)
        self.assertEqual((resp.first_seq, resp.last_seq), (1, 3))
        self.assertFalse(resp.replayed)
        events = self.read_all(rid)
        self.assertEqual([(e.seq, e.worker_id) for e in events], [(1, "w1"), (2, "w1"), (3, "w1")])

    def test_fenced_append_with_stale_token_fenced_and_nothing_appended(self):
        rid = self.run_id()
        self.create_run(rid)
        old = self.acquire(rid, "w1", "holder-a")
        self.fenced_append(rid, "w1", old.fencing_token)
        self.release(rid, "w1", old.lease_id)
        new = self.acquire(rid, "w1", "holder-b")
        self.assertEqual(new.fencing_token, old.fencing_token + 1)
        for token in (old.fencing_token, new.fencing_token + 1):
            with self.subTest(token=token):
                err = self.assertFenced(self.stub.AppendEvents,
                                        self.fenced_req(rid, "w1", token, n=5))
                self.assertIn(str(token), err.details())
        self.assertEqual([e.seq for e in self.read_all(rid)], [1])
        self.assertEqual(self.get_run(rid).next_seq, 2)
        self.assertEqual(self.fenced_append(rid, "w1", new.fencing_token).first_seq, 2)

    def test_fenced_append_for_never_leased_or_released_worker_fenced(self):
        rid = self.run_id()
        self.create_run(rid, workers=["w1", "w2"])
        self.assertFenced(self.stub.AppendEvents, self.fenced_req(rid, "w2", 1))
        lease = self.acquire(rid, "w1", "holder-a")
        self.release(rid, "w1", lease.lease_id)
        # Released: its own token no longer counts.
        self.assertFenced(self.stub.AppendEvents,
                          self.fenced_req(rid, "w1", lease.fencing_token))
        self.assertEqual(self.read_all(rid), [])

    def test_fenced_append_with_events_of_other_or_no_worker_invalid_argument(self):
        rid = self.run_id()
        self.create_run(rid, workers=["w1", "w2"])
        lease = self.acquire(rid, "w1", "holder-a")
        tok = lease.fencing_token
        cases = [
            ("events[1].worker_id", [self.event(worker_id="w1"), self.event(worker_id="w2")]),
            ("events[0].worker_id", [self.event(worker_id="")]),
            ("events[2].worker_id", [self.event(worker_id="w1"), self.event(worker_id="w1"),
                                     self.event(worker_id="")]),
            ("events[0].worker_id", [self.event(worker_id=""), self.event(worker_id="w1")]),
        ]
        for field, events in cases:
            with self.subTest(field=field, n=len(events)):
                err = self.assertRpcError(
                    grpc.StatusCode.INVALID_ARGUMENT, self.stub.AppendEvents,
                    pb.AppendEventsRequest(idempotency_key=self.key(), run_id=rid,
                                           fencing_token=tok, events=events))
                self.assertTrue(err.details().startswith(field + ":"), err.details())
        self.assertEqual(self.read_all(rid), [])
        # The same mixed batch without a token is an ordinary append.
        resp = self.append(rid, [self.event(worker_id="w1"), self.event(worker_id="w2"),
                                 self.event()])
        self.assertEqual((resp.first_seq, resp.last_seq), (1, 3))

    def test_fenced_append_replay_stays_replay_after_token_went_stale(self):
        rid = self.run_id()
        self.create_run(rid)
        old = self.acquire(rid, "w1", "holder-a")
        req = self.fenced_req(rid, "w1", old.fencing_token, n=2)
        first = self.stub.AppendEvents(req, timeout=RPC_TIMEOUT_S)
        self.assertEqual((first.first_seq, first.last_seq, first.replayed), (1, 2, False))
        self.release(rid, "w1", old.lease_id)
        self.acquire(rid, "w1", "holder-b")
        # The token is stale now, but the retry of the applied request is
        # answered from the ledger before any lease check.
        again, call = self.stub.AppendEvents.with_call(req, timeout=RPC_TIMEOUT_S)
        self.assertTrue(again.replayed)
        self.assertReplayTrailer(call, True)
        self.assertEqual((again.first_seq, again.last_seq), (1, 2))
        self.assertEqual(len(self.read_all(rid)), 2)
        # A new key with the stale token is fenced.
        req.idempotency_key = self.key()
        self.assertFenced(self.stub.AppendEvents, req)


class FencedCompleteTest(LeaseTestCase):

    def test_complete_with_stale_token_fenced_and_worker_not_completed(self):
        rid = self.run_id()
        self.create_run(rid, workers=["w1", "w2"])
        old = self.acquire(rid, "w1", "holder-a")
        self.release(rid, "w1", old.lease_id)
        self.acquire(rid, "w1", "holder-b")
        self.assertFenced(self.stub.CompleteWorker,
                          self.complete_req(rid, "w1", old.fencing_token))
        run = self.get_run(rid)
        self.assertEqual(list(run.completed_workers), [])
        self.assertEqual(run.next_seq, 1)

    def test_complete_with_current_token_completes_and_ends_lease(self):
        rid = self.run_id()
        self.create_run(rid, workers=["w1", "w2"])
        lease = self.acquire(rid, "w1", "holder-a")
        self.fenced_append(rid, "w1", lease.fencing_token)
        resp, call = self.stub.CompleteWorker.with_call(
            self.complete_req(rid, "w1", lease.fencing_token), timeout=RPC_TIMEOUT_S)
        self.assertEqual(resp.seq, 2)
        self.assertEqual(resp.run_state, "running")
        self.assertFalse(resp.replayed)
        run = self.get_run(rid)
        self.assertEqual(list(run.completed_workers), ["w1"])
        events = self.read_all(rid)
        self.assertEqual([(e.type, e.worker_id) for e in events][-1], ("worker.completed", "w1"))
        # The lease ended with the completion.
        err = self.assertRpcError(grpc.StatusCode.FAILED_PRECONDITION, self.stub.RenewLease,
                                  pb.RenewLeaseRequest(idempotency_key=self.key(), run_id=rid,
                                                       worker_id="w1", lease_id=lease.lease_id,
                                                       ttl_ms=LONG_TTL_MS))
        self.assertIn(lease.lease_id, err.details())
        self.assertFenced(self.stub.AppendEvents,
                          self.fenced_req(rid, "w1", lease.fencing_token))
        self.assertEqual(len(self.read_all(rid)), 2)

    def test_acquire_completed_worker_failed_precondition(self):
        rid = self.run_id()
        self.create_run(rid, workers=["w1", "w2"])
        lease = self.acquire(rid, "w1", "holder-a")
        done = self.stub.CompleteWorker(self.complete_req(rid, "w1", lease.fencing_token),
                                        timeout=RPC_TIMEOUT_S)
        for holder in ("holder-a", "holder-b"):
            with self.subTest(holder=holder):
                err = self.assertRpcError(grpc.StatusCode.FAILED_PRECONDITION,
                                          self.stub.AcquireWorker,
                                          self.acquire_req(rid, "w1", holder))
                self.assertIn("completed", err.details())
                self.assertIn(str(done.seq), err.details())
        # The other worker is unaffected.
        self.assertEqual(self.acquire(rid, "w2", "holder-b").fencing_token, 1)


# ---- WatchEvents ----

class WatchEventsTest(LeaseTestCase):

    def assertSameEvents(self, got, rid):
        """got equals the log as ReadEvents returns it, message for message."""
        self.assertEqual(list(got), self.read_all(rid, max_events=1000))

    def test_watch_catch_up_then_live_gives_seqs_1_to_10_in_order(self):
        rid = self.run_id()
        self.create_run(rid)
        self.append_n(rid, 5)
        w = self.watcher(rid, from_seq=1, until=10)
        self.assertTrue(w.wait_count(5), w.error)
        self.assertEqual(w.seqs(), [1, 2, 3, 4, 5])
        # The next five are appended only after the catch-up arrived: live.
        for i in range(5):
            self.append_n(rid, 1, start=5 + i)
        self.assertTrue(w.join(), "watcher did not get 10 events")
        self.assertIsNone(w.error)
        self.assertEqual(w.seqs(), list(range(1, 11)))
        self.assertSameEvents(w.events, rid)
        self.assertEqual([e.payload for e in w.events], [b"%d" % i for i in range(10)])
        for e in w.events:
            self.assertEqual(e.run_id, rid)
            self.assertRegex(e.created_at, TIMESTAMP_RE)

    def test_watch_from_middle_seq_starts_there(self):
        rid = self.run_id()
        self.create_run(rid)
        self.append_n(rid, 10)
        w = self.watcher(rid, from_seq=4, until=8)
        self.assertTrue(w.wait_count(7), w.error)
        self.append_n(rid, 1, start=10)
        self.assertTrue(w.join())
        self.assertEqual(w.seqs(), list(range(4, 12)))
        self.assertEqual(list(w.events), self.read_all(rid)[3:])

    def test_watch_from_seq_0_starts_at_1(self):
        rid = self.run_id()
        self.create_run(rid)
        self.append_n(rid, 3)
        w = self.watcher(rid, from_seq=0, until=3)
        self.assertTrue(w.join())
        self.assertIsNone(w.error)
        self.assertEqual(w.seqs(), [1, 2, 3])

    def test_watch_from_past_end_waits_for_new_events(self):
        rid = self.run_id()
        self.create_run(rid)
        self.append_n(rid, 10)
        # Nothing at 15 yet: the stream stays open and silent (here until
        # its deadline), it neither ends nor sends older events.
        short = Watcher(self.stub, rid, from_seq=15, timeout=0.5)
        self.addCleanup(short.close)
        self.assertTrue(short.join())
        self.assertEqual(short.seqs(), [])
        self.assertEqual(short.error.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        w = self.watcher(rid, from_seq=15, until=2)
        self.append_n(rid, 4, start=10)   # seqs 11..14
        self.append_n(rid, 2, start=14)   # seqs 15..16
        self.assertTrue(w.join())
        self.assertIsNone(w.error)
        self.assertEqual(w.seqs(), [15, 16])
        self.assertEqual([e.payload for e in w.events], [b"14", b"15"])

    def test_watch_during_concurrent_appends_sees_every_seq_once_in_order(self):
        rid = self.run_id()
        self.create_run(rid)
        pre = 200
        threads_n, appends_per_thread, batch = 4, 45, 10
        total = pre + threads_n * appends_per_thread * batch   # 2000
        self.append_n(rid, pre, tag="pre")
        start = threading.Barrier(threads_n + 1)
        midway = threading.Event()
        errors = []

        def appender(t):
            try:
                start.wait(RPC_TIMEOUT_S)
                for i in range(appends_per_thread):
                    if t == 0 and i == appends_per_thread // 2:
                        midway.set()
                    self.stub.AppendEvents(
                        pb.AppendEventsRequest(
                            idempotency_key=self.key(), run_id=rid,
                            events=[self.event("t%d" % t, b"%d.%d.%d" % (t, i, j))
                                    for j in range(batch)]),
                        timeout=RPC_TIMEOUT_S)
            except Exception as e:  # pylint: disable=broad-except
                errors.append(e)

        threads = [threading.Thread(target=appender, args=(t,), daemon=True)
                   for t in range(threads_n)]
        for t in threads:
            t.start()
        # The watcher starts in catch-up (200 events exist) while the
        # appenders start committing: the boundary is crossed under load.
        early = self.watcher(rid, from_seq=1, until=total)
        start.wait(RPC_TIMEOUT_S)
        # A second watcher from seq 1 joins while the appends are in full
        # swing: a long catch-up whose end races the live commits.
        self.assertTrue(midway.wait(RPC_TIMEOUT_S), errors)
        late = self.watcher(rid, from_seq=1, until=total)
        for t in threads:
            t.join(RPC_TIMEOUT_S)
            self.assertFalse(t.is_alive())
        self.assertEqual(errors, [])
        log = self.read_all(rid, max_events=1000)
        self.assertEqual([e.seq for e in log], list(range(1, total + 1)))
        for name, w in (("early", early), ("late", late)):
            with self.subTest(watcher=name):
                self.assertTrue(w.join(), "got %d of %d events" % (len(w.events), total))
                self.assertIsNone(w.error)
                seqs = w.seqs()
                self.assertEqual(len(seqs), total)
                self.assertEqual(seqs, list(range(1, total + 1)))
                self.assertEqual(list(w.events), log)
        # Each appender's batches arrive in its own order, each batch whole
        # (consecutive seqs: an append is atomic).
        for t in range(threads_n):
            mine = [e for e in early.events if e.type == "t%d" % t]
            self.assertEqual([e.payload for e in mine],
                             [b"%d.%d.%d" % (t, i, j) for i in range(appends_per_thread)
                              for j in range(batch)])
            for i in range(appends_per_thread):
                b = mine[i * batch:(i + 1) * batch]
                self.assertEqual([e.seq - b[0].seq for e in b], list(range(batch)))

    def test_watch_100_watchers_on_one_run_see_the_same_complete_sequence(self):
        rid = self.run_id()
        self.create_run(rid)
        pre, live_batches, batch = 20, 10, 10
        total = pre + live_batches * batch
        self.append_n(rid, pre)
        watchers = [self.watcher(rid, from_seq=1, until=total) for _ in range(100)]
        for w in watchers:
            self.assertTrue(w.wait_count(pre), w.error)
        for i in range(live_batches):
            self.append_n(rid, batch, start=pre + i * batch)
        log = self.read_all(rid)
        self.assertEqual(len(log), total)
        for n, w in enumerate(watchers):
            with self.subTest(watcher=n):
                self.assertTrue(w.join(), "got %d of %d" % (len(w.events), total))
                self.assertIsNone(w.error)
                self.assertEqual(list(w.events), log)

    def test_watch_slow_watcher_behind_overrun_ring_still_gets_every_event_in_order(self):
        rid = self.run_id()
        self.create_run(rid)
        head, bulk = 3, 6000
        self.assertGreater(bulk, WATCH_RING_EVENTS)
        total = head + bulk
        self.append_n(rid, head)
        # A channel of its own without BDP probing keeps the HTTP/2 window
        # at its 64 KiB default, so a watcher that stops reading really
        # holds the server back instead of buffering the whole log.
        channel = grpc.insecure_channel(tc.S.address, options=[
            ("grpc.enable_http_proxy", 0), ("grpc.enable_retries", 0),
            ("grpc.http2.bdp_probe", 0)])
        self.addCleanup(channel.close)
        stub = tc.pb_grpc.CoordinatorStub(channel)
        w = self.watcher(rid, stub=stub, from_seq=1, until=total, pause_after=head)
        self.assertTrue(w.paused.wait(RPC_TIMEOUT_S), w.error)
        payload = b"x" * 200
        for b in range(bulk // 1000):
            self.stub.AppendEvents(
                pb.AppendEventsRequest(
                    idempotency_key=self.key(), run_id=rid,
                    events=[self.event("bulk", b"%d:" % (head + b * 1000 + i) + payload)
                            for i in range(1000)]),
                timeout=RPC_TIMEOUT_S)
        # While the watcher was stopped the server could push at most one
        # flow-control window (~64 KiB, a few hundred events) past seq 3;
        # the ring now holds only the newest 4096, so the watcher resumes
        # from the log and then crosses back into the ring.
        w.resume.set()
        self.assertTrue(w.join(), "got %d of %d" % (len(w.events), total))
        self.assertIsNone(w.error)
        self.assertEqual(w.seqs(), list(range(1, total + 1)))
        self.assertSameEvents(w.events, rid)

    def test_watch_cancel_ends_call_promptly_and_server_keeps_serving(self):
        rid = self.run_id()
        self.create_run(rid)
        self.append_n(rid, 1)
        # Several watchers caught up and parked on the run.
        watchers = [self.watcher(rid, from_seq=1) for _ in range(10)]
        for w in watchers:
            self.assertTrue(w.wait_count(1), w.error)
        t0 = time.monotonic()
        for w in watchers:
            w.call.cancel()
        for w in watchers:
            self.assertTrue(w.join(5), "cancelled watch did not end")
        self.assertLess(time.monotonic() - t0, 5)
        for w in watchers:
            self.assertEqual(w.error.code(), grpc.StatusCode.CANCELLED)
            self.assertEqual(w.seqs(), [1])
        # Commits on the run must not touch the cancelled watchers, and the
        # server keeps serving, watches included.
        self.append_n(rid, 2, start=1)
        self.assertServing()
        self.assertIsNone(tc.S.proc.poll())
        fresh = self.watcher(rid, from_seq=1, until=4)
        self.assertTrue(fresh.wait_count(3), fresh.error)
        self.append_n(rid, 1, start=3)
        self.assertTrue(fresh.join())
        self.assertEqual(fresh.seqs(), [1, 2, 3, 4])

    def test_watch_deadline_ends_with_deadline_exceeded(self):
        rid = self.run_id()
        self.create_run(rid)
        self.append_n(rid, 2)
        w = self.watcher(rid, from_seq=1, timeout=1.0)
        self.assertTrue(w.join(10))
        self.assertEqual(w.error.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        # Whatever arrived before the deadline is the log's start, in order
        # (on any sane machine both events do).
        self.assertEqual(w.seqs(), [1, 2][:len(w.seqs())])
        self.append_n(rid, 1, start=2)
        self.assertServing()
        self.assertEqual([e.seq for e in self.read_all(rid)], [1, 2, 3])

    def test_watch_unknown_run_not_found(self):
        w = self.watcher(self.run_id(), from_seq=1)
        self.assertTrue(w.join())
        self.assertEqual(w.seqs(), [])
        self.assertEqual(w.error.code(), grpc.StatusCode.NOT_FOUND, w.error.details())

    def test_watch_bad_run_id_invalid_argument(self):
        for rid in ("", "../etc", "a b", "-x", "a" * 129):
            with self.subTest(run_id=rid):
                w = self.watcher(rid, from_seq=1)
                self.assertTrue(w.join())
                self.assertEqual(w.seqs(), [])
                self.assertEqual(w.error.code(), grpc.StatusCode.INVALID_ARGUMENT,
                                 w.error.details())
                self.assertTrue(w.error.details().startswith("run_id:"), w.error.details())


# A gRPC client written only against the wire: it watches a run, reports
# on stdout, and after its stream ended keeps its channel open (idle) until
# its stdin closes. Used where the test's own process must not be the
# client (gRPC core's backup poller is process-wide).
IDLE_CLIENT = r"""
import sys, time, grpc
address, request = sys.argv[1], bytes.fromhex(sys.argv[2])
channel = grpc.insecure_channel(address, options=[("grpc.enable_http_proxy", 0),
                                                  ("grpc.enable_retries", 0)])
call = channel.unary_stream("/cairn.v1.Coordinator/WatchEvents")(request, timeout=60)
n = 0
try:
    for _ in call:
        n += 1
        print("event %d" % n, flush=True)
    print("ended OK", flush=True)
except grpc.RpcError as e:
    print("ended %s %s" % (e.code().name, e.details()), flush=True)
sys.stdin.read()
channel.close()
"""


class WatchShutdownTest(LeaseTestCase):

    def own_server(self, name):
        root = tempfile.mkdtemp(prefix=name + "-", dir=tc.S.root)
        return OwnCairnd(name, os.path.join(root, "data"))

    def parked_run(self, server):
        """A run with one event: a watcher from seq 1 gets it and parks."""
        rid = self.run_id()
        server.stub.CreateRun(pb.CreateRunRequest(idempotency_key=self.key(), run_id=rid,
                                                  workers=["w1"]), timeout=RPC_TIMEOUT_S)
        self.append_n(rid, 1, stub=server.stub)
        return rid

    def wait_exit(self, server, t0):
        """cairnd's exit code and how long after t0 it exited."""
        try:
            rc = server.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()
            self.fail("cairnd did not exit after SIGTERM; log:\n" + server.log())
        return rc, time.monotonic() - t0

    @staticmethod
    def cleanup(server):
        if server.proc.poll() is None:
            server.stop()
        else:
            server.channel.close()
            server._close_files()  # pylint: disable=protected-access

    def test_sigterm_ends_parked_watch_with_unavailable_and_cairnd_exits_0(self):
        server = self.own_server("watch-shutdown")
        try:
            rid = self.parked_run(server)
            w = self.watcher(rid, stub=server.stub, from_seq=1)
            # One event received: the stream is established and, caught up,
            # parked on the idle run.
            self.assertTrue(w.wait_count(1), w.error)
            t0 = time.monotonic()
            os.kill(server.proc.pid, signal.SIGTERM)
            self.assertTrue(w.join(STOP_TIMEOUT_S), "watch did not end after SIGTERM")
            ended = time.monotonic() - t0
            # Done with this server: the client lets its connection go (see
            # the next test for a client that keeps it).
            server.channel.close()
            rc, exited = self.wait_exit(server, t0)
            self.assertEqual(rc, 0, server.log())
            self.assertEqual(w.error.code(), grpc.StatusCode.UNAVAILABLE, w.error.details())
            self.assertIn("shutting down", w.error.details())
            self.assertEqual(w.seqs(), [1])
            self.assertLess(ended, 1.0, "watch ended %.2f s after SIGTERM" % ended)
            self.assertLess(exited, SHUTDOWN_GRACE_S / 2,
                            "cairnd exited %.2f s after SIGTERM" % exited)
            self.assertNotIn("outlived", server.log())
        finally:
            self.cleanup(server)

    def test_sigterm_exits_promptly_while_client_keeps_idle_connection_open(self):
        """An idle client connection does not hold cairnd's shutdown up.

        The scenario of the test above, but the watching client keeps its
        channel open after its stream ended, as any long-lived client does.
        Its stream ends with UNAVAILABLE at once and no call is in flight
        any more, so cairnd cuts the idle connection and exits at once.
        (Once it waited out the whole --shutdown-grace-ms for the connection
        to close, which an idle gRPC core client does not do.)"""
        server = self.own_server("watch-shutdown-idle")
        client = None
        try:
            rid = self.parked_run(server)
            request = pb.WatchEventsRequest(run_id=rid, from_seq=1).SerializeToString()
            env = dict(os.environ, GRPC_CLIENT_CHANNEL_BACKUP_POLL_INTERVAL_MS="0")
            client = subprocess.Popen(preexec_fn=tc.die_with_parent, args=
                [sys.executable, "-c", IDLE_CLIENT, server.address, request.hex()],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
            self.assertEqual(read_line(client), "event 1\n")
            t0 = time.monotonic()
            os.kill(server.proc.pid, signal.SIGTERM)
            line = read_line(client)
            ended = time.monotonic() - t0
            self.assertTrue(line.startswith("ended UNAVAILABLE"), line)
            self.assertLess(ended, 1.0, "watch ended %.2f s after SIGTERM" % ended)
            rc, exited = self.wait_exit(server, t0)
            self.assertEqual(rc, 0, server.log())
            self.assertLess(exited, SHUTDOWN_GRACE_S / 2,
                            "cairnd exited %.2f s after SIGTERM; log:\n%s"
                            % (exited, server.log()))
        finally:
            if client is not None:
                client.stdin.close()
                try:
                    client.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    client.kill()
                    client.wait()
                client.stdout.close()
            self.cleanup(server)


def main():
    tc.main()


if __name__ == "__main__":
    main()
