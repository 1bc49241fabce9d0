#!/usr/bin/python3
"""Online backup under load, then restore (docs/operations.md, "Backup" and
"Restore"). Callers append events and create checkpoints of a few hundred
KiB to several runs of one cairnd, with --checkpoint-retention 2, so
retention deletes old checkpoints (and their snapshot files) all the
while; `cairnd backup` runs three times meanwhile. Each backup must pass
`cairnd verify`; restored into a new data dir (a copy, as an operator
restores), a cairnd started on it must load every checkpoint it lists,
bytes matching what was uploaded, and hold every event acknowledged before
that backup began, with its seq and payload.

Run: test_backup.py --cairnd PATH --proto-dir DIR --protoc PATH
--grpc-plugin PATH. Processes run on 127.0.0.1 with ephemeral ports in temp
dirs and are stopped by PID; nothing waits by sleeping (the load runs
until the backups are done).
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
import unittest

import grpc

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import stubs  # noqa: E402

ARGS = None
pb = pb_grpc = None
RUNS = 4
BACKUPS = 3
CHECKPOINT_EVERY = 4      # appends between a caller's checkpoints
SNAPSHOT_MIN, SNAPSHOT_MAX = 64 * 1024, 512 * 1024
CHUNK = 256 * 1024
RPC_S = 60


def die_with_parent():
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


class Cairnd:
    def __init__(self, data_dir, log, extra=()):
        self.proc = subprocess.Popen(
            [ARGS.cairnd, "--listen", "127.0.0.1:0", "--data-dir", data_dir] + list(extra),
            stdout=subprocess.PIPE, stderr=log, preexec_fn=die_with_parent)
        line = self.proc.stdout.readline().decode()
        m = re.match(r"listening on (127\.0\.0\.1:\d+)", line)
        if not m:
            self.proc.wait()
            raise AssertionError("cairnd did not start: %r" % line)
        self.channel = grpc.insecure_channel(m.group(1))
        self.stub = pb_grpc.CoordinatorStub(self.channel)

    def stop(self):
        self.channel.close()
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=60) == 0, "cairnd did not stop cleanly"


def upload(stub, run_id, events_count, data, key):
    def parts():
        yield pb.CreateCheckpointRequest(header=pb.CheckpointHeader(
            idempotency_key=key, run_id=run_id, run_state="s", events_count=events_count,
            snapshot_size=len(data)))
        for i in range(0, len(data), CHUNK):
            yield pb.CreateCheckpointRequest(chunk=data[i:i + CHUNK])
    return stub.CreateCheckpoint(parts(), timeout=RPC_S)


class Caller(threading.Thread):
    """Appends to one run and checkpoints it, until told to stop; keeps
    every acknowledged event (seq -> payload) and every uploaded snapshot
    (sha256 -> bytes)."""

    def __init__(self, stub, run_id, seed):
        super().__init__(daemon=True)
        self.stub, self.run_id, self.rnd = stub, run_id, random.Random(seed)
        self.lock = threading.Lock()
        self.acked = {}
        self.snapshots = {}
        self.checkpoints = 0
        self.stop_flag = threading.Event()
        self.error = None

    def acked_now(self):
        with self.lock:
            return dict(self.acked)

    def run(self):
        n = 0
        try:
            while not self.stop_flag.is_set():
                n += 1
                payload = ("%s event %d" % (self.run_id, n)).encode()
                r = self.stub.AppendEvents(pb.AppendEventsRequest(
                    idempotency_key="%s-append-%d" % (self.run_id, n), run_id=self.run_id,
                    events=[pb.Event(type="step", payload=payload)]), timeout=RPC_S)
                with self.lock:
                    self.acked[r.first_seq] = payload
                if n % CHECKPOINT_EVERY == 0:
                    data = self.rnd.randbytes(self.rnd.randint(SNAPSHOT_MIN, SNAPSHOT_MAX))
                    with self.lock:
                        self.snapshots[hashlib.sha256(data).hexdigest()] = data
                    upload(self.stub, self.run_id, r.last_seq, data,
                           "%s-checkpoint-%d" % (self.run_id, n))
                    self.checkpoints += 1
        except Exception as e:  # reported by the test
            self.error = e


def read_all(stub, run_id):
    events, seq = {}, 1
    while True:
        page = stub.ReadEvents(pb.ReadEventsRequest(run_id=run_id, from_seq=seq,
                                                    max_events=1000), timeout=RPC_S)
        if not page.events:
            return events
        for e in page.events:
            events[e.seq] = e.payload
        seq = page.next_seq


def load(stub, run_id, checkpoint_id):
    meta, data = None, b""
    for chunk in stub.LoadCheckpoint(pb.LoadCheckpointRequest(
            run_id=run_id, checkpoint_id=checkpoint_id), timeout=RPC_S):
        if chunk.HasField("checkpoint"):
            meta = chunk.checkpoint
        data += chunk.data
    return meta, data


class Backup(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="cairn-backup-")
        os.chmod(self.tmp, 0o700)
        self.log = open(os.path.join(self.tmp, "cairnd.log"), "ab")

    def tearDown(self):
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def cairnd_tool(self, *args):
        return subprocess.run([ARGS.cairnd] + list(args), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, universal_newlines=True, timeout=300)

    def test_backups_under_load_restore_every_checkpoint_and_every_acknowledged_event(self):
        data_dir = os.path.join(self.tmp, "data")
        server = Cairnd(data_dir, self.log, ["--checkpoint-retention", "2"])
        callers = []
        try:
            for i in range(RUNS):
                run_id = "run-%d" % i
                server.stub.CreateRun(pb.CreateRunRequest(
                    idempotency_key="create-" + run_id, run_id=run_id, workers=["w0"]),
                    timeout=RPC_S)
                callers.append(Caller(server.stub, run_id, 1000 + i))
            for c in callers:
                c.start()
            backups = []
            for b in range(BACKUPS):
                # Under load: wait until every caller made checkpoints
                # enough for retention to be deleting.
                while min(c.checkpoints for c in callers) < 3 * (b + 1):
                    for c in callers:
                        self.assertIsNone(c.error, "a caller failed: %r" % c.error)
                    callers[0].stop_flag.wait(0.01)
                before = {c.run_id: c.acked_now() for c in callers}
                dest = os.path.join(self.tmp, "backup-%d" % b)
                res = self.cairnd_tool("backup", "--data-dir", data_dir, dest)
                self.assertEqual(res.returncode, 0, res.stdout)
                self.assertEqual(os.stat(dest).st_mode & 0o777, 0o700)
                backups.append((dest, before))
        finally:
            for c in callers:
                c.stop_flag.set()
            for c in callers:
                c.join(timeout=RPC_S)
            server.stop()
        for c in callers:
            self.assertIsNone(c.error, "a caller failed: %r" % c.error)
            # Retention was deleting while the backups ran.
            self.assertGreater(c.checkpoints, 3 * BACKUPS)
        # The backups took their pins away (cairnd only empties pins.db
        # when it starts).
        pins = sqlite3.connect(os.path.join(data_dir, "pins.db"))
        self.assertEqual(pins.execute("SELECT count(*) FROM pins").fetchone()[0], 0)
        pins.close()
        # A backup never writes into a directory that exists.
        res = self.cairnd_tool("backup", "--data-dir", data_dir, backups[0][0])
        self.assertEqual(res.returncode, 1, res.stdout)
        self.assertIn("exists; a backup goes into a new directory", res.stdout)
        snapshots = {}
        for c in callers:
            snapshots.update(c.snapshots)

        for dest, before in backups:
            res = self.cairnd_tool("verify", "--data-dir", dest)
            self.assertEqual(res.returncode, 0, res.stdout)
            self.assertRegex(res.stdout, r"^ok: ")
            restored = dest + "-restored"
            shutil.copytree(dest, restored, symlinks=True)
            os.chmod(restored, 0o700)
            server = Cairnd(restored, self.log)
            try:
                loaded = 0
                for run_id, acked in before.items():
                    self.assertTrue(acked, "no event acknowledged before the backup")
                    events = read_all(server.stub, run_id)
                    for seq, payload in acked.items():
                        self.assertEqual(events.get(seq), payload,
                                         "%s seq %d acknowledged before backup %s" %
                                         (run_id, seq, dest))
                    listed = server.stub.ListCheckpoints(pb.ListCheckpointsRequest(
                        run_id=run_id), timeout=RPC_S).checkpoints
                    self.assertTrue(listed, "%s has no checkpoint in %s" % (run_id, dest))
                    for cp in listed:
                        meta, data = load(server.stub, run_id, cp.checkpoint_id)
                        self.assertEqual(meta.checkpoint_id, cp.checkpoint_id)
                        self.assertEqual(hashlib.sha256(data).hexdigest(), cp.snapshot_sha256)
                        self.assertEqual(snapshots.get(cp.snapshot_sha256), data)
                        loaded += 1
                self.assertGreaterEqual(loaded, RUNS)
            finally:
                server.stop()


def setUpModule():
    global pb, pb_grpc, STUBS
    STUBS = tempfile.mkdtemp(prefix="cairn-backup-stubs-")
    pb, pb_grpc, _, _ = stubs.generate(ARGS.protoc, ARGS.proto_dir, ARGS.grpc_plugin, STUBS)


def tearDownModule():
    shutil.rmtree(STUBS, ignore_errors=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    for flag in ("cairnd", "proto-dir", "protoc", "grpc-plugin"):
        p.add_argument("--" + flag, required=True)
    ARGS, rest = p.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
