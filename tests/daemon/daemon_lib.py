"""daemon_lib.py - shared helpers for the devmaild tests (tests/daemon/).

Imported by test_daemon_*.py; reuses the aiosmtpd peer, the account setup
and the capture reader of tests/interop/test_sendmail_compat.py:

    h                       that module (Server, make_root, dm, captures, ...)
    Daemon(root, tag)       devmaild --foreground as a child: start() waits for
                            its "ready" line, term()/kill() stop it by PID and
                            reap it; stderr goes to a file (sanitizer reports
                            are looked for there by clean())
    Relay(port)             a loopback TCP relay in front of the peer that
                            counts connections (total, at once) and can stall
                            (accept, never answer) or freeze a connection once
                            the client has sent N bytes
    wait_for(fn, seconds)   polls fn() until true or the deadline
    log_text(root)          the system log
    subreaper()             makes this process the reaper of orphans, so a
                            detached devmaild can be waited for by PID

Stdlib only; /usr/bin/python3.  Every wait is bounded; every process and
thread is stopped by the code that started it.
"""
import ctypes
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "interop"))
import test_sendmail_compat as h  # noqa: E402

DEVMAILD = os.path.join(h.BUILD, "devmaild")
READY_SECONDS = 60         # ASan builds start slowly on a loaded machine
SANITIZER = re.compile(r"AddressSanitizer|LeakSanitizer|runtime error:")


def wait_for(fn, seconds, step=0.05):
    """Calls fn() until it returns something true or `seconds` pass; the
    last value."""
    deadline = time.monotonic() + seconds
    while True:
        v = fn()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(step)


def log_text(root):
    out = ""
    for name in ("system.log.bak", "system.log"):
        try:
            with open(os.path.join(root, "log", name), "rb") as f:
                out += f.read().decode(errors="replace")
        except OSError:
            pass
    return out


def subreaper():
    """PR_SET_CHILD_SUBREAPER: orphans (a detached devmaild) become our
    children, so that they can be reaped and their exit seen."""
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(36, 1, 0, 0, 0) == 0


def env_for(root=None):
    env = h.env_clean(root)
    return env


class Daemon:
    """devmaild --foreground --root ROOT, a child of this process."""

    def __init__(self, root, tag):
        self.root = root
        self.err_path = os.path.join(os.path.dirname(root),
                                     "devmaild-%s.err" % tag)
        self.proc = None
        self.rc = None

    def stderr_text(self):
        try:
            with open(self.err_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def start(self, *extra, wait_ready=True):
        """Starts it; returns True once "ready" is logged by this PID, False
        when it exited or did not get there in time (then stopped)."""
        err = open(self.err_path, "ab")
        self.proc = subprocess.Popen(
            [DEVMAILD, "--root", self.root, "--foreground"] + list(extra),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            env=env_for())
        err.close()
        self.rc = None
        if not wait_ready:
            return True
        pat = "(pid %d)" % self.proc.pid

        def ready():
            if self.proc.poll() is not None:
                return "exited"
            text = log_text(self.root)
            i = text.find(pat)
            return i >= 0 and "devmaild: ready (" in text[i:]
        r = wait_for(ready, READY_SECONDS)
        if r is True:
            return True
        self.stop()
        return False

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if self.running():
            os.kill(self.proc.pid, sig)

    def term(self, seconds=20):
        """SIGTERM by PID; (exit status or None, seconds it took)."""
        if not self.proc:
            return None, 0.0
        t0 = time.monotonic()
        try:
            os.kill(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.rc = self.proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            self.rc = None
        took = time.monotonic() - t0
        if self.rc is None:
            self.kill()
        self.proc = None
        return self.rc, took

    def kill(self):
        """SIGKILL by PID and reap."""
        p, self.proc = self.proc, None
        if not p:
            return
        try:
            os.kill(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass

    def stop(self):
        if self.proc:
            rc, _ = self.term()
            return rc
        return None

    def clean(self):
        """No sanitizer report in its stderr."""
        return SANITIZER.search(self.stderr_text()) is None


class Relay:
    """127.0.0.1:port -> 127.0.0.1:target, one thread per connection.
    mode: "forward", "stall" (accept and hold: no greeting ever), or
    "freeze" (forward until the client has sent freeze_after bytes, then
    pass nothing more either way).  Counts connections."""

    def __init__(self, target):
        self.target = target
        self.mode = "forward"
        self.freeze_after = 0
        self.lock = threading.Lock()
        self.total = 0
        self.active = 0
        self.max_active = 0
        self.frozen = 0
        self.stopping = False
        self.socks = []
        self.threads = []
        self.ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(64)
        self.port = self.ls.getsockname()[1]
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def counts(self):
        with self.lock:
            return self.total, self.max_active

    def reset_counts(self):
        with self.lock:
            self.total = 0
            self.max_active = self.active

    def _accept(self):
        while not self.stopping:
            r, _, _ = select.select([self.ls], [], [], 0.2)
            if not r:
                continue
            try:
                c, _ = self.ls.accept()
            except OSError:
                break
            with self.lock:
                self.total += 1
                self.active += 1
                self.max_active = max(self.max_active, self.active)
                self.socks.append(c)
                mode, limit = self.mode, self.freeze_after
            t = threading.Thread(target=self._serve, args=(c, mode, limit),
                                 daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, c, mode, limit):
        up = None
        try:
            if mode == "stall":
                while not self.stopping:
                    r, _, _ = select.select([c], [], [], 0.2)
                    if r and not c.recv(65536):
                        break
                return
            up = socket.create_connection(("127.0.0.1", self.target), 10)
            with self.lock:
                self.socks.append(up)
            sent = 0
            frozen = False
            while not self.stopping:
                r, _, _ = select.select([c, up], [], [], 0.2)
                if frozen:
                    if c in r and not c.recv(65536):
                        break
                    continue
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        return
                    if s is c:
                        sent += len(data)
                        if mode == "freeze" and sent >= limit:
                            frozen = True
                            with self.lock:
                                self.frozen += 1
                            break
                        up.sendall(data)
                    else:
                        c.sendall(data)
        except OSError:
            pass
        finally:
            for s in (c, up):
                if s is not None:
                    try:
                        s.close()
                    except OSError:
                        pass
            with self.lock:
                self.active -= 1

    def stop(self):
        self.stopping = True
        try:
            self.ls.close()
        except OSError:
            pass
        self.acceptor.join(5)
        for t in self.threads:
            t.join(5)


def setup_root(top, name, port, pki, onboot=False, extra_reg=()):
    """A data root with the account (test CA, STARTTLS required, AUTH) on
    127.0.0.1:port, Email/ToAddress set, optional registry settings."""
    root = h.make_root(top, name, port, pki)
    pairs = [("Email/ToAddress", "ops@x.test"),
             ("Events/OnBoot/Email", "on" if onboot else "off")]
    pairs += list(extra_reg)
    for k, v in pairs:
        r = h.dm(root, "REG", k, "=", v)
        if r.returncode != 0:
            raise RuntimeError("REG %s failed: %r" % (k, r.stderr))
    return root


def subjects(capdir):
    return [str(c["msg"]["Subject"]) for c in h.captures(capdir)]


def count_files(capdir):
    try:
        return sum(1 for n in os.listdir(capdir)
                   if n.endswith(".eml") and not n.startswith("."))
    except OSError:
        return 0
