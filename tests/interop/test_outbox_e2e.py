#!/usr/bin/python3
"""test_outbox_e2e.py - the outbox end to end: SENDMAIL, OUTBOX, crashes.

A real aiosmtpd on loopback (STARTTLS required, AUTH, test CA), the account
set with IPCONFIG --password-stdin.  Checks:
  * server stopped: SENDMAIL exits 75, OUTBOX lists the message with
    TRIES 1 and the last error; server started: OUTBOX -r ID delivers it
    exactly once and the outbox is empty;
  * a 5xx at RCPT: SENDMAIL exits 69, OUTBOX -f lists it with the reason,
    OUTBOX -r refuses it (65), OUTBOX -d removes it; -d of a queued message;
  * OUTBOX -f PREFIX shows a failed message with the 550 and the last
    lines of its dialogue (every delivery path keeps them);
    ambiguous and unknown prefixes are refused (65) with the spool
    unchanged; -d PREFIX; OUTBOX -R PREFIX re-queues it with TRIES 0 and
    OUTBOX -r PREFIX then delivers it once;
  * OUTBOX -a delivers several over one connection, one line each;
  * bad input of every kind is refused with a clear message and leaves the
    spool listing unchanged;
  * crash test: 50 runs (seeded) of `devmail OUTBOX -a -v` SIGKILLed at a
    random transcript line or after a random delay, each followed by a
    complete OUTBOX -a; at the end every message was delivered with its body
    and attachment SHA-256 intact, and every duplicate is accounted for: the
    server had captured the message while it was still queued after a kill
    (the window between the final dot and the outcome being recorded), and
    that run's transcript shows the final dot sent.

Helpers (server, captures, spool listing) come from test_sendmail_compat.py.
Stdlib only; /usr/bin/python3.  Every wait is bounded; every process is
stopped by PID.  Prints "N passed, 0 failed"; exits non-zero on failure.
"""
import hashlib
import os
import random
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_sendmail_compat as h  # noqa: E402

check, dm = h.check, h.dm
CRASH_RUNS = 50
CRASH_SEED = 20240611
KILL_DELAY_MAX = 0.12       # seconds: range of the delay-based kills
KILL_LINE_MAX = 30          # transcript lines: range of the line-based kills


def sendmail(root, *args):
    return dm(root, "SENDMAIL", *args, stdin=b"")


def text(r):
    return (r.stdout + r.stderr).decode(errors="replace")


def outbox_rows(root, *args):
    """OUTBOX output as {id: (tries, rest-of-row, following detail line)}."""
    r = dm(root, "OUTBOX", *args)
    rows = {}
    lines = r.stdout.decode(errors="replace").split("\n")
    for i, line in enumerate(lines):
        m = re.match(r"^(\d{8}T\d{6}-\S+)\s+(\S+)\s+(\d+)\s+(.*)$", line)
        if m:
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            rows[m.group(1)] = (int(m.group(3)), m.group(4),
                                nxt.strip() if nxt.startswith("    ") else "")
    return r, rows


def restart(srv, port, capture):
    srv.stop()
    srv.capture = capture
    for _ in range(40):
        try:
            srv.start(port)
            return True
        except RuntimeError:
            time.sleep(0.25)
    return False


def test_retry_and_failed(top, srv, port, pki):
    root = h.make_root(top, "e2e", port, pki)

    # Server stopped: 75, queued with one attempt and the error.
    srv.stop()
    r = sendmail(root, "-t", "ops@x.test", "-s", "while down", "-m", "hello")
    m = re.search(r"Queued (\S+) for retry", text(r))
    check("server stopped: SENDMAIL exits 75 with 'Queued ID for retry'",
          r.returncode == 75 and m is not None, (r.returncode, text(r)))
    qid = m.group(1) if m else ""
    r, rows = outbox_rows(root)
    row = rows.get(qid)
    check("OUTBOX lists it: TRIES 1, next try later, last error shown",
          r.returncode == 0 and row is not None and row[0] == 1
          and row[1].startswith("in ") and "ops@x.test" in row[1]
          and row[2].startswith("last error: ") and len(row[2]) > 14,
          r.stdout.decode())
    check("OUTBOX header row and summary", b"ID" in r.stdout
          and b"TRIES" in r.stdout and b"NEXT TRY" in r.stdout
          and b"1 message queued" in r.stdout, r.stdout.decode())

    # Server back: OUTBOX -r ID delivers it exactly once.
    ok = restart(srv, port, os.path.join(top, "cap-e2e"))
    check("server restarted on its port", ok)
    r = dm(root, "OUTBOX", "-r", qid)
    caps = h.captures(srv.capture)
    check("OUTBOX -r ID: exit 0, result line names the id and TLS",
          r.returncode == 0 and qid.encode() in r.stdout
          and b"STARTTLS" in r.stdout and b"certificate verified" in r.stdout,
          text(r))
    check("delivered exactly once (capture count == 1)", len(caps) == 1
          and caps[0]["rcpt"] == ["ops@x.test"]
          and caps[0]["msg"]["Subject"] == "while down", caps)
    r, rows = outbox_rows(root)
    check("OUTBOX is empty afterwards", r.returncode == 0 and rows == {}
          and b"the outbox is empty" in r.stdout, r.stdout.decode())
    r = dm(root, "OUTBOX", "-r", qid)
    check("OUTBOX -r of the delivered id: 65, clear message",
          r.returncode == 65 and b"no such message" in r.stderr
          and r.stderr.startswith(b"OUTBOX: "), text(r))
    check("still exactly one capture", len(h.captures(srv.capture)) == 1)

    # 5xx at RCPT: 69, in failed with the reason.
    r = sendmail(root, "-t", "nobody@unit.test", "-s", "refused", "-m", "x")
    check("550 at RCPT: SENDMAIL exits 69", r.returncode == 69, text(r))
    r, rows = outbox_rows(root, "-f")
    fid = next(iter(rows), "")
    check("OUTBOX -f lists it with the server's reason",
          r.returncode == 0 and len(rows) == 1 and rows[fid][0] == 1
          and rows[fid][2].startswith("reason: ") and "550" in rows[fid][2]
          and "No such user" in rows[fid][2], r.stdout.decode())
    r, q = outbox_rows(root)
    check("the failed message is not in the queue listing", q == {}
          and b"1 failed (OUTBOX -f)" in r.stdout, r.stdout.decode())
    before = h.spool_listing(root)
    r = dm(root, "OUTBOX", "-r", fid)
    check("OUTBOX -r of a failed message: 65, says it failed, unchanged",
          r.returncode == 65 and b"failed permanently" in r.stderr
          and h.spool_listing(root) == before, text(r))
    r = dm(root, "OUTBOX", "-d", fid)
    check("OUTBOX -d removes the failed message", r.returncode == 0
          and h.queued_ids(root, "failed") == [], text(r))
    r, rows = outbox_rows(root, "-f")
    check("OUTBOX -f is empty afterwards", rows == {}
          and b"no failed messages" in r.stdout, r.stdout.decode())

    test_failed_by_prefix(top, srv, port, root)

    # -d of a queued message; -d of an unknown id.
    r = sendmail(root, "-q", "-t", "keep@x.test", "-s", "del", "-m", "x")
    m = re.search(r"Queued (\S+)", text(r))
    did = m.group(1) if m else ""
    r = dm(root, "OUTBOX", "-d", did)
    check("OUTBOX -d removes a queued message", r.returncode == 0
          and h.queued_ids(root) == [] and did.encode() in r.stdout, text(r))
    before = h.spool_listing(root)
    r = dm(root, "OUTBOX", "-d", did)
    check("OUTBOX -d of an unknown id: 65, names it, spool unchanged",
          r.returncode == 65 and did.encode() in r.stderr
          and h.spool_listing(root) == before, text(r))

    # OUTBOX -a: several at once, one line each.
    for i in range(3):
        sendmail(root, "-q", "-t", "all%d@x.test" % i, "-s", "a%d" % i,
                 "-m", "x")
    n0 = len(h.captures(srv.capture))
    r = dm(root, "OUTBOX", "-a")
    caps = h.captures(srv.capture)
    check("OUTBOX -a: exit 0, 3 result lines, '3 sent'",
          r.returncode == 0 and r.stdout.count(b": Sent to ") == 3
          and b"3 sent, 0 deferred, 0 failed" in r.stdout, text(r))
    check("OUTBOX -a delivered each once", len(caps) == n0 + 3
          and h.queued_ids(root) == [], len(caps) - n0)
    r = dm(root, "OUTBOX", "-a")
    check("OUTBOX -a on an empty outbox says so", r.returncode == 0
          and b"nothing to deliver" in r.stdout, text(r))

    # HELP OUTBOX in the JANOS layout.
    r = dm(root, "HELP", "OUTBOX")
    check("HELP OUTBOX: usage line, Options block, description",
          r.returncode == 0 and r.stdout.startswith(b"OUTBOX [-")
          and b"\nOptions:\n" in r.stdout and b"Outbox/RetryMin" in r.stdout,
          r.stdout.decode())
    return root


def test_failed_by_prefix(top, srv, port, root):
    """OUTBOX -f ID, -R ID and ids by prefix on messages a 5xx failed."""
    fids = []
    for i in range(2):
        r = sendmail(root, "-t", "nobody@unit.test", "-s", "pfx%d" % i,
                     "-m", "x")
        m = re.search(r"(\d{8}T\d{6}-[0-9a-f-]+)", text(r))
        fids.append(m.group(1) if m else "")
    check("two 5xx: both exit 69 and are in failed",
          sorted(h.queued_ids(root, "failed")) == sorted(fids) and all(fids),
          (fids, h.queued_ids(root, "failed")))
    a, b = fids
    common = os.path.commonprefix([a, b])
    pa = a[:len(common) + 1]
    pb = b[:len(common) + 1]

    # -f by prefix: envelope, attempts, reason, and the dialogue that the
    # SENDMAIL delivery kept (mail/dialogue.c), ending in the 550.
    r = dm(root, "OUTBOX", "-f", pa)
    out = r.stdout.decode(errors="replace")
    check("OUTBOX -f PREFIX: 0, the whole id, recipient, attempts 1, reason "
          "with the server's 550",
          r.returncode == 0 and ("id:        %s\n" % a) in out
          and "to:        nobody@unit.test\n" in out
          and "attempts:  1\n" in out and "reason:    " in out
          and "550" in out and "No such user" in out, text(r))
    check("OUTBOX -f PREFIX: the dialogue's last lines, with the RCPT and "
          "its 550",
          "no dialogue kept" not in out and "dialogue (last lines" in out
          and "RCPT TO:<nobody@unit.test>" in
              out.split("dialogue (last lines", 1)[1]
          and "550" in out.split("dialogue (last lines", 1)[1], out)
    r = dm(root, "OUTBOX", "-f")
    check("OUTBOX -f alone still lists both", r.returncode == 0
          and a.encode() in r.stdout and b.encode() in r.stdout
          and b"2 failed messages" in r.stdout, text(r))

    # Ambiguous and unknown prefixes: 65, candidates named, nothing changes.
    before = h.spool_listing(root)
    for opt in ("-f", "-R", "-d"):
        r = dm(root, "OUTBOX", opt, common)
        err = r.stderr.decode(errors="replace")
        check("OUTBOX %s AMBIGUOUS: 65, names both, spool unchanged" % opt,
              r.returncode == 65 and err.startswith("OUTBOX: ")
              and a in err and b in err and "matches" in err
              and h.spool_listing(root) == before, (r.returncode, err))
    for opt in ("-f", "-R", "-d", "-r"):
        r = dm(root, "OUTBOX", opt, "19990101T")
        check("OUTBOX %s UNKNOWN: 65, spool unchanged" % opt,
              r.returncode == 65 and b"no such message" in r.stderr
              and h.spool_listing(root) == before, text(r))
    r = dm(root, "OUTBOX", "-r", pa)
    check("OUTBOX -r PREFIX of a failed message: 65, points at -R",
          r.returncode == 65 and b"failed permanently" in r.stderr
          and b"OUTBOX -R" in r.stderr and h.spool_listing(root) == before,
          text(r))

    # -d by prefix; then the server accepts the address and -R re-queues.
    r = dm(root, "OUTBOX", "-d", pb)
    check("OUTBOX -d PREFIX deletes that one", r.returncode == 0
          and h.queued_ids(root, "failed") == [a], text(r))
    extra, srv.extra = srv.extra, []
    ok = restart(srv, port, os.path.join(top, "cap-requeue"))
    check("server restarted without the 550", ok)
    r = dm(root, "OUTBOX", "-R", pa)
    check("OUTBOX -R PREFIX: 0, 'Re-queued ID'", r.returncode == 0
          and ("Re-queued %s" % a).encode() in r.stdout, text(r))
    r, rows = outbox_rows(root)
    check("re-queued: in the queue with TRIES 0, due now, failed empty",
          a in rows and rows[a][0] == 0 and rows[a][1].startswith("now")
          and h.queued_ids(root, "failed") == [], r.stdout.decode())
    r = dm(root, "OUTBOX", "-f", pa)
    check("OUTBOX -f of the re-queued id: 65, says it is queued",
          r.returncode == 65 and b"is queued, not failed" in r.stderr, text(r))
    r = dm(root, "OUTBOX", "-r", pa)
    caps = h.captures(srv.capture)
    check("OUTBOX -r PREFIX delivers the re-queued message once",
          r.returncode == 0 and len(caps) == 1
          and caps[0]["rcpt"] == ["nobody@unit.test"]
          and caps[0]["msg"]["Subject"] == "pfx0"
          and h.queued_ids(root) == [], (text(r), caps))
    srv.extra = extra
    ok = restart(srv, port, os.path.join(top, "cap-e2e2"))  # a fresh one:
    check("server restarted with the 550 again", ok)     # names restart at 0


def test_bad_input(top, root):
    att = os.path.join(top, "att.bin")
    with open(att, "wb") as f:
        f.write(b"attachment")
    sendmail(root, "-q", "-t", "stay@x.test", "-s", "stays", "-m", "x")
    before = h.spool_listing(root)
    cases = [
        ("malformed address", ["SENDMAIL", "-t", "a@@x.test", "-m", "x"],
         65, "a@@x.test"),
        ("address with CRLF", ["SENDMAIL", "-t", "a@x.test\r\nRCPT TO:<e@x>",
                               "-m", "x"], 65, ""),
        ("CRLF in the subject", ["SENDMAIL", "-t", "a@x.test", "-s",
                                 "hi\r\nBcc: evil@x.test", "-m", "x"], 65, ""),
        ("LF in the subject", ["SENDMAIL", "-t", "a@x.test", "-s",
                               "hi\nX: y", "-m", "x"], 65, ""),
        ("missing attachment", ["SENDMAIL", "-t", "a@x.test", "-m", "x",
                                "-a", os.path.join(top, "missing.pdf")], 66,
         "missing.pdf"),
        ("attachment is a directory", ["SENDMAIL", "-t", "a@x.test", "-m",
                                       "x", "-a", top], 66, ""),
        ("unknown SENDMAIL option", ["SENDMAIL", "-Z", "-t", "a@x.test"], 64,
         "-Z"),
        ("unknown OUTBOX option", ["OUTBOX", "-Z"], 64, "-Z"),
        ("OUTBOX -r with a path", ["OUTBOX", "-r", "../../etc"], 65, ""),
        ("OUTBOX -d unknown id", ["OUTBOX", "-d", "20240101T000000-000000-1-"
                                  "deadbeef"], 65, "deadbeef"),
        ("OUTBOX -r and -d together", ["OUTBOX", "-r", "x", "-d", "y"], 64, ""),
        ("OUTBOX -r without an id", ["OUTBOX", "-r"], 64, ""),
        ("OUTBOX extra operand", ["OUTBOX", "junk"], 64, ""),
    ]
    for name, args, code, needle in cases:
        r = dm(root, *args, stdin=b"")
        err = r.stderr.decode(errors="replace")
        cmd = args[0] + ": "
        check("refused (%d): %s; spool unchanged" % (code, name),
              r.returncode == code and err.startswith(cmd)
              and needle in err and h.spool_listing(root) == before,
              (r.returncode, err, h.spool_listing(root)))
    r = dm(root, "SENDMAIL", "-t", "a@x.test", "-m", "x", "-a", att, "-q")
    check("the same SENDMAIL with good input is accepted", r.returncode == 0,
          text(r))
    dm(root, "OUTBOX", "-a")


# ---- crash test -------------------------------------------------------------

def part_sha(msg):
    """SHA-256 of the text body and of each attachment of a parsed message."""
    body = msg.get_body(preferencelist=("plain",))
    out = {"body": body_sha(body.get_content())}
    for a in msg.iter_attachments():
        out[a.get_filename()] = hashlib.sha256(a.get_content()).hexdigest()
    return out


def body_sha(text_):
    """SHA-256 of a text body with line ends normalised; the final line
    break is dropped because in a multipart message the CRLF before the
    boundary belongs to the boundary (RFC 2046 5.1.1)."""
    t = text_.replace("\r\n", "\n").rstrip("\n")
    return hashlib.sha256(t.encode()).hexdigest()


def dotted_rcpts(lines):
    """Recipients of the transactions whose final dot the client sent,
    from a -v transcript: the i-th '>> .' ends the i-th MAIL transaction
    (every message here gets its DATA accepted)."""
    txs, dots = [], 0
    for x in lines:
        if x.startswith(">> MAIL FROM:"):
            txs.append([])
        elif x.startswith(">> RCPT TO:<") and txs:
            txs[-1].append(x[len(">> RCPT TO:<"):].rstrip(">"))
        elif x == ">> .":
            dots += 1
    out = set()
    for t in txs[:dots]:
        out.update(t)
    return out


def read_rcpt(root, qid):
    try:
        with open(os.path.join(root, "spool", "queue", qid, "env")) as f:
            return [x[5:].strip() for x in f if x.startswith("rcpt ")]
    except OSError:
        return []


def read_mid(root, qid):
    try:
        with open(os.path.join(root, "spool", "queue", qid, "msg"), "rb") as f:
            head = f.read(65536).split(b"\r\n\r\n", 1)[0]
    except OSError:
        return None
    m = re.search(rb"(?im)^Message-ID:\s*(<[^>\r\n]+>)", head)
    return m.group(1).decode() if m else None


def kill_run(root, rng, run_no):
    """Runs OUTBOX -a -v and SIGKILLs it at a random point.  Returns
    (killed, transcript lines seen)."""
    p = subprocess.Popen([h.DEVMAIL, "--root", root, "OUTBOX", "-a", "-v"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         stdin=subprocess.DEVNULL, env=h.env_clean())
    by_line = run_no % 2 == 0
    target = rng.randint(1, KILL_LINE_MAX) if by_line else None
    delay = None if by_line else rng.uniform(0.0, KILL_DELAY_MAX)
    start = time.monotonic()
    hard = start + h.STEP
    buf, lines, killed = b"", [], False
    try:
        while time.monotonic() < hard:
            if by_line and len(lines) >= target:
                break
            if not by_line and time.monotonic() - start >= delay:
                break
            wait = 0.5 if by_line else max(0.0, delay -
                                           (time.monotonic() - start))
            r, _, _ = select.select([p.stdout], [], [], min(wait, 0.5))
            if r:
                b = os.read(p.stdout.fileno(), 65536)
                if not b:
                    break           # finished before the kill point
                buf += b
                *done, buf = buf.split(b"\n")
                lines += [x.decode(errors="replace") for x in done]
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            killed = True
    finally:
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        p.wait(timeout=10)
        rest = p.stdout.read()
        p.stdout.close()
    buf += rest
    lines += [x.decode(errors="replace") for x in buf.split(b"\n") if x]
    killed = killed and p.returncode == -signal.SIGKILL
    return killed, lines


def test_crash(top, srv, port, pki):
    root = h.make_root(top, "crash", port, pki)
    srv.capture = os.path.join(top, "cap-crash")
    if not restart(srv, port, srv.capture):
        check("crash: server restarted", False)
        return
    rng = random.Random(CRASH_SEED)
    attdir = os.path.join(top, "att")
    os.makedirs(attdir)
    expect = {}          # Message-ID -> {"body":..., name: sha}
    allowed = {}         # Message-ID -> duplicates accounted for
    kills = dup_events = 0
    problems = []
    t0 = time.monotonic()
    for run_no in range(CRASH_RUNS):
        # Enqueue 1-3 messages, with an attachment of 0.2-300 KB.
        for k in range(rng.randint(1, 3)):
            name = "r%02d-%d.bin" % (run_no, k)
            path = os.path.join(attdir, name)
            data = rng.randbytes(rng.choice((200, 5000, 60000, 300000)))
            with open(path, "wb") as f:
                f.write(data)
            body = "run %d message %d\n%s\n" % (run_no, k, "x" * rng.randint(
                0, 3000))
            bpath = os.path.join(attdir, "body-%02d-%d.txt" % (run_no, k))
            with open(bpath, "w") as f:
                f.write(body)
            # A recipient unique to the message names its transaction in
            # the transcript.
            r = sendmail(root, "-q", "-t", "c-%02d-%d@x.test" % (run_no, k),
                         "-s", "crash %d.%d" % (run_no, k), "-F", bpath,
                         "-a", path)
            m = re.search(r"Queued (\S+)", text(r))
            mid = read_mid(root, m.group(1)) if m else None
            if r.returncode != 0 or not mid:
                problems.append("enqueue %d.%d: %s" % (run_no, k, text(r)))
                continue
            expect[mid] = {
                "body": body_sha(body),
                name: hashlib.sha256(data).hexdigest()}
        killed, lines = kill_run(root, rng, run_no)
        kills += killed
        # The duplicate window: a message still queued after the kill whose
        # final dot the killed client had sent (the server may have taken
        # it, possibly after the kill, from the socket buffer) may arrive
        # twice.  Nothing else may.
        dotted = dotted_rcpts(lines)
        for qid in h.queued_ids(root):
            mid = read_mid(root, qid)
            if mid and set(read_rcpt(root, qid)) & dotted:
                allowed[mid] = allowed.get(mid, 0) + 1
                dup_events += 1
                if not killed:
                    problems.append("run %d: %s still queued after a run "
                                    "that was not killed" % (run_no, qid))
        # Re-run delivery to completion.
        r = dm(root, "OUTBOX", "-a")
        if r.returncode != 0 or h.queued_ids(root):
            problems.append("run %d: completion OUTBOX -a: %d %s" %
                            (run_no, r.returncode, text(r)[-500:]))
    elapsed = time.monotonic() - t0

    counts, corrupt = {}, []
    for c in h.captures(srv.capture):
        mid = str(c["msg"]["Message-ID"])
        counts[mid] = counts.get(mid, 0) + 1
        if mid in expect:
            try:
                got = part_sha(c["msg"])
            except Exception as e:  # a broken MIME structure is corruption
                got = {"error": str(e)}
            if got != expect[mid]:
                corrupt.append((c["name"], mid))
    missing = [m for m in expect if counts.get(m, 0) == 0]
    unexplained = [(m, counts.get(m, 0), allowed.get(m, 0)) for m in expect
                   if counts.get(m, 0) > 1 + allowed.get(m, 0)]
    dups = sum(counts.get(m, 0) - 1 for m in expect if counts.get(m, 0) > 1)
    strangers = [m for m in counts if m not in expect]
    print("crash: %d runs, %d messages, %d killed, %d kill(s) inside the "
          "duplicate window, %d duplicate(s) received, %.1fs"
          % (CRASH_RUNS, len(expect), kills, dup_events, dups, elapsed))
    check("crash: no enqueue or completion problem", problems == [],
          problems[:5])
    check("crash: most runs were really killed (>= 20 of 50)", kills >= 20,
          kills)
    check("crash: every message delivered", missing == [] and expect != {},
          missing[:5])
    check("crash: no message corrupted (body and attachment SHA-256)",
          corrupt == [], corrupt[:5])
    check("crash: every copy beyond the first is an accounted duplicate",
          unexplained == [], unexplained[:5])
    check("crash: nothing captured that was not enqueued", strangers == [],
          strangers[:5])
    check("crash: spool empty (queue, failed, tmp)",
          h.queued_ids(root) == [] and h.queued_ids(root, "failed") == []
          and h.queued_ids(root, "tmp") == [], h.spool_listing(root)[:10])


def read_log(root):
    try:
        with open(os.path.join(root, "log", "system.log"), "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def test_partial_rcpt(top, pki):
    """A 4xx for one recipient while another is accepted (RFC 5321 3.3,
    4.2.5): sent once to the accepted one, queued for the other only, a 5xx
    recipient dropped and named; later delivered to the other alone."""
    forced = ["--rcpt-reply", "later@x.test=450 4.2.1 Mailbox busy, try later",
              "--rcpt-reply", "gone@x.test=550 5.1.1 No such user"]
    srv = h.Server(pki, os.path.join(top, "cap-partial"), forced)
    try:
        port = srv.start()
        root = h.make_root(top, "partial", port, pki)
        r = sendmail(root, "-t", "now@x.test,later@x.test,gone@x.test",
                     "-s", "partial", "-m", "hello")
        out = text(r)
        caps = h.captures(srv.capture)
        check("partial 4xx: SENDMAIL exits 75", r.returncode == 75,
              (r.returncode, out))
        check("partial 4xx: the line says sent, retried and rejected",
              "Sent to now@x.test via" in out and "later@x.test: 450" in out
              and "gone@x.test: 550" in out and "stays queued" in out, out)
        check("partial 4xx: delivered once, to the accepted recipient only",
              len(caps) == 1 and caps[0]["rcpt"] == ["now@x.test"], caps)
        ids = h.queued_ids(root)
        check("partial 4xx: one message stays queued, none failed",
              len(ids) == 1 and h.queued_ids(root, "failed") == [], ids)
        qid = ids[0] if ids else "none"
        envf = os.path.join(root, "spool", "queue", qid, "env")
        rc = []
        if os.path.exists(envf):
            with open(envf) as f:
                rc = [l[5:].strip() for l in f if l.startswith("rcpt ")]
        check("partial 4xx: the queued envelope holds only later@x.test",
              rc == ["later@x.test"], rc)
        log = read_log(root)
        check("partial 4xx: log has sent (with the 550) and deferred lines",
              ("sent %s " % qid) in log and "gone@x.test: 550" in log
              and ("deferred %s: " % qid) in log and "450" in log, log[-2000:])

        # The peer is restarted without the forced replies.
        srv.extra = []
        ok = restart(srv, port, os.path.join(top, "cap-partial2"))
        check("partial 4xx: peer restarted without forced replies", ok)
        r = dm(root, "OUTBOX", "-r", qid)
        caps = h.captures(srv.capture)
        check("partial 4xx: OUTBOX -r delivers to later@x.test alone",
              r.returncode == 0 and len(caps) == 1
              and caps[0]["rcpt"] == ["later@x.test"]
              and caps[0]["msg"]["Subject"] == "partial", (text(r), caps))
        check("partial 4xx: the queue is empty afterwards",
              h.queued_ids(root) == [] and h.queued_ids(root, "failed") == [],
              h.spool_listing(root))
    finally:
        srv.stop()


def main():
    top = tempfile.mkdtemp(prefix="devmail-oe2e-")
    pki = os.path.join(top, "pki")
    subprocess.run(["bash", os.path.join(h.SRC, "tests", "lib", "pki.sh"), pki],
                   check=True, timeout=120, capture_output=True)
    srv = h.Server(pki, os.path.join(top, "cap"),
                   ["--rcpt-reply", "nobody@unit.test=550 5.1.1 No such user"])
    try:
        port = srv.start()
        root = test_retry_and_failed(top, srv, port, pki)
        test_bad_input(top, root)
        test_partial_rcpt(top, pki)
        test_crash(top, srv, port, pki)
    finally:
        srv.stop()
        shutil.rmtree(top, ignore_errors=True)
    print("%d passed, %d failed" % (h.passed, h.failed))
    return 1 if h.failed else 0


if __name__ == "__main__":
    sys.exit(main())
