#!/usr/bin/python3
"""Interop tests for cairnd's resource limits (flags of docs/operations.md):
concurrent streams per connection, keepalive, idle connections, watchers,
uploads, idle transfers and the gRPC memory quota.

Each test starts a cairnd of its own with the flag under test (the Cairnd
class of test_checkpoints.py) and drives it with Python grpcio. Nothing
sleeps to synchronise: the tests wait on events (a call's end, a
connectivity change, a line from a client process), or poll the server's
log with a deadline where there is nothing to wait on.

Run (ctest does this, see CMakeLists.txt):

    /usr/bin/python3 test_limits.py --cairnd PATH --proto-dir DIR \
        --protoc PATH --grpc-plugin PATH [unittest args...]
"""

import os
import signal
import subprocess
import sys
import threading
import time
import unittest

import grpc

sys.dont_write_bytecode = True  # nothing written next to the sources
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_coordinator as tc  # noqa: E402  (the shared harness)
from test_coordinator import RPC_TIMEOUT_S  # noqa: E402
from test_checkpoints import Cairnd  # noqa: E402
import test_leases_watch as tlw  # noqa: E402  (Watcher, LeaseTestCase, read_line)

pb = None


def setUpModule():
    global pb
    tlw.setUpModule()
    pb = tc.pb


def tearDownModule():
    tlw.tearDownModule()


def own_channel(address):
    """A channel with a subchannel (connection) of its own: grpcio shares
    connections between channels of one process by default."""
    return grpc.insecure_channel(address, options=[
        ("grpc.enable_http_proxy", 0),
        ("grpc.enable_retries", 0),
        ("grpc.use_local_subchannel_pool", 1),
    ])


def wait_log(server, text, timeout):
    """Polls the server's log (bounded) until text shows; the time it took,
    or None."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        with open(server.log_path, errors="replace") as f:
            if text in f.read():
                return time.monotonic() - t0
        time.sleep(0.02)  # polling the log, bounded by the deadline
    return None


# A client process watching a run: prints "event N" per event. The test
# SIGSTOPs it so that it answers nothing, not even pings.
WATCH_CLIENT = r"""
import sys, grpc
address, request = sys.argv[1], bytes.fromhex(sys.argv[2])
channel = grpc.insecure_channel(address, options=[("grpc.enable_http_proxy", 0),
                                                  ("grpc.enable_retries", 0)])
call = channel.unary_stream("/cairn.v1.Coordinator/WatchEvents")(request, timeout=120)
n = 0
try:
    for _ in call:
        n += 1
        print("event %d" % n, flush=True)
except grpc.RpcError as e:
    print("ended %s" % e.code().name, flush=True)
"""


class LimitsTestCase(tlw.LeaseTestCase):

    def server(self, name, flags):
        s = Cairnd(name, flags)
        self.addCleanup(s.stop)
        return s

    def parked_run(self, server):
        """A run with one event: a watcher from seq 1 gets it and parks."""
        rid = self.run_id()
        server.stub.CreateRun(pb.CreateRunRequest(idempotency_key=self.key(), run_id=rid,
                                                  workers=["w1"]), timeout=RPC_TIMEOUT_S)
        self.append_n(rid, 1, stub=server.stub)
        return rid


class MaxConcurrentStreamsTest(LimitsTestCase):

    def test_two_streams_open_third_call_waits_until_one_ends(self):
        server = self.server("streams", ["--max-concurrent-streams", "2"])
        rid = self.parked_run(server)
        w1 = self.watcher(rid, stub=server.stub)
        w2 = self.watcher(rid, stub=server.stub)
        self.assertTrue(w1.wait_count(1), w1.error)
        self.assertTrue(w2.wait_count(1), w2.error)
        get = pb.GetRunRequest(run_id=rid)
        # A third call on the same connection is not started: the client
        # holds it until a stream ends, here past its deadline.
        with self.assertRaises(grpc.RpcError) as cm:
            server.stub.GetRun(get, timeout=1.0)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        # The limit is per connection: another connection is served.
        other = own_channel(server.address)
        try:
            tc.pb_grpc.CoordinatorStub(other).GetRun(get, timeout=RPC_TIMEOUT_S)
        finally:
            other.close()
        # Once one stream ends, the waiting call goes through.
        fut = server.stub.GetRun.future(get, timeout=RPC_TIMEOUT_S)
        w1.close()
        self.assertEqual(fut.result().run_id, rid)


class KeepaliveTest(LimitsTestCase):

    def test_stopped_client_watch_ended_within_two_keepalive_periods(self):
        period_ms = 1000
        server = self.server("keepalive", [
            "--keepalive-time-ms", str(period_ms), "--keepalive-timeout-ms", str(period_ms),
            "--log-level", "debug"])
        rid = self.parked_run(server)
        req = pb.WatchEventsRequest(run_id=rid, from_seq=1).SerializeToString().hex()
        client = subprocess.Popen([sys.executable, "-c", WATCH_CLIENT, server.address, req],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  preexec_fn=tc.die_with_parent)

        def cleanup():
            client.kill()
            client.wait()
            client.stdout.close()
        self.addCleanup(cleanup)
        self.assertEqual(tlw.read_line(client), "event 1\n")
        # The client's watch is parked; the client stops answering anything.
        os.kill(client.pid, signal.SIGSTOP)
        left = "watch %s: the client left" % rid
        took = wait_log(server, left, 20)
        self.assertIsNotNone(took, "watch not ended; log:\n" + server.log())
        # A ping after at most one period without reads, unanswered for one
        # more: two periods, plus scheduling slack.
        self.assertLess(took, 2 * period_ms / 1000 + 1.0, server.log())
        self.assertEqual(server.log().count(left), 1)


class MaxConnectionIdleTest(LimitsTestCase):

    def test_idle_connection_gets_goaway_channel_goes_idle(self):
        idle_ms = 500
        server = self.server("idle", ["--max-connection-idle-ms", str(idle_ms)])
        ch = own_channel(server.address)
        self.addCleanup(ch.close)
        states = []
        cond = threading.Condition()

        def on_state(s):
            with cond:
                states.append((time.monotonic(), s))
                cond.notify_all()
        ch.subscribe(on_state, try_to_connect=False)
        self.addCleanup(ch.unsubscribe, on_state)
        health = tc.health_grpc.HealthStub(ch)
        health.Check(tc.health_pb.HealthCheckRequest(service=""), timeout=RPC_TIMEOUT_S)
        done = time.monotonic()
        with cond:
            self.assertTrue(cond.wait_for(
                lambda: states and states[-1][1] == grpc.ChannelConnectivity.READY,
                RPC_TIMEOUT_S), states)
            # The server closes the idle connection (GOAWAY): the channel
            # goes IDLE, as it never would on its own.
            self.assertTrue(cond.wait_for(
                lambda: states[-1][1] == grpc.ChannelConnectivity.IDLE, 10), states)
            went_idle = states[-1][0]
        self.assertGreaterEqual(went_idle - done, idle_ms / 1000 * 0.8)
        # And a new call reconnects.
        health.Check(tc.health_pb.HealthCheckRequest(service=""), timeout=RPC_TIMEOUT_S)


class WatcherCapTest(LimitsTestCase):

    def test_cap_2_third_watch_resource_exhausted_until_one_ends(self):
        server = self.server("watchers", ["--max-watchers", "2"])
        rid = self.parked_run(server)
        w1 = self.watcher(rid, stub=server.stub)
        w2 = self.watcher(rid, stub=server.stub)
        self.assertTrue(w1.wait_count(1), w1.error)
        self.assertTrue(w2.wait_count(1), w2.error)
        w3 = self.watcher(rid, stub=server.stub)
        self.assertTrue(w3.join())
        self.assertEqual(w3.seqs(), [])
        self.assertEqual(w3.error.code(), grpc.StatusCode.RESOURCE_EXHAUSTED, w3.error.details())
        self.assertIn("--max-watchers", w3.error.details())
        self.assertIn(("grpc-retry-pushback-ms", "1000"),
                      tuple(w3.error.trailing_metadata() or ()))
        # Other calls are served meanwhile.
        server.stub.GetRun(pb.GetRunRequest(run_id=rid), timeout=RPC_TIMEOUT_S)
        # Once one watch ended (the server learns of it a moment after the
        # client: polling, bounded), a new one is served.
        w1.close()
        deadline = time.monotonic() + RPC_TIMEOUT_S
        while True:
            w4 = self.watcher(rid, stub=server.stub)
            if w4.wait_count(1):
                break
            self.assertEqual(w4.error.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
            self.assertLess(time.monotonic(), deadline, "no watch admitted after one ended")
            time.sleep(0.02)  # polling the server, bounded by the deadline
        self.assertEqual(w4.seqs(), [1])


MiB = 1024 * 1024


class UploadLimitsTestCase(LimitsTestCase):

    def new_run(self, server):
        rid = self.run_id()
        server.stub.CreateRun(pb.CreateRunRequest(idempotency_key=self.key(), run_id=rid,
                                                  workers=["w1"]), timeout=RPC_TIMEOUT_S)
        return rid

    def header(self, rid, size):
        return pb.CheckpointHeader(idempotency_key=self.key(), run_id=rid,
                                   run_state="running", snapshot_size=size)

    def upload(self, server, rid, data):
        def reqs():
            yield pb.CreateCheckpointRequest(header=self.header(rid, len(data)))
            for i in range(0, len(data), MiB):
                yield pb.CreateCheckpointRequest(chunk=data[i:i + MiB])
        return server.stub.CreateCheckpoint.with_call(reqs(), timeout=RPC_TIMEOUT_S)

    def stalled_upload(self, server, rid, data, first):
        """An upload that sends its header and first bytes of data, then
        waits for the returned event before it sends the rest."""
        go_on = threading.Event()
        self.addCleanup(go_on.set)

        def reqs():
            yield pb.CreateCheckpointRequest(header=self.header(rid, len(data)))
            if first:
                yield pb.CreateCheckpointRequest(chunk=data[:first])
            if go_on.wait(RPC_TIMEOUT_S):
                yield pb.CreateCheckpointRequest(chunk=data[first:])
        return server.stub.CreateCheckpoint.future(reqs(), timeout=RPC_TIMEOUT_S), go_on

    @staticmethod
    def staging(server):
        return tc.staged(server.data_dir)

    def wait_staging(self, server, nonempty, timeout=RPC_TIMEOUT_S):
        """Polls the staged uploads (bounded) until there is one or none."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if bool(self.staging(server)) == nonempty:
                return True
            time.sleep(0.01)  # polling the directory, bounded by the deadline
        return False

    def assertExhaustedWithPushback(self, fn, *args):
        with self.assertRaises(grpc.RpcError) as cm:
            fn(*args)
        e = cm.exception
        self.assertEqual(e.code(), grpc.StatusCode.RESOURCE_EXHAUSTED, e.details())
        self.assertIn(("grpc-retry-pushback-ms", "1000"), tuple(e.trailing_metadata() or ()))
        return e


class UploadCapTest(UploadLimitsTestCase):

    def test_cap_1_second_upload_refused_with_pushback_until_first_ends(self):
        server = self.server("uploads", ["--max-uploads", "1"])
        rid = self.new_run(server)
        data = os.urandom(2 * MiB)
        first, go_on = self.stalled_upload(server, rid, data, MiB)
        # The first upload is admitted (its stage exists) and mid-stream.
        self.assertTrue(self.wait_staging(server, True), server.log())
        e = self.assertExhaustedWithPushback(self.upload, server, rid, b"second")
        self.assertIn("--max-uploads", e.details())
        go_on.set()
        cp = first.result()
        self.assertEqual(cp.snapshot_size, len(data))
        # Its place is free again.
        cp2, _ = self.upload(server, rid, b"third")
        self.assertEqual(cp2.snapshot_size, 5)

    def test_staged_bytes_cap_refuses_upload_past_it(self):
        server = self.server("staged", ["--max-staged-bytes", "1000"])
        rid = self.new_run(server)
        e = self.assertExhaustedWithPushback(self.upload, server, rid, b"x" * 1001)
        self.assertIn("--max-staged-bytes", e.details())
        cp, _ = self.upload(server, rid, b"x" * 1000)
        self.assertEqual(cp.snapshot_size, 1000)
        self.assertEqual(self.staging(server), [])


class TransferIdleTest(UploadLimitsTestCase):

    def test_upload_header_then_stall_cancelled_and_staging_emptied(self):
        idle_ms = 300
        server = self.server("upload-idle", ["--transfer-idle-ms", str(idle_ms)])
        rid = self.new_run(server)
        t0 = time.monotonic()
        call, _ = self.stalled_upload(server, rid, b"x" * MiB, 0)
        self.assertTrue(self.wait_staging(server, True), server.log())
        e = call.exception(timeout=RPC_TIMEOUT_S)
        took = time.monotonic() - t0
        self.assertIsNotNone(e, "the stalled upload was not cancelled")
        self.assertEqual(e.code(), grpc.StatusCode.DEADLINE_EXCEEDED, e.details())
        self.assertIn("no progress for %d ms" % idle_ms, e.details())
        self.assertGreaterEqual(took, idle_ms / 1000 * 0.9)
        self.assertTrue(self.wait_staging(server, False), self.staging(server))
        # Still serving uploads.
        cp, _ = self.upload(server, rid, b"after")
        self.assertEqual(cp.snapshot_size, 5)

    def test_download_reader_stalls_cancelled_and_pin_dropped(self):
        server = self.server("download-idle", ["--transfer-idle-ms", "500"])
        rid = self.new_run(server)
        # More than grpcio takes in before its app reads (about 4 MB).
        old, _ = self.upload(server, rid, os.urandom(16 * MiB))
        new, _ = self.upload(server, rid, b"new")
        stream = server.stub.LoadCheckpoint(
            pb.LoadCheckpointRequest(run_id=rid, checkpoint_id=old.checkpoint_id),
            timeout=RPC_TIMEOUT_S)
        first = next(stream)  # the metadata; then this reader stalls
        self.assertEqual(first.checkpoint.checkpoint_id, old.checkpoint_id)

        def cleanup():
            return server.stub.CleanupCheckpoints(
                pb.CleanupCheckpointsRequest(idempotency_key=self.key(), run_id=rid,
                                             keep_last_n=1), timeout=RPC_TIMEOUT_S)
        # Pinned while it streams: cleanup keeps it.
        self.assertEqual(list(cleanup().deleted_ids), [])
        self.assertIsNotNone(wait_log(server, "no progress for 500 ms", RPC_TIMEOUT_S),
                             server.log())
        # The pin goes with the cancelled call (polling, bounded).
        deadline = time.monotonic() + RPC_TIMEOUT_S
        deleted = []
        while not deleted and time.monotonic() < deadline:
            deleted = list(cleanup().deleted_ids)
            if not deleted:
                time.sleep(0.02)  # polling the server, bounded by the deadline
        self.assertEqual(deleted, [old.checkpoint_id])
        with self.assertRaises(grpc.RpcError) as cm:
            for _ in stream:
                pass
        self.assertEqual(cm.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        self.assertEqual(new.snapshot_size, 3)


def varint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def vm_kib(pid, field):
    """VmRSS or VmHWM of a process, in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s in /proc/%d/status" % (field, pid))


QUOTA_MIN = 16 * MiB  # the smallest --grpc-memory-bytes but 0


class ResourceQuotaTest(LimitsTestCase):
    """--grpc-memory-bytes, gRPC's resource quota. gRPC 1.51 never fails an
    allocation against it: once its reads, frames and call arenas take more,
    its reclaimers run, and those of the HTTP/2 transport send GOAWAY to
    connections without calls and cancel calls of the others (RST_STREAM
    ENHANCE_YOUR_CALM, "Buffers full"), which clients see as
    RESOURCE_EXHAUSTED. The same burst of large requests goes to a cairnd
    with the quota at its smallest and to one without a quota."""

    CONNECTIONS, CALLS_EACH, SIZE = 16, 16, 3 * MiB

    def channels(self, server, n):
        chs = [grpc.insecure_channel(server.address, options=[
            ("grpc.enable_http_proxy", 0), ("grpc.enable_retries", 0),
            ("grpc.use_local_subchannel_pool", 1), ("grpc.max_send_message_length", -1)])
            for _ in range(n)]
        self.addCleanup(lambda: [c.close() for c in chs])
        return chs

    @staticmethod
    def request(size):
        """A Health/Check request of size bytes: an unknown field, 1000,
        carries them (cairnd reads and ignores it)."""
        return varint((1000 << 3) | 2) + varint(size) + os.urandom(size)

    def burst(self, server):
        """CALLS_EACH calls at once on each of CONNECTIONS connections, each
        SIZE bytes. Returns the calls' outcomes, a list of (code, details),
        and how far cairnd's peak RSS rose above its RSS before, in KiB."""
        request = self.request(self.SIZE)
        channels = self.channels(server, self.CONNECTIONS)
        before = vm_kib(server.proc.pid, "VmRSS")
        calls = [c.unary_unary("/grpc.health.v1.Health/Check").future(
                     request, timeout=RPC_TIMEOUT_S)
                 for c in channels for _ in range(self.CALLS_EACH)]
        outcomes = []
        for call in calls:
            e = call.exception()
            outcomes.append(("OK", "") if e is None else (e.code().name, e.details()))
        for c in channels:
            c.close()
        return outcomes, vm_kib(server.proc.pid, "VmHWM") - before

    def assertStillServes(self, server):
        # On a new connection: the burst's may have been sent GOAWAY.
        ch = own_channel(server.address)
        self.addCleanup(ch.close)
        health = tc.health_grpc.HealthStub(ch)
        self.assertEqual(health.Check(tc.health_pb.HealthCheckRequest(service=""),
                                      timeout=RPC_TIMEOUT_S).status,
                         tc.health_pb.HealthCheckResponse.SERVING)
        stub = tc.pb_grpc.CoordinatorStub(ch)
        rid = self.run_id()
        stub.CreateRun(pb.CreateRunRequest(idempotency_key=self.key(), run_id=rid,
                                           workers=["w1"]), timeout=RPC_TIMEOUT_S)
        self.assertEqual(stub.GetRun(pb.GetRunRequest(run_id=rid),
                                     timeout=RPC_TIMEOUT_S).run_id, rid)

    def test_smallest_quota_cancels_calls_of_a_burst_and_serves_on(self):
        # Both started before the first burst: grpcio's fork handlers can
        # hang a fork (Popen) while its threads are still busy with one.
        unlimited = self.server("no-quota", ["--grpc-memory-bytes", "0"])
        server = self.server("quota", ["--grpc-memory-bytes", str(QUOTA_MIN)])
        outcomes, unlimited_rise = self.burst(unlimited)
        self.assertEqual([o for o in outcomes if o[0] != "OK"], [])

        # A call at the message limit, one at a time, fits the smallest quota.
        check = self.channels(server, 1)[0].unary_unary("/grpc.health.v1.Health/Check")
        at_limit = self.request(4 * MiB - 64)
        for _ in range(5):
            check(at_limit, timeout=RPC_TIMEOUT_S)

        outcomes, rise = self.burst(server)
        codes = {}
        for code, details in outcomes:
            codes[code] = codes.get(code, 0) + 1
        summary = "%s; %s; peak RSS rose %d KiB (%d KiB without a quota)" % (
            codes, sorted(set(outcomes))[:6], rise, unlimited_rise)
        # Calls cancelled by the destructive reclaimer: RST_STREAM with
        # ENHANCE_YOUR_CALM (HTTP/2 error 11).
        exhausted = [d for c, d in outcomes if c == "RESOURCE_EXHAUSTED"]
        self.assertGreater(len(exhausted), 0, summary)
        self.assertTrue(all("error code 11" in d for d in exhausted), summary)
        # The others went through, or lost their connection to the benign
        # reclaimer's GOAWAY (or by writing into that closed connection).
        self.assertEqual(set(codes) - {"OK", "RESOURCE_EXHAUSTED", "UNAVAILABLE"}, set(),
                         summary)
        # No bound on cairnd's RSS is asserted: gRPC reclaims after the
        # fact, so a burst's peak is sometimes as high as without a quota
        # (docs/operations.md, "Overload").
        self.assertStillServes(server)

    def test_quota_below_the_smallest_is_refused_naming_the_flag_and_limit(self):
        out = subprocess.run([tc.ARGS.cairnd, "--grpc-memory-bytes", str(QUOTA_MIN - 1)],
                             stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=RPC_TIMEOUT_S)
        self.assertEqual(out.returncode, 2, out.stderr)
        self.assertIn("--grpc-memory-bytes", out.stderr)
        self.assertIn(str(QUOTA_MIN), out.stderr)


if __name__ == "__main__":
    tc.main()
