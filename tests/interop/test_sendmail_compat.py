#!/usr/bin/python3
"""test_sendmail_compat.py - devmail-sendmail as cron, mailx and scripts use it.

A real aiosmtpd (tests/interop/aiosmtpd_server.py) on loopback with STARTTLS
required, AUTH PLAIN/LOGIN and a certificate from the test CA
(tests/lib/pki.sh); the account is set with `devmail --root R IPCONFIG ...
--password-stdin` and `REG Email/CAFile`.  Checks what the server received
(capture files): -t recipients, Bcc removed but delivered, Date/Message-ID/
From added, -i/-oi and the lone-dot rule, recipients as arguments, -f/-F,
bare LF turned into CRLF, ignored flags, -odq then -q, a 5xx recipient, and
refusals (bad address, unknown option, no recipient, no account) that leave
the spool exactly as it was.

Stdlib only; run with Debian's /usr/bin/python3.  Every wait has a deadline;
servers are stopped by PID in finally blocks.  Prints "N passed, 0 failed".
"""
import email
import email.policy
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SRC = os.environ.get("DEVMAIL_SOURCE_DIR") or os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BUILD = os.environ.get("DEVMAIL_BUILD_DIR") or os.path.join(SRC, "build")
DEVMAIL = os.path.join(BUILD, "devmail")
SENDMAIL = os.path.join(BUILD, "devmail-sendmail")
PEER = os.path.join(SRC, "tests", "interop", "aiosmtpd_server.py")
STEP = 60            # seconds allowed for one command (ASan builds are slow)
USER, PASSWORD = "dev", "s3cret-Pw"
FROM = "device@unit.test"

passed = 0
failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print("ok   " + name)
    else:
        failed += 1
        print("FAIL " + name + (": " + str(detail)[:2000] if detail else ""))
    sys.stdout.flush()


def env_clean(root=None):
    env = dict(os.environ)
    env.pop("DEVMAIL_ROOT", None)
    if root:
        env["DEVMAIL_ROOT"] = root
    return env


def run(argv, stdin=None, env=None):
    return subprocess.run(argv, input=stdin, capture_output=True,
                          timeout=STEP, env=env or env_clean())


def dm(root, *args, stdin=None):
    return run([DEVMAIL, "--root", root] + list(args), stdin=stdin)


def sm(root, *args, stdin=b""):
    return run([SENDMAIL, "--root", root] + list(args), stdin=stdin)


class Server:
    """aiosmtpd on 127.0.0.1, started and stopped by PID."""

    def __init__(self, pki, capture, extra=()):
        self.pki, self.capture, self.extra = pki, capture, list(extra)
        self.proc = None
        self.port = 0

    def start(self, port=0):
        argv = ["/usr/bin/python3", PEER, "--tls", "starttls-required",
                "--cert", os.path.join(self.pki, "server.pem"),
                "--key", os.path.join(self.pki, "server.key"),
                "--user", "%s:%s" % (USER, PASSWORD),
                "--capture", self.capture, "--port", str(port)] + self.extra
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        line = b""
        while time.monotonic() < deadline and not line.endswith(b"\n"):
            r, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if r:
                b = os.read(self.proc.stdout.fileno(), 1)
                if not b:
                    break
                line += b
        if not line.startswith(b"READY "):
            self.stop()
            raise RuntimeError("aiosmtpd did not start: %r" % line)
        self.port = int(line.split()[1])
        return self.port

    def stop(self):
        p, self.proc = self.proc, None
        if not p:
            return
        try:
            os.kill(p.pid, signal.SIGTERM)
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(timeout=5)
        except ProcessLookupError:
            pass
        if p.stdout:
            p.stdout.close()


def captures(capdir):
    """Captured messages in order: dicts with from, rcpt, data, msg."""
    out = []
    if not os.path.isdir(capdir):
        return out
    for name in sorted(os.listdir(capdir)):
        if not name.endswith(".eml") or name.startswith("."):
            continue
        with open(os.path.join(capdir, name), "rb") as f:
            raw = f.read()
        head, _, data = raw.partition(b"\n\n")
        c = {"name": name, "rcpt": [], "data": data}
        for line in head.decode().split("\n"):
            if line.startswith("MAIL FROM:<"):
                c["from"] = line[11:-1]
            elif line.startswith("RCPT TO:<"):
                c["rcpt"].append(line[9:-1])
            elif line.startswith("TLS "):
                c["tls"] = line[4:]
            elif line.startswith("AUTH "):
                c["auth"] = line[5:]
        c["msg"] = email.message_from_bytes(data, policy=email.policy.default)
        out.append(c)
    return out


def spool_listing(root):
    """Every path under root/spool (files and directories), sorted."""
    spool = os.path.join(root, "spool")
    out = []
    for d, dirs, files in os.walk(spool):
        for n in dirs + files:
            out.append(os.path.relpath(os.path.join(d, n), spool))
    return sorted(out)


def queued_ids(root, which="queue"):
    d = os.path.join(root, "spool", which)
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def bare_lf(data):
    return any(data[i] == 0x0A and (i == 0 or data[i - 1] != 0x0D)
               for i in range(len(data)))


def make_root(top, name, port, pki):
    root = os.path.join(top, name)
    r = dm(root, "IPCONFIG", "--mailhost", "127.0.0.1", "--port", str(port),
           "--starttls", "on", "--require-tls", "on", "--from", FROM,
           "--username", USER, "--password-stdin",
           stdin=(PASSWORD + "\n").encode())
    if r.returncode != 0:
        raise RuntimeError("IPCONFIG failed: %r" % (r.stderr,))
    r = dm(root, "REG", "Email/CAFile", "=", os.path.join(pki, "ca.pem"))
    if r.returncode != 0:
        raise RuntimeError("REG Email/CAFile failed: %r" % (r.stderr,))
    return root


def new_captures(srv, seen):
    caps = captures(srv.capture)
    return caps[seen:], len(caps)


def main():
    top = tempfile.mkdtemp(prefix="devmail-smcompat-")
    pki = os.path.join(top, "pki")
    subprocess.run(["bash", os.path.join(SRC, "tests", "lib", "pki.sh"), pki],
                   check=True, timeout=120, capture_output=True)
    srv = Server(pki, os.path.join(top, "cap"),
                 ["--rcpt-reply", "nobody@unit.test=550 5.1.1 No such user"])
    try:
        port = srv.start()
        root = make_root(top, "root", port, pki)
        seen = 0

        # 1. The classic cron/mailx form, root from DEVMAIL_ROOT.
        r = run([SENDMAIL, "-t"], stdin=b"To: a@x.test\nSubject: s\n\nbody\n",
                env=env_clean(root))
        new, seen = new_captures(srv, seen)
        check("-t from stdin (DEVMAIL_ROOT): exit 0, silent",
              r.returncode == 0 and r.stdout == b"" and r.stderr == b"",
              (r.returncode, r.stdout, r.stderr))
        ok = len(new) == 1
        check("-t: one message captured to a@x.test over TLS with AUTH",
              ok and new[0]["rcpt"] == ["a@x.test"] and new[0]["from"] == FROM
              and new[0]["tls"].startswith("TLS") and new[0]["auth"] == USER,
              new)
        if ok:
            m = new[0]["msg"]
            check("Date, Message-ID and From added",
                  m["Date"] and m["Message-ID"] and str(m["From"]) == FROM
                  and m["Message-ID"].startswith("<")
                  and m["Message-ID"].endswith(">"), str(m))
            check("bare LF became CRLF, body intact",
                  not bare_lf(new[0]["data"])
                  and new[0]["data"].endswith(b"\r\n\r\nbody\r\n"),
                  new[0]["data"])
            check("Subject and To kept", m["Subject"] == "s"
                  and str(m["To"]) == "a@x.test", str(m))
        check("spool empty after delivery", queued_ids(root) == []
              and queued_ids(root, "failed") == [], spool_listing(root))

        # 2. Bcc: delivered, removed from the message.
        r = sm(root, "-t", stdin=b"To: a@x.test\nCc: c@x.test\n"
               b"Bcc: hidden@x.test, Other <h2@x.test>\nSubject: bcc\n\nb\n")
        new, seen = new_captures(srv, seen)
        check("-t with Bcc: exit 0", r.returncode == 0, r.stderr)
        check("Bcc recipients delivered, Bcc field removed",
              len(new) == 1 and sorted(new[0]["rcpt"]) ==
              ["a@x.test", "c@x.test", "h2@x.test", "hidden@x.test"]
              and new[0]["msg"]["Bcc"] is None
              and b"hidden" not in new[0]["data"]
              and b"h2@x.test" not in new[0]["data"], new)

        # 3. The lone-dot rule: without -i a "." line ends the message.
        body = b"Subject: dots\n\nline1\n.\nline3\n"
        r = sm(root, "-t", stdin=b"To: a@x.test\n" + body)
        new, seen = new_captures(srv, seen)
        check("without -i a lone dot ends the message",
              r.returncode == 0 and len(new) == 1
              and new[0]["data"].endswith(b"line1\r\n")
              and b"line3" not in new[0]["data"], (r.stderr, new))
        for flag in ("-i", "-oi"):
            r = sm(root, "-t", flag, stdin=b"To: a@x.test\n" + body)
            new, seen = new_captures(srv, seen)
            check("%s: a lone dot is data" % flag,
                  r.returncode == 0 and len(new) == 1
                  and new[0]["data"].endswith(b"line1\r\n.\r\nline3\r\n"),
                  (r.stderr, new))
        r = sm(root, "-t", stdin=b"To: a@x.test\nSubject: d2\n\n..x\n.y\n. \n")
        new, seen = new_captures(srv, seen)
        check("lines that only start with a dot are kept",
              r.returncode == 0 and len(new) == 1
              and new[0]["data"].endswith(b"\r\n\r\n..x\r\n.y\r\n. \r\n"),
              (r.stderr, new))

        # 4. Recipients as arguments (address lists allowed), no To field.
        r = sm(root, "b@x.test", "Name <c@x.test>",
               stdin=b"Subject: args\n\nhello\n")
        new, seen = new_captures(srv, seen)
        check("recipients as arguments", r.returncode == 0 and len(new) == 1
              and new[0]["rcpt"] == ["b@x.test", "c@x.test"]
              and str(new[0]["msg"]["From"]) == FROM, (r.stderr, new))

        # 5. -f envelope sender, -F full name for the From field added.
        r = sm(root, "-f", "ops@unit.test", "-F", "Pump Station 4",
               "a@x.test", stdin=b"Subject: f\n\nx\n")
        new, seen = new_captures(srv, seen)
        check("-f sets MAIL FROM, -F names the added From",
              r.returncode == 0 and len(new) == 1
              and new[0]["from"] == "ops@unit.test"
              and new[0]["msg"]["From"].addresses[0].display_name ==
              "Pump Station 4"
              and new[0]["msg"]["From"].addresses[0].addr_spec ==
              "ops@unit.test", (r.stderr, new))
        r = sm(root, "-FNobody", "-fops@unit.test", "a@x.test",
               stdin=b"From: Real <real@unit.test>\nSubject: f2\n\nx\n")
        new, seen = new_captures(srv, seen)
        check("attached values; an existing From is kept",
              r.returncode == 0 and len(new) == 1
              and new[0]["from"] == "ops@unit.test"
              and str(new[0]["msg"]["From"]) == "Real <real@unit.test>"
              and len(new[0]["msg"].get_all("From")) == 1, (r.stderr, new))
        r = sm(root, "-t", stdin=b"Date: Mon, 1 Jan 2024 00:00:00 +0000\n"
               b"Message-ID: <given@unit.test>\nTo: a@x.test\n\nx\n")
        new, seen = new_captures(srv, seen)
        check("given Date and Message-ID are not duplicated",
              r.returncode == 0 and len(new) == 1
              and new[0]["msg"].get_all("Message-ID") == ["<given@unit.test>"]
              and len(new[0]["msg"].get_all("Date")) == 1, (r.stderr, new))

        # 6. Flags accepted for compatibility.
        r = sm(root, "-odi", "-oem", "-bm", "-Ldevmail", "-B", "8BITMIME",
               "-U", "-t", stdin=b"To: a@x.test\n\nflags\n")
        new, seen = new_captures(srv, seen)
        check("-odi -oem -bm -L -B -U accepted and ignored",
              r.returncode == 0 and len(new) == 1, r.stderr)
        r = sm(root, "-v", "-t", stdin=b"To: a@x.test\n\nverbose\n")
        new, seen = new_captures(srv, seen)
        out = r.stdout.decode(errors="replace")
        check("-v shows the dialogue (AUTH redacted) and the result line",
              r.returncode == 0 and len(new) == 1 and ">>> MAIL FROM:" in out
              and "Sent to a@x.test via 127.0.0.1:%d (STARTTLS" % port in out
              and PASSWORD not in out and "<redacted>" in out, out)

        # 7. -odq queues only; -q delivers the queue.
        r = sm(root, "-odq", "-t", stdin=b"To: q@x.test\n\nqueued\n")
        new, seen = new_captures(srv, seen)
        check("-odq: exit 0, queued, not sent", r.returncode == 0
              and len(new) == 0 and len(queued_ids(root)) == 1, r.stderr)
        r = sm(root, "-q")
        new, seen = new_captures(srv, seen)
        check("-q delivers the queue", r.returncode == 0 and len(new) == 1
              and new[0]["rcpt"] == ["q@x.test"] and queued_ids(root) == [],
              r.stderr)

        # 8. A 5xx recipient: 69, the message is in failed with the reason.
        r = sm(root, "nobody@unit.test", stdin=b"Subject: 5xx\n\nx\n")
        fails = queued_ids(root, "failed")
        check("550 at RCPT: exit 69, reason on stderr, moved to failed",
              r.returncode == 69 and b"550" in r.stderr and len(fails) == 1
              and queued_ids(root) == [], (r.returncode, r.stderr, fails))
        for fid in fails:
            dm(root, "OUTBOX", "-d", fid)

        # 9. Refusals leave the spool unchanged.
        before = spool_listing(root)
        bad = [
            ("malformed argument address", ["not an address"],
             b"Subject: x\n\nx\n", 65),
            ("malformed To with -t", ["-t"], b"To: a@@x.test\n\nx\n", 65),
            ("malformed -f", ["-f", "x@@y", "a@x.test"], b"\nx\n", 65),
            ("CR in -F name", ["-F", "A\rBcc: v@x.test", "a@x.test"],
             b"\nx\n", 65),
            ("no recipient", [], b"Subject: x\n\nx\n", 65),
            ("120 recipients (one SMTP transaction takes 100)", ["-t"],
             b"To: " + b", ".join(b"r%03d@x.test" % i for i in range(120))
             + b"\n\nx\n", 65),
            ("-t and no To/Cc/Bcc", ["-t"], b"Subject: x\n\nx\n", 65),
            ("NUL byte in the message", ["a@x.test"], b"Subject: x\n\nx\0y\n",
             65),
            ("bare CR in the header (would add a Bcc)", ["-t", "-odq"],
             b"To: a@example.com\nSubject: hi\rBcc: evil@example.net\n"
             b"\nbody\n", 65),
            ("bare CR ending the header", ["a@x.test"], b"Subject: hi\r", 65),
            ("unknown option", ["-Z", "a@x.test"], b"x\n", 64),
            ("unsupported mode -bs", ["-bs"], b"", 64),
            ("-f without a value", ["-f"], b"", 64),
        ]
        for name, args, stdin, code in bad:
            r = sm(root, *args, stdin=stdin)
            err = r.stderr.decode(errors="replace")
            check("refused (%d): %s" % (code, name),
                  r.returncode == code and err.startswith("devmail-sendmail: ")
                  and spool_listing(root) == before,
                  (r.returncode, err, spool_listing(root)))
        new, seen = new_captures(srv, seen)
        check("nothing was sent by refused calls", new == [], new)
        r = sm(root, "-t", "-odq", stdin=b"To: a@example.com\nSubject: hi\r"
               b"Bcc: evil@example.net\n\nbody\n")
        check("bare CR in the header: the message says why",
              r.returncode == 65 and b"CR not followed by LF" in r.stderr,
              (r.returncode, r.stderr))

        # 9b. A bare CR in the body is delivered as a line break.
        r = sm(root, "-t", stdin=b"To: a@x.test\nSubject: cr\n\n"
               b"line1\rline2\r\nline3\r")
        new, seen = new_captures(srv, seen)
        check("bare CR in the body: delivered, normalised to CRLF",
              r.returncode == 0 and len(new) == 1
              and new[0]["msg"]["Subject"] == "cr"
              and new[0]["data"].endswith(
                  b"\r\n\r\nline1\r\nline2\r\nline3\r\n"),
              (r.returncode, r.stderr, new))

        # 10. No account configured: 78, names the key, nothing queued.
        empty = os.path.join(top, "empty")
        r = sm(empty, "a@x.test", stdin=b"Subject: x\n\nx\n")
        check("unconfigured root: exit 78, names Email/", r.returncode == 78
              and b"Email/" in r.stderr and queued_ids(empty) == [],
              (r.returncode, r.stderr))

        # 11. Server down: 75 and queued; later -q sends it exactly once.
        srv.stop()
        r = sm(root, "-t", stdin=b"To: later@x.test\nSubject: later\n\nx\n")
        ids = queued_ids(root)
        check("server down: exit 75, queued", r.returncode == 75
              and len(ids) == 1 and b"Queued" in r.stderr,
              (r.returncode, r.stderr, ids))
        # A restarted peer numbers its captures from 1 again: new directory.
        srv.capture = os.path.join(top, "cap2")
        seen = 0
        restarted = False
        for _ in range(20):
            try:
                srv.start(port)
                restarted = True
                break
            except RuntimeError:
                time.sleep(0.25)
        check("server restarted on the same port", restarted)
        r = sm(root, "-q")
        new, seen = new_captures(srv, seen)
        check("-q sends the queued message once", r.returncode == 0
              and len(new) == 1 and new[0]["rcpt"] == ["later@x.test"]
              and queued_ids(root) == [], (r.returncode, r.stderr, new))
    finally:
        srv.stop()
        shutil.rmtree(top, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
