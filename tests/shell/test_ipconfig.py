#!/usr/bin/python3
"""test_ipconfig.py - IPCONFIG as an operator meets it.

One-shot display (host name, 127.0.0.1/8, the email section), the script
form with --password-stdin (REG shows <sealed>), refusals that change
nothing (--password in argv: 64; bad port or address: 65), HELP IPCONFIG,
and IPCONFIG -E on a pseudo-terminal (pty.fork) inside the console: a bad
answer asked again, the password typed twice without echo, a mismatch asked
again, then the registry holds the values and a sealed password, and
neither the system log, the console history, registry.db nor the pty output
holds the password.  Also port 465 turning SMTPS on, Ctrl-C at the
password prompt: nothing written, terminal echo restored (stty -a after),
and the standard-streams io in each use: a piped console (the secret is
the next line), a one-shot command on a terminal, Ctrl-C inside a command
of the terminal console (the console stays).
Stdlib only; Debian's /usr/bin/python3.  Every wait has a deadline; every
child is killed by PID at the end.  Exits non-zero on any failure.
"""
import os
import re
import sys

sys.path.insert(0, os.path.join(
    os.environ.get("DEVMAIL_SOURCE_DIR")
    or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."),
    "tests", "lib"))
from dmtest import DEVMAIL, Pty, check, exited_with, oneshot, run_main  # noqa: E402

HOST = "ipc-host-3"
PROMPT = HOST + " /> "
PW_SCRIPT = "scr1pt-Pw-7781"
PW_PTY = "Pty-S3cret-4417"
PW_WRONG = "typo-4417-Pty"



def snapshot(root):
    """The registry's set keys, sealed values in their sealed form."""
    path = os.path.join(root, "snap.ini")
    if os.path.exists(path):
        os.remove(path)
    r = oneshot(root, "REG", "-x", path)
    if r.returncode != 0:
        return "export failed: " + r.stderr
    with open(path, encoding="utf-8") as f:
        return f.read()


def file_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def secret_in_files(root, secret):
    """Names of the files under root that hold the secret's bytes."""
    hits = []
    needle = secret.encode()
    for d, _, files in os.walk(root):
        for n in files:
            p = os.path.join(d, n)
            if needle in file_bytes(p):
                hits.append(os.path.relpath(p, root))
    return hits


def answer(p, prompt, text, name):
    """Waits for `prompt`, then types `text` and Enter."""
    ok = p.expect(prompt)
    check(name, ok, repr(p.buf[-400:]))
    p.send(text + "\r")
    return ok


# ---- one-shot forms ---------------------------------------------------------

def test_display(root):
    r = oneshot(root, "REG", "IpConfig/HostName", "=", HOST)
    check("set IpConfig/HostName", r.returncode == 0, r.stderr)
    r = oneshot(root, "IPCONFIG")
    out = r.stdout
    check("IPCONFIG exits 0", r.returncode == 0, r.stderr)
    check("IPCONFIG shows the host name", "Host name:  " + HOST in out, out)
    check("IPCONFIG shows lo 127.0.0.1/8", re.search(r"lo\s+IPv4 127\.0\.0\.1/8", out)
          is not None, out)
    check("IPCONFIG shows gateway, DNS, clock lines",
          "Default gateway:" in out and "DNS servers:" in out and "Clock:" in out, out)
    check("IPCONFIG email section, nothing set yet",
          "\nEmail:\n" in out and "MailHost:   not set" in out
          and "Password:   not set" in out and "Port:       25" in out, out)

    r = oneshot(root, "HELP", "IPCONFIG")
    check("HELP IPCONFIG: usage, Options:, description",
          r.returncode == 0 and r.stdout.startswith("IPCONFIG [-E")
          and "\nOptions:\n" in r.stdout and "--password-stdin" in r.stdout
          and "never" in r.stdout, r.stdout)


def test_script(root):
    r = oneshot(root, "IPCONFIG", "--mailhost", "smtp.example.com", "--port", "587",
                "--starttls", "on", "--require-tls", "on",
                "--from", "JNIOR <jnior@example.com>",
                "--to", "ops@example.com,oncall@example.com",
                "--username", "jnior", "--mechanism", "plain",
                "--password-stdin", stdin=PW_SCRIPT + "\r\n")
    check("script form saves (exit 0)", r.returncode == 0, r.stdout + r.stderr)
    check("script form prints the summary",
          "MailHost:   smtp.example.com" in r.stdout
          and "Password:   set (sealed)" in r.stdout
          and "RequireTLS on" in r.stdout and "STARTTLS" in r.stdout, r.stdout)
    check("script form never prints the password",
          PW_SCRIPT not in r.stdout + r.stderr, r.stdout)
    r = oneshot(root, "REG", "Email")
    check("REG shows the keys and Email/Password = <sealed>",
          "Email/Password = <sealed>" in r.stdout
          and "Email/Port = 587" in r.stdout
          and "Email/AuthMechanism = PLAIN" in r.stdout
          and "Email/RequireTLS = true" in r.stdout, r.stdout)
    snap = snapshot(root)
    m = re.search(r"Password = (\S+)", snap)
    check("registry holds the vault's sealed form",
          m is not None and m.group(1).startswith("dmv1:"), snap)
    check("password in no file of the root (db, log, ...)",
          secret_in_files(root, PW_SCRIPT) == [], repr(secret_in_files(root, PW_SCRIPT)))
    r = oneshot(root, "LOG")
    check("system log records the change, not the password",
          "email account updated: MailHost=smtp.example.com, Port=587" in r.stdout
          and "password changed" in r.stdout and PW_SCRIPT not in r.stdout, r.stdout)
    r = oneshot(root, "IPCONFIG")
    check("IPCONFIG shows the account", "From:       JNIOR <jnior@example.com>" in r.stdout
          and "Username:   jnior" in r.stdout
          and "Password:   set (sealed)" in r.stdout, r.stdout)

    # Refusals: nothing changes.
    before = snapshot(root)
    for args in (["--password", "hunter2zz"], ["--password=hunter2zz"],
                 ["--mailhost", "x.example.com", "--PASSWORD", "hunter2zz"],
                 ["--passwd=hunter2zz"], ["-password", "hunter2zz"]):
        r = oneshot(root, "IPCONFIG", *args)
        check("refused with 64: " + " ".join(args),
              r.returncode == 64 and "--password-stdin" in r.stderr
              and "-E" in r.stderr and "hunter2zz" not in r.stdout + r.stderr,
              "%d %s" % (r.returncode, r.stderr))
    check("--password refusals changed nothing", snapshot(root) == before)

    r = oneshot(root, "IPCONFIG", "--mailhost", "other.example.com", "--port", "70000",
                "--password-stdin", stdin="another-pw-1\n")
    check("bad port refused with 65 and the rule",
          r.returncode == 65 and "Email/Port" in r.stderr and "70000" in r.stderr
          and "65535" in r.stderr and "another-pw-1" not in r.stderr,
          "%d %s" % (r.returncode, r.stderr))
    check("bad port changed nothing (not even the host or password)",
          snapshot(root) == before)

    r = oneshot(root, "IPCONFIG", "--mailhost", "other.example.com",
                "--to", "ops@example.com, not an address")
    check("bad address refused with 65", r.returncode == 65
          and "Email/ToAddress" in r.stderr, "%d %s" % (r.returncode, r.stderr))
    r = oneshot(root, "IPCONFIG", "--smtps", "maybe")
    check("bad boolean refused with 65", r.returncode == 65
          and "Email/SMTPS" in r.stderr, "%d %s" % (r.returncode, r.stderr))
    r = oneshot(root, "IPCONFIG", "--password-stdin", stdin="")
    check("empty stdin for --password-stdin refused", r.returncode == 65, r.stderr)
    check("bad values changed nothing", snapshot(root) == before)

    r = oneshot(root, "IPCONFIG", "-E", "--port", "25")
    check("-E with script options is a usage error", r.returncode == 64, r.stderr)


# ---- IPCONFIG -E on a terminal ---------------------------------------------

def test_setup_pty(root):
    before_log = file_bytes(os.path.join(root, "log", "system.log"))
    p = Pty([DEVMAIL, "--root", root])
    try:
        check("console prompt", p.expect(PROMPT), repr(p.buf[-300:]))
        p.send("IPCONFIG -E\r")
        answer(p, "Mail server (Email/MailHost) [smtp.example.com]: ",
               "bad host name!", "-E asks for MailHost with the current value")
        check("-E re-asks on a bad host with the schema's message",
              p.expect("Email/MailHost") and p.expect("try again"), repr(p.buf[-400:]))
        answer(p, "Mail server (Email/MailHost) [smtp.example.com]: ",
               "mail.plant.example", "MailHost asked again")
        check("-E explains 587, 465 and 25",
              p.expect("587 = submission") and p.expect("465 = implicit TLS")
              and p.expect("25 = SMTP relay"), repr(p.buf[-400:]))
        answer(p, "Port (Email/Port) [587]: ", "70000", "Port prompt")
        check("bad port asked again", p.expect("out of range") and p.expect("try again"),
               repr(p.buf[-300:]))
        answer(p, "Port (Email/Port) [587]: ", "587", "Port asked again")
        answer(p, "From address (Email/FromAddress) [JNIOR <jnior@example.com>]: ",
               "boiler@plant.example", "From prompt")
        answer(p, "(Email/ToAddress) [ops@example.com, oncall@example.com]: ",
               "alarm@plant.example, ops@plant.example", "To prompt")
        answer(p, "(Email/Username) [jnior]: ", "boiler", "Username prompt")
        answer(p, "Password (not shown; Enter keeps the current one): ", PW_PTY,
               "password prompt")
        answer(p, "Password again: ", PW_WRONG, "password asked twice")
        check("a mismatch is reported", p.expect("do not match"), repr(p.buf[-300:]))
        answer(p, "Password (not shown; Enter keeps the current one): ", PW_PTY,
               "password asked again after the mismatch")
        answer(p, "Password again: ", PW_PTY, "second confirmation")
        ok = p.expect("Email account saved (password sealed).")
        check("-E saves", ok, repr(p.buf[-600:]))
        check("-E prints the summary",
              p.expect("MailHost:   mail.plant.example") and p.expect("Port:       587")
              and p.expect("Password:   set (sealed)"), repr(p.buf[-600:]))
        check("-E suggests the test mail",
              p.expect("SENDMAIL -t you@example.com -s test -m hello"), repr(p.buf[-300:]))
        check("console prompt after -E", p.expect(PROMPT), repr(p.buf[-300:]))
        p.send("EXIT\r")
        st = p.wait_exit()
        check("console exits 0", exited_with(st, 0), repr(st))
        p.drain(1)
    finally:
        p.kill()

    transcript = p.raw
    check("typed password never echoed on the terminal",
          PW_PTY.encode() not in transcript and PW_WRONG.encode() not in transcript,
          repr(transcript[-800:]))
    check("the other answers were echoed (the check above can fail)",
          b"mail.plant.example" in transcript and b"boiler@plant.example" in transcript)

    r = oneshot(root, "REG", "Email")
    check("registry holds the -E values",
          "Email/MailHost = mail.plant.example" in r.stdout
          and "Email/FromAddress = boiler@plant.example" in r.stdout
          and "Email/ToAddress = alarm@plant.example, ops@plant.example" in r.stdout
          and "Email/Username = boiler" in r.stdout
          and "Email/Password = <sealed>" in r.stdout, r.stdout)
    snap = snapshot(root)
    m = re.search(r"Password = (\S+)", snap)
    check("new password sealed (dmv1:) in the registry",
          m is not None and m.group(1).startswith("dmv1:"), snap)
    hits = secret_in_files(root, PW_PTY) + secret_in_files(root, PW_WRONG)
    check("password in no file: registry.db, system.log, console_history",
          hits == [], repr(hits))
    hist = file_bytes(os.path.join(root, "console_history"))
    check("console history was written (holds IPCONFIG -E)",
          b"IPCONFIG" in hist and b"-E" in hist,
          repr(hist[-200:]))
    log = file_bytes(os.path.join(root, "log", "system.log"))
    new_log = log[len(before_log):]
    check("system log: one update line for -E, password changed",
          new_log.count(b"email account updated: MailHost=mail.plant.example, Port=587") == 1
          and b"password changed" in new_log, repr(new_log))


def test_setup_465(root):
    """Port 465 offers SMTPS; Enter keeps the rest, the password included."""
    sealed_before = re.search(r"Password = (\S+)", snapshot(root))
    p = Pty([DEVMAIL, "--root", root, "IPCONFIG", "-E"])
    try:
        answer(p, "[mail.plant.example]: ", "", "465: keep MailHost")
        answer(p, "Port (Email/Port) [587]: ", "465", "465: port")
        answer(p, "Turn on SMTPS? [Y/n]: ", "y", "465 offers to turn on SMTPS")
        answer(p, "[boiler@plant.example]: ", "", "465: keep From")
        answer(p, "[alarm@plant.example, ops@plant.example]: ", "", "465: keep To")
        answer(p, "[boiler]: ", "", "465: keep Username")
        answer(p, "Enter keeps the current one): ", "", "465: keep password")
        check("465: saved without a password change",
              p.expect("Email account saved.\n") and p.expect("Security:   SMTPS"),
              repr(p.buf[-500:]))
        st = p.wait_exit()
        check("465: exit 0", exited_with(st, 0), repr(st))
    finally:
        p.kill()
    snap = snapshot(root)
    check("465: Port and SMTPS written", "Port = 465" in snap and "SMTPS = true" in snap, snap)
    sealed_after = re.search(r"Password = (\S+)", snap)
    check("465: Enter kept the sealed password as it was",
          sealed_before is not None and sealed_after is not None
          and sealed_before.group(1) == sealed_after.group(1), snap)

    # Back to 587 with SMTPS on: offers to turn it off.
    p = Pty([DEVMAIL, "--root", root, "IPCONFIG", "-E"])
    try:
        answer(p, "[mail.plant.example]: ", "", "587: keep MailHost")
        answer(p, "Port (Email/Port) [465]: ", "587", "587: port")
        answer(p, "Turn SMTPS off? [Y/n]: ", "", "587 with SMTPS on offers to turn it off")
        for prompt in ("[boiler@plant.example]: ",
                       "[alarm@plant.example, ops@plant.example]: ", "[boiler]: ",
                       "Enter keeps the current one): "):
            answer(p, prompt, "", "587: keep " + prompt)
        st = p.wait_exit()
        p.drain(1)
        check("587: exit 0", exited_with(st, 0), repr(p.buf[-400:]))
    finally:
        p.kill()
    snap = snapshot(root)
    check("587: SMTPS off again", "Port = 587" in snap and "SMTPS = false" in snap, snap)


def test_setup_interrupt(root):
    """Ctrl-C at the password prompt: nothing written, echo restored."""
    before = snapshot(root)
    script = ("trap '' INT; '%s' --root '%s' IPCONFIG -E; echo \"rc=$?\"; stty -a"
              % (DEVMAIL, root))
    p = Pty(["/bin/sh", "-c", script])
    try:
        answer(p, "[mail.plant.example]: ", "changed.example", "^C: new MailHost typed")
        answer(p, "Port (Email/Port) [587]: ", "25", "^C: port")
        answer(p, "[boiler@plant.example]: ", "", "^C: From")
        answer(p, "[alarm@plant.example, ops@plant.example]: ", "", "^C: To")
        answer(p, "[boiler]: ", "", "^C: Username")
        check("^C: password prompt", p.expect("Enter keeps the current one): "),
              repr(p.buf[-300:]))
        p.send("half-typ")
        p.send("\x03")
        check("^C: interrupted, nothing changed",
              p.expect("interrupted; nothing changed") and p.expect("rc=130"),
              repr(p.buf[-400:]))
        got = p.expect("speed")
        p.wait_exit()
        p.drain(1)
        tail = p.buf[p.pos:]
        check("^C: terminal echo restored (stty shows echo, not -echo)",
              got and re.search(r"(?<![-\w])echo(?![\w])", tail) is not None
              and re.search(r"-echo(?![\w])", tail) is None, repr(tail[:600]))
    finally:
        p.kill()
    check("^C: registry unchanged", snapshot(root) == before)

    # Three mismatches: refused, nothing written.
    p = Pty([DEVMAIL, "--root", root, "IPCONFIG", "-E"])
    try:
        answer(p, "[mail.plant.example]: ", "third.example", "mismatch x3: MailHost")
        for prompt in ("Port (Email/Port) [587]: ", "[boiler@plant.example]: ",
                       "[alarm@plant.example, ops@plant.example]: ", "[boiler]: "):
            answer(p, prompt, "", "mismatch x3: keep " + prompt)
        for i in range(3):
            answer(p, "Enter keeps the current one): ", "aaa-%d" % i,
                   "mismatch x3: password %d" % i)
            answer(p, "Password again: ", "bbb-%d" % i, "mismatch x3: again %d" % i)
        st = p.wait_exit()
        p.drain(1)
        check("three mismatches: exit 65, nothing changed",
              exited_with(st, 65) and "nothing changed" in p.buf, repr(p.buf[-300:]))
    finally:
        p.kill()
    check("three mismatches: registry unchanged", snapshot(root) == before)


def test_token(root):
    """The XOAUTH2 bearer token is a secret like the password."""
    token = "ya29.tok-" + PW_SCRIPT
    r = oneshot(root, "IPCONFIG", "--oauth-token-stdin", stdin=token + "\n")
    check("--oauth-token-stdin saves (exit 0)", r.returncode == 0
          and "OAuth token sealed" in r.stdout
          and "OAuth token: set (sealed" in r.stdout, r.stdout + r.stderr)
    r = oneshot(root, "REG", "Email/OAuthToken")
    check("REG shows the token as <sealed>", "<sealed>" in r.stdout, r.stdout)
    check("token in no file of the root", secret_in_files(root, token) == [],
          repr(secret_in_files(root, token)))
    before = snapshot(root)
    for args in (["--oauth-token", "tok-argv-1"], ["--token=tok-argv-1"]):
        r = oneshot(root, "IPCONFIG", *args)
        check("refused with 64: " + " ".join(args),
              r.returncode == 64 and "--oauth-token-stdin" in r.stderr
              and "tok-argv-1" not in r.stdout + r.stderr,
              "%d %s" % (r.returncode, r.stderr))
    r = oneshot(root, "IPCONFIG", "--password-stdin", "--oauth-token-stdin",
                stdin="a\nb\n")
    check("one secret per call", r.returncode == 64, r.stderr)
    r = oneshot(root, "IPCONFIG", "--password-stdin", "--clear-password",
                stdin="a\n")
    check("set and clear at once refused", r.returncode == 64, r.stderr)
    check("refusals changed nothing", snapshot(root) == before)
    r = oneshot(root, "IPCONFIG", "--clear-oauth-token")
    r2 = oneshot(root, "REG", "Email/OAuthToken")
    check("--clear-oauth-token removes it", r.returncode == 0
          and "not set" in r2.stdout, r.stderr + r2.stdout)
    r = oneshot(root, "IPCONFIG", "--clear-password")
    check("--clear-password removes the password", r.returncode == 0
          and "Password:   not set" in r.stdout, r.stdout + r.stderr)
    r = oneshot(root, "LOG")
    check("log says cleared", "password cleared" in r.stdout
          and "OAuth token cleared" in r.stdout, r.stdout)


def test_io_modes(root):
    """The standard-streams io in its three uses: a piped console (the secret
    is the next line, the command after it still runs), a one-shot command on
    a terminal (prompt, no echo), and Ctrl-C inside a command of the terminal
    console (the command stops, the console stays)."""
    pw_pipe = "Piped-Console-Pw-5150"
    r = oneshot(root, stdin="IPCONFIG --password-stdin\n" + pw_pipe +
                "\nREG Email/Password\nEXIT\n")
    check("piped console: the secret is the next line, then REG runs",
          r.returncode == 0 and "Password:   set (sealed)" in r.stdout
          and "Email/Password = <sealed>" in r.stdout, r.stdout + r.stderr)
    check("piped console: the secret is never shown",
          pw_pipe not in r.stdout + r.stderr, r.stdout + r.stderr)

    pw_tty = "Tty-OneShot-Pw-6262"
    p = Pty([DEVMAIL, "--root", root, "IPCONFIG", "--password-stdin"])
    try:
        answer(p, "Password: ", pw_tty, "one-shot on a terminal prompts")
        check("one-shot on a terminal saves",
              p.expect("Email account saved (password sealed)."),
              repr(p.buf[-300:]))
        st = p.wait_exit()
        p.drain(1)
        check("one-shot on a terminal: exit 0, password not echoed",
              exited_with(st, 0) and pw_tty.encode() not in p.raw,
              repr(p.raw[-300:]))
    finally:
        p.kill()
    check("one-shot password in no file", secret_in_files(root, pw_tty) == [])

    before = snapshot(root)
    p = Pty([DEVMAIL, "--root", root])
    try:
        check("console prompt", p.expect(PROMPT), repr(p.buf[-300:]))
        p.send("IPCONFIG -E\r")
        check("-E asks in the console", p.expect("(Email/MailHost) ["),
              repr(p.buf[-300:]))
        p.send("half-typed.example")
        p.send("\x03")
        check("Ctrl-C stops -E, nothing changed",
              p.expect("interrupted; nothing changed"), repr(p.buf[-300:]))
        check("the console stays after a Ctrl-C in a command",
              p.expect(PROMPT), repr(p.buf[-300:]))
        p.send("REG Email/Port\r")
        command_ok = p.expect("Email/Port = ") and p.expect(PROMPT)
        check("the console runs the next command", command_ok,
              repr(p.buf[-300:]))
        p.send("EXIT\r")
        st = p.wait_exit()
        check("console exits 0 after the interrupted command",
              exited_with(st, 0), repr(st))
    finally:
        p.kill()
    check("interrupted -E in the console: registry unchanged",
          snapshot(root) == before)


def main():
    return run_main("ipconfig", (test_display, test_script, test_setup_pty,
                                 test_setup_465, test_setup_interrupt, test_token,
                                 test_io_modes))


if __name__ == "__main__":
    sys.exit(main())
