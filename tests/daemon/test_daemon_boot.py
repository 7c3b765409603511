#!/usr/bin/python3
"""test_daemon_boot.py - devmaild starts, mails on boot, is alone, stops.

A real aiosmtpd on loopback (STARTTLS required, AUTH, test CA); every
devmaild is a real process stopped by PID.  Checks:
  * the boot line (version, host, pid, clock) and "ready" in the system log;
  * Events/OnBoot/Email on: exactly one boot mail per start ("<host> booted",
    host name, version, addresses, DNS, clock in the body), delivered over
    verified TLS with AUTH; two starts, two mails; off: none;
  * a second devmaild on the same root refuses (75) naming the PID that
    holds ROOT/devmaild.pid, in the foreground and detached;
  * detached start: the parent returns 0 once the daemon is ready; the PID
    file names it; SIGTERM stops it and removes the PID file;
  * SIGHUP reloads the registry (logged) and the daemon keeps running;
  * devmail-sendmail: 0 once queued when a devmaild serves the root (the
    daemon delivers it; with the server down it stays queued and 0 is
    still right), 75 when no devmaild serves it and the server is down;
  * SIGTERM exits 0; no sanitizer report on stderr.
Prints "N passed, M failed"; exits non-zero on failure.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import daemon_lib as d  # noqa: E402

h = d.h
check = h.check


def boot_mails(capdir):
    return [c for c in h.captures(capdir)
            if str(c["msg"]["Subject"]).endswith(" booted")]


def test_boot_mail(top, srv, pki):
    root = d.setup_root(top, "boot", srv.port, pki, onboot=True,
                        extra_reg=[("IpConfig/HostName", "boiler-room")])
    dm = d.Daemon(root, "boot")
    try:
        ok = dm.start()
        check("devmaild starts and logs ready", ok, dm.stderr_text()[-2000:])
        log = d.log_text(root)
        m = re.search(r"devmaild: devmail (\S+) started on boiler-room "
                      r"\(pid (\d+)\); addresses .*; gateway .*; DNS .*; "
                      r"clock (synchronised \(NTP\)|not synchronised|unknown)",
                      log)
        check("boot line: version, host name, pid, addresses, clock",
              m is not None and int(m.group(2)) == dm.pid, log[-3000:])
        check("PID file names the daemon", open(os.path.join(
            root, "devmaild.pid")).read().strip() == str(dm.pid))
        got = d.wait_for(lambda: boot_mails(srv.capture), 60)
        check("boot mail arrives", len(got) == 1, got)
        if got:
            c = got[0]
            body = c["msg"].get_body(preferencelist=("plain",)).get_content()
            check("boot mail: subject '<host name> booted', to Email/ToAddress",
                  str(c["msg"]["Subject"]) == "boiler-room booted"
                  and c["rcpt"] == ["ops@x.test"], (c["msg"]["Subject"],
                                                    c["rcpt"]))
            check("boot mail: over verified TLS with AUTH",
                  c.get("tls", "").startswith("TLSv1")
                  and c.get("auth") == h.USER, c)
            want = ["Host name:    boiler-room", "devmail:      ",
                    "Boot time:    ", "Uptime:       ", "Addresses:    ",
                    "Gateway:      ", "DNS servers:  ", "Clock:        "]
            check("boot mail body: host, version, boot time, uptime, "
                  "addresses, gateway, DNS, clock",
                  all(w in body for w in want) and
                  ("devmail:      %s (devmaild, pid %d)" % (m.group(1), dm.pid)
                   if m else "?") in body, body)
        log = d.log_text(root)
        check("log: boot mail queued, then sent with its TLS line",
              re.search(r"boot mail \S+ queued for ops@x.test", log) is not None
              and re.search(r"sent \S+ Sent to ops@x.test via 127.0.0.1:\d+ "
                            r"\(STARTTLS, TLS1\.[23], .*certificate verified, "
                            r"AUTH PLAIN\)", log) is not None, log[-3000:])
        time.sleep(1.0)
        check("exactly one boot mail for one start",
              len(boot_mails(srv.capture)) == 1)

        # SIGHUP: reload, still running.
        dm.signal(signal.SIGHUP)
        ok = d.wait_for(lambda: "reloaded the registry (SIGHUP)"
                        in d.log_text(root), 20)
        check("SIGHUP reloads the registry and the daemon keeps running",
              ok and dm.running())

        rc, took = dm.term()
        check("SIGTERM: exit 0 (took %.2fs)" % took, rc == 0, rc)
        check("PID file removed at stop",
              not os.path.exists(os.path.join(root, "devmaild.pid")))
        check("second start", dm.start())
        got = d.wait_for(lambda: len(boot_mails(srv.capture)) >= 2 and
                         boot_mails(srv.capture), 60)
        time.sleep(0.5)
        check("second start: a second boot mail, and only one more",
              len(boot_mails(srv.capture)) == 2, len(boot_mails(srv.capture)))
        rc, _ = dm.term()
        check("stopped again with 0", rc == 0, rc)
        check("no sanitizer report", dm.clean(), dm.stderr_text()[-3000:])
    finally:
        dm.stop()
    return root


def test_no_boot_mail(top, srv, pki):
    capdir = os.path.join(top, "cap-nb")
    srv2 = h.Server(pki, capdir)
    srv2.start()
    dm = None
    try:
        root = d.setup_root(top, "noboot", srv2.port, pki, onboot=False)
        dm = d.Daemon(root, "noboot")
        check("OnBoot off: devmaild starts", dm.start())
        time.sleep(1.5)
        check("OnBoot off: no boot mail queued or sent",
              d.count_files(capdir) == 0 and h.queued_ids(root) == []
              and "boot mail" not in d.log_text(root), d.log_text(root)[-2000:])
        rc, _ = dm.term()
        check("OnBoot off: stops with 0", rc == 0, rc)
    finally:
        if dm:
            dm.stop()
        srv2.stop()


def test_single_instance(top, srv, pki):
    root = d.setup_root(top, "single", srv.port, pki)
    dm = d.Daemon(root, "single")
    try:
        check("first devmaild starts", dm.start())
        r = subprocess.run([d.DEVMAILD, "--root", root, "--foreground"],
                           capture_output=True, timeout=60, env=d.env_for())
        err = r.stderr.decode(errors="replace")
        check("second devmaild (foreground) refuses with 75, naming the pid",
              r.returncode == 75 and ("pid %d" % dm.pid) in err
              and "already running" in err, (r.returncode, err))
        r = subprocess.run([d.DEVMAILD, "--root", root], capture_output=True,
                           timeout=60, env=d.env_for())
        err = r.stderr.decode(errors="replace")
        check("second devmaild (detached) refuses with 75, naming the pid",
              r.returncode == 75 and ("pid %d" % dm.pid) in err, (r.returncode,
                                                                  err))
        check("the first one still runs and still holds the PID file",
              dm.running() and open(os.path.join(root, "devmaild.pid"))
              .read().strip() == str(dm.pid))
        check("the refusal is in the system log",
              ("not started: already running on %s (pid %d" % (root, dm.pid))
              in d.log_text(root))
        rc, _ = dm.term()
        check("stops with 0", rc == 0, rc)
    finally:
        dm.stop()


def test_detached(top, srv, pki):
    root = d.setup_root(top, "detached", srv.port, pki)
    pidfile = os.path.join(root, "devmaild.pid")
    pid = 0
    try:
        r = subprocess.run([d.DEVMAILD, "--root", root], capture_output=True,
                           timeout=60, env=d.env_for())
        check("detached start: parent exits 0, silent",
              r.returncode == 0 and r.stdout == b"" and r.stderr == b"",
              (r.returncode, r.stderr))
        pid = int(open(pidfile).read().strip()) if os.path.exists(pidfile) else 0
        check("detached: PID file names a running process that is ready",
              pid > 0 and os.path.exists("/proc/%d" % pid)
              and ("(pid %d)" % pid) in d.log_text(root), pid)
        if pid:
            os.kill(pid, signal.SIGTERM)

            def gone():
                try:
                    got, st = os.waitpid(pid, os.WNOHANG)
                    if got == pid:
                        return ("exit", st)
                except ChildProcessError:
                    if not os.path.exists("/proc/%d" % pid):
                        return ("gone", None)
                return None
            res = d.wait_for(gone, 20)
            check("detached: SIGTERM stops it (exit 0), PID file removed",
                  res is not None and (res[1] is None or
                                       (os.WIFEXITED(res[1])
                                        and os.WEXITSTATUS(res[1]) == 0))
                  and not os.path.exists(pidfile), res)
            pid = 0 if res else pid
    finally:
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass


def sm(root, *args, stdin):
    return h.run([h.SENDMAIL, "--root", root] + list(args), stdin=stdin)


def test_sendmail_exit(top, pki):
    capdir = os.path.join(top, "cap-sm")
    srv = h.Server(pki, capdir)
    port = srv.start()
    root = d.setup_root(top, "sm", port, pki,
                        extra_reg=[("Outbox/RetryMin", "3600")])
    dm = d.Daemon(root, "sm")
    msg = b"To: ops@x.test\nSubject: %s\n\nbody\n"
    try:
        # No devmaild, server down: 75 (not sent yet), queued.
        srv.stop()
        r = sm(root, "-t", stdin=msg % b"no daemon")
        check("no devmaild, server down: devmail-sendmail exits 75",
              r.returncode == 75 and len(h.queued_ids(root)) == 1,
              (r.returncode, r.stderr))
        h.dm(root, "OUTBOX", "-d", h.queued_ids(root)[0])
        # devmaild serving, server down: 0 (the queue owns it), stays queued.
        check("devmaild starts", dm.start())
        r = sm(root, "-t", "-v", stdin=msg % b"daemon, server down")
        out = r.stdout.decode(errors="replace")
        check("devmaild serving, server down: devmail-sendmail exits 0 at once",
              r.returncode == 0 and ("devmaild (pid %d) delivers it" % dm.pid)
              in out, (r.returncode, out, r.stderr))
        ok = d.wait_for(lambda: "deferred " in d.log_text(root), 30)
        check("... the daemon tried it and keeps it queued",
              ok and len(h.queued_ids(root)) == 1, h.queued_ids(root))
        # Server up: the daemon delivers a new one at once (inotify).
        ok2 = False
        for _ in range(40):
            try:
                srv.start(port)
                ok2 = True
                break
            except RuntimeError:
                time.sleep(0.25)
        check("server restarted on its port", ok2)
        r = sm(root, "-t", stdin=msg % b"daemon, server up")
        check("devmaild serving, server up: exit 0, silent",
              r.returncode == 0 and r.stdout == b"" and r.stderr == b"",
              (r.returncode, r.stderr))
        got = d.wait_for(lambda: "daemon, server up" in d.subjects(capdir), 30)
        check("... and the daemon delivers it by itself", got)
        rc, _ = dm.term()
        check("stops with 0", rc == 0, rc)
        check("no sanitizer report", dm.clean(), dm.stderr_text()[-3000:])
    finally:
        dm.stop()
        srv.stop()


def main():
    d.subreaper()
    top = tempfile.mkdtemp(prefix="devmail-dboot-")
    pki = os.path.join(top, "pki")
    subprocess.run(["bash", os.path.join(h.SRC, "tests", "lib", "pki.sh"), pki],
                   check=True, timeout=120, capture_output=True)
    srv = h.Server(pki, os.path.join(top, "cap"))
    try:
        srv.start()
        if not os.access(d.DEVMAILD, os.X_OK):
            check("devmaild built", False, d.DEVMAILD)
        else:
            test_boot_mail(top, srv, pki)
            test_no_boot_mail(top, srv, pki)
            test_single_instance(top, srv, pki)
            test_detached(top, srv, pki)
            test_sendmail_exit(top, pki)
    except Exception as e:          # a crash of the test is a failure
        check("no unexpected exception", False, repr(e))
    finally:
        srv.stop()
        shutil.rmtree(top, ignore_errors=True)
    print("%d passed, %d failed" % (h.passed, h.failed))
    return 1 if h.failed else 0


if __name__ == "__main__":
    sys.exit(main())
