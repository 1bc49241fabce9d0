"""deploy/Dockerfile builds, and its image serves: the HEALTHCHECK reports
healthy, cairnctl inside answers SERVING, cairnd runs as uid 10001 with its
store 0700 on the volume, and `docker stop` (SIGTERM) ends it with exit 0.

Needs a working container runtime (docker, else podman). Without one, or
when its daemon does not answer, the test exits 77, which ctest reports as
skipped, and prints why: it never passes without having built and run
the image. The build compiles cairn inside the image and installs packages
(network, unless BASE already has them): minutes.

CAIRN_TEST_BASE_IMAGE picks BASE (default debian:bookworm).

usage: test_image.py --source DIR
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import uuid

SKIP = 77
HEALTHY_WITHIN_S = 180


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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", required=True)
    args = ap.parse_args()

    rt, why = find_runtime()
    if not rt:
        print(f"SKIPPED: no working container runtime ({why}); "
              "deploy/Dockerfile was not built")
        return SKIP

    base = os.environ.get("CAIRN_TEST_BASE_IMAGE", "debian:bookworm")
    tag = f"cairn-test:{uuid.uuid4().hex[:12]}"
    cid = None
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

        # The image's own check command, run every second rather than every 10.
        cid = sh([rt, "run", "-d", "--health-interval=1s", tag]).stdout.strip()
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
        print("health check: healthy")

        out = sh([rt, "exec", cid, "cairnctl", "--timeout", "3s", "health"]).stdout
        assert out == "SERVING\n", out
        uid = sh([rt, "exec", cid, "id", "-u"]).stdout.strip()
        assert uid == "10001", uid
        mode = sh([rt, "exec", cid, "stat", "-c", "%a %u", "/var/lib/cairn/data"]).stdout.strip()
        assert mode == "700 10001", mode
        print("cairnctl health: SERVING; uid 10001; data dir 700")

        sh([rt, "stop", "-t", "20", cid], timeout=60)
        code = json.loads(sh([rt, "inspect", cid]).stdout)[0]["State"]["ExitCode"]
        assert code == 0, f"cairnd exited {code} on SIGTERM"
        print("stop (SIGTERM): exit 0")
        return 0
    finally:
        if cid:
            sh([rt, "rm", "-f", "-v", cid], check=False)
        sh([rt, "image", "rm", "-f", tag], check=False)


if __name__ == "__main__":
    sys.exit(main())
