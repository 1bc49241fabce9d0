"""deploy/Dockerfile builds, and its image serves securely by default: with
the TLS files and the tokens file mounted where the image expects them,
the HEALTHCHECK (/healthz on the metrics port) reports healthy, cairnctl
inside answers SERVING over TLS and a call without a token is
UNAUTHENTICATED, cairnd runs as uid 10001 with its store 0700 on the
volume, and `docker stop` (SIGTERM) ends it with exit 0. Without the mounts
the container exits naming the missing file; with the TLS variables emptied
it exits 2 naming --insecure.

Needs a working container runtime (docker, else podman), and root to give
the mounted tokens file to uid 10001 (cairnd refuses one it does not own
alone). Without them, or when the daemon does not answer, the test exits
77, which ctest reports as skipped, and prints why: it never passes without
having built and run the image. The build compiles cairn inside the image
and installs packages (network, unless BASE already has them): minutes.

CAIRN_TEST_BASE_IMAGE picks BASE (default debian:bookworm).

usage: test_image.py --source DIR --certs PATH/cairn-test-certs
"""
import argparse
import json
import os
import shutil
import hashlib
import subprocess
import sys
import tempfile
import time
import uuid

SKIP = 77
HEALTHY_WITHIN_S = 180
EXIT_WITHIN_S = 60
RUNTIME_UID = 10001
TOKEN = "image-test-token-0123456789abcdef"


def sh(cmd, timeout=120, check=True):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {p.returncode}\n{p.stdout}{p.stderr}")
    return p


def find_runtime():
    """Returns (runtime path, None) or (None, the reason there is none)."""
    reasons = []
    for name in ("docker", "podman"):
        path = shutil.which(name)
        if not path:
            reasons.append(f"{name}: not installed")
            continue
        try:
            p = sh([path, "info"], timeout=30, check=False)
        except subprocess.TimeoutExpired:
            reasons.append(f"{name}: `{name} info` did not answer in 30 s")
            continue
        if p.returncode == 0:
            return path, None
        last = (p.stderr.strip() or p.stdout.strip()).splitlines()[-1:] or ["no output"]
        reasons.append(f"{name}: `{name} info` failed: {last[0]}")
    return None, "; ".join(reasons)


def mounts(tmp, certs):
    """The files the image expects, owned by uid 10001: /etc/cairn/tls/
    {tls.crt,tls.key,ca.crt} and /etc/cairn/tokens (0600)."""
    subprocess.run([certs, os.path.join(tmp, "certs")], check=True, timeout=60)
    tls = os.path.join(tmp, "tls")
    os.mkdir(tls, 0o700)
    for src, dst in (("server.crt", "tls.crt"), ("server.key", "tls.key"), ("ca.crt", "ca.crt")):
        with open(os.path.join(tmp, "certs", src), "rb") as f:
            data = f.read()
        path = os.path.join(tls, dst)
        with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
            f.write(data)
        os.chown(path, RUNTIME_UID, RUNTIME_UID)
    os.chown(tls, RUNTIME_UID, RUNTIME_UID)
    tokens = os.path.join(tmp, "tokens")
    with open(os.open(tokens, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
        f.write(f"ops {hashlib.sha256(TOKEN.encode()).hexdigest()} admin *\n")
    os.chown(tokens, RUNTIME_UID, RUNTIME_UID)
    return ["-v", f"{tls}:/etc/cairn/tls:ro", "-v", f"{tokens}:/etc/cairn/tokens:ro"]


def exits(rt, tag, flags):
    """Runs the image with flags; returns (exit code, logs) once it exits."""
    cid = sh([rt, "run", "-d", *flags, tag]).stdout.strip()
    try:
        deadline = time.monotonic() + EXIT_WITHIN_S
        while time.monotonic() < deadline:
            state = json.loads(sh([rt, "inspect", cid]).stdout)[0]["State"]
            if not state.get("Running"):
                logs = sh([rt, "logs", cid], check=False)
                return state["ExitCode"], logs.stdout + logs.stderr
            time.sleep(0.5)
        raise AssertionError(f"{flags}: still running after {EXIT_WITHIN_S} s")
    finally:
        sh([rt, "rm", "-f", "-v", cid], check=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", required=True)
    ap.add_argument("--certs", required=True)
    args = ap.parse_args()

    rt, why = find_runtime()
    if not rt:
        print(f"SKIPPED: no working container runtime ({why}); "
              "deploy/Dockerfile was not built")
        return SKIP
    if os.geteuid() != 0:
        print("SKIPPED: not root: the mounted tokens file must belong to uid 10001 "
              "(cairnd refuses one others may read), which takes chown")
        return SKIP

    base = os.environ.get("CAIRN_TEST_BASE_IMAGE", "debian:bookworm")
    tag = f"cairn-test:{uuid.uuid4().hex[:12]}"
    cid = None
    tmp = tempfile.TemporaryDirectory(prefix="cairn-image-")
    try:
        print(f"building {tag} with {rt}, BASE={base}", flush=True)
        p = subprocess.run([rt, "build", "-f", os.path.join(args.source, "deploy", "Dockerfile"),
                            "--build-arg", f"BASE={base}", "-t", tag, args.source],
                           timeout=3600)
        if p.returncode != 0:
            print(f"FAIL: build exited {p.returncode}")
            return 1

        cfg = json.loads(sh([rt, "image", "inspect", tag]).stdout)[0]["Config"]
        assert cfg.get("User") == "10001:10001", cfg.get("User")
        assert "/var/lib/cairn" in (cfg.get("Volumes") or {}), cfg.get("Volumes")
        assert cfg.get("Entrypoint") == ["cairnd"], cfg.get("Entrypoint")
        assert cfg.get("Healthcheck", {}).get("Test", [None])[0] == "CMD", cfg.get("Healthcheck")
        assert {"7070/tcp", "9464/tcp"} <= set(cfg.get("ExposedPorts") or {}), cfg
        assert not any(e.startswith("CAIRN_INSECURE=") for e in cfg.get("Env", [])), cfg["Env"]

        # Secure by default: no mounts, no start; no TLS, no 0.0.0.0.
        code, logs = exits(rt, tag, [])
        assert code != 0 and "/etc/cairn/" in logs, f"without mounts: exit {code}\n{logs}"
        code, logs = exits(rt, tag, ["-e", "CAIRN_TLS_CERT=", "-e", "CAIRN_TLS_KEY="])
        assert code == 2 and "--insecure" in logs, f"without TLS: exit {code}\n{logs}"
        print("without mounts: refused; without TLS: refused naming --insecure")

        # The image's own check command, run every second rather than every 10.
        cid = sh([rt, "run", "-d", "--health-interval=1s", *mounts(tmp.name, args.certs),
                  tag]).stdout.strip()
        deadline = time.monotonic() + HEALTHY_WITHIN_S
        status = None
        while time.monotonic() < deadline:
            state = json.loads(sh([rt, "inspect", cid]).stdout)[0]["State"]
            status = (state.get("Health") or state.get("Healthcheck") or {}).get("Status")
            if status == "healthy" or not state.get("Running"):
                break
            time.sleep(1)
        if status != "healthy":
            logs = sh([rt, "logs", cid], check=False)
            print(f"FAIL: health {status!r} after {HEALTHY_WITHIN_S} s\n{logs.stdout}{logs.stderr}")
            return 1
        print("health check (/healthz): healthy")

        tls = ["--ca-file", "/etc/cairn/tls/ca.crt", "--timeout", "3s"]
        out = sh([rt, "exec", cid, "cairnctl", *tls, "health"]).stdout
        assert out == "status: SERVING\n", out
        p = sh([rt, "exec", cid, "cairnctl", *tls, "list-runs"], check=False)
        assert p.returncode == 1 and "unauthenticated" in p.stderr.lower(), p.stderr
        uid = sh([rt, "exec", cid, "id", "-u"]).stdout.strip()
        assert uid == "10001", uid
        mode = sh([rt, "exec", cid, "stat", "-c", "%a %u", "/var/lib/cairn/data"]).stdout.strip()
        assert mode == "700 10001", mode
        print("cairnctl health over TLS: SERVING; no token: unauthenticated; uid 10001; "
              "data dir 700")

        sh([rt, "stop", "-t", "20", cid], timeout=60)
        code = json.loads(sh([rt, "inspect", cid]).stdout)[0]["State"]["ExitCode"]
        assert code == 0, f"cairnd exited {code} on SIGTERM"
        print("stop (SIGTERM): exit 0")
        return 0
    finally:
        if cid:
            sh([rt, "rm", "-f", "-v", cid], check=False)
        sh([rt, "image", "rm", "-f", tag], check=False)
        tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
