"""`cairnctl health`, the image's HEALTHCHECK: exit 0 and SERVING against a
running cairnd; exit 1 within --deadline-ms when nothing answers (a health
check must end before its supervisor's timeout, not after libcairn's 60 s
of retries); exit 2 for a bad --deadline-ms.

usage: test_cairnctl_health.py --cairnd PATH --cairnctl PATH
"""
import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

ARGS = None


def cairnctl(*argv, timeout=30):
    start = time.monotonic()
    p = subprocess.run([ARGS.cairnctl, *argv], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=timeout,
                       env={k: v for k, v in os.environ.items() if k != "CAIRN_TARGET"})
    return p.returncode, p.stdout, p.stderr, time.monotonic() - start


def closed_port():
    """A port nothing listens on: bound, then closed, never listened on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Health(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="cairn-health-")
        cls.proc = subprocess.Popen(
            [ARGS.cairnd, "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
             "--data-dir", os.path.join(cls.tmp.name, "data")],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = cls.proc.stdout.readline()
        if not line.startswith("listening on "):
            cls.proc.kill()
            raise RuntimeError(f"cairnd said {line!r}")
        cls.target = line.split()[-1]

    @classmethod
    def tearDownClass(cls):
        cls.proc.send_signal(signal.SIGTERM)
        cls.proc.wait(timeout=30)
        cls.tmp.cleanup()

    def test_serving_server_exits_0_and_prints_serving(self):
        rc, out, err, _ = cairnctl("--target", self.target, "--deadline-ms", "3000", "health")
        self.assertEqual((rc, out), (0, "SERVING\n"), err)

    def test_target_from_the_environment(self):
        p = subprocess.run([ARGS.cairnctl, "--deadline-ms", "3000", "health"],
                           env={**os.environ, "CAIRN_TARGET": self.target},
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
        self.assertEqual((p.returncode, p.stdout), (0, "SERVING\n"), p.stderr)

    def test_nothing_listening_exits_1_within_the_deadline(self):
        rc, out, err, took = cairnctl("--target", f"127.0.0.1:{closed_port()}",
                                      "--deadline-ms", "1000", "health")
        self.assertEqual(rc, 1, out + err)
        self.assertIn("deadline", err.lower())
        self.assertLess(took, 5.0)

    def test_bad_deadline_exits_2(self):
        for bad in ("0", "-1", "abc", "4294967296", ""):
            rc, _, err, _ = cairnctl("--deadline-ms", bad, "health")
            self.assertEqual(rc, 2, bad)
            self.assertIn("--deadline-ms", err)


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--cairnd", required=True)
    ap.add_argument("--cairnctl", required=True)
    ARGS, rest = ap.parse_known_args()
    unittest.main(argv=[sys.argv[0], "-v"] + rest)


if __name__ == "__main__":
    main()
