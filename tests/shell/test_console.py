#!/usr/bin/python3
"""test_console.py - the devmail console as a new user meets it.

One-shot form (`devmail --root DIR CMD ARGS...`) through subprocess, piped
form (commands on stdin), and the interactive form on a pseudo-terminal
(pty.fork): prompt, HELP, REG set/get/delete/export/import, a bad value, a
sealed key, history recall with the up arrow (libedit), EXIT with status 0.
Stdlib only; run with Debian's /usr/bin/python3.  Every wait has a deadline;
the child is killed by PID at the end.  Exits non-zero on any failure.
"""
import os
import pty
import re
import select
import termios
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

BUILD = os.environ.get("DEVMAIL_BUILD_DIR") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "build")
DEVMAIL = os.path.join(BUILD, "devmail")
STEP_SECONDS = 20          # deadline for one command's reply
HOST = "testhost-7"
PROMPT = HOST + " /> "

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
    env = dict(os.environ)
    env.pop("DEVMAIL_ROOT", None)
    env["TERM"] = "xterm"
    return env


def oneshot(root, *args, stdin=None):
    return subprocess.run([DEVMAIL, "--root", root] + list(args),
                          input=stdin, capture_output=True, text=True,
                          timeout=STEP_SECONDS, env=clean_env())


def test_oneshot(root):
    r = oneshot(root, "HELP")
    check("HELP lists commands", r.returncode == 0 and "REG" in r.stdout
          and "LOG" in r.stdout, r.stdout + r.stderr)

    r = oneshot(root, "help", "reg")
    check("HELP REG: usage in capitals, Options block",
          r.returncode == 0 and r.stdout.startswith("REG [-a]")
          and "\nOptions:\n" in r.stdout, r.stdout)

    r = oneshot(root, "HELP", "Email/Port")
    check("HELP Email/Port topic",
          r.returncode == 0 and all(s in r.stdout for s in
                                    ("NAME\n", "DEFAULT\n    25", "DESCRIPTION\n", "SEE ALSO\n")),
          r.stdout)

    r = oneshot(root, "HELP", "Nonsense")
    check("HELP unknown topic is 64", r.returncode == 64
          and r.stderr.startswith("HELP: "), r.stderr)

    r = oneshot(root, "REG", "Email/Port", "=", "587")
    check("REG set (spaced =)", r.returncode == 0
          and r.stdout == "Email/Port = 587\n", r.stdout + r.stderr)

    r = oneshot(root, "REG", "Email/Port=465")
    check("REG set (KEY=VALUE)", r.returncode == 0
          and r.stdout == "Email/Port = 465\n", r.stdout + r.stderr)

    r = oneshot(root, "reg", "email/port")
    check("REG get, any case", r.returncode == 0
          and r.stdout.startswith("Email/Port = 465"), r.stdout + r.stderr)

    r = oneshot(root, "REG", "Email/Port", "=", "70000")
    check("REG bad value: 65, message names key, value, rule",
          r.returncode == 65 and r.stderr.startswith("REG: ")
          and "Email/Port" in r.stderr and "70000" in r.stderr
          and "65535" in r.stderr, "%d %s" % (r.returncode, r.stderr))
    r = oneshot(root, "REG", "Email/Port")
    check("bad value changed nothing", r.stdout.startswith("Email/Port = 465"),
          r.stdout)

    r = oneshot(root, "REG", "Email/Password", "=", "hunter2")
    check("REG sealed key refused with 77, points to IPCONFIG",
          r.returncode == 77 and "IPCONFIG" in r.stderr
          and "hunter2" not in r.stderr + r.stdout, "%d %s" % (r.returncode, r.stderr))

    r = oneshot(root, "REG", "-z")
    check("unknown option is 64", r.returncode == 64
          and "unknown option -z" in r.stderr, r.stderr)

    r = oneshot(root, "FROB")
    check("unknown command is 64", r.returncode == 64, r.stderr)

    r = oneshot(root, "REG", "-i", os.path.join(root, "missing.ini"))
    check("import of a missing file is 66", r.returncode == 66, r.stderr)

    r = oneshot(root, "LOG", "-n", "5")
    check("LOG shows the registry changes", r.returncode == 0
          and "REG: Email/Port set to '465'" in r.stdout, r.stdout)

    env = clean_env()
    env["DEVMAIL_ROOT"] = root
    r = subprocess.run([DEVMAIL, "REG", "Email/Port"], capture_output=True,
                       text=True, timeout=STEP_SECONDS, env=env)
    check("$DEVMAIL_ROOT selects the data root",
          r.returncode == 0 and "465" in r.stdout, r.stdout + r.stderr)

    r = oneshot(root, stdin="REG Email/Port\n# a comment\nreg Email/Port = 0\nEXIT\nREG Email/Port = 1\n")
    check("piped commands run without a prompt; EXIT stops",
          r.returncode == 0 and r.stdout.startswith("Email/Port = 465")
          and "/>" not in r.stdout and "REG: " in r.stderr
          and "Email/Port = 1\n" not in r.stdout, "%d %r %r" % (r.returncode, r.stdout, r.stderr))

    r = oneshot(root, stdin="REG Email/Port = 0\n")
    check("piped: status of the last command", r.returncode == 65, str(r.returncode))

    # A piped console owns stdin: SENDMAIL without -m/-F must not swallow the
    # commands that follow as its body.
    r = oneshot(root, stdin="SENDMAIL -t ops@example.com -s test\nREG Email/Port\n")
    check("piped SENDMAIL leaves the next commands alone",
          "-m TEXT or -F FILE" in r.stderr and "Email/Port = " in r.stdout,
          "%d %r %r" % (r.returncode, r.stdout, r.stderr))

    # Set the host name that the interactive prompt will show.
    r = oneshot(root, "REG", "IpConfig/HostName", "=", HOST)
    check("REG IpConfig/HostName", r.returncode == 0, r.stderr)


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]|\x1b[=>]|\x07")


class Pty:
    def __init__(self, argv):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            try:
                os.execve(argv[0], argv, clean_env())
            finally:
                os._exit(127)
        self.buf = ""
        self.pos = 0       # text before pos has been matched already
        self.status = None

    def _read(self, deadline):
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
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            pid, st = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                self.status = st
                return st
            self._read(min(deadline, time.monotonic() + 0.2))
        return None

    def kill(self):
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


def command(p, line, expect, name):
    """Types a line, checks `expect` appears in its output, waits for the prompt."""
    p.send(line + "\r")
    start = p.pos
    ok = p.expect(expect)
    got_prompt = p.expect(PROMPT)
    check(name, ok and got_prompt, repr(p.buf[start:][-600:]))
    return p.buf[start:p.pos]


def test_interactive(root):
    p = Pty([DEVMAIL, "--root", root])
    try:
        check("prompt '<hostname> />' appears", p.expect(PROMPT), repr(p.buf[-300:]))
        command(p, "HELP", "REG ", "interactive HELP")
        command(p, "help Email/StartTLS", "DEFAULT\n    true", "interactive HELP key topic")
        command(p, "REG Email/MailHost = mail.example.com",
                "Email/MailHost = mail.example.com\n", "interactive REG set")
        command(p, "REG Email/Port", "Email/Port = 465   [set; default 25]",
                "interactive REG get")
        command(p, "REG Email/Port = 99999", "REG: Email/Port: '99999'",
                "interactive bad value refused")
        command(p, "REG Email/Password = hunter2zz", "REG: Email/Password is sealed",
                "interactive sealed key refused")
        command(p, "IPCONFIG --password hunter2zz", "never taken on the command line",
                "interactive IPCONFIG --password refused")
        command(p, "REG Email/Port=2525", "Email/Port = 2525\n", "interactive REG set 2")
        # Up arrow three times: back past the set and the bad value to
        # "REG Email/Port" (the two lines with a password in clear are not
        # in the history); running it shows the new value.
        p.key("\x1b[A" * 3 + "\r")
        start = p.pos
        ok = p.expect("Email/Port = 2525   [set; default 25]") and p.expect(PROMPT)
        check("up arrow recalls history (libedit)", ok, repr(p.buf[start:][-400:]))
        exp = os.path.join(root, "console.ini")
        command(p, "REG -x " + exp, "registry exported to", "interactive export")
        command(p, "REG -d Email/MailHost", "Email/MailHost deleted", "interactive delete")
        out = command(p, "REG Email", "Email/Port = 2525", "interactive section after delete")
        check("delete removed the key", "MailHost" not in out, repr(out))
        command(p, "REG -i " + exp, "registry imported from", "interactive import")
        command(p, "REG Email/MailHost", "Email/MailHost = mail.example.com",
                "import restored the key")
        command(p, "NOPE", "unknown command 'NOPE'", "interactive unknown command")
        # Ctrl-C drops the half-typed line and keeps the console.
        p.send("REG Email/Port = 1")
        p.expect("REG Email/Port = 1")
        p.key("\x03")
        check("Ctrl-C gives a fresh prompt", p.expect(PROMPT), repr(p.buf[-300:]))
        out = command(p, "REG Email/Port", "Email/Port = 2525", "console alive after Ctrl-C")
        check("Ctrl-C discarded the typed line", "Email/Port = 1" not in out, repr(out))
        p.send("EXIT\r")
        st = p.wait_exit()
        check("EXIT ends the console with status 0",
              st is not None and os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0,
              repr(st))
    finally:
        p.kill()

    hist = os.path.join(root, "console_history")
    ok = os.path.exists(hist)
    check("history file in the data root, mode 0600",
          ok and stat.S_IMODE(os.stat(hist).st_mode) == 0o600, hist)
    text = open(hist, encoding="utf-8", errors="replace").read() if ok else ""
    check("history file holds the commands", "Email/Port=2525" in text, text[-300:])
    check("no password typed in clear reaches the history file",
          "hunter2zz" not in text and "Email/Password" not in text, text[-300:])

    # History survives a restart: a new session recalls the last command.
    p = Pty([DEVMAIL, "--root", root])
    try:
        p.expect(PROMPT)
        p.key("\x1b[A\r")
        ok = p.expect("EXIT")
        st = p.wait_exit()
        check("history is loaded by the next session",
              ok and st is not None and os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0,
              repr(p.buf[-300:]))
    finally:
        p.kill()

    # End of input (Ctrl-D on an empty line) also leaves with 0.
    p = Pty([DEVMAIL, "--root", root])
    try:
        p.expect(PROMPT)
        p.key("\x04")
        st = p.wait_exit()
        check("Ctrl-D leaves with status 0",
              st is not None and os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0, repr(st))
    finally:
        p.kill()


def main():
    if not os.access(DEVMAIL, os.X_OK):
        print("devmail binary not found at " + DEVMAIL)
        print("0 passed, 1 failed")
        return 1
    root = tempfile.mkdtemp(prefix="devmail-console-")
    try:
        test_oneshot(root)
        test_interactive(root)
    except Exception as e:      # an unexpected error is a failure, not a crash
        check("no unexpected exception", False, repr(e))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
