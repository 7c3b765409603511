#!/usr/bin/python3
"""relay.py - a loopback TCP relay that adds latency and counts round trips.

    relay.py --upstream PORT [--delay-ms 50] [--stats FILE]

Listens on 127.0.0.1 (port printed as "READY <port>"), and for each client
connection opens one to 127.0.0.1:UPSTREAM.  Every chunk read from either
side is forwarded after --delay-ms (a one-way delay, like netem: a round trip
costs twice that; order is kept).

Round trips are counted per connection: a round trip is a client flight (bytes
from the client with no server bytes in between) that the server answers,
i.e. the number of client->server then server->client direction changes.  A
last client flight the server never answers (TLS close_notify, FIN) is not a
round trip; it is reported separately as client_flights.

When a connection ends one line is appended to --stats (and to stderr):
    conn=N round_trips=R client_flights=F c2s_bytes=B s2c_bytes=B ms=T
--trace FILE appends one line per chunk read (connection, ms since accept,
direction, bytes, client flight number) to see where the flights come from.
Stops on SIGTERM/SIGINT.
"""
import argparse
import heapq
import itertools
import selectors
import signal
import socket
import sys
import time

CHUNK = 65536


class Conn:
    ids = itertools.count(1)

    def __init__(self, client, upstream):
        self.id = next(Conn.ids)
        self.client = client
        self.upstream = upstream
        self.last_dir = None        # 'c2s' or 's2c'
        self.client_flights = 0
        self.round_trips = 0
        self.bytes = {'c2s': 0, 's2c': 0}
        self.open = {'c2s': True, 's2c': True}   # reading side still open
        self.pending = {'c2s': 0, 's2c': 0}      # queued events not yet sent
        self.t0 = time.monotonic()
        self.done = False

    def note(self, direction, n):
        self.bytes[direction] += n
        if direction != self.last_dir:
            if direction == 'c2s':
                self.client_flights += 1
            elif self.last_dir == 'c2s':
                self.round_trips += 1
            self.last_dir = direction


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--upstream', type=int, required=True)
    ap.add_argument('--delay-ms', type=float, default=50.0)
    ap.add_argument('--stats')
    ap.add_argument('--port', type=int, default=0)
    ap.add_argument('--trace', help='append one line per chunk read: '
                    'conn, ms since connect, direction, bytes')
    args = ap.parse_args()
    delay = args.delay_ms / 1000.0

    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(('127.0.0.1', args.port))
    lsock.listen(64)
    lsock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(lsock, selectors.EVENT_READ, ('listen', None, None))
    sys.stdout.write('READY %d\n' % lsock.getsockname()[1])
    sys.stdout.flush()

    stopping = []
    signal.signal(signal.SIGTERM, lambda *a: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *a: stopping.append(1))

    # (due, seq, conn, direction, data); data b'' means "shut down writing"
    queue = []
    seq = itertools.count()

    def peer_of(conn, direction):
        return (conn.client, conn.upstream) if direction == 'c2s' \
            else (conn.upstream, conn.client)

    def finish(conn):
        if conn.done:
            return
        conn.done = True
        for s in (conn.client, conn.upstream):
            try:
                sel.unregister(s)
            except (KeyError, ValueError):
                pass
            s.close()
        line = ('conn=%d round_trips=%d client_flights=%d c2s_bytes=%d '
                's2c_bytes=%d ms=%.1f\n' % (
                    conn.id, conn.round_trips, conn.client_flights,
                    conn.bytes['c2s'], conn.bytes['s2c'],
                    (time.monotonic() - conn.t0) * 1000))
        sys.stderr.write(line)
        if args.stats:
            with open(args.stats, 'a') as f:
                f.write(line)

    def maybe_finish(conn):
        if not conn.open['c2s'] and not conn.open['s2c'] \
                and not conn.pending['c2s'] and not conn.pending['s2c']:
            finish(conn)

    while not stopping:
        # select() is resumed after a signal handler (PEP 475), so wake up
        # at least every 200 ms to notice SIGTERM.
        timeout = 0.2
        if queue:
            timeout = min(timeout, max(0.0, queue[0][0] - time.monotonic()))
        try:
            events = sel.select(timeout)
        except InterruptedError:
            continue
        now = time.monotonic()
        for key, _ in events:
            kind, conn, direction = key.data
            if kind == 'listen':
                try:
                    c, _ = lsock.accept()
                except BlockingIOError:
                    continue
                u = socket.create_connection(('127.0.0.1', args.upstream))
                for s in (c, u):
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    s.setblocking(False)
                conn = Conn(c, u)
                sel.register(c, selectors.EVENT_READ, ('data', conn, 'c2s'))
                sel.register(u, selectors.EVENT_READ, ('data', conn, 's2c'))
                continue
            src, _ = peer_of(conn, direction)
            try:
                data = src.recv(CHUNK)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b''
            if data:
                conn.note(direction, len(data))
                if args.trace:
                    with open(args.trace, 'a') as f:
                        f.write('conn=%d t=%.1f %s %d flight=%d\n' % (
                            conn.id, (now - conn.t0) * 1000, direction,
                            len(data), conn.client_flights))
            else:
                conn.open[direction] = False
                sel.unregister(src)
            conn.pending[direction] += 1
            heapq.heappush(queue, (now + delay, next(seq), conn, direction,
                                   data))
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, conn, direction, data = heapq.heappop(queue)
            conn.pending[direction] -= 1
            if conn.done:
                continue
            _, dst = peer_of(conn, direction)
            try:
                if data:
                    dst.setblocking(True)
                    dst.sendall(data)
                    dst.setblocking(False)
                else:
                    dst.shutdown(socket.SHUT_WR)
            except OSError:
                conn.open['c2s'] = conn.open['s2c'] = False
                conn.pending['c2s'] = conn.pending['s2c'] = 0
            maybe_finish(conn)
    lsock.close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
