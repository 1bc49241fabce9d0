#!/usr/bin/python3
"""Interop tests for what cairnd tells operators: /metrics, /healthz and
the per-call log lines.

Shares the harness of test_coordinator.py (stub generation, the suite's
temporary root, the helpers of CairnTestCase) and the Cairnd class of
test_checkpoints.py: every test class starts a cairnd of its own with
--metrics-listen 127.0.0.1:0 (or off) and --log-format json, and finds the
metrics port in its "serving" log line. A scrape is checked twice, by
`promtool check metrics` (Debian's prometheus) and by python3-prometheus-
client's parser, and its values against the calls the test made.

Exits 77 (skipped), saying why, when promtool or prometheus_client is
missing. Nothing sleeps: waits poll with a deadline.

Run (ctest does this, see CMakeLists.txt):

    /usr/bin/python3 test_metrics.py --cairnd PATH --proto-dir DIR \
        --protoc PATH --grpc-plugin PATH [unittest args...]
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest
import urllib.error
import urllib.request

import grpc

sys.dont_write_bytecode = True  # nothing written next to the sources
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_coordinator as tc  # noqa: E402  (the shared harness)
from test_coordinator import RPC_TIMEOUT_S, STOP_TIMEOUT_S, CairnTestCase  # noqa: E402
from test_checkpoints import Cairnd  # noqa: E402  (a cairnd of its own)
import test_leases_watch  # noqa: E402  (its Watcher)

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    text_string_to_metric_families = None

pb = None  # tc.pb once setUpModule generated the stubs

# Bounds on polls (never synchronisation by sleeping).
POLL_TIMEOUT_S = 30
POLL_STEP_S = 0.01
HTTP_TIMEOUT_S = 10
# Sent in every append of these tests; must never reach the log.
PAYLOAD_MARK = b"PAYLOAD-MUST-NOT-BE-LOGGED-7f3a"
# The fields every call's log line carries (run_id when the request has one).
CALL_FIELDS = {"method", "code", "run_id", "duration_ms", "peer", "replayed"}
LONG_TTL_MS = 60000


def setUpModule():
    global pb
    tc.setUpModule()
    pb = test_leases_watch.pb = tc.pb


def tearDownModule():
    tc.tearDownModule()


def poll(what, fn, timeout=POLL_TIMEOUT_S):
    """fn() until it returns a true value, within timeout; that value."""
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(POLL_STEP_S)


def log_records(server):
    """Every stderr line of a JSON-mode cairnd, parsed (fails on one that
    is not a JSON object)."""
    with open(server.log_path, "rb") as f:
        lines = f.read().split(b"\n")
    assert lines[-1] == b"", "the log does not end with a newline"
    records = []
    for line in lines[:-1]:
        rec = json.loads(line.decode("utf-8"))
        assert isinstance(rec, dict), line
        records.append(rec)
    return records


def metrics_address(server):
    """HOST:PORT from the serving line ("off" with --metrics-listen off)."""
    def find():
        with open(server.log_path, "rb") as f:
            m = re.search(rb"cairnd serving on \S+, metrics on (\S+),", f.read())
        return m and m.group(1).decode()
    return poll("the serving log line", find)


def http_get(address, path):
    """(status, body) of GET http://address/path."""
    try:
        with urllib.request.urlopen("http://%s%s" % (address, path),
                                    timeout=HTTP_TIMEOUT_S) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class Scrape:
    """One /metrics page, checked by promtool and parsed by prometheus_client."""

    def __init__(self, test, address):
        status, self.text = http_get(address, "/metrics")
        test.assertEqual(status, 200)
        check = subprocess.run(["promtool", "check", "metrics"], input=self.text.encode(),
                               capture_output=True, timeout=RPC_TIMEOUT_S)
        test.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        self.samples = {}
        for family in text_string_to_metric_families(self.text):
            for s in family.samples:
                self.samples[(s.name, tuple(sorted(s.labels.items())))] = s.value

    def get(self, name, **labels):
        """The sample's value; KeyError when the page lacks it."""
        return self.samples[(name, tuple(sorted(labels.items())))]

    def requests(self, method, code):
        return self.get("cairn_rpc_requests_total", method=method, code=code)

    def calls(self, method):
        """Calls of method ended with any code."""
        return sum(v for (name, labels), v in self.samples.items()
                   if name == "cairn_rpc_requests_total" and ("method", method) in labels)


class MetricsTestCase(CairnTestCase):
    """A cairnd of its own with FLAGS plus --log-format json."""

    FLAGS = ("--metrics-listen", "127.0.0.1:0")
    GRPC_VERBOSITY = None  # set: cairnd's environment asks gRPC core for its lines
    server = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        saved = os.environ.get("GRPC_VERBOSITY")
        if cls.GRPC_VERBOSITY:
            os.environ["GRPC_VERBOSITY"] = cls.GRPC_VERBOSITY
        try:
            cls.server = Cairnd(cls.__name__, ("--log-format", "json") + tuple(cls.FLAGS))
        finally:
            if saved is None:
                os.environ.pop("GRPC_VERBOSITY", None)
            else:
                os.environ["GRPC_VERBOSITY"] = saved
        cls.metrics = metrics_address(cls.server)

    @classmethod
    def tearDownClass(cls):
        if cls.server is not None:
            server, cls.server = cls.server, None
            server.stop()
        super().tearDownClass()

    @property
    def stub(self):
        return self.server.stub

    def stop_and_read_log(self):
        """Stops the server (SIGTERM, exit 0); returns its log records and
        its raw bytes."""
        server, type(self).server = self.server, None
        server.stop()
        with open(server.log_path, "rb") as f:
            return log_records(server), f.read()

    def scrape(self):
        return Scrape(self, self.metrics)

    def event(self, type_="step", payload=PAYLOAD_MARK, worker_id=""):
        return pb.Event(type=type_, payload=payload, worker_id=worker_id)

    def get_run(self, rid):
        return self.stub.GetRun(pb.GetRunRequest(run_id=rid), timeout=RPC_TIMEOUT_S)

    def upload(self, rid, data):
        header = pb.CheckpointHeader(idempotency_key=self.key(), run_id=rid,
                                     run_state="running", events_count=0,
                                     snapshot_size=len(data))
        return self.stub.CreateCheckpoint(
            iter([pb.CreateCheckpointRequest(header=header),
                  pb.CreateCheckpointRequest(chunk=data)]), timeout=RPC_TIMEOUT_S)


class MetricsUnderLoadTest(MetricsTestCase):
    """Known calls, with reads in parallel threads while /metrics is
    scraped; the counts must match what was made, exactly. gRPC core
    writes its info lines too, into the same JSON log."""

    GRPC_VERBOSITY = "info"

    NOT_FOUND_CALLS = 3
    READ_THREADS = 4
    READS_PER_THREAD = 50

    def test_scrapes_count_every_call_and_log_has_one_line_per_failure(self):
        before = self.scrape()
        rid = self.run_id()
        self.create_run(rid, workers=("w1", "w2"))

        missing = ["missing-%d-%s" % (i, rid) for i in range(self.NOT_FOUND_CALLS)]
        for m in missing:
            self.assertRpcError(grpc.StatusCode.NOT_FOUND, self.stub.GetRun,
                                pb.GetRunRequest(run_id=m))

        key = self.key()
        self.append(rid, [self.event()], key=key)
        _, call = self.stub.AppendEvents.with_call(
            pb.AppendEventsRequest(idempotency_key=key, run_id=rid, events=[self.event()]),
            timeout=RPC_TIMEOUT_S)
        self.assertReplayTrailer(call, True)

        watcher = test_leases_watch.Watcher(self.stub, rid, from_seq=1)
        self.assertTrue(watcher.wait_count(1), "the watch received the first event")
        lease = self.stub.AcquireWorker(
            pb.AcquireWorkerRequest(idempotency_key=self.key(), run_id=rid, worker_id="w1",
                                    holder="h1", ttl_ms=LONG_TTL_MS), timeout=RPC_TIMEOUT_S)
        self.assertGreater(lease.fencing_token, 0)
        self.upload(rid, b"snapshot-bytes")

        # Load: reads from several threads, scraped meanwhile.
        errors = []

        def reads():
            try:
                for _ in range(self.READS_PER_THREAD):
                    self.get_run(rid)
            except grpc.RpcError as e:
                errors.append(e)

        threads = [threading.Thread(target=reads) for _ in range(self.READ_THREADS)]
        for t in threads:
            t.start()
        during = []
        while any(t.is_alive() for t in threads) or not during:
            during.append(self.scrape())
        for t in threads:
            t.join(RPC_TIMEOUT_S)
        self.assertEqual(errors, [])

        open_now = self.scrape()
        self.assertEqual(open_now.get("cairn_watch_streams"), 1)
        self.assertEqual(open_now.get("cairn_leases_live"), 1)
        watcher.close()
        after = poll("the watch stream to be counted closed",
                     lambda: (lambda s: s if s.get("cairn_watch_streams") == 0 else None)(
                         self.scrape()))

        def delta(fn):
            return fn(after) - fn(before)

        reads_made = self.READ_THREADS * self.READS_PER_THREAD
        self.assertEqual(delta(lambda s: s.requests("GetRun", "NOT_FOUND")),
                         self.NOT_FOUND_CALLS)
        self.assertEqual(delta(lambda s: s.requests("GetRun", "OK")), reads_made)
        self.assertEqual(delta(lambda s: s.get("cairn_rpc_duration_seconds_count",
                                               method="GetRun")),
                         reads_made + self.NOT_FOUND_CALLS)
        self.assertEqual(delta(lambda s: s.requests("AppendEvents", "OK")), 2)
        self.assertEqual(delta(lambda s: s.get("cairn_idempotent_replays_total",
                                               method="AppendEvents")), 1)
        self.assertEqual(delta(lambda s: s.get("cairn_idempotent_replays_total",
                                               method="CreateRun")), 0)
        self.assertEqual(delta(lambda s: s.requests("CreateCheckpoint", "OK")), 1)
        self.assertEqual(delta(lambda s: s.requests("AcquireWorker", "OK")), 1)
        self.assertEqual(delta(lambda s: s.calls("WatchEvents")), 1)
        # Every mutation that reached the writer was in a committed batch
        # (CreateRun, one append, AcquireWorker, CreateCheckpoint; the
        # replay too: its key is looked up inside the transaction).
        batches = delta(lambda s: s.get("cairn_ledger_batch_size_count"))
        self.assertGreaterEqual(batches, 1)
        self.assertEqual(delta(lambda s: s.get("cairn_store_commit_seconds_count")), batches)
        self.assertEqual(delta(lambda s: s.get("cairn_ledger_batch_size_sum")), 5)
        self.assertEqual(after.get("cairn_ledger_queue_depth"), 0)
        self.assertGreater(after.get("cairn_store_bytes"), 0)
        self.assertEqual(after.get("cairn_leases_live"), 1)
        self.assertEqual(after.get("cairn_upload_staged_bytes"), 0)
        build = [labels for (name, labels) in after.samples if name == "cairn_build_info"]
        self.assertEqual(len(build), 1)
        self.assertTrue(dict(build[0])["version"])
        self.assertEqual(after.get("cairn_build_info", **dict(build[0])), 1)
        self.assertGreater(after.get("process_resident_memory_bytes"), 0)
        # Counters never go backwards from one scrape to the next.
        pages = [before] + during + [open_now, after]
        for a, b in zip(pages, pages[1:]):
            self.assertLessEqual(a.requests("GetRun", "OK"), b.requests("GetRun", "OK"))

        status, body = http_get(self.metrics, "/healthz")
        self.assertEqual((status, body), (200, "ok\n"))
        self.assertEqual(http_get(self.metrics, "/nothing")[0], 404)

        records, log = self.stop_and_read_log()
        # One line per failed call, whatever the method: as many as the
        # counters saw (the cancelled watch among them).
        failures = delta(lambda s: sum(
            v for (name, labels), v in s.samples.items()
            if name == "cairn_rpc_requests_total" and ("code", "OK") not in labels))
        self.assertEqual(len([r for r in records if r.get("msg") == "call failed"]), failures)
        failed = [r for r in records if r.get("msg") == "call failed"
                  and r.get("method") == "GetRun"]
        self.assertEqual(sorted(r["run_id"] for r in failed), sorted(missing))
        for r in failed:
            self.assertEqual(r["level"], "info")
            self.assertEqual(r["code"], "NOT_FOUND")
            self.assertLessEqual(CALL_FIELDS, set(r))
            self.assertIsInstance(r["duration_ms"], float)
            self.assertIs(r["replayed"], False)
            self.assertTrue(r["peer"].startswith("ipv4:127.0.0.1:"), r["peer"])
        self.assertNotIn(PAYLOAD_MARK, log)
        self.assertNotIn(b"authorization", log.lower())
        grpc_lines = [r for r in records if r["msg"].startswith("grpc: ")]
        self.assertTrue(grpc_lines, "no line of gRPC core's in the log")
        self.assertEqual({r["level"] for r in grpc_lines} - {"debug", "info", "error"}, set())


class SlowCallLogTest(MetricsTestCase):
    """--slow-call-ms 0: every call is logged at info, with its fields;
    --metrics-listen off: no port of the process answers HTTP."""

    FLAGS = ("--slow-call-ms", "0", "--metrics-listen", "off")

    def test_every_call_logged_at_info_without_payload_and_no_metrics_port(self):
        self.assertEqual(self.metrics, "off")
        ports = listening_ports(self.server.proc.pid)
        self.assertIn(int(self.server.address.rsplit(":", 1)[1]), ports)
        for port in ports:  # the gRPC listener(s): none speaks HTTP/1.1
            self.assertFalse(http_answer(port).startswith(b"HTTP/"), port)
        rid = self.run_id()
        self.create_run(rid)
        key = self.key()
        self.append(rid, [self.event()], key=key)
        self.append(rid, [self.event()], key=key)
        self.get_run(rid)
        records, log = self.stop_and_read_log()
        calls = [r for r in records if "method" in r]
        self.assertEqual([(r["method"], r["replayed"]) for r in calls],
                         [("CreateRun", False), ("AppendEvents", False),
                          ("AppendEvents", True), ("GetRun", False)])
        for r in calls:
            self.assertEqual((r["level"], r["msg"], r["code"], r["run_id"]),
                             ("info", "slow call", "OK", rid))
            self.assertLessEqual(CALL_FIELDS, set(r))
        self.assertNotIn(PAYLOAD_MARK, log)


class HealthzShutdownTest(MetricsTestCase):
    """/healthz is 200 while serving and 503 once shutdown began, while an
    upload in flight holds the shutdown in its grace period."""

    FLAGS = ("--metrics-listen", "127.0.0.1:0", "--shutdown-grace-ms", "20000")

    def test_healthz_503_during_shutdown_grace(self):
        self.assertEqual(http_get(self.metrics, "/healthz"), (200, "ok\n"))
        rid = self.run_id()
        self.create_run(rid)
        release = threading.Event()
        data = b"x" * 1024

        def requests():
            header = pb.CheckpointHeader(idempotency_key=self.key(), run_id=rid,
                                         run_state="running", snapshot_size=len(data))
            yield pb.CreateCheckpointRequest(header=header)
            release.wait(RPC_TIMEOUT_S)
            yield pb.CreateCheckpointRequest(chunk=data)

        future = self.stub.CreateCheckpoint.future(requests(), timeout=RPC_TIMEOUT_S)
        poll("the upload to be in progress", lambda: Scrape(self, self.metrics).get(
            "cairn_uploads_in_progress") == 1)
        os.kill(self.server.proc.pid, signal.SIGTERM)
        poll("/healthz to answer 503",
             lambda: http_get(self.metrics, "/healthz") == (503, "shutting down\n"))
        release.set()
        future.result(timeout=RPC_TIMEOUT_S)
        server, type(self).server = self.server, None
        self.assertEqual(server.proc.wait(timeout=STOP_TIMEOUT_S), 0, server.log())
        server.channel.close()
        server._close_files()
        log_records(server)


class MetricsBindFailureTest(CairnTestCase):
    """An address cairnd cannot bind: exit 1, one line naming the flag."""

    def test_metrics_port_in_use_exits_1_naming_the_flag(self):
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        try:
            root = os.path.join(tc.S.root, "bind-failure")
            os.makedirs(root)
            flags, env = tc.store_args(os.path.join(root, "data"))
            proc = subprocess.run(
                [tc.ARGS.cairnd, "--listen", "127.0.0.1:0", "--data-dir",
                 os.path.join(root, "data"), "--log-format", "json",
                 "--metrics-listen", "127.0.0.1:%d" % taken.getsockname()[1]] + flags,
                stdin=subprocess.DEVNULL, capture_output=True, env=env, cwd=root,
                timeout=STOP_TIMEOUT_S, preexec_fn=tc.die_with_parent)
        finally:
            taken.close()
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertEqual(proc.stdout, b"")
        lines = proc.stderr.decode().splitlines()
        errors = [json.loads(line) for line in lines if json.loads(line)["level"] == "error"]
        self.assertEqual(len(errors), 1, lines)
        self.assertIn("--metrics-listen", errors[0]["msg"])


def listening_ports(pid):
    """The TCP ports process pid listens on (its sockets in LISTEN state)."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        m = re.fullmatch(r"socket:\[(\d+)\]", target)
        if m:
            inodes.add(m.group(1))
    ports = set()
    for table in ("tcp", "tcp6"):
        with open("/proc/%d/net/%s" % (pid, table)) as f:
            for row in f.read().splitlines()[1:]:
                cols = row.split()
                if cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                    ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


def http_answer(port):
    """What 127.0.0.1:port sends back to GET /metrics until it closes (at
    most the first KiB)."""
    with socket.create_connection(("127.0.0.1", port), timeout=HTTP_TIMEOUT_S) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        got = b""
        while len(got) < 1024:
            chunk = s.recv(1024)
            if not chunk:
                break
            got += chunk
        return got


def main():
    missing = [what for what, ok in (("promtool (Debian package prometheus)",
                                      shutil.which("promtool")),
                                     ("prometheus_client (python3-prometheus-client)",
                                      text_string_to_metric_families)) if not ok]
    if missing:
        print("SKIPPED: missing %s (scripts/bootstrap installs them)" % ", ".join(missing),
              flush=True)
        sys.exit(77)
    tc.main()


if __name__ == "__main__":
    main()
