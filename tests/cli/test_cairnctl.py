#!/usr/bin/python3
"""cairnctl against a real cairnd: every command with its `-o json` output
parsed, the other formats, the exit code of each class, flags anywhere and
as --flag=value, the CAIRN_* twins, stdin payloads, per-command --help,
bash completion, the progress bar on a pseudo-terminal (and its plain
lines elsewhere), `load --out -` with bounded memory, and `events tail -f`
across a server restart.

usage: test_cairnctl.py --cairnd PATH --cairnctl PATH [unittest args...]

With CAIRN_TEST_STORE=postgres every cairnd runs with --store postgres on a
database of its own in a private cluster (tests/support/pgcluster.py);
without PostgreSQL the suite exits 77 (skipped).
"""
import argparse
import atexit
import base64
import ctypes
import hashlib
import json
import os
import pty
import re
import select
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))

ARGS = None
STORE = os.environ.get("CAIRN_TEST_STORE") or "sqlite"
PG = None
MiB = 1024 * 1024
# Bounds on waits, never synchronisation: every wait polls for its
# condition and fails the test when the bound passes.
START_TIMEOUT_S = 30
CALL_TIMEOUT_S = 60
TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
PG_DBS = []        # the databases made so far, one per Cairnd


def die_with_parent():
    """In a child: die with the test, so no server outlives a failure."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def closed_port():
    """A port nothing listens on: bound, then closed, never listened on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra):
    """The environment without CAIRN_* (the caller's must not leak in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    env.update(extra)
    return env


class Cairnd:
    """A cairnd on 127.0.0.1 with its own data dir (and, on postgres, its
    own database); restartable on the same port and data."""

    def __init__(self, root):
        self.data_dir = os.path.join(root, "data")
        self.log = open(os.path.join(root, "cairnd.log"), "ab")
        self.proc = None
        self.target = None
        self.flags, self.env = [], None
        if PG is not None:
            name = "c%d" % (len(PG_DBS) + 1)
            PG_DBS.append(name)
            PG.create_database(name)
            self.flags = ["--store", "postgres"]
            self.env = dict(os.environ, CAIRN_PG_DSN=PG.dsn_of(name))

    def start(self):
        listen = self.target or "127.0.0.1:0"
        self.proc = subprocess.Popen(
            [ARGS.cairnd, "--listen", listen, "--metrics-listen", "127.0.0.1:0", "--data-dir",
             self.data_dir] + self.flags,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.log, env=self.env,
            preexec_fn=die_with_parent)
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        line = b""
        deadline = time.monotonic() + START_TIMEOUT_S
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                self.proc.kill()
                raise RuntimeError("cairnd did not print its address in time")
            chunk = os.read(self.proc.stdout.fileno(), 1)
            if not chunk:
                raise RuntimeError("cairnd exited %s before listening" % self.proc.wait())
            line += chunk
        sel.close()
        self.target = line.decode().split()[-1]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=START_TIMEOUT_S)
        self.proc.stdout.close()

    def close(self):
        self.stop()
        self.log.close()


def ctl(*argv, stdin=None, env=None, timeout=CALL_TIMEOUT_S, stderr=subprocess.PIPE):
    """Runs cairnctl; returns (exit code, stdout bytes, stderr text)."""
    p = subprocess.run([ARGS.cairnctl, *argv], input=stdin, stdout=subprocess.PIPE,
                       stderr=stderr, env=env if env is not None else clean_env(),
                       timeout=timeout)
    return p.returncode, p.stdout, (p.stderr or b"").decode(errors="replace")


class CairnctlTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="cairn-cli-")
        cls.server = Cairnd(cls.tmp.name)
        cls.server.start()
        cls.target = cls.server.target
        cls.runs = 0

    @classmethod
    def tearDownClass(cls):
        cls.server.close()
        cls.tmp.cleanup()

    def run_id(self):
        type(self).runs += 1
        return "%s-%d" % (self._testMethodName.replace("_", "-")[:60], self.runs)

    def ok(self, *argv, stdin=None):
        """cairnctl -o json ...: exit 0, stdout parsed."""
        rc, out, err = ctl("--target", self.target, "-o", "json", *argv, stdin=stdin)
        self.assertEqual(rc, 0, "cairnctl %s: %s" % (" ".join(argv), err))
        return json.loads(out)

    def code(self, *argv, env=None, stdin=None):
        """(exit code, stderr) of cairnctl --target ... argv."""
        rc, _, err = ctl("--target", self.target, *argv, env=env, stdin=stdin)
        return rc, err

    def new_run(self, *workers):
        run = self.run_id()
        self.ok("create-run", run, *(workers or ("w1", "w2")))
        return run

    def file(self, name, data):
        path = os.path.join(self.tmp.name, name)
        with open(path, "wb") as f:
            f.write(data)
        return path


class Commands(CairnctlTest):
    """Every command, its -o json output parsed."""

    def test_health_reports_serving(self):
        self.assertEqual(self.ok("health"), {"status": "SERVING"})

    def test_create_run_returns_the_run_and_replays_under_the_same_key(self):
        run = self.run_id()
        doc = self.ok("create-run", run, "a", "b", "a", "--label", "team=etl", "--key", "k1")
        self.assertEqual(doc["run_id"], run)
        self.assertEqual(doc["workers"], ["a", "b"])
        self.assertEqual(doc["labels"], {"team": "etl"})
        self.assertEqual(doc["state"], "created")
        self.assertRegex(doc["created_at"], TIMESTAMP_RE)
        self.assertFalse(doc["replayed"])
        again = self.ok("create-run", run, "a", "b", "--label", "team=etl", "--key", "k1")
        self.assertTrue(again["replayed"])

    def test_delete_run_deletes_replays_its_key_and_tolerates_no_run(self):
        run = self.new_run()
        self.ok("append", run, "t", "x")
        self.assertEqual(self.ok("delete-run", run, "--key", "del-1"),
                         {"run_id": run, "existed": True, "replayed": False})
        self.assertEqual(self.code("get-run", run)[0], 3)
        self.assertEqual(self.ok("delete-run", run, "--key", "del-1"),
                         {"run_id": run, "existed": True, "replayed": True})
        self.assertEqual(self.ok("delete-run", run),
                         {"run_id": run, "existed": False, "replayed": False})
        self.assertEqual(self.code("delete-run")[0], 2)

    def test_get_run_reports_state_and_next_seq(self):
        run = self.new_run()
        self.ok("append", run, "started")
        doc = self.ok("get-run", run)
        self.assertEqual((doc["state"], doc["next_seq"], doc["completed_workers"]),
                         ("running", 2, []))

    def test_list_runs_pages_and_all(self):
        first, second = self.new_run(), self.new_run()
        page = self.ok("list-runs", "--page-size", "1")
        self.assertEqual(len(page["runs"]), 1)
        self.assertTrue(page["next_page_token"])
        nxt = self.ok("list-runs", "--page-size", "1", "--page-token", page["next_page_token"])
        self.assertNotEqual(nxt["runs"][0]["run_id"], page["runs"][0]["run_id"])
        everything = self.ok("list-runs", "--all", "--page-size", "1")
        ids = [r["run_id"] for r in everything["runs"]]
        self.assertLess(ids.index(first), ids.index(second))
        self.assertEqual(everything["next_page_token"], "")

    def test_append_and_read_carry_bytes_as_base64(self):
        run = self.new_run()
        binary = bytes(range(256)) + b"\x00end"
        a = self.ok("append", run, "blob", "-", "--worker", "w1", "--key", "blob-1", stdin=binary)
        self.assertEqual((a["first_seq"], a["last_seq"], a["replayed"]), (1, 1, False))
        again = self.ok("append", run, "blob", "-", "--worker", "w1", "--key", "blob-1",
                        stdin=binary)
        self.assertTrue(again["replayed"])
        self.ok("append", run, "note", "hello", "--expect", "2")
        doc = self.ok("read", run)
        self.assertEqual(doc["next_seq"], 3)
        (blob, note) = doc["events"]
        self.assertEqual(base64.b64decode(blob["payload"]), binary)
        self.assertEqual((blob["seq"], blob["type"], blob["worker_id"]), (1, "blob", "w1"))
        self.assertEqual((note["payload"], note["worker_id"]), ("aGVsbG8=", ""))
        page = self.ok("read", run, "--from", "2", "--max", "1")
        self.assertEqual([e["seq"] for e in page["events"]], [2])

    def test_read_all_pages_through_the_log(self):
        run = self.new_run()
        for i in range(5):
            self.ok("append", run, "e", str(i))
        doc = self.ok("read", run, "--max", "2", "--all")
        self.assertEqual([e["seq"] for e in doc["events"]], [1, 2, 3, 4, 5])

    def test_complete_reports_seq_and_run_state(self):
        run = self.new_run("only")
        doc = self.ok("complete", run, "only")
        self.assertEqual((doc["seq"], doc["run_state"], doc["replayed"]), (1, "completed", False))

    def test_events_tail_writes_json_lines_of_the_last_events(self):
        run = self.new_run()
        for i in range(4):
            self.ok("append", run, "e", "p%d" % i)
        rc, out, err = ctl("--target", self.target, "events", "tail", run, "-n", "2", "-o", "json")
        self.assertEqual(rc, 0, err)
        lines = [json.loads(l) for l in out.decode().splitlines()]
        self.assertEqual([e["seq"] for e in lines], [3, 4])
        rc, out, _ = ctl("--target", self.target, "events", "tail", run, "--from", "4",
                         "-o", "jsonl")
        self.assertEqual([json.loads(l)["seq"] for l in out.decode().splitlines()], [4])

    def test_watch_streams_json_lines_from_a_seq(self):
        run = self.new_run()
        for i in range(3):
            self.ok("append", run, "e", str(i))
        p = subprocess.Popen([ARGS.cairnctl, "--target", self.target, "-o", "json", "watch", run,
                              "--from", "2"], stdout=subprocess.PIPE, env=clean_env(),
                             preexec_fn=die_with_parent)
        try:
            seqs = [e["seq"] for e in read_json_lines(p.stdout, 2)]
            self.ok("append", run, "e", "live")
            seqs += [e["seq"] for e in read_json_lines(p.stdout, 1)]
        finally:
            p.kill()
            p.wait()
            p.stdout.close()
        self.assertEqual(seqs, [2, 3, 4])

    def test_lease_acquire_renew_release(self):
        run = self.new_run()
        lease = self.ok("acquire", run, "w1", "--holder", "node-1", "--ttl", "30s")
        self.assertEqual((lease["holder"], lease["worker_id"], lease["ttl_ms"]),
                         ("node-1", "w1", 30000))
        self.assertGreaterEqual(lease["fencing_token"], 1)
        rc, err = self.code("acquire", run, "w1", "--holder", "node-2")
        self.assertEqual(rc, 4, err)
        renewed = self.ok("renew", run, "w1", lease["lease_id"], "--ttl", "1m")
        self.assertEqual((renewed["lease_id"], renewed["ttl_ms"]), (lease["lease_id"], 60000))
        released = self.ok("release", run, "w1", lease["lease_id"])
        self.assertTrue(released["released"])
        again = self.ok("acquire", run, "w1", "--holder", "node-2")
        self.assertGreater(again["fencing_token"], lease["fencing_token"])
        rc, err = self.code("append", run, "e", "--worker", "w1",
                            "--fencing-token", str(lease["fencing_token"]))
        self.assertEqual(rc, 4, err)

    def test_checkpoint_list_load_cleanup_resume(self):
        run = self.new_run("w1", "w2")
        self.ok("append", run, "e")
        self.ok("complete", run, "w1")
        data = os.urandom(3 * MiB + 5)
        path = self.file("snap", data)
        cp = self.ok("checkpoint", run, path, "--state", "s1", "--events", "2",
                     "--completed", "w1", "--no-progress")
        self.assertEqual((cp["snapshot_size"], cp["events_count"], cp["run_state"]),
                         (len(data), 2, "s1"))
        self.assertEqual(cp["snapshot_sha256"], hashlib.sha256(data).hexdigest())
        second = self.ok("checkpoint", run, self.file("snap2", b"two"), "--events", "2")
        listed = self.ok("checkpoints", run)["checkpoints"]
        self.assertEqual([c["checkpoint_id"] for c in listed],
                         [cp["checkpoint_id"], second["checkpoint_id"]])
        out = os.path.join(self.tmp.name, "loaded", "snap")
        meta = self.ok("load", run, cp["checkpoint_id"], "--out", out, "--no-progress")
        self.assertEqual(meta["checkpoint_id"], cp["checkpoint_id"])
        with open(out, "rb") as f:
            self.assertEqual(f.read(), data)
        rc, latest, err = ctl("--target", self.target, "load", run, "--out", "-",
                              "--no-progress")
        self.assertEqual((rc, latest), (0, b"two"), err)
        plan = self.ok("resume", run)
        self.assertEqual((plan["checkpoint_id"], plan["resume_from_seq"], plan["workers_to_rerun"],
                          plan["success"]), (second["checkpoint_id"], 3, ["w2"], True))
        cleaned = self.ok("cleanup", run, "1")
        self.assertEqual((cleaned["deleted"], cleaned["deleted_ids"]), (1, [cp["checkpoint_id"]]))
        rc, err = self.code("load", run, cp["checkpoint_id"], "--out", out)
        self.assertEqual(rc, 3, err)


def read_json_lines(stream, n, timeout=CALL_TIMEOUT_S):
    """n JSON lines from a pipe, polled with a deadline."""
    out = []
    deadline = time.monotonic() + timeout
    buf = b""
    fd = stream.fileno()
    while len(out) < n:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError("%d of %d lines in time: %r" % (len(out), n, out))
        chunk = os.read(fd, 1)
        if not chunk:
            raise AssertionError("stream ended after %r" % out)
        buf += chunk
        if buf.endswith(b"\n"):
            out.append(json.loads(buf))
            buf = b""
    return out


class Formats(CairnctlTest):
    def test_jsonl_writes_one_object_per_item(self):
        run = self.new_run()
        for i in range(3):
            self.ok("append", run, "e", str(i))
        rc, out, err = ctl("--target", self.target, "read", run, "-o", "jsonl")
        self.assertEqual(rc, 0, err)
        self.assertEqual([json.loads(l)["seq"] for l in out.decode().splitlines()], [1, 2, 3])

    def test_table_aligns_columns_under_a_header(self):
        run = self.new_run()
        self.ok("append", run, "a-longer-type", "x")
        self.ok("append", run, "b", "y")
        rc, out, err = ctl("--target", self.target, "read", run, "-o", "table")
        self.assertEqual(rc, 0, err)
        header, *rows = out.decode().splitlines()
        self.assertTrue(header.startswith("SEQ  TYPE"), header)
        self.assertEqual(len(rows), 2)
        col = header.index("WORKER_ID")
        self.assertTrue(all(r[col - 2:col] == "  " and r[col] != " " for r in rows), rows)

    def test_text_is_key_value_lines_and_escapes_bytes(self):
        run = self.new_run()
        self.ok("append", run, "bin", "-", stdin=b"a\x00b")
        rc, out, _ = ctl("--target", self.target, "get-run", run)
        self.assertIn("run_id: %s\n" % run, out.decode())
        self.assertIn("workers: w1 w2\n", out.decode())
        rc, out, _ = ctl("--target", self.target, "read", run)
        self.assertEqual(out.decode().split("\t")[3], "a\\x00b")


class ExitCodes(CairnctlTest):
    def test_not_found_is_3(self):
        self.assertEqual(self.code("get-run", "no-such-run")[0], 3)

    def test_precondition_and_conflict_are_4(self):
        run = self.new_run()
        self.assertEqual(self.code("append", run, "e", "--expect", "9")[0], 4)
        self.assertEqual(self.code("create-run", run, "other-worker")[0], 4)

    def test_server_refusal_is_1(self):
        run = self.new_run()
        rc, err = self.code("append", run, "worker.completed")
        self.assertEqual(rc, 1, err)
        self.assertIn("invalid argument", err)

    def test_unavailable_is_5_within_about_3s_for_reads(self):
        start = time.monotonic()
        rc, _, err = ctl("--target", "127.0.0.1:%d" % closed_port(), "get-run", "r")
        self.assertEqual(rc, 5, err)
        self.assertLess(time.monotonic() - start, 5)

    def test_unavailable_is_5_after_the_retries_of_a_write(self):
        start = time.monotonic()
        rc, _, err = ctl("--target", "127.0.0.1:%d" % closed_port(), "--attempts", "2",
                         "--timeout=2s", "append", "r", "t")
        self.assertEqual(rc, 5, err)
        self.assertLess(time.monotonic() - start, 10)

    def test_usage_is_2_naming_the_flag_or_argument_and_the_limit(self):
        cases = [
            (["nope"], 'unknown command "nope"'),
            (["events", "head"], "events: expected a subcommand"),
            (["get-run"], "get-run: expected RUN"),
            (["get-run", "r", "--bogus"], "--bogus is not a flag of get-run"),
            (["get-run", "r", "--from", "1"], "--from is not a flag of get-run"),
            (["read", "r", "--max", "1001"], '--max: expected 1..1000, got "1001"'),
            (["--attempts", "0", "health"], '--attempts: expected 1..100, got "0"'),
            (["--timeout", "3", "health"], "--timeout: expected a duration"),
            (["-o", "yaml", "health"], '--output: expected text, json, jsonl or table'),
            (["acquire", "r", "w", "--ttl", "500ms"], "--ttl: expected a duration from 1s to 10m"),
            (["cleanup", "r", "0"], "KEEP_LAST_N: expected 1..4294967295"),
            (["read", "r", "--from"], "--from needs a value"),
            (["completion", "zsh"], "only bash"),
            (["--cert-file", ARGS.cairnctl, "health"], "--cert-file needs --key-file"),
            (["renew", "r", "w", "x" * 129], "LEASE_ID: at most 128 characters"),
        ]
        for argv, message in cases:
            rc, err = self.code(*argv)
            self.assertEqual(rc, 2, (argv, err))
            self.assertIn(message, err, argv)

    def test_payload_over_the_limit_on_stdin_is_2(self):
        rc, err = self.code("append", "r", "t", "-", stdin=b"x" * (MiB + 1))
        self.assertEqual(rc, 2, err)
        self.assertIn("more than 1048576 bytes", err)

    def test_local_io_is_6(self):
        run = self.new_run()
        rc, err = self.code("checkpoint", run, os.path.join(self.tmp.name, "missing"))
        self.assertEqual(rc, 6, err)
        self.ok("checkpoint", run, self.file("small", b"s"), "--no-progress")
        rc, err = self.code("load", run, "--out", "/dev/null/x")
        self.assertEqual(rc, 6, err)

    def test_tls_and_token_flags_parse_and_bad_files_are_6(self):
        ca = self.file("ca.pem", b"not checked before libcairn reads it\n")
        token = self.file("token", b"secret-token\nignored\n")
        os.chmod(token, 0o600)
        # completion makes no call: the flags are parsed, the files read.
        rc, err = self.code("--ca-file", ca, "--cert-file=" + ca, "--key-file", ca,
                            "--server-name", "cairn.local", "--token-file", token,
                            "completion", "bash")
        self.assertEqual(rc, 0, err)
        missing = os.path.join(self.tmp.name, "nothing-here")
        for flag in ("--ca-file", "--cert-file", "--key-file", "--token-file"):
            rc, err = self.code(flag, missing, "completion", "bash")
            self.assertEqual(rc, 6, (flag, err))
            self.assertIn(flag + ": cannot read", err)
        os.chmod(token, 0o640)
        rc, err = self.code("--token-file", token, "completion", "bash")
        self.assertEqual(rc, 6, err)
        self.assertIn("accessible by group or others (mode 0640)", err)
        empty = self.file("empty-token", b"\n")
        os.chmod(empty, 0o600)
        self.assertEqual(self.code("--token-file", empty, "completion", "bash")[0], 6)
        rc, err = self.code("completion", "bash",
                            env=clean_env(CAIRN_TOKEN_FILE=missing, CAIRN_TARGET=self.target))
        self.assertEqual(rc, 6, err)
        self.assertIn("CAIRN_TOKEN_FILE: cannot read", err)
        rc, err = self.code("completion", "bash", env=clean_env(CAIRN_CA_FILE=missing))
        self.assertEqual(rc, 6, err)
        self.assertIn("CAIRN_CA_FILE", err)

    def test_help_lists_the_exit_codes(self):
        rc, out, _ = ctl("--help")
        self.assertEqual(rc, 0)
        for line in ("  0  ok", "  1  the server refused", "  2  usage", "  3  not found",
                     "  4  precondition failed or conflict", "  5  unavailable",
                     "  6  local I/O"):
            self.assertIn(line, out.decode())


class Flags(CairnctlTest):
    def test_global_flags_anywhere_and_in_both_forms(self):
        run = self.new_run()
        for argv in (["-o", "json", "--target", self.target, "get-run", run],
                     ["get-run", run, "--output=json", "--target=" + self.target],
                     ["get-run", "--target", self.target, run, "-ojson"],
                     ["--timeout=5s", "get-run", run, "--attempts=2", "-o", "json",
                      "--target", self.target]):
            rc, out, err = ctl(*argv)
            self.assertEqual(rc, 0, (argv, err))
            self.assertEqual(json.loads(out)["run_id"], run)

    def test_env_twins_and_flags_override_them(self):
        run = self.new_run()
        env = clean_env(CAIRN_TARGET=self.target, CAIRN_OUTPUT="json", CAIRN_TIMEOUT="5s",
                        CAIRN_ATTEMPTS="2")
        rc, out, err = ctl("get-run", run, env=env)
        self.assertEqual((rc, json.loads(out)["run_id"]), (0, run), err)
        rc, out, _ = ctl("get-run", run, "-o", "text", env=env)
        self.assertIn("run_id: %s\n" % run, out.decode())
        for name, bad in (("CAIRN_TIMEOUT", "soon"), ("CAIRN_ATTEMPTS", "0"),
                          ("CAIRN_OUTPUT", "xml")):
            rc, _, err = ctl("health", env=clean_env(CAIRN_TARGET=self.target, **{name: bad}))
            self.assertEqual(rc, 2, name)
            self.assertIn(name, err)

    def test_every_command_has_its_own_help(self):
        rc, out, _ = ctl("--help")
        names = re.findall(r"^  ([a-z-]+(?: tail)?) ", out.decode().split("Global flags")[0], re.M)
        self.assertIn("list-runs", names)
        self.assertIn("events tail", names)
        for name in names:
            rc, out, err = ctl(*name.split(), "--help")
            self.assertEqual(rc, 0, (name, err))
            self.assertTrue(out.decode().startswith("usage: cairnctl %s " % name), out)
        rc, out, _ = ctl("append", "--help")
        self.assertIn("--expect SEQ", out.decode())
        self.assertIn("'-' reads it from stdin", out.decode())

    def test_bash_completion_offers_commands_and_flags(self):
        script = self.file("completion.bash", ctl("completion", "bash")[1])

        def complete(*words):
            src = ("source %s; COMP_WORDS=(%s); COMP_CWORD=%d; _cairnctl; "
                   'printf "%%s\\n" "${COMPREPLY[@]}"'
                   % (script, " ".join("'%s'" % w for w in words), len(words) - 1))
            p = subprocess.run(["bash", "--norc", "--noprofile", "-c", src],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               timeout=CALL_TIMEOUT_S)
            self.assertEqual(p.returncode, 0, p.stderr)
            return p.stdout.split()

        self.assertEqual(complete("cairnctl", "li"), ["list-runs"])
        self.assertEqual(complete("cairnctl", "--target", "h:1", "ev"), ["events"])
        self.assertEqual(complete("cairnctl", "events", "t"), ["tail"])
        self.assertIn("--follow", complete("cairnctl", "events", "tail", "r", "--f"))
        self.assertEqual(complete("cairnctl", "-o", "js"), ["json", "jsonl"])
        self.assertEqual(complete("cairnctl", "append", "--exp"), ["--expect"])


class Transfers(CairnctlTest):
    def run_on_pty(self, *argv):
        """cairnctl with stderr on a pseudo-terminal: (exit code, stderr)."""
        master, slave = pty.openpty()
        p = subprocess.Popen([ARGS.cairnctl, "--target", self.target, *argv],
                             stdout=subprocess.DEVNULL, stderr=slave, env=clean_env(),
                             preexec_fn=die_with_parent)
        os.close(slave)
        seen = b""
        deadline = time.monotonic() + CALL_TIMEOUT_S
        while time.monotonic() < deadline:
            if select.select([master], [], [], deadline - time.monotonic())[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
        os.close(master)
        return p.wait(timeout=CALL_TIMEOUT_S), seen.decode(errors="replace")

    def assert_bar(self, text):
        self.assertIn("\r", text)
        self.assertRegex(text, r"\d+(\.\d)? MiB / 32\.0 MiB +\d+%")
        self.assertRegex(text, r"[\d.]+ [KMG]?i?B/s")
        self.assertRegex(text, r"ETA \d+s")
        self.assertIn("32.0 MiB / 32.0 MiB 100%", text)

    def test_progress_bar_on_a_terminal_plain_lines_elsewhere(self):
        run = self.new_run()
        path = self.file("big", os.urandom(32 * MiB))
        rc, text = self.run_on_pty("checkpoint", run, path)
        self.assertEqual(rc, 0, text)
        self.assertIn("upload [", text)
        self.assert_bar(text)
        rc, text = self.run_on_pty("load", run, "--out", os.path.join(self.tmp.name, "big.out"))
        self.assertEqual(rc, 0, text)
        self.assertIn("download [", text)
        self.assert_bar(text)
        rc, _, err = ctl("--target", self.target, "checkpoint", run, path)
        self.assertEqual(rc, 0, err)
        self.assertNotIn("\r", err)
        self.assertEqual(len(err.splitlines()), 2, err)
        self.assertRegex(err, r"upload: 32\.0 MiB \(33554432 bytes\) started\n"
                              r"upload done: 32\.0 MiB in [\d.]+s \([\d.]+ [KMG]?i?B/s\)\n")
        rc, _, err = ctl("--target", self.target, "load", run, "--out", "-")
        self.assertNotIn("\r", err)
        self.assertIn("download done: 32.0 MiB", err)
        rc, text = self.run_on_pty("load", run, "--out", "-", "--no-progress")
        self.assertEqual((rc, text), (0, ""))

    def load_to_stdout(self, run):
        """cairnctl load RUN --out -: (sha256 of what came out, bytes, peak RSS)."""
        # ASan's quarantine keeps freed memory resident: keep it small, so
        # that the sanitizer build measures what cairnctl holds.
        asan = (os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=1").lstrip(":")
        p = subprocess.Popen([ARGS.cairnctl, "--target", self.target, "load", run, "--out", "-",
                              "--no-progress"], stdout=subprocess.PIPE,
                             env=clean_env(ASAN_OPTIONS=asan), preexec_fn=die_with_parent)
        got, n = hashlib.sha256(), 0
        while True:
            chunk = p.stdout.read(MiB)
            if not chunk:
                break
            got.update(chunk)
            n += len(chunk)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        p.stdout.close()
        self.assertEqual(p.returncode, 0)
        return got.hexdigest(), n, usage.ru_maxrss * 1024  # ru_maxrss is in KiB

    def test_load_to_stdout_streams_with_bounded_memory(self):
        small, big = self.new_run(), self.new_run()
        self.ok("checkpoint", small, self.file("tiny", b"t"), "--no-progress")
        size = 64 * MiB
        path = os.path.join(self.tmp.name, "huge")
        digest = hashlib.sha256()
        with open(path, "wb") as f:
            for _ in range(size // MiB):
                block = os.urandom(MiB)
                digest.update(block)
                f.write(block)
        self.ok("checkpoint", big, path, "--no-progress")
        _, _, baseline = self.load_to_stdout(small)
        sha, n, peak = self.load_to_stdout(big)
        self.assertEqual((n, sha), (size, digest.hexdigest()))
        # Holding the snapshot would add 64 MiB to the baseline (gRPC's
        # libraries, a 1 MiB message): streaming adds well under half.
        self.assertLess(peak - baseline, size // 2, "baseline %d, peak %d" % (baseline, peak))


class Restart(unittest.TestCase):
    """events tail -f on a server that restarts (same data, same port)."""

    def test_tail_follow_survives_a_restart_each_event_once(self):
        with tempfile.TemporaryDirectory(prefix="cairn-cli-restart-") as root:
            server = Cairnd(root)
            server.start()
            target = server.target
            run = "restart-run"

            def ctl_ok(*argv):
                rc, _, err = ctl("--target", target, *argv)
                self.assertEqual(rc, 0, err)

            ctl_ok("create-run", run, "w")
            ctl_ok("append", run, "before", "1")
            ctl_ok("append", run, "before", "2")
            tail = subprocess.Popen([ARGS.cairnctl, "--target", target, "-o", "jsonl", "events",
                                     "tail", run, "-f", "--from", "1"], stdout=subprocess.PIPE,
                                    env=clean_env(), preexec_fn=die_with_parent)
            try:
                seen = read_json_lines(tail.stdout, 2)
                server.stop()
                server.start()  # the same port: server.target is reused
                self.assertEqual(server.target, target)
                ctl_ok("append", run, "after", "3")
                ctl_ok("append", run, "after", "4")
                seen += read_json_lines(tail.stdout, 2)
                self.assertIsNone(tail.poll())
            finally:
                tail.send_signal(signal.SIGTERM)
                tail.wait(timeout=CALL_TIMEOUT_S)
                tail.stdout.close()
                server.close()
            self.assertEqual([e["seq"] for e in seen], [1, 2, 3, 4])
            self.assertEqual([base64.b64decode(e["payload"]) for e in seen],
                             [b"1", b"2", b"3", b"4"])


class Secured(unittest.TestCase):
    """cairnctl's TLS and token flags end to end: a cairnd with TLS, mutual
    TLS and a tokens file (certificates made now by cairn-test-certs)."""

    TOKENS = {"admin": ("admin-secret-1", "admin", "*"),
              "reader": ("reader-secret-2", "read", "*"),
              "team": ("team-secret-3", "write", "team-a.")}

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="cairn-cli-tls-")
        root = cls.tmp.name
        cls.certs = os.path.join(root, "certs")
        os.mkdir(cls.certs, 0o700)
        subprocess.run([ARGS.certs, cls.certs], check=True)
        lines = ["%s %s %s %s" % (name, hashlib.sha256(tok.encode()).hexdigest(), role, prefix)
                 for name, (tok, role, prefix) in cls.TOKENS.items()]
        tokens = os.path.join(root, "tokens")
        with open(os.open(tokens, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write("\n".join(lines) + "\n")
        for name, (tok, _, _) in cls.TOKENS.items():
            with open(os.open(os.path.join(root, name + ".token"), os.O_WRONLY | os.O_CREAT,
                              0o600), "w") as f:
                f.write(tok + "\n")
        cls.server = Cairnd(root)
        cls.server.flags += ["--tls-cert", cls.cert("server.crt"), "--tls-key",
                             cls.cert("server.key"), "--tls-client-ca", cls.cert("ca.crt"),
                             "--auth-tokens", tokens]
        cls.server.start()
        cls.target = cls.server.target

    @classmethod
    def tearDownClass(cls):
        cls.server.close()
        cls.tmp.cleanup()

    @classmethod
    def cert(cls, name):
        return os.path.join(cls.certs, name)

    def token_file(self, name):
        return os.path.join(self.tmp.name, name + ".token")

    def secured(self, token, *argv, env=None):
        """cairnctl -o json with the CA, the client certificate and a token."""
        return ctl("--target", self.target, "--ca-file", self.cert("ca.crt"), "--cert-file",
                   self.cert("client.crt"), "--key-file", self.cert("client.key"),
                   "--token-file", self.token_file(token), "-o", "json", *argv, env=env)

    def test_flags_carry_tls_client_certificate_and_token(self):
        rc, out, err = self.secured("admin", "create-run", "secured-1", "w1")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["run_id"], "secured-1")
        rc, out, err = self.secured("reader", "get-run", "secured-1")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["workers"], ["w1"])

    def test_environment_twins_carry_them_too(self):
        env = clean_env(CAIRN_TARGET=self.target, CAIRN_CA_FILE=self.cert("ca.crt"),
                        CAIRN_CERT_FILE=self.cert("client.crt"),
                        CAIRN_KEY_FILE=self.cert("client.key"),
                        CAIRN_TOKEN_FILE=self.token_file("team"))
        rc, out, err = ctl("-o", "json", "create-run", "team-a.env", "w", env=env)
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["run_id"], "team-a.env")

    def test_refusals_exit_1_naming_what_is_missing(self):
        rc, _, err = self.secured("reader", "create-run", "secured-denied", "w")
        self.assertEqual(rc, 1, err)
        self.assertIn("permission denied", err)
        rc, _, err = self.secured("team", "create-run", "team-b.x", "w")
        self.assertEqual(rc, 1, err)
        self.assertIn("team-a.", err)
        rc, _, err = ctl("--target", self.target, "--ca-file", self.cert("ca.crt"),
                         "--cert-file", self.cert("client.crt"), "--key-file",
                         self.cert("client.key"), "get-run", "secured-1")
        self.assertEqual(rc, 1, err)
        self.assertIn("authorization", err)
        rc, _, err = self.secured("admin", "get-run", "secured-denied")
        self.assertEqual(rc, 3, err)  # the denied create stored nothing
        self.assertEqual(self.secured("admin", "create-run", "team-a.doomed", "w")[0], 0)
        rc, _, err = self.secured("team", "delete-run", "team-a.doomed")
        self.assertEqual(rc, 1, err)
        self.assertIn("DeleteRun needs role admin", err)
        rc, out, err = self.secured("admin", "delete-run", "team-a.doomed")
        self.assertEqual((rc, json.loads(out)["existed"]), (0, True), err)

    def test_health_needs_tls_but_no_token(self):
        rc, out, err = ctl("--target", self.target, "--ca-file", self.cert("ca.crt"),
                           "--cert-file", self.cert("client.crt"), "--key-file",
                           self.cert("client.key"), "health")
        self.assertEqual((rc, out), (0, b"status: SERVING\n"), err)
        rc, _, err = ctl("--target", self.target, "health")  # plaintext to a TLS port
        self.assertEqual(rc, 5, err)
        rc, _, err = ctl("--target", self.target, "--ca-file", self.cert("ca.crt"), "health")
        self.assertEqual(rc, 5, err)  # mutual TLS: no client certificate

    def test_a_token_is_not_sent_in_plaintext_off_loopback(self):
        # Refused when the client is made: nothing is sent to 10.0.0.1.
        rc, _, err = ctl("--target", "10.0.0.1:7070", "--token-file", self.token_file("admin"),
                         "health")
        self.assertEqual(rc, 2, err)
        self.assertIn("token", err)
        self.assertIn("10.0.0.1:7070", err)
        self.assertNotIn(self.TOKENS["admin"][0], err)


def main():
    global ARGS, PG
    ap = argparse.ArgumentParser()
    ap.add_argument("--cairnd", required=True)
    ap.add_argument("--cairnctl", required=True)
    ap.add_argument("--certs", required=True, help="cairn-test-certs")
    ARGS, rest = ap.parse_known_args()
    if STORE == "postgres":
        import pgcluster
        try:
            PG = pgcluster.PgCluster()
        except pgcluster.Unavailable as e:
            print("SKIPPED: PostgreSQL: %s" % e, flush=True)
            sys.exit(77)
        atexit.register(lambda: (PG.stop(), PG.cleanup()))
        PG.start()
    elif STORE != "sqlite":
        sys.exit("CAIRN_TEST_STORE=%s: no such store" % STORE)
    unittest.main(argv=[sys.argv[0], "-v"] + rest)


if __name__ == "__main__":
    main()
