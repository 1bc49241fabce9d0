"""A private PostgreSQL cluster for a test: initdb into a temporary
directory, postgres on 127.0.0.1 with a free port and its socket in that
directory, stopped by PID. Debian's own cluster (if any) is never used.

initdb and postgres refuse to run as root, so under root (CI) the cluster
belongs to the `postgres` system user (from the postgresql package) and
its programs run as that user (setuid in the child, so the PID a test
holds is postgres itself); otherwise it is the caller's.

Readiness is awaited by polling pg_isready with a deadline: postgres
prints no line a test could wait on once it accepts connections.
"""
import ctypes
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

READY_S = 60  # a bound on startup, not a synchronisation


class Unavailable(Exception):
    """PostgreSQL cannot run here (no binaries, no postgres user)."""


def bindir():
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                  key=lambda d: int(d.split("/")[-2]) if d.split("/")[-2].isdigit() else 0)
    for d in reversed(dirs):
        if os.access(os.path.join(d, "postgres"), os.X_OK):
            return d
    raise Unavailable("no PostgreSQL server under /usr/lib/postgresql/*/bin "
                      "(scripts/bootstrap installs the postgresql package)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgCluster:
    def __init__(self, parent_dir=None):
        self.bin = bindir()
        self.user = None  # a pwd entry to drop to (None: stay ourselves)
        if os.geteuid() == 0:
            try:
                self.user = pwd.getpwnam("postgres")
            except KeyError:
                raise Unavailable("running as root and there is no postgres user to drop to")
        self.dir = tempfile.mkdtemp(prefix="cairn-pg-", dir=parent_dir)
        os.chmod(self.dir, 0o755)  # the postgres user must reach its files
        self.data = os.path.join(self.dir, "pgdata")
        self.sock = os.path.join(self.dir, "sock")
        os.mkdir(self.sock)
        if self.user:
            os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
            os.chown(self.sock, self.user.pw_uid, self.user.pw_gid)
        self.port = None
        self.proc = None
        self.log = os.path.join(self.dir, "postgres.log")
        self._run(["initdb", "-D", self.data, "-U", "cairn", "--auth=trust",
                   "--no-sync", "-E", "UTF8", "--locale=C"])

    def _cmd(self, argv):
        return [os.path.join(self.bin, argv[0])] + argv[1:]

    def _child(self):
        """In the child: drop to the cluster's user; die with the test.
        After the drop, which clears PR_SET_PDEATHSIG; SIGQUIT: the
        postmaster's immediate shutdown, which still ends its backends and
        frees its shared memory."""
        if self.user:
            os.setgroups([])
            os.setgid(self.user.pw_gid)
            os.setuid(self.user.pw_uid)
        _die_with_parent(signal.SIGQUIT)

    def _run(self, argv):
        r = subprocess.run(self._cmd(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           preexec_fn=self._child, cwd=self.dir)
        if r.returncode != 0:
            raise AssertionError("%s failed:\n%s" % (argv[0], r.stdout.decode(errors="replace")))

    @property
    def dsn(self):
        return self.dsn_of("cairn")

    def dsn_of(self, dbname):
        return "host=127.0.0.1 port=%d user=cairn dbname=%s" % (self.port, dbname)

    def create_database(self, name):
        """CREATE DATABASE name (a plain identifier); returns its DSN."""
        self.query("postgres", "CREATE DATABASE %s" % name)
        return self.dsn_of(name)

    def query(self, dbname, sql):
        """Runs sql (statements; psql -c) in dbname as the cluster's
        superuser; returns the last one's rows, unaligned, stripped."""
        r = subprocess.run(self._cmd(["psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1",
                                      "-h", "127.0.0.1", "-p", str(self.port), "-U", "cairn",
                                      "-d", dbname, "-c", sql]),
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True)
        if r.returncode != 0:
            raise AssertionError("psql %s: %s\n%s" % (dbname, sql, r.stderr))
        return r.stdout.strip()

    def start(self, port=None):
        """Starts postgres (on port, or a free one) and waits until the
        cairn database accepts connections."""
        self.port = port or free_port()
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            self._cmd(["postgres", "-D", self.data, "-p", str(self.port),
                       "-c", "listen_addresses=127.0.0.1",
                       "-c", "unix_socket_directories=" + self.sock,
                       "-c", "fsync=on", "-c", "synchronous_commit=on",
                       "-c", "max_connections=200"]),
            stdout=logf, stderr=logf, preexec_fn=self._child, cwd=self.dir)
        logf.close()
        self._wait_ready()
        r = subprocess.run(self._cmd(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U",
                                      "cairn", "-d", "postgres", "-tAc",
                                      "SELECT 1 FROM pg_database WHERE datname = 'cairn'"]),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           preexec_fn=self._child, cwd=self.dir)
        if r.stdout.strip() != b"1":
            self._run(["createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "cairn",
                       "cairn"])

    def _wait_ready(self):
        deadline = time.monotonic() + READY_S
        delay = 0.01
        while True:
            if self.proc.poll() is not None:
                raise AssertionError("postgres exited %d:\n%s" % (self.proc.returncode,
                                                                   self.tail()))
            r = subprocess.run([os.path.join(self.bin, "pg_isready"), "-q", "-h", "127.0.0.1",
                                "-p", str(self.port)])
            if r.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise AssertionError("postgres not ready after %d s:\n%s" % (READY_S,
                                                                            self.tail()))
            time.sleep(delay)  # polling with a deadline: nothing to wait on
            delay = min(delay * 2, 0.2)

    def restart(self):
        """pg_ctl restart -m fast, on the same port."""
        self.stop()
        self.start(self.port)

    def stop(self):
        """Fast shutdown (SIGINT to the postmaster), by its PID."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(timeout=READY_S)
        self.proc = None

    def tail(self, n=30):
        try:
            with open(self.log, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not os.environ.get("CAIRN_TEST_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)


def _die_with_parent(sig=signal.SIGKILL):
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, sig)
