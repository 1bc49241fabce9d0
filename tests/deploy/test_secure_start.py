"""cairnd started the way deploy/ configures it, with TLS and tokens, on
loopback only.

Each configuration is read from the deploy file itself, not restated here:
the Dockerfile's ENV, the StatefulSet's env and init container, the systemd
unit's Environment= lines with cairnd.env's example lines uncommented (but
CAIRN_INSECURE). Paths under /etc/cairn and /var/lib/cairn are moved into a
temporary directory, and the listen addresses become 127.0.0.1:0 (nothing
leaves loopback; ports are the kernel's). Certificates are made now by
cairn-test-certs (a CA, a server certificate for localhost and 127.0.0.1, a
client certificate); the tokens file is written 0600.

It asserts that each configuration serves TLS and asks for a token; that the
image's HEALTHCHECK command and the manifests' httpGet probes, as written,
report healthy against it (and unhealthy against a 503 and against
nothing); that the same configuration without TLS, off loopback, is refused
before it binds with one line naming --insecure; that a tokens file as a
Kubernetes Secret volume lays it out (links into ..data/, mode 0440) is
refused, which is why the manifests copy it, and the copy is served; that
the rotation commands the manifest's comments give reload cairnd when it is
PID 1 of a PID namespace, as in its container; and that the unit's
ExecReload (SIGHUP) rotates the tokens.

usage: test_secure_start.py --deploy DIR --cairnd PATH --cairnctl PATH --certs PATH
"""
import argparse
import glob
import http.server
import json
import os
import re
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

import yaml

ARGS = None
START_DEADLINE_S = 30
RELOAD_DEADLINE_S = 15
ROOTS = ("/etc/cairn", "/var/lib/cairn", "/run/cairn")   # moved into the temp dir
TOKEN = "deploy-test-token-0123456789abcdef"
TOKEN_2 = "deploy-test-token-rotated-fedcba9876543210"


def sha256_hex(text):
    import hashlib
    return hashlib.sha256(text.encode()).hexdigest()


def write_tokens(path, *tokens):
    """A tokens file, mode 0600, replaced atomically (write beside, rename)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".new"
    with open(tmp, "w") as f:
        for i, t in enumerate(tokens):
            f.write(f"ops-{i} {sha256_hex(t)} admin *\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def clean_env():
    return {k: v for k, v in os.environ.items()
            if not k.startswith("CAIRN_") and k != "NOTIFY_SOCKET"}


class Sandbox:
    """A temporary root for /etc/cairn, /var/lib/cairn and /run/cairn, with
    the certificates cairn-test-certs makes."""

    def __init__(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="cairn-deploy-")
        self.root = self.tmp.name
        self.certs = os.path.join(self.root, "certs")
        os.makedirs(self.certs)
        subprocess.run([ARGS.certs, self.certs], check=True, timeout=60)
        for r in ROOTS:
            os.makedirs(self.root + r, mode=0o700, exist_ok=True)

    def path(self, p):
        """p moved into the sandbox when it is under one of ROOTS."""
        for r in ROOTS:
            if p == r or p.startswith(r + "/"):
                return self.root + p
        return p

    def cert(self, name):
        return os.path.join(self.certs, name)

    def place(self, name, dest):
        """Copies certs/name to the (moved) path dest, mode 0600."""
        dest = self.path(dest)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copyfile(self.cert(name), dest)
        os.chmod(dest, 0o600)
        return dest

    def close(self):
        self.tmp.cleanup()


def loopback(env, sandbox):
    """The deploy env with its paths moved into the sandbox and its listen
    addresses on 127.0.0.1, ports picked by the kernel."""
    out = {}
    for k, v in env.items():
        if k in ("CAIRN_LISTEN", "CAIRN_METRICS_LISTEN") and v != "off":
            v = "127.0.0.1:0"
        elif v.startswith("/"):
            v = sandbox.path(v)
        out[k] = v
    return out


class Cairnd:
    """cairnd with env (and nothing else): started, its addresses read from
    its output within a deadline, stopped by PID."""

    def __init__(self, env, tmpdir, prefix=()):
        self.err_path = os.path.join(tmpdir, f"cairnd-{time.monotonic_ns()}.err")
        self.err = open(self.err_path, "w+")
        self.proc = subprocess.Popen([*prefix, ARGS.cairnd], env={**clean_env(), **env},
                                     stdout=subprocess.PIPE, stderr=self.err, text=True)
        self.pid = self.proc.pid   # cairnd's, on this side of any PID namespace
        self.target = self.metrics = None

    def wait_serving(self):
        deadline = time.monotonic() + START_DEADLINE_S
        line = ""
        while time.monotonic() < deadline and not line:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline()
                break
            if self.proc.poll() is not None:
                break
        if not line.startswith("listening on "):
            raise AssertionError(f"cairnd did not serve: stdout {line!r}, "
                                 f"exit {self.proc.poll()}, stderr:\n{self.stderr()}")
        self.target = line.split()[-1]
        # The "serving" log line follows the stdout line; text or JSON.
        while time.monotonic() < deadline:
            m = re.search(r"metrics on (127\.0\.0\.1:\d+|off)", self.stderr())
            if m:
                self.metrics = None if m.group(1) == "off" else m.group(1)
                return self
            time.sleep(0.05)
        raise AssertionError(f"no 'metrics on' line:\n{self.stderr()}")

    def wait_exit(self):
        try:
            rc = self.proc.wait(timeout=START_DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"cairnd still runs:\n{self.stderr()}")
        return rc, self.proc.stdout.read(), self.stderr()

    def stderr(self):
        self.err.flush()
        with open(self.err_path) as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc.stdout.close()
        self.err.close()


def cairnctl(target, *argv, token=None, sandbox=None, extra=()):
    cmd = [ARGS.cairnctl, "--target", target, "--timeout", "10s", "--ca-file",
           sandbox.cert("ca.crt"), *extra]
    if token:
        path = os.path.join(sandbox.root, f"token-{time.monotonic_ns()}")
        with open(path, "w") as f:
            f.write(token + "\n")
        os.chmod(path, 0o600)
        cmd += ["--token-file", path]
    p = subprocess.run(cmd + list(argv), env=clean_env(), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=30)
    return p.returncode, p.stdout, p.stderr


def http_get(addr, path):
    try:
        with urllib.request.urlopen(f"http://{addr}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


# ---- the deploy files, read ----

def dockerfile_final_stage():
    with open(os.path.join(ARGS.deploy, "Dockerfile")) as f:
        joined = re.sub(r"\\\n", " ", f.read())
    lines = [l.strip() for l in joined.splitlines()
             if l.strip() and not l.strip().startswith("#")]
    last_from = max(i for i, l in enumerate(lines) if l.upper().startswith("FROM "))
    return lines[last_from:]


def dockerfile_env():
    env = {}
    for l in dockerfile_final_stage():
        if l.startswith("ENV "):
            for m in re.finditer(r"(\w+)=(\S*)", l[4:]):
                env[m.group(1)] = m.group(2)
    return env


def dockerfile_healthcheck():
    (hc,) = [l for l in dockerfile_final_stage() if l.startswith("HEALTHCHECK")]
    return json.loads(hc[hc.index(" CMD ") + 5:])


def statefulset():
    with open(os.path.join(ARGS.deploy, "k8s", "single", "statefulset.yaml")) as f:
        (sts,) = [d for d in yaml.safe_load_all(f) if d and d["kind"] == "StatefulSet"]
    return sts["spec"]["template"]["spec"]


def systemd_env():
    """The unit's Environment= lines, then cairnd.env with every example
    line uncommented, as systemd reads it (a later line wins), but
    CAIRN_INSECURE, the opt-out."""
    with open(os.path.join(ARGS.deploy, "systemd", "cairnd.service")) as f:
        unit = f.read()
    env = dict(re.findall(r"^Environment=(CAIRN_\w+)=(\S+)$", unit, re.M))
    with open(os.path.join(ARGS.deploy, "systemd", "cairnd.env")) as f:
        text = f.read()
    for k, v in re.findall(r"^#?(CAIRN_\w+)=(\S+)$", text, re.M):
        if k != "CAIRN_INSECURE":
            env[k] = v
    return env, unit


def kubelet_secret_volume(directory, files, mode):
    """A Secret volume as the kubelet writes it: the files in a timestamped
    directory, ..data a link to it, and each name a link to ..data/name."""
    stamp = "..2026_12_06_13_00_00.000000001"
    os.makedirs(os.path.join(directory, stamp))
    for name, src in files.items():
        dest = os.path.join(directory, stamp, name)
        shutil.copyfile(src, dest)
        os.chmod(dest, mode)
    os.symlink(stamp, os.path.join(directory, "..data"))
    for name in files:
        os.symlink(os.path.join("..data", name), os.path.join(directory, name))


class Base(unittest.TestCase):
    def setUp(self):
        self.sandbox = Sandbox()
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            p.stop()
        self.sandbox.close()

    def start(self, env, prefix=()):
        p = Cairnd(env, self.sandbox.root, prefix)
        self.procs.append(p)
        return p

    def assert_tls_and_tokens(self, d, extra=()):
        """TLS verified against the test CA; a call without a token is
        UNAUTHENTICATED, with one it answers."""
        rc, out, err = cairnctl(d.target, "list-runs", sandbox=self.sandbox, extra=extra)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("unauthenticated", err.lower())
        rc, out, err = cairnctl(d.target, "list-runs", token=TOKEN, sandbox=self.sandbox,
                                extra=extra)
        self.assertEqual(rc, 0, out + err)
        rc, out, err = cairnctl(d.target, "health", sandbox=self.sandbox, extra=extra)
        self.assertEqual((rc, out), (0, "status: SERVING\n"), err)

    def assert_refused_naming_insecure(self, env):
        """Off loopback (0.0.0.0, port 0) without TLS: exit 2 before binding,
        one line naming --insecure, nothing served."""
        env = {**env, "CAIRN_LISTEN": "0.0.0.0:0"}
        rc, out, err = self.start(env).wait_exit()
        self.assertEqual(rc, 2, err)
        self.assertEqual(out, "")
        lines = err.strip().splitlines()
        self.assertEqual(len(lines), 1, err)
        self.assertIn("--insecure", lines[0])
        self.assertIn("0.0.0.0:0", lines[0])


class Image(Base):
    """The Dockerfile's ENV, with the files the image expects mounted."""

    def setUp(self):
        super().setUp()
        self.image_env = dockerfile_env()
        self.assertNotIn("CAIRN_INSECURE", self.image_env)
        self.env = loopback(self.image_env, self.sandbox)
        self.sandbox.place("server.crt", self.image_env["CAIRN_TLS_CERT"])
        self.sandbox.place("server.key", self.image_env["CAIRN_TLS_KEY"])
        write_tokens(self.env["CAIRN_AUTH_TOKENS"], TOKEN)

    def healthcheck(self, metrics_addr):
        """The HEALTHCHECK command exactly as written, with the container's
        environment and CAIRN_METRICS_LISTEN's port made the test's."""
        cmd = dockerfile_healthcheck()
        env = {**clean_env(), **self.image_env, "CAIRN_METRICS_LISTEN": metrics_addr}
        p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=30)
        return p.returncode, p.stdout + p.stderr

    def test_image_env_serves_tls_with_tokens_and_its_healthcheck_reports_healthy(self):
        d = self.start(self.env).wait_serving()
        self.assertIn("auth tokens: 1 tokens from", d.stderr())
        self.assertIn("TLS: --tls-cert", d.stderr())
        self.assert_tls_and_tokens(d)
        rc, out = self.healthcheck(d.metrics)
        self.assertEqual(rc, 0, out)

    def test_healthcheck_fails_on_503_and_on_a_closed_port(self):
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(503 if self.path == "/healthz" else 404)
                self.end_headers()
                self.wfile.write(b"shutting down\n")

            def log_message(self, *a):
                pass

        srv = http.server.HTTPServer(("127.0.0.1", 0), H)
        t = threading.Thread(target=srv.serve_forever, daemon=True)
        t.start()
        try:
            rc, out = self.healthcheck(f"0.0.0.0:{srv.server_address[1]}")
            self.assertNotEqual(rc, 0, out)
        finally:
            srv.shutdown()
            srv.server_close()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed = s.getsockname()[1]
        start = time.monotonic()
        rc, out = self.healthcheck(f"0.0.0.0:{closed}")
        self.assertNotEqual(rc, 0, out)
        self.assertLess(time.monotonic() - start, 5.0)

    def test_image_env_without_tls_off_loopback_is_refused_naming_insecure(self):
        # `docker run -e CAIRN_TLS_CERT= -e CAIRN_TLS_KEY=`: an empty variable is unset.
        self.assert_refused_naming_insecure({**self.env, "CAIRN_TLS_CERT": "",
                                             "CAIRN_TLS_KEY": ""})
        self.assert_refused_naming_insecure({**self.env, "CAIRN_AUTH_TOKENS": ""})

    def test_image_env_without_the_mounted_files_exits_naming_the_file(self):
        os.unlink(self.env["CAIRN_AUTH_TOKENS"])
        rc, out, err = self.start(self.env).wait_exit()
        self.assertNotEqual(rc, 0)
        self.assertNotIn("listening on", out)
        self.assertIn(self.env["CAIRN_AUTH_TOKENS"], err)
        write_tokens(self.env["CAIRN_AUTH_TOKENS"], TOKEN)
        os.unlink(self.env["CAIRN_TLS_CERT"])
        rc, out, err = self.start(self.env).wait_exit()
        self.assertNotEqual(rc, 0)
        self.assertNotIn("listening on", out)
        self.assertIn(self.env["CAIRN_TLS_CERT"], err)


class Kubernetes(Base):
    """The StatefulSet's cairnd env and its tokens init container, with the
    Secrets laid out as the kubelet lays them out."""

    def setUp(self):
        super().setUp()
        self.pod = statefulset()
        (self.cairnd,) = [c for c in self.pod["containers"] if c["name"] == "cairnd"]
        manifest_env = {e["name"]: e["value"] for e in self.cairnd["env"] if "value" in e}
        self.assertNotIn("CAIRN_INSECURE", manifest_env)
        self.manifest_env = manifest_env
        self.env = loopback(manifest_env, self.sandbox)
        volumes = {v["name"]: v for v in self.pod["volumes"]}
        # Each Secret volume where the cairnd container mounts it, as the
        # kubelet writes one with fsGroup: links into ..data/, files 0440.
        self.secret_dirs = {}
        for m in self.cairnd["volumeMounts"]:
            secret = volumes.get(m["name"], {}).get("secret")  # "data" is a claim
            if not secret:
                continue
            files = {"cairn-tls": {"tls.crt": self.sandbox.cert("server.crt"),
                                   "tls.key": self.sandbox.cert("server.key"),
                                   "ca.crt": self.sandbox.cert("ca.crt")}}.get(
                secret["secretName"])
            if files is None:
                tokens_src = os.path.join(self.sandbox.root, "tokens-src")
                write_tokens(tokens_src, TOKEN)
                files = {item["path"]: tokens_src for item in secret["items"]}
            d = self.sandbox.path(m["mountPath"])
            kubelet_secret_volume(d, files, 0o440)
            self.secret_dirs[secret["secretName"]] = m["mountPath"]
        self.assertEqual(set(self.secret_dirs), {"cairn-tls", "cairn-tokens"})

    def run_init_containers(self):
        for c in self.pod.get("initContainers", []):
            cmd = [self.sandbox.path(a) for a in c["command"]]
            os.makedirs(os.path.dirname(cmd[-1]), exist_ok=True)
            subprocess.run(cmd, check=True, timeout=30)

    def test_a_tokens_file_as_a_secret_volume_lays_it_out_is_refused(self):
        # Why the manifests copy it: cairnd follows the links and finds 0440.
        secret_file = os.path.join(self.secret_dirs["cairn-tokens"], "tokens")
        self.assertTrue(os.path.islink(self.sandbox.path(secret_file)))
        rc, out, err = self.start({**self.env,
                                   "CAIRN_AUTH_TOKENS": self.sandbox.path(secret_file)}
                                  ).wait_exit()
        self.assertNotEqual(rc, 0)
        self.assertNotIn("listening on", out)
        self.assertIn("mode 0440", err)

    def test_manifest_env_serves_tls_through_secret_links_and_the_probes_pass(self):
        self.run_init_containers()
        copy = self.env["CAIRN_AUTH_TOKENS"]
        st = os.lstat(copy)
        self.assertTrue(stat.S_ISREG(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        self.assertTrue(os.path.islink(self.env["CAIRN_TLS_CERT"]))
        d = self.start(self.env).wait_serving()
        self.assert_tls_and_tokens(d)
        # The kubelet's httpGet probes, on the port the manifest names.
        ports = {p["name"]: p["containerPort"] for p in self.cairnd["ports"]}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            get = self.cairnd[probe]["httpGet"]
            port = ports.get(get["port"], get["port"])
            self.assertEqual(f":{port}", ":" + self.manifest_env["CAIRN_METRICS_LISTEN"]
                             .rsplit(":", 1)[1], probe)
            self.assertEqual(http_get(d.metrics, get["path"]), (200, "ok\n"), probe)
        # What the scrape annotations point Prometheus at.
        ann = self.pod_annotations()
        self.assertEqual(ann["prometheus.io/port"], str(ports["metrics"]))
        status, body = http_get(d.metrics, ann["prometheus.io/path"])
        self.assertEqual(status, 200)
        self.assertIn("cairn_build_info", body)

    def test_manifest_env_without_tls_off_loopback_is_refused_naming_insecure(self):
        self.run_init_containers()
        self.assert_refused_naming_insecure(
            {k: v for k, v in self.env.items() if not k.startswith("CAIRN_TLS_")})

    def test_the_documented_kubectl_exec_rotation_reloads_cairnd_as_pid_1(self):
        # In its container cairnd is PID 1, and Linux drops a signal sent to
        # a namespace's PID 1 from inside unless PID 1 handles or blocks it:
        # the commands the manifest's comments give, run in a PID namespace
        # of cairnd's own (as `kubectl exec` would run them), must reload it.
        for tool in ("unshare", "nsenter"):
            if not shutil.which(tool):
                self.skipTest(f"{tool} is not installed")
        probe = subprocess.run(["unshare", "--pid", "--fork", "true"], stderr=subprocess.PIPE,
                               text=True, timeout=30)
        if probe.returncode != 0:
            self.skipTest(f"cannot make a PID namespace here: {probe.stderr.strip()}")
        with open(os.path.join(ARGS.deploy, "k8s", "single", "statefulset.yaml")) as f:
            comments = "\n".join(re.sub(r"^#\s?", "", l) for l in f.read().splitlines()
                                 if l.startswith("#"))
        comments = re.sub(r"\\\n\s*", "", comments)
        execs = re.findall(r"kubectl exec cairn-0 -c cairnd -- sh -c '([^']*)'", comments)
        (tls_cmd,) = [c for c in execs if "install" not in c]
        (tokens_cmd,) = [c for c in execs if "install" in c]
        self.assertEqual(tls_cmd, "kill -HUP 1")

        self.run_init_containers()
        d = self.start(self.env, prefix=("unshare", "--pid", "--fork", "--kill-child"))
        deadline = time.monotonic() + START_DEADLINE_S
        def children():
            with open(f"/proc/{d.proc.pid}/task/{d.proc.pid}/children") as f:
                return f.read().split()

        while not children():   # unshare forks cairnd: PID 1 inside
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.05)
        d.pid = int(children()[0])
        d.wait_serving()

        def in_pod(cmd):
            words = cmd.split(" ")
            cmd = " ".join(self.sandbox.path(w) for w in words)
            subprocess.run(["nsenter", "-t", str(d.pid), "-p", "--", "sh", "-c", cmd],
                           check=True, timeout=30)

        def wait_log(text, count):
            deadline = time.monotonic() + RELOAD_DEADLINE_S
            while d.stderr().count(text) < count:
                self.assertLess(time.monotonic(), deadline, d.stderr())
                time.sleep(0.05)

        in_pod(tls_cmd)
        wait_log("TLS reloaded", 1)
        # A new token in the Secret (the kubelet's rewrite, done here by
        # hand), then the tokens command: copy again, SIGHUP.
        secret = self.sandbox.path(os.path.join(self.secret_dirs["cairn-tokens"], "tokens"))
        write_tokens(os.path.realpath(secret), TOKEN_2)
        in_pod(tokens_cmd)
        wait_log("again: 1 tokens in force", 2)
        rc, out, err = cairnctl(d.target, "list-runs", token=TOKEN_2, sandbox=self.sandbox)
        self.assertEqual(rc, 0, out + err)
        rc, out, err = cairnctl(d.target, "list-runs", token=TOKEN, sandbox=self.sandbox)
        self.assertEqual(rc, 1, out + err)
        self.assertEqual(stat.S_IMODE(os.lstat(self.env["CAIRN_AUTH_TOKENS"]).st_mode), 0o600)

    def pod_annotations(self):
        with open(os.path.join(ARGS.deploy, "k8s", "single", "statefulset.yaml")) as f:
            (sts,) = [d for d in yaml.safe_load_all(f) if d and d["kind"] == "StatefulSet"]
        return sts["spec"]["template"]["metadata"]["annotations"]


class Systemd(Base):
    """The unit's environment and cairnd.env's TLS and tokens block."""

    def setUp(self):
        super().setUp()
        env, self.unit = systemd_env()
        self.unit_env = env
        for k in ("CAIRN_TLS_CERT", "CAIRN_TLS_KEY", "CAIRN_TLS_CLIENT_CA",
                  "CAIRN_AUTH_TOKENS", "CAIRN_METRICS_LISTEN", "CAIRN_LISTEN"):
            self.assertIn(k, env)
        self.env = loopback(env, self.sandbox)
        self.sandbox.place("server.crt", env["CAIRN_TLS_CERT"])
        self.sandbox.place("server.key", env["CAIRN_TLS_KEY"])
        self.sandbox.place("ca.crt", env["CAIRN_TLS_CLIENT_CA"])
        write_tokens(self.env["CAIRN_AUTH_TOKENS"], TOKEN)
        self.client = ("--cert-file", self.sandbox.cert("client.crt"),
                       "--key-file", self.sandbox.cert("client.key"))

    def test_env_file_serves_mutual_tls_with_tokens_and_healthz(self):
        d = self.start(self.env).wait_serving()
        self.assert_tls_and_tokens(d, extra=self.client)
        # Mutual TLS: without a client certificate no call gets through.
        rc, out, err = cairnctl(d.target, "list-runs", token=TOKEN, sandbox=self.sandbox)
        self.assertNotEqual(rc, 0, out)
        self.assertEqual(http_get(d.metrics, "/healthz"), (200, "ok\n"))

    def test_exec_reload_rotates_the_tokens(self):
        d = self.start(self.env).wait_serving()
        write_tokens(self.env["CAIRN_AUTH_TOKENS"], TOKEN_2)
        (reload,) = re.findall(r"^ExecReload=(.*)$", self.unit, re.M)
        cmd = reload.replace("$MAINPID", str(d.proc.pid)).split()
        subprocess.run(cmd, check=True, timeout=10)
        deadline = time.monotonic() + RELOAD_DEADLINE_S
        while "again: 1 tokens in force" not in d.stderr():
            self.assertLess(time.monotonic(), deadline, d.stderr())
            time.sleep(0.05)
        rc, out, err = cairnctl(d.target, "list-runs", token=TOKEN_2, sandbox=self.sandbox,
                                extra=self.client)
        self.assertEqual(rc, 0, out + err)
        rc, out, err = cairnctl(d.target, "list-runs", token=TOKEN, sandbox=self.sandbox,
                                extra=self.client)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("unauthenticated", err.lower())
        self.assertEqual(d.proc.poll(), None)

    def test_env_file_without_tls_off_loopback_is_refused_naming_insecure(self):
        self.assert_refused_naming_insecure(
            {k: v for k, v in self.env.items() if not k.startswith("CAIRN_TLS_")})


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--deploy", required=True)
    ap.add_argument("--cairnd", required=True)
    ap.add_argument("--cairnctl", required=True)
    ap.add_argument("--certs", required=True)
    ARGS, rest = ap.parse_known_args()
    unittest.main(argv=[sys.argv[0], "-v"] + rest)


if __name__ == "__main__":
    main()
