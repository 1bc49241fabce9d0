"""`cairnctl health`, an operator's check (the image's HEALTHCHECK and the
Kubernetes probes get /healthz instead: over TLS, cairnctl would need the
CA, a name the certificate carries and, with mutual TLS, a client
certificate; test_secure_start.py runs those): exit 0 and SERVING against a
running cairnd; exit 5 (unavailable) within a few seconds when nothing
answers, with --timeout and without it (a health check must end before its
supervisor's timeout, not after libcairn's 60 s of retries); exit 2 for a
bad --timeout or CAIRN_TIMEOUT.

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
        rc, out, err, _ = cairnctl("--target", self.target, "--timeout", "3s", "health")
        self.assertEqual((rc, out), (0, "status: SERVING\n"), err)

    def test_target_from_the_environment(self):
        p = subprocess.run([ARGS.cairnctl, "--timeout", "3s", "health"],
                           env={**os.environ, "CAIRN_TARGET": self.target},
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
        self.assertEqual((p.returncode, p.stdout), (0, "status: SERVING\n"), p.stderr)

    def test_nothing_listening_exits_5_within_the_timeout(self):
        for flags in (["--timeout", "1s"], []):
            rc, out, err, took = cairnctl("--target", f"127.0.0.1:{closed_port()}", *flags,
                                          "health")
            self.assertEqual(rc, 5, out + err)
            self.assertIn("unavailable", err.lower())
            self.assertLess(took, 5.0)

    def test_bad_timeout_exits_2_naming_the_flag_or_variable(self):
        for bad in ("0s", "-1s", "abc", "3", "5000000h", ""):
            rc, _, err, _ = cairnctl("--timeout", bad, "health")
            self.assertEqual(rc, 2, bad)
            self.assertIn("--timeout", err)
        p = subprocess.run([ARGS.cairnctl, "health"], env={**os.environ, "CAIRN_TIMEOUT": "3"},
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
        self.assertEqual(p.returncode, 2)
        self.assertIn("CAIRN_TIMEOUT", p.stderr)


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--cairnd", required=True)
    ap.add_argument("--cairnctl", required=True)
    ARGS, rest = ap.parse_known_args()
    unittest.main(argv=[sys.argv[0], "-v"] + rest)


if __name__ == "__main__":
    main()
