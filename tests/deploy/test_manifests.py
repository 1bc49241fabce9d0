"""Every Kubernetes manifest under deploy/k8s parses (python3-yaml) and says
what the deployment promises: secure by default (TLS and tokens from
mounted Secrets, no CAIRN_INSECURE), observable (/healthz probes and a
scraped metrics port); deploy/Dockerfile and deploy/systemd are read for the
same promises (test_secure_start.py starts cairnd as they configure it; the
image itself is built by test_image.py where a container runtime works).

usage: test_manifests.py --deploy DIR [--version X.Y.Z]
"""
import argparse
import glob
import json
import os
import re
import sys
import unittest

import yaml

ARGS = None
GRPC_PORT = 7070
METRICS_PORT = 9464
RUNTIME_UID = 10001   # the image's USER, and runAsUser in the manifests
API = {"StatefulSet": "apps/v1", "Deployment": "apps/v1", "Service": "v1",
       "PodDisruptionBudget": "policy/v1", "NetworkPolicy": "networking.k8s.io/v1"}
LOOPBACK = re.compile(r"^(127\.\d+\.\d+\.\d+|\[::1\]|localhost):\d+$|^unix:")


def load(sub):
    docs = []
    files = sorted(glob.glob(os.path.join(ARGS.deploy, "k8s", sub, "*.yaml")) +
                   glob.glob(os.path.join(ARGS.deploy, "k8s", sub, "*.yml")))
    assert files, f"no manifests in k8s/{sub}"
    for path in files:
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc is not None:
                    docs.append((os.path.basename(path), doc))
    return docs


def by_kind(docs, kind):
    return [d for _, d in docs if d["kind"] == kind]


def cpu(q):
    q = str(q)
    return float(q[:-1]) / 1000 if q.endswith("m") else float(q)


def memory(q):
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}
    m = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(q))
    assert m, f"memory quantity {q!r}"
    return float(m.group(1)) * units.get(m.group(2), 1) if m.group(2) else float(m.group(1))


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


class Common:
    """Checks shared by the single-node and the cluster manifests."""
    sub = None
    workload_kind = None

    @classmethod
    def setUpClass(cls):
        cls.docs = load(cls.sub)
        (cls.workload,) = by_kind(cls.docs, cls.workload_kind)
        cls.pod = cls.workload["spec"]["template"]["spec"]
        cls.labels = cls.workload["spec"]["template"]["metadata"]["labels"]
        (cls.cairnd,) = [c for c in cls.pod["containers"] if c["name"] == "cairnd"]
        cls.env = env_of(cls.cairnd)

    def all_containers(self):
        return self.pod.get("initContainers", []) + self.pod["containers"]

    def test_every_document_is_a_known_kind_with_its_api_version_and_a_name(self):
        for name, d in self.docs:
            self.assertIn(d.get("kind"), API, name)
            self.assertEqual(d.get("apiVersion"), API[d["kind"]], name)
            self.assertTrue(d.get("metadata", {}).get("name"), name)

    def test_selector_matches_the_pod_template(self):
        sel = self.workload["spec"]["selector"]["matchLabels"]
        self.assertTrue(matches(sel, self.labels))

    def test_probes_get_healthz_on_the_metrics_port(self):
        # The kubelet's grpc probe speaks no TLS: /healthz over HTTP instead.
        ports = {p["name"]: p["containerPort"] for p in self.cairnd["ports"]}
        self.assertEqual(ports.get("grpc"), GRPC_PORT)
        self.assertEqual(ports.get("metrics"), METRICS_PORT)
        self.assertTrue(self.env["CAIRN_LISTEN"]["value"].endswith(f":{GRPC_PORT}"))
        self.assertEqual(self.env["CAIRN_METRICS_LISTEN"]["value"], f"0.0.0.0:{METRICS_PORT}")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            p = self.cairnd.get(probe)
            self.assertIsNotNone(p, probe)
            get = p.get("httpGet")
            self.assertEqual(get.get("path"), "/healthz", probe)
            self.assertEqual(ports.get(get.get("port"), get.get("port")), METRICS_PORT, probe)
            self.assertIn(get.get("scheme", "HTTP"), ("HTTP",), probe)
            for other in ("exec", "grpc", "tcpSocket"):
                self.assertNotIn(other, p, probe)
            self.assertGreaterEqual(p.get("failureThreshold", 3), 2, probe)

    def test_pods_carry_prometheus_scrape_annotations_for_the_metrics_port(self):
        ann = self.workload["spec"]["template"]["metadata"].get("annotations", {})
        self.assertEqual(ann.get("prometheus.io/scrape"), "true")
        self.assertEqual(ann.get("prometheus.io/port"), str(METRICS_PORT))
        self.assertEqual(ann.get("prometheus.io/path"), "/metrics")

    def test_tls_and_tokens_come_from_secrets_mounted_read_only(self):
        volumes = {v["name"]: v for v in self.pod["volumes"]}

        def mount_of(container, path):
            """The mount holding path in container, and its volume."""
            best = None
            for m in container.get("volumeMounts", []):
                root = m["mountPath"].rstrip("/") + "/"
                if path.startswith(root) and (not best or len(root) > len(best[0])):
                    best = (root, m)
            self.assertIsNotNone(best, f"{container['name']}: nothing mounted at {path}")
            return best[1], volumes[best[1]["name"]]

        def assert_secret(mount, volume, name):
            self.assertEqual(volume.get("secret", {}).get("secretName"), name)
            self.assertIs(mount.get("readOnly"), True, mount["name"])
            # Never readable by others (fsGroup makes the files 0440 at most).
            mode = volume["secret"].get("defaultMode", 0o644)
            self.assertEqual(mode & 0o077 & ~0o040, 0, f"{name}: mode {mode:o}")

        for var in ("CAIRN_TLS_CERT", "CAIRN_TLS_KEY"):
            path = self.env[var]["value"]
            self.assertTrue(path.startswith("/etc/cairn/"), var)
            mount, volume = mount_of(self.cairnd, path)
            assert_secret(mount, volume, "cairn-tls")
        self.assertEqual(self.env["CAIRN_TLS_CERT"]["value"], "/etc/cairn/tls/tls.crt")
        self.assertEqual(self.env["CAIRN_TLS_KEY"]["value"], "/etc/cairn/tls/tls.key")
        if "CAIRN_TLS_CLIENT_CA" in self.env:
            assert_secret(*mount_of(self.cairnd, self.env["CAIRN_TLS_CLIENT_CA"]["value"]),
                          "cairn-tls")

        # The tokens file: a Secret volume's file is group-readable with
        # fsGroup, and cairnd refuses that; an init container installs a
        # 0600 copy into a memory-backed emptyDir, which cairnd reads.
        tokens = self.env["CAIRN_AUTH_TOKENS"]["value"]
        mount, volume = mount_of(self.cairnd, tokens)
        self.assertEqual(volume.get("emptyDir", {}).get("medium"), "Memory")
        (init,) = [c for c in self.pod.get("initContainers", [])
                   if c.get("command", [])[-1:] == [tokens]]
        self.assertEqual(init["command"][:3], ["install", "-m", "0600"])
        src_mount, src_volume = mount_of(init, init["command"][-2])
        assert_secret(src_mount, src_volume, "cairn-tokens")
        self.assertEqual(src_volume["secret"]["items"],
                         [{"key": "tokens", "path": os.path.basename(init["command"][-2])}])
        dst_mount, _ = mount_of(init, tokens)
        self.assertEqual(dst_mount["name"], mount["name"])
        self.assertEqual(self.pod["securityContext"].get("fsGroup"), RUNTIME_UID)

    def test_comments_say_how_to_create_the_secrets_and_rotate(self):
        text = "".join(open(os.path.join(ARGS.deploy, "k8s", self.sub, f)).read()
                       for f in os.listdir(os.path.join(ARGS.deploy, "k8s", self.sub)))
        self.assertRegex(text, r"#\s*kubectl create secret tls cairn-tls ")
        self.assertRegex(text, r"#\s*kubectl create secret generic cairn-tokens "
                               r"--from-file=tokens=")
        self.assertRegex(text, r"#.*kill -HUP 1")
        self.assertNotRegex(text, r"(?i)no TLS yet|until TLS")

    def test_every_container_has_requests_and_limits(self):
        for c in self.all_containers():
            r = c.get("resources", {})
            for kind, parse in (("cpu", cpu), ("memory", memory)):
                req = r.get("requests", {}).get(kind)
                lim = r.get("limits", {}).get(kind)
                self.assertIsNotNone(req, f"{c['name']} requests.{kind}")
                self.assertIsNotNone(lim, f"{c['name']} limits.{kind}")
                self.assertLessEqual(parse(req), parse(lim), f"{c['name']} {kind}")

    def test_pod_and_containers_run_as_non_root_read_only_without_privileges(self):
        psc = self.pod["securityContext"]
        self.assertIs(psc.get("runAsNonRoot"), True)
        self.assertEqual(psc.get("runAsUser"), RUNTIME_UID)
        self.assertEqual(psc.get("runAsGroup"), RUNTIME_UID)
        self.assertEqual(psc.get("seccompProfile"), {"type": "RuntimeDefault"})
        if "fsGroup" in psc:
            # Without it the kubelet makes everything on the volume
            # group-writable at each mount, and cairnd refuses such a data dir.
            self.assertEqual(psc.get("fsGroupChangePolicy"), "OnRootMismatch")
        self.assertIs(self.pod.get("automountServiceAccountToken"), False)
        for c in self.all_containers():
            sc = c.get("securityContext", {})
            self.assertIs(sc.get("runAsNonRoot"), True, c["name"])
            self.assertIs(sc.get("readOnlyRootFilesystem"), True, c["name"])
            self.assertIs(sc.get("allowPrivilegeEscalation"), False, c["name"])
            self.assertEqual(sc.get("capabilities", {}).get("drop"), ["ALL"], c["name"])
            self.assertNotIn("add", sc.get("capabilities", {}), c["name"])
            self.assertNotIn("privileged", sc, c["name"])
            self.assertNotIn("runAsUser", sc, c["name"])  # the pod's, 10001

    def test_tmp_is_a_writable_empty_dir(self):
        volumes = {v["name"]: v for v in self.pod["volumes"]}
        (tmp,) = [m for m in self.cairnd["volumeMounts"] if m["mountPath"] == "/tmp"]
        self.assertIn("emptyDir", volumes[tmp["name"]])
        self.assertFalse(tmp.get("readOnly", False))

    def test_every_mount_has_its_volume_and_every_volume_is_mounted(self):
        volumes = {v["name"] for v in self.pod.get("volumes", [])}
        claims = {t["metadata"]["name"]
                  for t in self.workload["spec"].get("volumeClaimTemplates", [])}
        mounted = set()
        for c in self.all_containers():
            for m in c.get("volumeMounts", []):
                self.assertIn(m["name"], volumes | claims, f"{c['name']}: {m['name']}")
                mounted.add(m["name"])
        self.assertEqual(mounted, volumes | claims)

    def test_env_values_are_strings_and_never_insecure(self):
        for c in self.all_containers():
            for e in c.get("env", []):
                self.assertTrue("value" in e or "valueFrom" in e, e["name"])
                if "value" in e:
                    self.assertIsInstance(e["value"], str, e["name"])
                self.assertNotEqual(e["name"], "CAIRN_INSECURE", c["name"])
        listen = self.env["CAIRN_LISTEN"]["value"]
        if not LOOPBACK.match(listen):
            # Off loopback cairnd serves only with both TLS and tokens.
            for var in ("CAIRN_TLS_CERT", "CAIRN_TLS_KEY", "CAIRN_AUTH_TOKENS"):
                self.assertTrue(self.env.get(var, {}).get("value"), var)
        self.assertNotIn("args", self.cairnd)
        self.assertNotIn("command", self.cairnd)  # the image's ENTRYPOINT, cairnd

    def data_dir_mount(self):
        data_dir = self.env["CAIRN_DATA_DIR"]["value"]
        mounts = [m for m in self.cairnd["volumeMounts"]
                  if (data_dir + "/").startswith(m["mountPath"].rstrip("/") + "/")]
        self.assertTrue(mounts, data_dir)
        # A subdirectory of the mount, which cairnd creates 0700: a volume's
        # root is often group-writable, and cairnd refuses that.
        self.assertNotEqual(data_dir.rstrip("/"), mounts[0]["mountPath"].rstrip("/"))
        return mounts[0]

    def test_data_dir_is_a_subdirectory_of_a_mounted_volume(self):
        self.data_dir_mount()

    def test_a_service_selects_the_pods_on_the_grpc_port(self):
        services = by_kind(self.docs, "Service")
        self.assertTrue(services)
        for s in services:
            self.assertTrue(matches(s["spec"]["selector"], self.labels), s["metadata"]["name"])
            (port,) = s["spec"]["ports"]
            self.assertEqual(port["port"], GRPC_PORT)
            self.assertIn(port["targetPort"], ("grpc", GRPC_PORT))

    def test_a_network_policy_admits_clients_to_grpc_and_monitoring_to_metrics(self):
        (np,) = by_kind(self.docs, "NetworkPolicy")
        self.assertTrue(matches(np["spec"]["podSelector"]["matchLabels"], self.labels))
        self.assertEqual(np["spec"]["policyTypes"], ["Ingress"])
        by_port = {}
        for rule in np["spec"]["ingress"]:
            self.assertTrue(rule.get("from"), "ingress from anywhere")
            ports = [p["port"] for p in rule["ports"]]
            self.assertEqual(len(ports), 1, rule)
            by_port.setdefault(ports[0], []).extend(rule["from"])
        self.assertEqual(set(by_port), {GRPC_PORT, METRICS_PORT})
        self.assertEqual(by_port[GRPC_PORT],
                         [{"podSelector": {"matchLabels": {"cairn-client": "true"}}}])
        (peer,) = by_port[METRICS_PORT]
        self.assertEqual(list(peer), ["namespaceSelector"])
        self.assertEqual(peer["namespaceSelector"]["matchLabels"],
                         {"kubernetes.io/metadata.name": "monitoring"})

    def test_image_tag_is_the_project_version(self):
        if not ARGS.version:
            self.skipTest("no --version given")
        for c in self.all_containers():
            self.assertEqual(c["image"], f"cairn:{ARGS.version}", c["name"])

    def test_grace_period_outlasts_the_shutdown_grace(self):
        grace_ms = int(self.env.get("CAIRN_SHUTDOWN_GRACE_MS", {}).get("value", 5000))
        self.assertGreater(self.pod.get("terminationGracePeriodSeconds", 30) * 1000, grace_ms)


class Single(Common, unittest.TestCase):
    sub = "single"
    workload_kind = "StatefulSet"

    def test_one_replica_with_a_claim_mounted_at_the_data_dir(self):
        spec = self.workload["spec"]
        self.assertEqual(spec.get("replicas"), 1)
        (claim,) = spec["volumeClaimTemplates"]
        self.assertEqual(claim["spec"]["accessModes"], ["ReadWriteOnce"])
        self.assertTrue(claim["spec"]["resources"]["requests"]["storage"])
        mount = self.data_dir_mount()
        self.assertEqual(mount["name"], claim["metadata"]["name"])
        self.assertFalse(mount.get("readOnly", False))
        self.assertEqual(self.env.get("CAIRN_STORE", {}).get("value", "sqlite"), "sqlite")

    def test_service_name_is_a_headless_service_of_the_pods(self):
        name = self.workload["spec"]["serviceName"]
        (svc,) = [s for s in by_kind(self.docs, "Service") if s["metadata"]["name"] == name]
        self.assertEqual(svc["spec"].get("clusterIP"), "None")


class Cluster(Common, unittest.TestCase):
    sub = "cluster"
    workload_kind = "Deployment"

    def test_three_replicas_on_postgres(self):
        self.assertEqual(self.workload["spec"]["replicas"], 3)
        self.assertEqual(self.env["CAIRN_STORE"]["value"], "postgres")
        self.assertNotIn("volumeClaimTemplates", self.workload["spec"])

    def test_a_disruption_budget_keeps_two_of_the_pods(self):
        (pdb,) = by_kind(self.docs, "PodDisruptionBudget")
        spec = pdb["spec"]
        self.assertTrue(spec.get("minAvailable") == 2 or spec.get("maxUnavailable") == 1, spec)
        self.assertTrue(matches(spec["selector"]["matchLabels"], self.labels))
        rolling = self.workload["spec"]["strategy"]["rollingUpdate"]
        self.assertLessEqual(rolling["maxUnavailable"], 1)

    def test_dsn_comes_from_a_secret_and_the_password_from_a_0600_file(self):
        dsn = self.env["CAIRN_PG_DSN"]
        self.assertNotIn("value", dsn)
        ref = dsn["valueFrom"]["secretKeyRef"]
        self.assertTrue(ref["name"] and ref["key"])
        self.assertNotIn("PGPASSWORD", self.env)
        # PGPASSFILE names a file the init container copied (libpq ignores
        # one that group or others can read; a Secret volume's file is).
        passfile = self.env["PGPASSFILE"]["value"]
        mount_of = {m["mountPath"]: m["name"] for m in self.cairnd["volumeMounts"]}
        run = mount_of[os.path.dirname(passfile)]
        volumes = {v["name"]: v for v in self.pod["volumes"]}
        self.assertEqual(volumes[run]["emptyDir"].get("medium"), "Memory")
        (init,) = [c for c in self.pod["initContainers"] if c["command"][-1] == passfile]
        self.assertEqual(init["command"][:3], ["install", "-m", "0600"])
        self.assertEqual(init["command"][-1], passfile)
        src = init["command"][-2]
        init_mounts = {m["mountPath"]: m["name"] for m in init["volumeMounts"]}
        secret_vol = volumes[init_mounts[os.path.dirname(src)]]
        self.assertEqual(secret_vol["secret"]["secretName"], ref["name"])
        self.assertEqual(init_mounts[os.path.dirname(passfile)], run)
        self.assertNotIn(secret_vol["name"], {m["name"] for m in self.cairnd["volumeMounts"]})

    def test_scratch_data_dir_is_an_empty_dir(self):
        mount = self.data_dir_mount()
        volumes = {v["name"]: v for v in self.pod["volumes"]}
        self.assertIn("emptyDir", volumes[mount["name"]])


class Dockerfile(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(os.path.join(ARGS.deploy, "Dockerfile")) as f:
            text = f.read()
        cls.text = text
        joined = re.sub(r"\\\n", " ", text)
        cls.lines = [l.strip() for l in joined.splitlines()
                     if l.strip() and not l.strip().startswith("#")]
        stages, cur = [], None
        for l in cls.lines:
            if l.upper().startswith("FROM "):
                cur = [l]
                stages.append(cur)
            elif cur is not None:
                cur.append(l)
        cls.stages = stages
        cls.final = stages[-1]

    def test_base_is_an_argument_defaulting_to_bookworm_for_both_stages(self):
        self.assertEqual(self.lines[0], "ARG BASE=debian:bookworm")
        self.assertEqual(len(self.stages), 2)
        self.assertEqual(self.stages[0][0], "FROM ${BASE} AS build")
        self.assertEqual(self.final[0], "FROM ${BASE}")
        self.assertTrue(any("scripts/bootstrap" in l for l in self.stages[0]))

    def test_final_stage_takes_only_cairnd_cairnctl_and_libcairn_from_the_build(self):
        copied = []
        for l in self.final:
            if l.startswith("COPY"):
                self.assertIn("--from=build", l)
                copied += l.split()[2:-1]
        names = sorted(os.path.basename(p) for p in copied)
        self.assertEqual(names, ["cairnctl", "cairnd", "libcairn.so.1*", "runtime-packages"])
        self.assertFalse(any(re.search(r"\b(cmake|gcc|build-essential|-dev)\b", l)
                             for l in self.final if l.startswith("RUN")))

    def env(self):
        env = {}
        for l in self.final:
            if l.startswith("ENV "):
                env.update(re.findall(r"(\w+)=(\S*)", l[4:]))
        return env

    def test_runs_as_a_numeric_non_root_user_with_a_volume(self):
        (user,) = [l for l in self.final if l.startswith("USER ")]
        self.assertEqual(user, f"USER {RUNTIME_UID}:{RUNTIME_UID}")
        self.assertIn("VOLUME /var/lib/cairn", self.final)
        self.assertIn('ENTRYPOINT ["cairnd"]', self.final)

    def test_health_check_gets_healthz_on_the_metrics_port_within_its_timeout(self):
        (hc,) = [l for l in self.final if l.startswith("HEALTHCHECK")]
        cmd = json.loads(hc[hc.index(" CMD ") + 5:])   # exec form: no /bin/sh
        script = " ".join(cmd)
        self.assertEqual(cmd[:2], ["bash", "-c"])
        self.assertIn("/dev/tcp/127.0.0.1/${CAIRN_METRICS_LISTEN##*:}", script)
        self.assertIn("GET /healthz ", script)
        self.assertRegex(script, r"' 200 '")
        timeout = int(re.search(r"--timeout=(\d+)s", hc).group(1))
        deadline = int(re.search(r"read -r -t (\d+) ", script).group(1))
        self.assertLess(deadline, timeout)

    def test_secure_by_default_tls_and_tokens_from_mounted_files_no_insecure(self):
        env = self.env()
        self.assertNotIn("CAIRN_INSECURE", env)
        self.assertNotRegex("\n".join(self.lines), r"CAIRN_INSECURE=true")
        self.assertEqual(env["CAIRN_LISTEN"], f"0.0.0.0:{GRPC_PORT}")
        self.assertEqual(env["CAIRN_TLS_CERT"], "/etc/cairn/tls/tls.crt")
        self.assertEqual(env["CAIRN_TLS_KEY"], "/etc/cairn/tls/tls.key")
        self.assertEqual(env["CAIRN_AUTH_TOKENS"], "/etc/cairn/tokens")
        self.assertNotIn("CAIRN_TLS_CLIENT_CA", env)   # mutual TLS: opt in
        # The comments say what to mount and how to opt out, knowingly.
        for word in ("tls.crt", "tls.key", "ca.crt", "CAIRN_TLS_CLIENT_CA", "0600",
                     "--insecure", "CAIRN_INSECURE=true", "SIGHUP"):
            self.assertIn(word, self.text)
        self.assertNotRegex(self.text, r"(?i)no TLS yet")

    def test_metrics_port_is_exposed_on_every_interface_and_says_it_has_no_tls(self):
        self.assertEqual(self.env()["CAIRN_METRICS_LISTEN"], f"0.0.0.0:{METRICS_PORT}")
        (expose,) = [l for l in self.final if l.startswith("EXPOSE ")]
        self.assertEqual(sorted(expose.split()[1:]), sorted([str(GRPC_PORT), str(METRICS_PORT)]))
        self.assertRegex(self.text, r"#[^\n]*no TLS and no token")


class Systemd(unittest.TestCase):
    """cairnd.service and cairnd.env: loopback by default, TLS and tokens
    documented for serving other machines, SIGHUP on reload."""

    @classmethod
    def setUpClass(cls):
        with open(os.path.join(ARGS.deploy, "systemd", "cairnd.service")) as f:
            cls.unit = f.read()
        with open(os.path.join(ARGS.deploy, "systemd", "cairnd.env")) as f:
            cls.envfile = f.read()

    def test_unit_listens_on_loopback_and_never_sets_insecure(self):
        listen = re.findall(r"^Environment=CAIRN_LISTEN=(\S+)$", self.unit, re.M)
        self.assertEqual(len(listen), 1)
        self.assertRegex(listen[0], LOOPBACK)
        self.assertNotRegex(self.unit, r"(?m)^Environment=CAIRN_INSECURE")
        self.assertNotRegex(self.unit, r"(?i)no TLS yet")
        self.assertRegex(self.unit, r"(?m)^ExecReload=/bin/kill -HUP \$MAINPID$")

    def test_env_file_documents_tls_tokens_and_metrics_files_under_etc_cairn(self):
        active = re.findall(r"^(CAIRN_\w+)=", self.envfile, re.M)
        self.assertEqual(active, [], "every line of the shipped file is an example")
        examples = dict(re.findall(r"^#(CAIRN_\w+)=(\S+)$", self.envfile, re.M))
        for var in ("CAIRN_TLS_CERT", "CAIRN_TLS_KEY", "CAIRN_TLS_CLIENT_CA",
                    "CAIRN_AUTH_TOKENS"):
            self.assertTrue(examples[var].startswith("/etc/cairn/"), var)
        self.assertIn("CAIRN_METRICS_LISTEN", examples)
        self.assertIn("owned by the cairn user, mode 0600", self.envfile)
        self.assertIn("systemctl reload cairnd", self.envfile)
        self.assertNotRegex(self.envfile, r"(?i)no TLS yet")


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--deploy", required=True)
    ap.add_argument("--version")
    ARGS, rest = ap.parse_known_args()
    unittest.main(argv=[sys.argv[0], "-v"] + rest)


if __name__ == "__main__":
    main()
