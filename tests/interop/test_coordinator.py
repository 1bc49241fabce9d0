#!/usr/bin/python3
"""Interop tests: a second, independent client (Python grpcio) drives cairnd.

Nothing here shares code with cairnd or libcairn: the stubs are generated
from the .proto files at test time, and the server is a real cairnd on
127.0.0.1 with its own temporary data dir. The point is that any gRPC
client, written only against the .proto and the documented contract,
gets the documented behaviour.

Run (ctest does this, see CMakeLists.txt):

    /usr/bin/python3 test_coordinator.py --cairnd PATH --proto-dir DIR \
        --protoc PATH --grpc-plugin PATH [unittest args...]

It needs Debian's python3-grpcio and python3-protobuf, hence /usr/bin/python3.

The store: with CAIRN_TEST_STORE=postgres (ctest's interop_*_postgres),
main() starts a private PostgreSQL cluster (tests/support/pgcluster.py)
and every cairnd of the suite runs with --store postgres and CAIRN_PG_DSN
of a database of its own, one per data dir (store_args), so a restart on
the same data dir finds its data again. Without PostgreSQL it exits 77
(skipped). No interop test is SQLite's alone: the helpers that look at
stored snapshots (blob_size, staged, damage_blob) look at files or at
rows, whichever the store keeps.
"""

import argparse
import atexit
import ctypes
import datetime
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

import grpc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import stubs  # noqa: E402

MiB = 1024 * 1024
# Every call gets a deadline, so a server that never answers fails the test
# instead of hanging it. Not used for synchronisation.
RPC_TIMEOUT_S = 30
# How long cairnd may take to print its "listening on" line, and to exit
# after SIGTERM (its default shutdown grace is 5 s).
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 30

TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")

ARGS = None  # parsed command line, set in main()

STORE = os.environ.get("CAIRN_TEST_STORE") or "sqlite"
PG = None        # the pgcluster.PgCluster of a postgres run, from main()
PG_DBS = {}      # data dir -> database name: a server's database is its data dir
PG_CHUNK = 256 * 1024  # the postgres store's chunk rows (server/store/pg/README.md)

# Generated modules, imported in setUpModule.
pb = None
pb_grpc = None
health_pb = None
health_grpc = None


class _Server:
    root = None      # mkdtemp: everything this suite writes lives below it
    srv_dir = None   # root/server: cairnd's cwd and data dir live below it
    data_dir = None
    cwd = None
    log_path = None
    log_file = None
    proc = None
    address = None
    channel = None
    stub = None
    health = None


S = _Server()



def die_with_parent():
    """In a child process: die with the test process, so a test that fails
    midway never leaves a server running (prctl PR_SET_PDEATHSIG)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)

def _generate_stubs(out):
    """The stubs (tests/support/stubs.py) into `out`, on sys.path."""
    global pb, pb_grpc, health_pb, health_grpc
    pb, pb_grpc, health_pb, health_grpc = stubs.generate(ARGS.protoc, ARGS.proto_dir,
                                                         ARGS.grpc_plugin, out)


def _server_log():
    try:
        with open(S.log_path, errors="replace") as f:
            return f.read()[-4000:]
    except OSError:
        return ""


# ---- the store ----

def _start_store():
    """postgres: the suite's cluster, stopped at exit; exits 77 (skipped)
    with the reason when PostgreSQL cannot run here."""
    global PG
    if STORE == "sqlite":
        return
    if STORE != "postgres":
        sys.exit("CAIRN_TEST_STORE=%s: no such store" % STORE)
    import pgcluster  # tests/support, on sys.path above
    try:
        PG = pgcluster.PgCluster()
    except pgcluster.Unavailable as e:
        print("SKIPPED: PostgreSQL: %s" % e, flush=True)
        sys.exit(77)
    atexit.register(lambda: (PG.stop(), PG.cleanup()))
    PG.start()


def store_args(data_dir):
    """(extra flags, environment) for a cairnd on data_dir: none with
    SQLite; with postgres, --store postgres and CAIRN_PG_DSN (in the
    environment, as a deployment's Secret) of data_dir's database, made
    at its first use."""
    if PG is None:
        return [], None
    if data_dir not in PG_DBS:
        PG_DBS[data_dir] = "s%d" % (len(PG_DBS) + 1)
        PG.create_database(PG_DBS[data_dir])
    return ["--store", "postgres"], dict(os.environ, CAIRN_PG_DSN=PG.dsn_of(PG_DBS[data_dir]))


def _pg(data_dir, sql):
    return PG.query(PG_DBS[data_dir], sql)


def _blob_file(data_dir, sha):
    return os.path.join(data_dir, "blobs", sha[:2], sha)


def blob_size(data_dir, sha):
    """The bytes stored for content sha (its file, or its chunk rows), or
    None when the store holds no such content."""
    if PG is None:
        path = _blob_file(data_dir, sha)
        return os.path.getsize(path) if os.path.exists(path) else None
    out = _pg(data_dir, "SELECT (SELECT coalesce(sum(length(data)), 0) FROM blob_chunks "
                        "WHERE owner = '%s') FROM blobs WHERE sha256 = '%s'" % (sha, sha))
    return int(out) if out else None


def staged(data_dir):
    """Uploads staged and not yet stored or dropped: files in
    blobs/staging, or stages rows and chunks a stage owns."""
    if PG is None:
        return sorted(os.listdir(os.path.join(data_dir, "blobs", "staging")))
    out = _pg(data_dir, "SELECT 'stage:' || id FROM stages UNION "
                        "SELECT DISTINCT owner FROM blob_chunks WHERE owner LIKE 'stage:%'")
    return sorted(out.split())


def damage_blob(data_dir, sha, how, at=0, mask=0x01):
    """Damages stored content as a disk might: "flip" (xor mask into the
    byte at offset at), "truncate" (cut it at at), "extend" (one NUL
    more) or "delete" (all of it, its reference staying)."""
    if PG is None:
        path = _blob_file(data_dir, sha)
        if how == "delete":
            os.unlink(path)
        elif how == "truncate":
            os.truncate(path, at)
        elif how == "extend":
            with open(path, "ab") as f:
                f.write(b"\0")
        else:
            with open(path, "r+b") as f:
                f.seek(at)
                byte = f.read(1)
                f.seek(at)
                f.write(bytes([byte[0] ^ mask]))
        return
    n, off = divmod(at, PG_CHUNK)
    own = "owner = '%s'" % sha
    sql = {
        "delete": "DELETE FROM blob_chunks WHERE %s" % own,
        "truncate": "DELETE FROM blob_chunks WHERE %s AND (n > %d OR (n = %d AND %d = 0)); "
                    "UPDATE blob_chunks SET data = substr(data, 1, %d) WHERE %s AND n = %d"
                    % (own, n, n, off, off, own, n),
        "extend": "UPDATE blob_chunks SET data = data || '\\x00'::bytea WHERE %s AND n = "
                  "(SELECT max(n) FROM blob_chunks WHERE %s)" % (own, own),
        "flip": "UPDATE blob_chunks SET data = set_byte(data, %d, get_byte(data, %d) # %d) "
                "WHERE %s AND n = %d" % (off, off, mask, own, n),
    }[how]
    _pg(data_dir, sql)


def _start_cairnd():
    S.srv_dir = os.path.join(S.root, "server")
    S.data_dir = os.path.join(S.srv_dir, "data")
    # cairnd runs in its own cwd inside the temp tree, so a run id that
    # became a relative path would land where the test can see it.
    S.cwd = os.path.join(S.srv_dir, "cwd", "inner")
    os.makedirs(S.cwd)
    S.log_path = os.path.join(S.root, "cairnd.log")
    S.log_file = open(S.log_path, "wb")
    flags, env = store_args(S.data_dir)
    S.proc = subprocess.Popen(
        [ARGS.cairnd, "--listen", "127.0.0.1:0", "--data-dir", S.data_dir, "--threads", "2",
         "--metrics-listen", "127.0.0.1:0"] + flags,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=S.log_file, cwd=S.cwd,
        env=env, preexec_fn=die_with_parent)
    # cairnd prints exactly one line once it accepts calls. Wait for that
    # line (bounded, in case it hangs before printing).
    sel = selectors.DefaultSelector()
    sel.register(S.proc.stdout, selectors.EVENT_READ)
    line = b""
    deadline = time.monotonic() + START_TIMEOUT_S
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not sel.select(left):
            S.proc.kill()
            S.proc.wait()
            raise RuntimeError("cairnd did not print its address within %d s; log:\n%s"
                               % (START_TIMEOUT_S, _server_log()))
        chunk = os.read(S.proc.stdout.fileno(), 1)
        if not chunk:
            S.proc.wait()
            raise RuntimeError("cairnd exited (%s) before listening; log:\n%s"
                               % (S.proc.returncode, _server_log()))
        line += chunk
    sel.close()
    m = re.fullmatch(r"listening on (127\.0\.0\.1:\d+)\n", line.decode())
    if not m:
        raise RuntimeError("unexpected first line from cairnd: %r" % line)
    S.address = m.group(1)
    if PG is not None:  # the suite's cairnd made its schema in its own database
        assert _pg(S.data_dir, "SELECT count(*) FROM cairn_schema") == "1"
    S.channel = grpc.insecure_channel(S.address, options=[
        ("grpc.enable_http_proxy", 0),          # 127.0.0.1 only, never a proxy
        ("grpc.max_send_message_length", -1),   # let the server enforce its limit
        ("grpc.enable_retries", 0),             # every call is exactly one attempt
    ])
    S.stub = pb_grpc.CoordinatorStub(S.channel)
    S.health = health_grpc.HealthStub(S.channel)


def setUpModule():
    S.root = tempfile.mkdtemp(prefix="cairn-interop-")
    stubs = os.path.join(S.root, "stubs")
    os.makedirs(stubs)
    _generate_stubs(stubs)
    _start_cairnd()


def tearDownModule():
    try:
        if S.channel is not None:
            S.channel.close()
        if S.proc is not None and S.proc.poll() is None:
            os.kill(S.proc.pid, signal.SIGTERM)
            try:
                rc = S.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                S.proc.kill()
                S.proc.wait()
                raise AssertionError("cairnd did not exit within %d s of SIGTERM; log:\n%s"
                                     % (STOP_TIMEOUT_S, _server_log()))
            if rc != 0:
                raise AssertionError("cairnd exited with %d after SIGTERM; log:\n%s"
                                     % (rc, _server_log()))
        elif S.proc is not None:
            raise AssertionError("cairnd died during the tests (exit %s); log:\n%s"
                                 % (S.proc.returncode, _server_log()))
    finally:
        if S.proc is not None and S.proc.stdout is not None:
            S.proc.stdout.close()
        if S.log_file is not None:
            S.log_file.close()
        if S.root is not None:
            shutil.rmtree(S.root, ignore_errors=True)


def _tree(top):
    """Every path below top (files and directories), relative to top."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(top):
        rel = os.path.relpath(dirpath, top)
        for name in dirnames + filenames:
            out.add(os.path.normpath(os.path.join(rel, name)))
    return out


class CairnTestCase(unittest.TestCase):
    """Helpers shared by the tests: unique ids, keys, calls with deadlines."""

    def run_id(self, tag=""):
        """A run id no other test uses."""
        name = self._testMethodName.replace("test_", "", 1)[:80]
        rid = "%s%s-%s" % (name, "-" + tag if tag else "", uuid.uuid4().hex[:12])
        return rid[:128]

    @staticmethod
    def key():
        return "key-" + uuid.uuid4().hex

    @property
    def stub(self):
        return S.stub

    def create_run(self, run_id, workers=("w1",), labels=None):
        return self.stub.CreateRun(
            pb.CreateRunRequest(idempotency_key=self.key(), run_id=run_id,
                                workers=list(workers), labels=labels or {}),
            timeout=RPC_TIMEOUT_S)

    def append(self, run_id, events, key=None, expected_next_seq=0):
        return self.stub.AppendEvents(
            pb.AppendEventsRequest(idempotency_key=key or self.key(), run_id=run_id,
                                   events=events, expected_next_seq=expected_next_seq),
            timeout=RPC_TIMEOUT_S)

    @staticmethod
    def event(type_="step", payload=b"", worker_id=""):
        return pb.Event(type=type_, payload=payload, worker_id=worker_id)

    def read_all(self, run_id, max_events=100):
        """Every event of the run, reading page by page until a page is empty."""
        events, from_seq = [], 1
        while True:
            page = self.stub.ReadEvents(
                pb.ReadEventsRequest(run_id=run_id, from_seq=from_seq, max_events=max_events),
                timeout=RPC_TIMEOUT_S)
            if not page.events:
                self.assertEqual(page.next_seq, from_seq)
                return events
            events.extend(page.events)
            from_seq = page.next_seq

    def assertRpcError(self, code, fn, *args, **kwargs):
        """Calls fn, expects it to fail with code; returns the error."""
        kwargs.setdefault("timeout", RPC_TIMEOUT_S)
        with self.assertRaises(grpc.RpcError) as cm:
            fn(*args, **kwargs)
        err = cm.exception
        self.assertEqual(err.code(), code, "details: %r" % err.details())
        return err

    def assertReplayTrailer(self, call, replayed):
        trailers = dict(call.trailing_metadata() or ())
        if replayed:
            self.assertEqual(trailers.get("cairn-replayed"), "true", trailers)
        else:
            self.assertNotIn("cairn-replayed", trailers)

    def assertAppliedThenReplayed(self, first, call1, second, call2):
        """The first of two calls with one key was applied, the second replayed."""
        self.assertFalse(first.replayed)
        self.assertReplayTrailer(call1, False)
        self.assertTrue(second.replayed)
        self.assertReplayTrailer(call2, True)

    def split_same_key_futures(self, futures):
        """Waits for concurrent calls made with one key; returns (applied,
        replayed). A call may instead fail with ABORTED: the contract allows
        it for a race, and clients retry."""
        applied, replayed = [], []
        for f in futures:
            try:
                resp = f.result()
            except grpc.RpcError as e:
                self.assertEqual(e.code(), grpc.StatusCode.ABORTED, e.details())
                continue
            (replayed if resp.replayed else applied).append(resp)
            self.assertReplayTrailer(f, resp.replayed)
        return applied, replayed


# ---- health ----

class HealthTest(CairnTestCase):

    def test_health_check_serving_for_server_and_coordinator(self):
        for service in ("", "cairn.v1.Coordinator"):
            with self.subTest(service=service):
                resp = S.health.Check(health_pb.HealthCheckRequest(service=service),
                                      timeout=RPC_TIMEOUT_S)
                self.assertEqual(resp.status, health_pb.HealthCheckResponse.SERVING)

    def test_health_check_unknown_service_not_found(self):
        self.assertRpcError(grpc.StatusCode.NOT_FOUND, S.health.Check,
                            health_pb.HealthCheckRequest(service="no.such.Service"))


# ---- runs ----

class RunTest(CairnTestCase):

    def test_create_run_then_get_run_returns_definition(self):
        rid = self.run_id()
        labels = {"team": "data", "env": "test", "empty": ""}
        before = datetime.datetime.now(datetime.timezone.utc)
        created = self.create_run(rid, workers=["w2", "w1", "w2", "w3", "w1"], labels=labels)
        got = self.stub.GetRun(pb.GetRunRequest(run_id=rid), timeout=RPC_TIMEOUT_S)
        for run in (created, got):
            self.assertEqual(run.run_id, rid)
            # Ordered, duplicates dropped, first occurrence kept.
            self.assertEqual(list(run.workers), ["w2", "w1", "w3"])
            self.assertEqual(dict(run.labels), labels)
            self.assertEqual(run.state, "created")
            self.assertEqual(run.next_seq, 1)
            self.assertEqual(list(run.completed_workers), [])
            self.assertEqual(run.latest_checkpoint_id, "")
            self.assertFalse(run.replayed)
            self.assertRegex(run.created_at, TIMESTAMP_RE)
        self.assertEqual(created.created_at, got.created_at)
        at = datetime.datetime.strptime(got.created_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=datetime.timezone.utc)
        # Same machine, same clock: generous bounds, only catches a wrong
        # time zone or unit.
        self.assertLess(abs((at - before).total_seconds()), 300)

    def test_create_run_same_key_same_request_replays_with_trailer(self):
        rid = self.run_id()
        req = pb.CreateRunRequest(idempotency_key=self.key(), run_id=rid,
                                  workers=["a", "b"], labels={"k": "v"})
        first, call1 = self.stub.CreateRun.with_call(req, timeout=RPC_TIMEOUT_S)
        second, call2 = self.stub.CreateRun.with_call(req, timeout=RPC_TIMEOUT_S)
        self.assertAppliedThenReplayed(first, call1, second, call2)
        second.replayed = False
        self.assertEqual(second, first)

    def test_create_run_same_key_labels_in_other_order_replays(self):
        # A map has no order: the fingerprint is over the canonical request.
        rid = self.run_id()
        key = self.key()
        req1 = pb.CreateRunRequest(idempotency_key=key, run_id=rid, workers=["a"])
        for k in ("x", "y", "z"):
            req1.labels[k] = k.upper()
        req2 = pb.CreateRunRequest(idempotency_key=key, run_id=rid, workers=["a"])
        for k in ("z", "x", "y"):
            req2.labels[k] = k.upper()
        first = self.stub.CreateRun(req1, timeout=RPC_TIMEOUT_S)
        second, call = self.stub.CreateRun.with_call(req2, timeout=RPC_TIMEOUT_S)
        self.assertFalse(first.replayed)
        self.assertTrue(second.replayed)
        self.assertReplayTrailer(call, True)

    def test_create_run_same_definition_new_key_returns_run(self):
        rid = self.run_id()
        first = self.create_run(rid, workers=["a", "b"], labels={"x": "1"})
        again, call = self.stub.CreateRun.with_call(
            pb.CreateRunRequest(idempotency_key=self.key(), run_id=rid, workers=["a", "b"],
                                labels={"x": "1"}), timeout=RPC_TIMEOUT_S)
        self.assertFalse(again.replayed)
        self.assertReplayTrailer(call, False)
        self.assertEqual(again, first)

    def test_create_run_different_workers_new_key_already_exists(self):
        rid = self.run_id()
        self.create_run(rid, workers=["a", "b"])
        err = self.assertRpcError(
            grpc.StatusCode.ALREADY_EXISTS, self.stub.CreateRun,
            pb.CreateRunRequest(idempotency_key=self.key(), run_id=rid, workers=["a", "c"]))
        self.assertIn("run_id", err.details())
        err = self.assertRpcError(
            grpc.StatusCode.ALREADY_EXISTS, self.stub.CreateRun,
            pb.CreateRunRequest(idempotency_key=self.key(), run_id=rid, workers=["a", "b"],
                                labels={"new": "label"}))
        got = self.stub.GetRun(pb.GetRunRequest(run_id=rid), timeout=RPC_TIMEOUT_S)
        self.assertEqual(list(got.workers), ["a", "b"])
        self.assertEqual(dict(got.labels), {})

    def test_create_run_same_key_different_request_already_exists_key_reuse(self):
        rid = self.run_id()
        key = self.key()
        self.stub.CreateRun(pb.CreateRunRequest(idempotency_key=key, run_id=rid, workers=["a"]),
                            timeout=RPC_TIMEOUT_S)
        err = self.assertRpcError(
            grpc.StatusCode.ALREADY_EXISTS, self.stub.CreateRun,
            pb.CreateRunRequest(idempotency_key=key, run_id=rid, workers=["a", "b"]))
        self.assertIn("idempotency_key", err.details())
        self.assertIn("reused", err.details())

    def test_create_run_bad_definition_invalid_argument(self):
        cases = [
            ("workers", pb.CreateRunRequest(run_id=self.run_id("a"), workers=[])),
            ("workers[1]", pb.CreateRunRequest(run_id=self.run_id("b"), workers=["ok", "../x"])),
            ("labels", pb.CreateRunRequest(run_id=self.run_id("c"), workers=["w"],
                                           labels={"k%d" % i: "v" for i in range(65)})),
        ]
        for field, req in cases:
            with self.subTest(field=field):
                req.idempotency_key = self.key()
                err = self.assertRpcError(grpc.StatusCode.INVALID_ARGUMENT,
                                          self.stub.CreateRun, req)
                self.assertTrue(err.details().startswith(field + ":"), err.details())
                self.assertRpcError(grpc.StatusCode.NOT_FOUND, self.stub.GetRun,
                                    pb.GetRunRequest(run_id=req.run_id))

    def test_create_run_64_labels_accepted(self):
        rid = self.run_id()
        labels = {"k%02d" % i: "v%d" % i for i in range(64)}
        self.create_run(rid, labels=labels)
        got = self.stub.GetRun(pb.GetRunRequest(run_id=rid), timeout=RPC_TIMEOUT_S)
        self.assertEqual(dict(got.labels), labels)

    def test_get_run_unknown_run_not_found(self):
        err = self.assertRpcError(grpc.StatusCode.NOT_FOUND, self.stub.GetRun,
                                  pb.GetRunRequest(run_id=self.run_id()))
        self.assertIn("run_id", err.details())

    def test_list_runs_pages_of_two_contain_each_run_once(self):
        mine = [self.run_id(str(i)) for i in range(7)]
        for rid in mine:
            self.create_run(rid)
        seen, token, pages = [], "", 0
        while True:
            page = self.stub.ListRuns(pb.ListRunsRequest(page_size=2, page_token=token),
                                      timeout=RPC_TIMEOUT_S)
            pages += 1
            self.assertLessEqual(len(page.runs), 2)
            seen.extend(r.run_id for r in page.runs)
            if not page.next_page_token:
                break
            # Only the last page may be short.
            self.assertEqual(len(page.runs), 2)
            token = page.next_page_token
            self.assertLess(pages, 10000, "ListRuns never ends")
        self.assertEqual(len(seen), len(set(seen)), "a run was listed twice")
        for rid in mine:
            self.assertEqual(seen.count(rid), 1, rid)
        # Runs come in creation order.
        self.assertEqual([r for r in seen if r in mine], mine)
        # The same listing in one page agrees.
        whole = self.stub.ListRuns(pb.ListRunsRequest(page_size=1000), timeout=RPC_TIMEOUT_S)
        self.assertEqual([r.run_id for r in whole.runs][:len(seen)], seen)

    def test_list_runs_bad_page_token_invalid_argument(self):
        for token in ("abc", "-1", "1.5", " 1", "9" * 30):
            with self.subTest(token=token):
                err = self.assertRpcError(grpc.StatusCode.INVALID_ARGUMENT, self.stub.ListRuns,
                                          pb.ListRunsRequest(page_size=2, page_token=token))
                self.assertTrue(err.details().startswith("page_token:"), err.details())

    def test_list_runs_page_token_beyond_int64_invalid_argument(self):
        """A 19-digit token above INT64_MAX was once accepted and wrapped to
        a negative row id, restarting the listing; it is not a token the
        server issues, so it is rejected."""
        self.create_run(self.run_id())
        err = self.assertRpcError(grpc.StatusCode.INVALID_ARGUMENT, self.stub.ListRuns,
                                  pb.ListRunsRequest(page_size=2,
                                                     page_token="9999999999999999999"))
        self.assertTrue(err.details().startswith("page_token:"), err.details())

    def test_list_runs_page_size_over_1000_invalid_argument(self):
        err = self.assertRpcError(grpc.StatusCode.INVALID_ARGUMENT, self.stub.ListRuns,
                                  pb.ListRunsRequest(page_size=1001))
        self.assertIn("page_size", err.details())


# ---- events ----

class AppendTest(CairnTestCase):

    def test_append_same_key_twice_returns_first_result(self):
        rid = self.run_id()
        self.create_run(rid)
        self.append(rid, [self.event("before")])
        req = pb.AppendEventsRequest(idempotency_key=self.key(), run_id=rid,
                                     events=[self.event("step", b"payload-1")])
        first, call1 = self.stub.AppendEvents.with_call(req, timeout=RPC_TIMEOUT_S)
        second, call2 = self.stub.AppendEvents.with_call(req, timeout=RPC_TIMEOUT_S)
        self.assertAppliedThenReplayed(first, call1, second, call2)
        self.assertEqual((first.first_seq, first.last_seq), (2, 2))
        self.assertEqual(first.events_since_checkpoint, 2)  # no checkpoint yet
        self.assertEqual((second.first_seq, second.last_seq), (first.first_seq, first.last_seq))
        self.assertEqual(second.events_since_checkpoint, first.events_since_checkpoint)
        events = self.read_all(rid)
        self.assertEqual([(e.seq, e.type, e.payload) for e in events],
                         [(1, "before", b""), (2, "step", b"payload-1")])
        got = self.stub.GetRun(pb.GetRunRequest(run_id=rid), timeout=RPC_TIMEOUT_S)
        self.assertEqual(got.next_seq, 3)
        self.assertEqual(got.state, "running")

    def test_append_same_key_different_payload_already_exists_key_reuse(self):
        rid = self.run_id()
        self.create_run(rid)
        key = self.key()
        self.append(rid, [self.event("step", b"one")], key=key)
        err = self.assertRpcError(
            grpc.StatusCode.ALREADY_EXISTS, self.stub.AppendEvents,
            pb.AppendEventsRequest(idempotency_key=key, run_id=rid,
                                   events=[self.event("step", b"two")]))
        self.assertIn("idempotency_key", err.details())
        self.assertIn("reused", err.details())
        self.assertEqual([e.payload for e in self.read_all(rid)], [b"one"])

    def test_append_replay_checked_before_expected_next_seq(self):
        rid = self.run_id()
        self.create_run(rid)
        req = pb.AppendEventsRequest(idempotency_key=self.key(), run_id=rid,
                                     events=[self.event("step", b"x")], expected_next_seq=1)
        first = self.stub.AppendEvents(req, timeout=RPC_TIMEOUT_S)
        self.assertEqual(first.first_seq, 1)
        # expected_next_seq=1 is stale now; the retry must still be a replay.
        second, call = self.stub.AppendEvents.with_call(req, timeout=RPC_TIMEOUT_S)
        self.assertTrue(second.replayed)
        self.assertReplayTrailer(call, True)
        self.assertEqual((second.first_seq, second.last_seq), (1, 1))
        self.assertEqual(len(self.read_all(rid)), 1)

    def test_append_new_key_stale_expected_next_seq_failed_precondition(self):
        rid = self.run_id()
        self.create_run(rid)
        self.append(rid, [self.event()], expected_next_seq=1)
        for stale in (1, 3, 100):
            with self.subTest(expected_next_seq=stale):
                err = self.assertRpcError(
                    grpc.StatusCode.FAILED_PRECONDITION, self.stub.AppendEvents,
                    pb.AppendEventsRequest(idempotency_key=self.key(), run_id=rid,
                                           events=[self.event()], expected_next_seq=stale))
                self.assertIn("expected_next_seq", err.details())
        # The right expectation goes through.
        resp = self.append(rid, [self.event()], expected_next_seq=2)
        self.assertEqual(resp.first_seq, 2)
        self.assertEqual(len(self.read_all(rid)), 2)

    def test_failed_append_leaves_key_unused(self):
        rid = self.run_id()
        self.create_run(rid)
        self.append(rid, [self.event()])
        key = self.key()
        self.assertRpcError(
            grpc.StatusCode.FAILED_PRECONDITION, self.stub.AppendEvents,
            pb.AppendEventsRequest(idempotency_key=key, run_id=rid, events=[self.event()],
                                   expected_next_seq=1))
        # A rejected request records nothing: the key is still free.
        resp = self.append(rid, [self.event()], key=key, expected_next_seq=2)
        self.assertFalse(resp.replayed)
        self.assertEqual(resp.first_seq, 2)

    def test_same_key_on_other_run_or_method_is_independent(self):
        key = self.key()
        r1, r2 = self.run_id("1"), self.run_id("2")
        # The same key for CreateRun of two runs and AppendEvents on each:
        # the key's scope is (run, method, key).
        for rid in (r1, r2):
            run = self.stub.CreateRun(
                pb.CreateRunRequest(idempotency_key=key, run_id=rid, workers=["w"]),
                timeout=RPC_TIMEOUT_S)
            self.assertFalse(run.replayed)
            resp = self.append(rid, [self.event()], key=key)
            self.assertFalse(resp.replayed)
            self.assertEqual(resp.first_seq, 1)
        for rid in (r1, r2):
            self.assertEqual(len(self.read_all(rid)), 1)

    def test_concurrent_same_key_appends_apply_once(self):
        rid = self.run_id()
        self.create_run(rid)
        req = pb.AppendEventsRequest(idempotency_key=self.key(), run_id=rid,
                                     events=[self.event("once", b"1"), self.event("once", b"2")])
        futures = [self.stub.AppendEvents.future(req, timeout=RPC_TIMEOUT_S) for _ in range(16)]
        applied, replayed = self.split_same_key_futures(futures)
        self.assertEqual(len(applied), 1)
        for resp in replayed:
            self.assertEqual((resp.first_seq, resp.last_seq), (1, 2))
        self.assertEqual((applied[0].first_seq, applied[0].last_seq), (1, 2))
        self.assertEqual([e.payload for e in self.read_all(rid)], [b"1", b"2"])

    def test_concurrent_appends_get_dense_disjoint_atomic_batches(self):
        rid = self.run_id()
        self.create_run(rid)
        n_req, per = 20, 5
        futures = [
            self.stub.AppendEvents.future(
                pb.AppendEventsRequest(idempotency_key=self.key(), run_id=rid,
                                       events=[self.event("c", b"%d:%d" % (i, j))
                                               for j in range(per)]),
                timeout=RPC_TIMEOUT_S)
            for i in range(n_req)]
        ranges = [(f.result().first_seq, f.result().last_seq) for f in futures]
        seqs = sorted(s for a, b in ranges for s in range(a, b + 1))
        self.assertEqual(seqs, list(range(1, n_req * per + 1)))
        events = self.read_all(rid)
        self.assertEqual([e.seq for e in events], seqs)
        for i, (first, last) in enumerate(ranges):
            self.assertEqual(last - first + 1, per)
            # One append's events are contiguous and in request order.
            self.assertEqual([events[s - 1].payload for s in range(first, last + 1)],
                             [b"%d:%d" % (i, j) for j in range(per)])

    def test_mutation_without_idempotency_key_invalid_argument(self):
        rid = self.run_id()
        err = self.assertRpcError(grpc.StatusCode.INVALID_ARGUMENT, self.stub.CreateRun,
                                  pb.CreateRunRequest(run_id=rid, workers=["w"]))
        self.assertIn("idempotency_key", err.details())
        self.assertRpcError(grpc.StatusCode.NOT_FOUND, self.stub.GetRun,
                            pb.GetRunRequest(run_id=rid))
        self.create_run(rid)
        err = self.assertRpcError(grpc.StatusCode.INVALID_ARGUMENT, self.stub.AppendEvents,
                                  pb.AppendEventsRequest(run_id=rid, events=[self.event()]))
        self.assertIn("idempotency_key", err.details())
        self.assertEqual(self.read_all(rid), [])

    def test_idempotency_key_over_128_chars_or_unprintable_invalid_argument(self):
        rid = self.run_id()
        self.create_run(rid)
        for key in ("k" * 129, "tab\there", "caf\u00e9"):
            with self.subTest(key=key):
                err = self.assertRpcError(
                    grpc.StatusCode.INVALID_ARGUMENT, self.stub.AppendEvents,
                    pb.AppendEventsRequest(idempotency_key=key, run_id=rid,
                                           events=[self.event()]))
                self.assertIn("idempotency_key", err.details())
        resp = self.append(rid, [self.event()], key="k" * 128)
        self.assertEqual(resp.first_seq, 1)

    def test_append_unknown_run_not_found(self):
        err = self.assertRpcError(
            grpc.StatusCode.NOT_FOUND, self.stub.AppendEvents,
            pb.AppendEventsRequest(idempotency_key=self.key(), run_id=self.run_id(),
                                   events=[self.event()]))
        self.assertIn("run_id", err.details())

    def test_bad_run_ids_invalid_argument_and_no_files_created(self):
        bad = ["../etc", "a/b", "", "a" * 129, "a\x00b", "/abs", ".hidden", "-dash", "a b"]
        watched_cwd = ["../etc", "etc", "a", "a/b"]
        cwd_before = {p: os.path.lexists(p) for p in watched_cwd}
        tree_before = _tree(S.srv_dir)
        for rid in bad:
            calls = [
                ("CreateRun", self.stub.CreateRun,
                 pb.CreateRunRequest(idempotency_key=self.key(), run_id=rid, workers=["w"])),
                ("GetRun", self.stub.GetRun, pb.GetRunRequest(run_id=rid)),
                ("AppendEvents", self.stub.AppendEvents,
                 pb.AppendEventsRequest(idempotency_key=self.key(), run_id=rid,
                                        events=[self.event()])),
                ("ReadEvents", self.stub.ReadEvents, pb.ReadEventsRequest(run_id=rid)),
            ]
            for method, fn, req in calls:
                with self.subTest(run_id=rid, method=method):
                    err = self.assertRpcError(grpc.StatusCode.INVALID_ARGUMENT, fn, req)
                    self.assertTrue(err.details().startswith("run_id:"), err.details())
        self.assertEqual(_tree(S.srv_dir), tree_before)
        self.assertEqual({p: os.path.lexists(p) for p in watched_cwd}, cwd_before)
        self.assertFalse(os.path.lexists(os.path.join(S.root, "etc")))
        # The longest valid id is fine.
        longest = ("L" + uuid.uuid4().hex) * 4
        longest = (longest + "x" * 128)[:128]
        self.create_run(longest)
        self.assertEqual(self.stub.GetRun(pb.GetRunRequest(run_id=longest),
                                          timeout=RPC_TIMEOUT_S).run_id, longest)

    def test_append_zero_events_invalid_argument(self):
        rid = self.run_id()
        self.create_run(rid)
        err = self.assertRpcError(
            grpc.StatusCode.INVALID_ARGUMENT, self.stub.AppendEvents,
            pb.AppendEventsRequest(idempotency_key=self.key(), run_id=rid, events=[]))
        self.assertTrue(err.details().startswith("events:"), err.details())

    def test_append_1001_events_invalid_argument_1000_accepted(self):
        rid = self.run_id()
        self.create_run(rid)
        err = self.assertRpcError(
            grpc.StatusCode.INVALID_ARGUMENT, self.stub.AppendEvents,
            pb.AppendEventsRequest(idempotency_key=self.key(), run_id=rid,
                                   events=[self.event() for _ in range(1001)]))
        self.assertTrue(err.details().startswith("events:"), err.details())
        self.assertIn("1000", err.details())
        self.assertEqual(self.read_all(rid), [])
        resp = self.append(rid, [self.event("e%d" % i) for i in range(1000)])
        self.assertEqual((resp.first_seq, resp.last_seq), (1, 1000))
        self.assertEqual([e.type for e in self.read_all(rid, max_events=1000)],
                         ["e%d" % i for i in range(1000)])

    def test_append_payload_over_1mib_invalid_argument(self):
        rid = self.run_id()
        self.create_run(rid)
        err = self.assertRpcError(
            grpc.StatusCode.INVALID_ARGUMENT, self.stub.AppendEvents,
            pb.AppendEventsRequest(idempotency_key=self.key(), run_id=rid,
                                   events=[self.event("big", b"\x01" * (MiB + 1))]))
        self.assertIn("payload", err.details())
        self.assertIn(str(MiB), err.details())
        self.assertEqual(self.read_all(rid), [])

    def test_append_payload_exactly_1mib_accepted(self):
        rid = self.run_id()
        self.create_run(rid)
        payload = bytes(range(256)) * (MiB // 256)
        self.assertEqual(len(payload), MiB)
        resp = self.append(rid, [self.event("big", payload)])
        self.assertEqual(resp.first_seq, 1)
        events = self.read_all(rid)
        self.assertEqual(len(events), 1)
        self.assertEqual(events[0].payload, payload)

    def test_message_over_4mib_resource_exhausted_then_still_serving(self):
        rid = self.run_id()
        self.create_run(rid)
        key = self.key()
        # Five events of 1 MiB each: every field is within its own limit,
        # only the 4 MiB transport limit is exceeded.
        big = pb.AppendEventsRequest(idempotency_key=key, run_id=rid,
                                     events=[self.event("big", b"\x02" * MiB) for _ in range(5)])
        self.assertGreater(big.ByteSize(), 5 * MiB)
        self.assertRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, self.stub.AppendEvents, big)
        resp = S.health.Check(health_pb.HealthCheckRequest(service=""), timeout=RPC_TIMEOUT_S)
        self.assertEqual(resp.status, health_pb.HealthCheckResponse.SERVING)
        # Nothing was applied and the key was not consumed.
        self.assertEqual(self.read_all(rid), [])
        resp = self.append(rid, [self.event("small")], key=key)
        self.assertFalse(resp.replayed)
        self.assertEqual(resp.first_seq, 1)

    def test_append_reserved_worker_completed_type_invalid_argument(self):
        rid = self.run_id()
        self.create_run(rid, workers=["w1"])
        err = self.assertRpcError(
            grpc.StatusCode.INVALID_ARGUMENT, self.stub.AppendEvents,
            pb.AppendEventsRequest(idempotency_key=self.key(), run_id=rid,
                                   events=[self.event("ok"),
                                           self.event("worker.completed", worker_id="w1")]))
        self.assertIn("worker.completed", err.details())
        self.assertEqual(self.read_all(rid), [])
        got = self.stub.GetRun(pb.GetRunRequest(run_id=rid), timeout=RPC_TIMEOUT_S)
        self.assertEqual(list(got.completed_workers), [])
        self.assertEqual(got.state, "created")

    def test_append_bad_event_fields_invalid_argument(self):
        rid = self.run_id()
        self.create_run(rid)
        cases = [
            ("events[0].type", [self.event("")]),
            ("events[1].type", [self.event("ok"), self.event("t" * 129)]),
            ("events[0].worker_id", [self.event("ok", worker_id="../w")]),
        ]
        for field, events in cases:
            with self.subTest(field=field):
                err = self.assertRpcError(
                    grpc.StatusCode.INVALID_ARGUMENT, self.stub.AppendEvents,
                    pb.AppendEventsRequest(idempotency_key=self.key(), run_id=rid,
                                           events=events))
                self.assertTrue(err.details().startswith(field + ":"), err.details())
        self.assertEqual(self.read_all(rid), [])

    def test_append_server_assigns_seq_run_id_created_at_and_keeps_fields(self):
        rid = self.run_id()
        self.create_run(rid, workers=["w1"])
        ev = pb.Event(seq=77, run_id="someone-else", created_at="1999-01-01T00:00:00.000000Z",
                      type="t" * 128, worker_id="not-a-worker-of-the-run", payload=b"\x00\xff")
        resp = self.append(rid, [ev, self.event("run.level")])
        self.assertEqual((resp.first_seq, resp.last_seq), (1, 2))
        events = self.read_all(rid)
        self.assertEqual([e.seq for e in events], [1, 2])
        self.assertEqual({e.run_id for e in events}, {rid})
        self.assertEqual(events[0].type, "t" * 128)
        self.assertEqual(events[0].worker_id, "not-a-worker-of-the-run")
        self.assertEqual(events[0].payload, b"\x00\xff")
        self.assertEqual(events[1].worker_id, "")
        for e in events:
            self.assertRegex(e.created_at, TIMESTAMP_RE)
            self.assertNotEqual(e.created_at, "1999-01-01T00:00:00.000000Z")


class ReadTest(CairnTestCase):

    def test_read_events_pages_of_100_give_dense_seqs_1_to_250(self):
        rid = self.run_id()
        self.create_run(rid)
        n = 0
        for size in (1, 99, 100, 50):  # 250 in batches
            resp = self.append(rid, [self.event("e", b"%d" % (n + i)) for i in range(size)])
            self.assertEqual((resp.first_seq, resp.last_seq), (n + 1, n + size))
            n += size
        pages, from_seq, seqs = [], 1, []
        while True:
            page = self.stub.ReadEvents(
                pb.ReadEventsRequest(run_id=rid, from_seq=from_seq, max_events=100),
                timeout=RPC_TIMEOUT_S)
            pages.append(len(page.events))
            if not page.events:
                self.assertEqual(page.next_seq, from_seq)
                break
            self.assertEqual(page.next_seq, page.events[-1].seq + 1)
            seqs.extend(e.seq for e in page.events)
            for e in page.events:
                self.assertEqual(e.payload, b"%d" % (e.seq - 1))
            from_seq = page.next_seq
        self.assertEqual(seqs, list(range(1, 251)))
        self.assertEqual(pages, [100, 100, 50, 0])

    def test_read_events_empty_page_next_seq_equals_from_seq(self):
        rid = self.run_id()
        self.create_run(rid)
        empty = self.stub.ReadEvents(pb.ReadEventsRequest(run_id=rid, from_seq=1),
                                     timeout=RPC_TIMEOUT_S)
        self.assertEqual(list(empty.events), [])
        self.assertEqual(empty.next_seq, 1)
        self.append(rid, [self.event() for _ in range(3)])
        for from_seq in (4, 5, 1000):
            with self.subTest(from_seq=from_seq):
                page = self.stub.ReadEvents(pb.ReadEventsRequest(run_id=rid, from_seq=from_seq),
                                            timeout=RPC_TIMEOUT_S)
                self.assertEqual(list(page.events), [])
                self.assertEqual(page.next_seq, from_seq)
        # from_seq 0 and 1 both mean the first event.
        for from_seq in (0, 1):
            page = self.stub.ReadEvents(pb.ReadEventsRequest(run_id=rid, from_seq=from_seq,
                                                             max_events=2),
                                        timeout=RPC_TIMEOUT_S)
            self.assertEqual([e.seq for e in page.events], [1, 2])
            self.assertEqual(page.next_seq, 3)

    def test_read_events_max_events_0_means_100(self):
        rid = self.run_id()
        self.create_run(rid)
        self.append(rid, [self.event() for _ in range(150)])
        page = self.stub.ReadEvents(pb.ReadEventsRequest(run_id=rid, max_events=0),
                                    timeout=RPC_TIMEOUT_S)
        self.assertEqual([e.seq for e in page.events], list(range(1, 101)))
        self.assertEqual(page.next_seq, 101)

    def test_read_events_from_seq_beyond_int64_gives_empty_page(self):
        """from_seq >= 2**63 was once bound into SQLite as a negative int64
        and read the log from seq 1; it is past every seq, so the page is
        empty with next_seq == from_seq."""
        rid = self.run_id()
        self.create_run(rid)
        self.append(rid, [self.event() for _ in range(3)])
        for from_seq in (2 ** 63, 2 ** 64 - 1):
            page = self.stub.ReadEvents(pb.ReadEventsRequest(run_id=rid, from_seq=from_seq),
                                        timeout=RPC_TIMEOUT_S)
            self.assertEqual([e.seq for e in page.events], [])
            self.assertEqual(page.next_seq, from_seq)

    def test_read_events_max_events_over_1000_invalid_argument(self):
        rid = self.run_id()
        self.create_run(rid)
        err = self.assertRpcError(grpc.StatusCode.INVALID_ARGUMENT, self.stub.ReadEvents,
                                  pb.ReadEventsRequest(run_id=rid, max_events=1001))
        self.assertIn("max_events", err.details())

    def test_read_events_unknown_run_not_found(self):
        self.assertRpcError(grpc.StatusCode.NOT_FOUND, self.stub.ReadEvents,
                            pb.ReadEventsRequest(run_id=self.run_id()))

    def test_read_events_large_payload_pages_stay_under_message_limit(self):
        rid = self.run_id()
        self.create_run(rid)
        for i in range(5):
            self.append(rid, [self.event("big", bytes([i]) * MiB)])
        # The client keeps gRPC's default 4 MiB receive limit: a page over
        # it would fail here with RESOURCE_EXHAUSTED.
        events, from_seq, pages = [], 1, 0
        while True:
            page = self.stub.ReadEvents(
                pb.ReadEventsRequest(run_id=rid, from_seq=from_seq, max_events=100),
                timeout=RPC_TIMEOUT_S)
            if not page.events:
                break
            pages += 1
            self.assertLess(page.ByteSize(), 4 * MiB)
            events.extend(page.events)
            from_seq = page.next_seq
        self.assertEqual([e.seq for e in events], [1, 2, 3, 4, 5])
        self.assertGreater(pages, 1)
        for i, e in enumerate(events):
            self.assertEqual(e.payload, bytes([i]) * MiB)


class WireTest(CairnTestCase):

    def test_malformed_or_non_utf8_request_bytes_invalid_argument(self):
        get_run = S.channel.unary_unary("/cairn.v1.Coordinator/GetRun")
        cases = [
            (b"\xff\xff\xff", "request:"),           # not protobuf at all
            (b"\x0a\x02\xff\xfe", "run_id:"),         # run_id not UTF-8
            (b"\x0a\x05ab", "run_id:"),               # string cut short: named
        ]
        for raw, prefix in cases:
            with self.subTest(raw=raw):
                err = self.assertRpcError(grpc.StatusCode.INVALID_ARGUMENT, get_run, raw)
                self.assertTrue(err.details().startswith(prefix), err.details())
        resp = S.health.Check(health_pb.HealthCheckRequest(), timeout=RPC_TIMEOUT_S)
        self.assertEqual(resp.status, health_pb.HealthCheckResponse.SERVING)


class UnimplementedTest(CairnTestCase):

    def test_made_up_method_unimplemented(self):
        nope = S.channel.unary_unary("/cairn.v1.Coordinator/Nope")
        self.assertRpcError(grpc.StatusCode.UNIMPLEMENTED, nope, b"")
        other = S.channel.unary_unary("/no.such.Service/Method")
        self.assertRpcError(grpc.StatusCode.UNIMPLEMENTED, other, b"\x0a\x01x")
        # The server is still fine afterwards.
        resp = S.health.Check(health_pb.HealthCheckRequest(), timeout=RPC_TIMEOUT_S)
        self.assertEqual(resp.status, health_pb.HealthCheckResponse.SERVING)


def main():
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cairnd", required=True, help="path of the cairnd binary")
    parser.add_argument("--proto-dir", required=True, help="directory holding cairn/v1/*.proto")
    parser.add_argument("--protoc", required=True, help="path of protoc")
    parser.add_argument("--grpc-plugin", required=True, help="path of grpc_python_plugin")
    ARGS, rest = parser.parse_known_args()
    for name in ("cairnd", "proto_dir", "protoc", "grpc_plugin"):
        setattr(ARGS, name, os.path.abspath(getattr(ARGS, name)))
    _start_store()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
