#!/usr/bin/python3
"""test_daemon_queue.py - devmaild drains the outbox by itself.

A real aiosmtpd on loopback (STARTTLS required, AUTH, test CA) behind a
counting TCP relay (daemon_lib.Relay); devmaild is a real process stopped
by PID.  Checks:
  * a burst of 100 messages queued by 10 concurrent `devmail SENDMAIL -q`
    reaches the server, each exactly once, over no more connections in
    total than Outbox/Sessions (1: exactly one connection; then 2, changed
    while the daemon runs);
  * a change of Email/MailHost is used by the next delivery without a
    restart (a message deferred for an hour goes at once);
  * retry times follow the registry policy (Outbox/RetryMin 1,
    Outbox/RetryMax 4: "next try in 1s, 2s, 4s, 4s" and no attempt before
    its time); the backoff survives a restart (no early attempt after it);
  * a message older than Outbox/MaxAge goes to failed with "expired after
    ...; last error: ..." at its next attempt;
  * a 5xx moves the message to failed with the last lines of its dialogue
    stored beside it (spool/failed/ID/dialogue: the RCPT and the 550).
Prints "N passed, M failed"; exits non-zero on failure.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import daemon_lib as d  # noqa: E402

h = d.h
check = h.check
BURST_WORKERS = 10
BURST_EACH = 10


def sendmail_q(root, subject, to="ops@x.test"):
    return h.dm(root, "SENDMAIL", "-q", "-t", to, "-s", subject, "-m",
                "body of " + subject, stdin=b"")


def burst(root, tag):
    """10 threads, each queueing 10 messages with SENDMAIL -q; the list of
    failures (empty when all 100 were queued)."""
    errors = []
    lock = threading.Lock()

    def worker(w):
        for i in range(BURST_EACH):
            r = sendmail_q(root, "%s-%02d-%02d" % (tag, w, i))
            if r.returncode != 0:
                with lock:
                    errors.append((w, i, r.returncode, r.stderr[-300:]))
    ts = [threading.Thread(target=worker, args=(w,))
          for w in range(BURST_WORKERS)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(300)
    return errors


def test_burst(top, pki):
    capdir = os.path.join(top, "cap-burst")
    srv = h.Server(pki, capdir)
    port = srv.start()
    relay = d.Relay(port)
    dm = None
    try:
        root = d.setup_root(top, "burst", relay.port, pki,
                            extra_reg=[("Outbox/Sessions", "1")])
        # the account points at the relay; the certificate names 127.0.0.1
        dm = d.Daemon(root, "burst")
        check("burst: devmaild starts", dm.start())
        for sessions, tag in ((1, "one"), (2, "two")):
            if sessions == 2:
                r = h.dm(root, "REG", "Outbox/Sessions", "=", "2")
                check("Outbox/Sessions = 2 while the daemon runs",
                      r.returncode == 0, r.stderr)
                time.sleep(0.5)
            relay.reset_counts()
            before = len(d.subjects(capdir))
            t0 = time.monotonic()
            errors = burst(root, tag)
            check("%s: 100 messages queued by 10 concurrent SENDMAIL -q"
                  % tag, errors == [], errors[:3])
            want = sorted("%s-%02d-%02d" % (tag, w, i)
                          for w in range(BURST_WORKERS)
                          for i in range(BURST_EACH))
            got = d.wait_for(lambda: len(d.subjects(capdir)) - before >= 100
                             and not h.queued_ids(root), 180, 0.2)
            took = time.monotonic() - t0
            subj = sorted(s for s in d.subjects(capdir) if s.startswith(tag))
            total, most = relay.counts()
            print("  %s: 100 messages delivered in %.1fs over %d connection(s), "
                  "at most %d at once (Outbox/Sessions %d)"
                  % (tag, took, total, most, sessions))
            check("%s: every message reached the server exactly once" % tag,
                  got and subj == want,
                  (len(subj), len(set(subj)), [s for s in want
                                              if s not in subj][:5]))
            check("%s: never more connections at once than Outbox/Sessions "
                  "(%d)" % (tag, sessions), 1 <= most <= sessions, most)
            # One round takes the whole burst: messages queued while it
            # runs go over its open sessions (worker_pool_nudge), so the
            # burst uses no more connections in total than Outbox/Sessions
            # allows - exactly one when it is 1.
            if sessions == 1:
                check("one: the whole burst over exactly ONE connection",
                      total == 1, total)
            else:
                check("%s: the whole burst over at most %d connections in "
                      "total" % (tag, sessions), 1 <= total <= sessions, total)
            check("%s: the queue is empty, nothing failed" % tag,
                  h.queued_ids(root) == [] and h.queued_ids(root, "failed")
                  == [], h.spool_listing(root)[:5])
        rc, _ = dm.term()
        check("burst: stops with 0", rc == 0, rc)
        check("burst: no sanitizer report", dm.clean(),
              dm.stderr_text()[-3000:])
    finally:
        if dm:
            dm.stop()
        relay.stop()
        srv.stop()


def test_mailhost_change(top, srv, pki):
    root = d.setup_root(top, "mailhost", srv.port, pki,
                        extra_reg=[("Outbox/RetryMin", "3600"),
                                   ("Email/MailHost", "127.0.0.2")])
    dm = d.Daemon(root, "mailhost")
    try:
        check("mailhost: devmaild starts", dm.start())
        r = sendmail_q(root, "host change")
        qid = re.search(r"Queued (\S+)", (r.stdout + r.stderr).decode())
        qid = qid.group(1) if qid else "?"
        ok = d.wait_for(lambda: ("deferred %s: " % qid) in d.log_text(root), 30)
        check("mailhost: the first attempt (127.0.0.2, nothing there) is "
              "deferred for an hour", ok and re.search(
                  r"deferred %s: .*next try in (3[2-9]\d\d)s" % qid,
                  d.log_text(root)) is not None, d.log_text(root)[-1500:])
        r = h.dm(root, "REG", "Email/MailHost", "=", "127.0.0.1")
        got = d.wait_for(lambda: "host change" in d.subjects(srv.capture), 30)
        check("mailhost: after REG Email/MailHost = 127.0.0.1 the message goes "
              "at once, without a restart", got and dm.running()
              and h.queued_ids(root) == [])
        check("mailhost: the log says why",
              "Email settings changed: 1 queued message due now"
              in d.log_text(root), d.log_text(root)[-1500:])
        rc, _ = dm.term()
        check("mailhost: stops with 0", rc == 0, rc)
    finally:
        dm.stop()


LOGLINE = re.compile(r"^(\d\d)/(\d\d)/(\d\d) (\d\d):(\d\d):(\d\d)\.(\d\d\d), (.*)$")


def log_events(root, pat):
    """[(seconds since midnight, match)] for log lines matching pat."""
    out = []
    for line in d.log_text(root).split("\n"):
        m = LOGLINE.match(line)
        if not m:
            continue
        mm = pat.search(m.group(8))
        if mm:
            t = (int(m.group(4)) * 3600 + int(m.group(5)) * 60 +
                 int(m.group(6)) + int(m.group(7)) / 1000.0)
            out.append((t, mm))
    return out


def test_retry_policy(top, srv, pki):
    root = d.setup_root(top, "policy", srv.port, pki,
                        extra_reg=[("Outbox/RetryMin", "1"),
                                   ("Outbox/RetryMax", "4"),
                                   ("Email/MailHost", "127.0.0.2")])
    dm = d.Daemon(root, "policy")
    try:
        check("policy: devmaild starts", dm.start())
        r = sendmail_q(root, "policy")
        m = re.search(r"Queued (\S+)", (r.stdout + r.stderr).decode())
        qid = m.group(1) if m else "?"
        pat = re.compile(r"^deferred %s: .*; next try in (\d+)s$" % re.escape(qid))
        ok = d.wait_for(lambda: len(log_events(root, pat)) >= 5, 90, 0.2)
        ev = log_events(root, pat)[:5]
        delays = [int(mm.group(1)) for _, mm in ev]
        check("policy: next try in 1s, 2s, 4s, 4s, 4s (RetryMin 1 doubling to "
              "RetryMax 4)", ok and delays == [1, 2, 4, 4, 4], delays)
        gaps = [round(ev[i + 1][0] - ev[i][0], 2) for i in range(len(ev) - 1)]
        print("  policy: gaps between attempts %s s" % gaps)
        # next = now (whole seconds) + delay: an attempt comes at most one
        # second before "deferred time + delay", never earlier.
        early = [(g, dl) for g, dl in zip(gaps, delays) if g < dl - 1.0]
        late = [(g, dl) for g, dl in zip(gaps, delays) if g > dl + 5.0]
        check("policy: no attempt before its time", ok and early == [], early)
        check("policy: each attempt by itself, close to its time (+5 s)",
              ok and late == [], late)
        rc, _ = dm.term()
        check("policy: stops with 0", rc == 0, rc)

        # The backoff survives a restart: RetryMin 30 now; one more attempt
        # sets "next try in 30s"; after a restart nothing is tried early.
        h.dm(root, "REG", "Outbox/RetryMin", "=", "30")
        h.dm(root, "REG", "Outbox/RetryMax", "=", "60")
        n0 = len(log_events(root, pat))
        check("policy: restart", dm.start())
        ok = d.wait_for(lambda: len(log_events(root, pat)) > n0, 30, 0.2)
        check("policy: due at start, tried at once", ok)
        n1 = len(log_events(root, pat))
        rc, _ = dm.term()
        check("policy: restart again", dm.start())
        time.sleep(3.0)
        check("policy: after a restart the stored backoff holds (no attempt "
              "before the next try)", len(log_events(root, pat)) == n1,
              log_events(root, pat)[-1][1].group(0))
        rc, _ = dm.term()

        # MaxAge: make the message old (daemon stopped), then start it: the
        # next attempt fails temporarily and the message expires.
        envp = os.path.join(root, "spool", "queue", qid, "env")
        text = open(envp).read()
        old = int(time.time()) - 10 * 86400
        text = re.sub(r"(?m)^created \d+$", "created %d" % old, text)
        text = re.sub(r"(?m)^next \d+$", "next %d" % int(time.time()), text)
        with open(envp, "w") as f:
            f.write(text)
        # The retry state (docs/outbox.md) is read over the envelope's.
        retryp = os.path.join(root, "spool", "queue", qid, "retry")
        check("policy: the deferred message has its retry file",
              os.path.exists(retryp))
        text = open(retryp).read()
        text = re.sub(r"(?m)^next \d+$", "next %d" % int(time.time()), text)
        with open(retryp, "w") as f:
            f.write(text)
        check("policy: start with an old message", dm.start())
        ok = d.wait_for(lambda: qid in h.queued_ids(root, "failed"), 30)
        r = h.dm(root, "OUTBOX", "-f")
        out = r.stdout.decode(errors="replace")
        check("policy: an expired message goes to failed with 'expired after "
              "...; last error: ...'", ok and "expired after" in out
              and "last error:" in out and "Outbox/MaxAge" in out, out)
        check("policy: the log says failed ... expired",
              re.search(r"failed %s: expired after" % re.escape(qid),
                        d.log_text(root)) is not None)
        rc, _ = dm.term()
        check("policy: stops with 0", rc == 0, rc)
        check("policy: no sanitizer report", dm.clean(),
              dm.stderr_text()[-3000:])
    finally:
        dm.stop()


def test_failed_dialogue(top, srv, pki):
    root = d.setup_root(top, "dialogue", srv.port, pki)
    dm = d.Daemon(root, "dialogue")
    try:
        check("dialogue: devmaild starts", dm.start())
        r = sendmail_q(root, "refused", to="nobody@unit.test")
        m = re.search(r"Queued (\S+)", (r.stdout + r.stderr).decode())
        qid = m.group(1) if m else "?"
        ok = d.wait_for(lambda: qid in h.queued_ids(root, "failed"), 30)
        path = os.path.join(root, "spool", "failed", qid, "dialogue")
        ok = ok and d.wait_for(lambda: os.path.exists(path), 10)
        text = open(path).read() if ok else ""
        check("dialogue: a 5xx moves the message to failed with its dialogue",
              ok and text.startswith("DEVMAIL-DIALOGUE 1\n")
              and text.endswith("end\n"), text)
        check("dialogue: it holds the RCPT and the server's 550",
              "line >>> RCPT TO:<nobody@unit.test>" in text
              and "550 5.1.1 No such user" in text
              and "message 1 not sent" in text, text)
        check("dialogue: no password or AUTH payload in it",
              h.PASSWORD not in text and "AUTH PLAIN " not in text.replace(
                  "AUTH PLAIN <", ""), text)
        r = h.dm(root, "OUTBOX", "-f")
        check("dialogue: OUTBOX -f lists it with the 550",
              qid.encode() in r.stdout and b"550" in r.stdout, r.stdout)
        rc, _ = dm.term()
        check("dialogue: stops with 0", rc == 0, rc)
    finally:
        dm.stop()


def main():
    top = tempfile.mkdtemp(prefix="devmail-dqueue-")
    pki = os.path.join(top, "pki")
    subprocess.run(["bash", os.path.join(h.SRC, "tests", "lib", "pki.sh"), pki],
                   check=True, timeout=120, capture_output=True)
    srv = h.Server(pki, os.path.join(top, "cap"),
                   ["--rcpt-reply", "nobody@unit.test=550 5.1.1 No such user"])
    try:
        srv.start()
        if not os.access(d.DEVMAILD, os.X_OK):
            check("devmaild built", False, d.DEVMAILD)
        else:
            test_burst(top, pki)
            test_mailhost_change(top, srv, pki)
            test_retry_policy(top, srv, pki)
            test_failed_dialogue(top, srv, pki)
    except Exception as e:          # a crash of the test is a failure
        import traceback
        traceback.print_exc()
        check("no unexpected exception", False, repr(e))
    finally:
        srv.stop()
        shutil.rmtree(top, ignore_errors=True)
    print("%d passed, %d failed" % (h.passed, h.failed))
    return 1 if h.failed else 0


if __name__ == "__main__":
    sys.exit(main())
