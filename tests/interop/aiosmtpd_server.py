#!/usr/bin/python3
"""aiosmtpd_server.py - the aiosmtpd peer for devmail's interop tests.

Runs Debian's aiosmtpd (1.4.3; start it with /usr/bin/python3) on loopback with
real TLS and AUTH, so devmail is checked against an SMTP server written by
someone else.  Modes (--tls):

  starttls-required  STARTTLS offered, every command but EHLO/HELO/NOOP/QUIT
                     refused until it is done (RFC 3207 section 4)
  starttls           STARTTLS offered, not required
  implicit           TLS from the first byte (port 465 style)
  none               plain TCP, no STARTTLS

AUTH (PLAIN, LOGIN) is checked against --user NAME:PASS entries and required
for MAIL unless --no-auth.  With auth_require_tls=True (the default) AUTH is
advertised and accepted only after TLS; --auth-in-clear advertises it on a
plain connection too, to test that devmail refuses to send credentials there.

Forced replies: --rcpt-reply ADDR=CODE TEXT answers RCPT TO:<ADDR> with that
reply; --data-reply SENDER=CODE TEXT answers the end of DATA with it for
messages from SENDER; --auth-reply 'CODE TEXT' answers every AUTH with it
(e.g. '454 4.7.0 Temporary authentication failure').  --session-limit N
accepts N MAIL commands per connection and answers the next ones with
'452 4.5.3 Too many messages in this session', as OpenSMTPD does.

Each session is numbered (1, 2, ...) at its first EHLO or HELO (a port probe
is not counted): the number is appended as a line to DIR/connections, and
written into each capture as "SESSION <n>" (an extra line; readers of the
shared format skip it).

Each accepted message is written into --capture DIR as NNNNNN.eml (temp file,
then rename, before the 250 reply), in the format shared with
tests/node/smtp_server.js:

  MAIL FROM:<sender>
  RCPT TO:<rcpt>          (one line per recipient)
  AUTH <user>             ("AUTH -" when not authenticated)
  TLS <protocol>          ("TLS -" on a plain connection)
  SMTPUTF8 <0|1>
  SESSION <n>             (this peer only: the connection's number)
  <empty line>
  <raw message bytes, CRLF, dot-unstuffed>

Prints "READY <port>" on stdout once listening; stops on SIGTERM/SIGINT.
"""
import argparse
import asyncio
import logging
import os
import re
import signal
import ssl
import sys
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def parse_reply(spec):
    m = re.match(r'^([^=]+)=([245]\d\d)(?: (.*))?$', spec)
    if not m:
        raise argparse.ArgumentTypeError(
            'expected ADDR=CODE TEXT, got %r' % spec)
    return m.group(1).lower(), '%s %s' % (m.group(2),
                                          m.group(3) or 'Refused by test peer')


def parse_code_text(spec):
    if not re.match(r'^[245]\d\d( .*)?$', spec):
        raise argparse.ArgumentTypeError('expected CODE TEXT, got %r' % spec)
    return spec


def parse_user(spec):
    name, sep, password = spec.partition(':')
    if not sep or not name:
        raise argparse.ArgumentTypeError('expected NAME:PASS')
    return name, password


class Handler:
    def __init__(self, args):
        self.args = args
        self.users = dict(args.user or [])
        self.rcpt_replies = dict(args.rcpt_reply or [])
        self.data_replies = dict(args.data_reply or [])
        self.seq = 0
        self.connections = 0

    def new_connection(self):
        """Numbers a new connection and logs it to DIR/connections."""
        self.connections += 1
        if self.args.capture:
            with open(os.path.join(self.args.capture, 'connections'), 'a') as f:
                f.write('%d\n' % self.connections)
        return self.connections

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        if self.args.auth_reply:
            return AuthResult(success=False, handled=False,
                              message=self.args.auth_reply)
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = auth_data.login.decode('utf-8', 'replace')
        password = auth_data.password.decode('utf-8', 'replace')
        if user in self.users and self.users[user] == password:
            return AuthResult(success=True, auth_data=user)
        return AuthResult(success=False, handled=False)

    async def handle_MAIL(self, server, session, envelope, address,
                          mail_options):
        # What aiosmtpd does without this hook, plus the session limit.
        if self.args.session_limit:
            n = getattr(server, 'dm_messages', 0)
            if n >= self.args.session_limit:
                return '452 4.5.3 Too many messages in this session'
            server.dm_messages = n + 1
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return '250 OK'

    async def handle_RCPT(self, server, session, envelope, address,
                          rcpt_options):
        reply = self.rcpt_replies.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return '250 2.1.5 OK'

    async def handle_DATA(self, server, session, envelope):
        reply = self.data_replies.get((envelope.mail_from or '').lower())
        if reply:
            return reply
        try:
            name = self.capture(server, session, envelope)
        except OSError as e:
            return '451 4.3.0 Capture failed: %s' % e
        return '250 2.0.0 Message accepted as %s' % name

    def capture(self, server, session, envelope):
        self.seq += 1
        name = '%06d' % self.seq
        if not self.args.capture:
            return name
        ssl_obj = server.transport.get_extra_info('ssl_object')
        lines = ['MAIL FROM:<%s>' % (envelope.mail_from or '')]
        lines += ['RCPT TO:<%s>' % r for r in envelope.rcpt_tos]
        lines.append('AUTH %s' % (session.auth_data if session.authenticated
                                  else '-'))
        lines.append('TLS %s' % (ssl_obj.version() if ssl_obj else '-'))
        lines.append('SMTPUTF8 %d' % (1 if envelope.smtp_utf8 else 0))
        lines.append('SESSION %d' % getattr(server, 'dm_conn', 0))
        head = ('\n'.join(lines) + '\n\n').encode('utf-8')
        tmp = os.path.join(self.args.capture, '.%s.eml.tmp' % name)
        with open(tmp, 'wb') as f:
            f.write(head)
            f.write(envelope.original_content)
        os.rename(tmp, os.path.join(self.args.capture, name + '.eml'))
        return name


class PeerSMTP(SMTP):
    """aiosmtpd decides "is TLS on?" by whether STARTTLS ran, so on an
    implicit-TLS listener it would neither advertise nor accept AUTH with
    auth_require_tls=True.  Mark such connections as secured."""

    implicit_tls = False
    handler_obj = None
    dm_conn = 0

    def dm_count(self):
        # A connection is counted at its first EHLO/HELO (a port probe that
        # says nothing is not a session; EHLO again after STARTTLS is the
        # same one).
        if not self.dm_conn and self.handler_obj is not None:
            self.dm_conn = self.handler_obj.new_connection()

    async def smtp_EHLO(self, hostname):
        self.dm_count()
        return await super().smtp_EHLO(hostname)

    async def smtp_HELO(self, hostname):
        self.dm_count()
        return await super().smtp_HELO(hostname)

    def connection_made(self, transport):
        super().connection_made(transport)
        if (self.implicit_tls and self._tls_protocol is None
                and transport.get_extra_info('ssl_object') is not None):
            self._tls_protocol = transport
            self.session.ssl = transport.get_extra_info('ssl_object')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--host', default='127.0.0.1')
    ap.add_argument('--port', type=int, default=0)
    ap.add_argument('--tls', default='starttls-required',
                    choices=['starttls-required', 'starttls', 'implicit',
                             'none'])
    ap.add_argument('--cert')
    ap.add_argument('--key')
    ap.add_argument('--user', action='append', type=parse_user)
    ap.add_argument('--no-auth', action='store_true')
    ap.add_argument('--auth-in-clear', action='store_true')
    ap.add_argument('--rcpt-reply', action='append', type=parse_reply)
    ap.add_argument('--data-reply', action='append', type=parse_reply)
    ap.add_argument('--auth-reply', type=parse_code_text)
    ap.add_argument('--session-limit', type=int, default=0)
    ap.add_argument('--capture')
    ap.add_argument('--size', type=int, default=0)
    ap.add_argument('--smtputf8', action='store_true')
    args = ap.parse_args()

    if args.host not in ('127.0.0.1', '::1', 'localhost'):
        ap.error('--host must be a loopback address')
    ctx = None
    if args.tls != 'none':
        if not args.cert or not args.key:
            ap.error('--tls %s needs --cert and --key' % args.tls)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
    if args.capture:
        os.makedirs(args.capture, exist_ok=True)

    logging.basicConfig(level=logging.CRITICAL)
    warnings.simplefilter('ignore')
    handler = Handler(args)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    class Proto(PeerSMTP):
        implicit_tls = args.tls == 'implicit'
        handler_obj = handler

    def factory():
        return Proto(
            handler,
            hostname='devmail-test-peer',
            ident='devmail test peer (aiosmtpd)',
            data_size_limit=args.size or None,
            enable_SMTPUTF8=args.smtputf8,
            tls_context=ctx if args.tls in ('starttls-required',
                                            'starttls') else None,
            require_starttls=args.tls == 'starttls-required',
            auth_required=not args.no_auth,
            auth_require_tls=not args.auth_in_clear,
            authenticator=handler.authenticate,
            timeout=30,
            loop=loop)

    server = loop.run_until_complete(loop.create_server(
        factory, host=args.host, port=args.port,
        ssl=ctx if args.tls == 'implicit' else None))
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write('READY %d\n' % port)
    sys.stdout.flush()

    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(0))
    loop.run_until_complete(stop)
    server.close()
    loop.run_until_complete(server.wait_closed())
    loop.close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
