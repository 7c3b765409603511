"""dmtest.py - shared helpers for the Python tests of the devmail console.

A test imports it through sys.path (tests/lib under $DEVMAIL_SOURCE_DIR, or
relative to the test file) and keeps its own checks:

    check(name, ok, detail)   counts and prints one check ("ok   " / "FAIL ")
    oneshot(root, *args)      `devmail --root ROOT ARGS...` via subprocess
    Pty(argv)                 a child on a pseudo-terminal (pty.fork) with
                              bounded reads, ANSI stripping, expect(),
                              wait_editing()/key(), wait_exit(), kill()
    run_main(tag, tests)      a fresh data root devmail-<tag>-*, each test in
                              turn, the "N passed, M failed" line, exit code

Stdlib only; Debian's /usr/bin/python3.  Every wait has a deadline; a Pty
child is killed by PID in kill().
"""
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import tempfile
import termios
import time

BUILD = os.environ.get("DEVMAIL_BUILD_DIR") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "build")
DEVMAIL = os.path.join(BUILD, "devmail")
STEP_SECONDS = 20          # deadline for one command's reply

passed = 0
failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print("ok   " + name)
    else:
        failed += 1
        print("FAIL " + name + (": " + detail if detail else ""))


def clean_env():
    """The environment for devmail: no $DEVMAIL_ROOT, a known TERM."""
    env = dict(os.environ)
    env.pop("DEVMAIL_ROOT", None)
    env["TERM"] = "xterm"
    return env


def oneshot(root, *args, stdin=None):
    return subprocess.run([DEVMAIL, "--root", root] + list(args),
                          input=stdin, capture_output=True, text=True,
                          timeout=STEP_SECONDS, env=clean_env())


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]|\x1b[=>]|\x07")


class Pty:
    """A child process on a pseudo-terminal.  `buf` holds its output with
    ANSI sequences and CRs removed, `raw` the bytes as they came."""

    def __init__(self, argv):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            try:
                os.execve(argv[0], argv, clean_env())
            finally:
                os._exit(127)
        self.buf = ""
        self.raw = b""
        self.pos = 0       # text before pos has been matched already
        self.status = None

    def _read(self, deadline):
        """Reads once (at most 0.5 s); False at the deadline or end of output."""
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        r, _, _ = select.select([self.fd], [], [], min(left, 0.5))
        if not r:
            return True
        try:
            data = os.read(self.fd, 4096)
        except OSError:
            return False    # EIO: the child closed the terminal
        if not data:
            return False
        self.raw += data
        self.buf += ANSI.sub("", data.decode("utf-8", "replace")).replace("\r", "")
        return True

    def expect(self, text, seconds=STEP_SECONDS):
        """Waits until `text` appears after the last match; True if it did."""
        deadline = time.monotonic() + seconds
        while True:
            i = self.buf.find(text, self.pos)
            if i >= 0:
                self.pos = i + len(text)
                return True
            if not self._read(deadline):
                i = self.buf.find(text, self.pos)
                if i >= 0:
                    self.pos = i + len(text)
                    return True
                return False

    def send(self, s):
        os.write(self.fd, s.encode())

    def wait_editing(self, seconds=STEP_SECONDS):
        """Waits until libedit has put the terminal into its own (non-
        canonical) mode.  A control key typed before that is handled by the
        kernel's line discipline, not by the console (typeahead), so tests
        of Ctrl-C, Ctrl-D and arrow keys wait for this first.  On Linux the
        master side reports the slave's termios."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                if not termios.tcgetattr(self.fd)[3] & termios.ICANON:
                    return True
            except termios.error:
                return False
            self._read(min(deadline, time.monotonic() + 0.05))
        return False

    def key(self, s):
        """Sends an editing key once the line editor is reading."""
        if not self.wait_editing():
            raise AssertionError("line editor never took the terminal")
        self.send(s)

    def since_last(self):
        return self.buf[self.pos:]

    def wait_exit(self, seconds=STEP_SECONDS):
        """Reaps the child within `seconds`; its wait status, or None."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            pid, st = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                self.status = st
                return st
            self._read(min(deadline, time.monotonic() + 0.2))
        return None

    def drain(self, seconds=2):
        """Reads what is left until end of output or `seconds`."""
        deadline = time.monotonic() + seconds
        while self._read(deadline):
            pass

    def kill(self):
        """SIGKILL to the child's PID unless it was reaped; closes the pty."""
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        try:
            os.close(self.fd)
        except OSError:
            pass


def exited_with(st, code=0):
    """True when a wait status says the process exited with `code`."""
    return st is not None and os.WIFEXITED(st) and os.WEXITSTATUS(st) == code


def run_main(tag, tests):
    """Runs tests (functions of the data root) in one fresh root
    devmail-<tag>-*, removed afterwards; prints the count line and returns
    the exit status (0 only when nothing failed)."""
    if not os.access(DEVMAIL, os.X_OK):
        print("devmail binary not found at " + DEVMAIL)
        print("0 passed, 1 failed")
        return 1
    root = tempfile.mkdtemp(prefix="devmail-%s-" % tag)
    try:
        for t in tests:
            t(root)
    except Exception as e:      # an unexpected error is a failure, not a crash
        check("no unexpected exception", False, repr(e))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1
