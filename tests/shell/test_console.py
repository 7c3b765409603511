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
import stat
import subprocess
import sys

sys.path.insert(0, os.path.join(
    os.environ.get("DEVMAIL_SOURCE_DIR")
    or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."),
    "tests", "lib"))
from dmtest import (DEVMAIL, STEP_SECONDS, Pty, check, clean_env,  # noqa: E402
                    exited_with, oneshot, run_main)

HOST = "testhost-7"
PROMPT = HOST + " /> "


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
              exited_with(st, 0),
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
              ok and exited_with(st, 0),
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
              exited_with(st, 0), repr(st))
    finally:
        p.kill()


def main():
    return run_main("console", (test_oneshot, test_interactive))


if __name__ == "__main__":
    sys.exit(main())
