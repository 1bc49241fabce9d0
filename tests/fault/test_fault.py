#!/usr/bin/python3
"""Exactly-once through real faults: cairn-bench (libcairn, default retry
policy) appends through faultproxy to a real cairnd, and its --verify reads
the log back. Run: test_fault.py --cairnd PATH --bench PATH --proxy PATH.

Processes are started on 127.0.0.1 with ephemeral ports and stopped by PID.
Nothing waits by sleeping: the harness reacts to lines the processes print
(cairnd's address, the bench's progress, the proxy's fault reports).
"""
import argparse
import ctypes
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

ARGS = None
WAIT_S = 120  # a bound on any single wait, not a synchronisation


def die_with_parent():
    """In a child process: die with the harness, so a failed test never
    leaves a server or proxy running (prctl PR_SET_PDEATHSIG)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


class Lines:
    """Collects a pipe's lines on a thread, so they can be awaited."""

    def __init__(self, pipe):
        self.q = queue.Queue()
        self.all = []
        threading.Thread(target=self._pump, args=(pipe,), daemon=True).start()

    def _pump(self, pipe):
        for raw in iter(pipe.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            self.all.append(line)
            self.q.put(line)
        self.q.put(None)

    def wait_for(self, pattern):
        rx = re.compile(pattern)
        while True:
            line = self.q.get(timeout=WAIT_S)
            if line is None:
                raise AssertionError("stream ended before %r; saw: %s" % (pattern, self.all[-20:]))
            m = rx.search(line)
            if m:
                return m


class Cairnd:
    """A cairnd on 127.0.0.1 (port 0: a free one); extra: more flags."""

    def __init__(self, data_dir, log, port=0, extra=()):
        self.proc = subprocess.Popen(
            [ARGS.cairnd, "--listen", "127.0.0.1:%d" % port, "--data-dir", data_dir,
             "--threads", "2", "--metrics-listen", "127.0.0.1:0"] + list(extra),
            stdout=subprocess.PIPE, stderr=log, preexec_fn=die_with_parent)
        line = self.proc.stdout.readline().decode()
        m = re.match(r"listening on 127\.0\.0\.1:(\d+)", line)
        if not m:
            self.proc.wait()
            raise AssertionError("cairnd did not start: %r" % line)
        self.port = int(m.group(1))

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            return self.proc.wait(timeout=WAIT_S)
        return self.proc.returncode


class Proxy:
    def __init__(self, upstream_port, *flags):
        self.proc = subprocess.Popen(
            [sys.executable, ARGS.proxy, "--upstream", "127.0.0.1:%d" % upstream_port] + list(flags),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=die_with_parent)
        line = self.proc.stdout.readline().decode()
        m = re.match(r"listening on 127\.0\.0\.1:(\d+)", line)
        if not m:
            raise AssertionError("faultproxy did not start: %r" % line)
        self.target = "127.0.0.1:" + m.group(1)
        self.events = Lines(self.proc.stderr)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=WAIT_S)
        self.events.wait_for(r"^totals")
        return self.events.all[-1]


def bench(target, *flags):
    return subprocess.Popen([ARGS.bench, "--target", target] + list(flags),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=die_with_parent)


class Harness(unittest.TestCase):
    """A temp dir, the processes a test started (killed at its end), and
    the exactly-once verdict of cairn-bench --verify."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="cairn-fault-")
        self.data = os.path.join(self.dir, "data")
        self.log = open(os.path.join(self.dir, "cairnd.log"), "ab")
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            for pipe in (p.stdout, p.stderr):
                if pipe:
                    pipe.close()
        self.log.close()
        if not os.environ.get("CAIRN_TEST_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def start_cairnd(self, port=0):
        c = Cairnd(self.data, self.log, port)
        self.procs.append(c.proc)
        return c

    def start_proxy(self, port, *flags):
        p = Proxy(port, *flags)
        self.procs.append(p.proc)
        return p

    def finish(self, b):
        out, err = b.communicate(timeout=600)
        out, err = out.decode(), err.decode()
        sys.stderr.write(out)
        return b.returncode, out, err

    def assert_exactly_once(self, rc, out, err, events):
        self.assertEqual(rc, 0, "cairn-bench failed:\n%s\n%s" % (out, err[-2000:]))
        self.assertIn("acknowledged %d appends" % events, out)
        self.assertIn("failed 0", out)
        self.assertRegex(out, r"verify: %d events, seqs 1\.\.%d dense, 0 duplicates, 0 missing, "
                              r"0 committed but unacknowledged, 0 foreign" % (events, events))


class FaultTest(Harness):
    def test_ten_percent_lost_responses_give_exactly_10000_events(self):
        server = self.start_cairnd()
        proxy = self.start_proxy(server.port, "--seed", "7", "--lose", "0.1")
        b = bench(proxy.target, "--requests", "10000", "--concurrency", "8", "--verify")
        self.procs.append(b)
        rc, out, err = self.finish(b)
        self.assert_exactly_once(rc, out, err, 10000)
        totals = proxy.stop()
        lost = int(re.search(r"lost=(\d+)", totals).group(1))
        self.assertGreater(lost, 500, totals)  # the faults did happen
        self.assertIn("retries", out)
        self.assertEqual(server.stop(), 0)

    def test_kill_9_and_restart_mid_run_with_lost_responses(self):
        server = self.start_cairnd()
        port = server.port
        proxy = self.start_proxy(port, "--seed", "11", "--lose", "0.1")
        b = bench(proxy.target, "--requests", "10000", "--concurrency", "8", "--verify",
                  "--progress", "500")
        self.procs.append(b)
        progress = Lines(b.stderr)
        progress.wait_for(r"^progress 3000$")
        server.kill()
        # Down until clients have found it so several times over.
        proxy.events.wait_for(r"^upstream-down 5$")
        server = self.start_cairnd(port)
        out = b.stdout.read().decode()  # stderr is read by `progress`
        b.wait(timeout=WAIT_S)
        sys.stderr.write(out)
        self.assert_exactly_once(b.returncode, out, "\n".join(progress.all), 10000)
        self.assertEqual(server.stop(), 0)
        proxy.stop()

    def test_default_policy_rides_through_a_3_second_restart(self):
        # No proxy: the bench talks to cairnd directly, which is killed and
        # kept down for 3 s (the outage is the fault injected, not a wait
        # for anything). Retries wait for the channel to be ready, so no
        # call fails and nothing is applied twice.
        server = self.start_cairnd()
        port = server.port
        b = bench("127.0.0.1:%d" % port, "--requests", "4000", "--concurrency", "8",
                  "--verify", "--progress", "500")
        self.procs.append(b)
        progress = Lines(b.stderr)
        progress.wait_for(r"^progress 1000$")
        server.kill()
        time.sleep(3)
        server = self.start_cairnd(port)
        out = b.stdout.read().decode()
        b.wait(timeout=WAIT_S)
        sys.stderr.write(out)
        self.assert_exactly_once(b.returncode, out, "\n".join(progress.all), 4000)
        self.assertEqual(server.stop(), 0)

    def test_refused_blackholed_and_delayed_connections_give_exactly_once(self):
        server = self.start_cairnd()
        proxy = self.start_proxy(server.port, "--seed", "3", "--lose", "0.05", "--refuse", "0.2",
                                 "--blackhole", "0.05", "--delay", "0.2", "--delay-ms", "50")
        b = bench(proxy.target, "--requests", "2000", "--concurrency", "8", "--verify")
        self.procs.append(b)
        rc, out, err = self.finish(b)
        self.assert_exactly_once(rc, out, err, 2000)
        totals = proxy.stop()
        for fault in ("refused", "delayed", "lost"):
            self.assertNotRegex(totals, r"\b%s=0\b" % fault, totals)
        self.assertEqual(server.stop(), 0)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--cairnd", required=True)
    p.add_argument("--bench", required=True)
    p.add_argument("--proxy", required=True)
    ARGS, rest = p.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
