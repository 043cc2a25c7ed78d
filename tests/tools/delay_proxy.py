#!/usr/bin/env python3
"""A TCP proxy that adds latency, for tests and benchmarks of NBD over a slow network.

    delay_proxy.py --listen 127.0.0.3:PORT --to 127.0.0.2:PORT --delay-ms 5 [--pidfile F]
                   [--ready-file F] [--hold-after N]

Every byte is held back `--delay-ms` in each direction, from the moment it arrives: data is
timestamped and released in order once its time has come, so many segments are in flight at
once and the throughput is not limited by the delay (a link with latency, not a slow link).
These kernels have no tc netem, hence a proxy of our own.

SIGUSR1 drops every open connection, both sides, with a TCP reset: tests use it to cut the
network in the middle of a transfer. The proxy keeps listening.

Once bound it prints "listening HOST:PORT" on stdout (and writes the same line to
--ready-file, if given) so that callers wait on a condition rather than a time. SIGTERM and
SIGINT stop it. Standard library only.
"""

import argparse
import asyncio
import collections
import os
import signal
import socket
import struct
import sys

# Bytes a direction may hold (delayed or not yet written) before the proxy stops reading the
# sender: bounds memory, and lets TCP flow control reach the sender. Larger than the
# bandwidth-delay product of loopback at 5 ms (a few GB/s * 5 ms).
HIGH_WATER = 64 << 20
LOW_WATER = 16 << 20


class Direction:
    """Bytes from one socket to the other, each chunk released `delay` seconds after arrival."""

    def __init__(self, loop, delay, source_transport_getter, released=None):
        self.loop = loop
        self.released = released  # told the size of every batch forwarded (or None)
        self.delay = delay
        self.queue = collections.deque()  # (release time, bytes)
        self.held = 0
        self.timer = None
        self.sink = None  # the transport to write to, once connected
        self.source = source_transport_getter  # returns the transport we read from
        self.paused = False
        self.closed = False
        self.eof = False

    def feed(self, data):
        self.queue.append((self.loop.time() + self.delay, data))
        self.held += len(data)
        if self.held > HIGH_WATER and not self.paused:
            self.paused = True
            self.source().pause_reading()
        self.schedule()

    def feed_eof(self):
        self.eof = True
        self.schedule()

    def schedule(self):
        if self.timer is not None or self.sink is None or self.closed:
            return
        if self.queue:
            self.timer = self.loop.call_at(self.queue[0][0], self.release)
        elif self.eof and self.sink.can_write_eof():
            self.sink.write_eof()

    def release(self):
        self.timer = None
        if self.closed:
            return
        now = self.loop.time()
        batch = []
        while self.queue and self.queue[0][0] <= now:
            data = self.queue.popleft()[1]
            self.held -= len(data)
            batch.append(data)
        if batch:
            self.sink.writelines(batch)
            if self.released is not None:
                self.released(sum(len(b) for b in batch))
        if self.paused and self.held < LOW_WATER:
            self.paused = False
            self.source().resume_reading()
        self.schedule()

    def close(self):
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.queue.clear()


class Pair:
    """One client connection and its upstream connection."""

    def __init__(self, proxy):
        self.proxy = proxy
        self.client = None
        self.upstream = None
        self.up = Direction(proxy.loop, proxy.delay, lambda: self.client)  # client -> server
        self.down = Direction(proxy.loop, proxy.delay, lambda: self.upstream,  # server -> client
                              proxy.count_down)
        self.closed = False

    def abort(self):
        """Drops both sides with a reset (SO_LINGER 0), as a cut network would look."""
        if self.closed:
            return
        self.closed = True
        self.up.close()
        self.down.close()
        for t in (self.client, self.upstream):
            if t is None:
                continue
            sock = t.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
            t.abort()
        self.proxy.pairs.discard(self)

    def close(self):
        if self.closed:
            return
        self.closed = True
        self.up.close()
        self.down.close()
        for t in (self.client, self.upstream):
            if t is not None:
                t.close()
        self.proxy.pairs.discard(self)


class Side(asyncio.Protocol):
    def __init__(self, pair, direction):
        self.pair = pair
        self.direction = direction  # where our incoming bytes go

    def data_received(self, data):
        self.direction.feed(data)

    def eof_received(self):
        self.direction.feed_eof()
        return True  # keep the other half open until the peer closes too

    def connection_lost(self, exc):
        # Deliver what is still delayed before closing the other side? A real link would;
        # but a lost connection on one side ends the pair here, which is what tests need.
        if exc is None and (self.pair.up.queue or self.pair.down.queue):
            self.pair.proxy.loop.call_later(self.pair.proxy.delay + 0.001, self.pair.close)
        else:
            self.pair.close()


class ClientSide(Side):
    def connection_made(self, transport):
        self.pair.client = transport
        self.pair.up.sink = None
        self.pair.down.sink = transport
        _nodelay(transport)
        proxy = self.pair.proxy
        proxy.pairs.add(self.pair)
        proxy.accepted += 1
        if proxy.hold_after is not None and proxy.accepted > proxy.hold_after:
            return  # held: what the client sends is kept, nothing is answered
        proxy.loop.create_task(proxy.connect_upstream(self.pair))


def _nodelay(transport):
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Proxy:
    def __init__(self, loop, target, delay, hold_after, drop_after_bytes=None):
        self.loop = loop
        self.target = target
        self.delay = delay
        self.hold_after = hold_after
        self.drop_after_bytes = drop_after_bytes  # a cut once, after this many bytes served
        self.served = 0
        self.accepted = 0
        self.pairs = set()

    def new_client(self):
        pair = Pair(self)
        return ClientSide(pair, pair.up)

    async def connect_upstream(self, pair):
        host, port = self.target
        try:
            transport, _ = await self.loop.create_connection(
                lambda: Side(pair, pair.down), host, port)
        except OSError as e:
            print(f"delay_proxy: cannot connect to {host}:{port}: {e}", file=sys.stderr)
            pair.abort()
            return
        if pair.closed:
            transport.abort()
            return
        _nodelay(transport)
        pair.upstream = transport
        pair.up.sink = transport
        pair.up.schedule()

    def count_down(self, n):
        if self.drop_after_bytes is None:
            return
        self.served += n
        if self.served >= self.drop_after_bytes:
            self.drop_after_bytes = None  # once: later connections pass
            self.loop.call_soon(self.drop_all)

    def drop_all(self):
        for pair in list(self.pairs):
            pair.abort()


def parse_address(text):
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=parse_address, required=True, help="HOST:PORT to bind")
    parser.add_argument("--to", type=parse_address, required=True, help="HOST:PORT to forward to")
    parser.add_argument("--delay-ms", type=float, default=5.0, help="added each way (ms)")
    parser.add_argument("--pidfile", help="write our pid here")
    parser.add_argument("--ready-file", help="write 'listening HOST:PORT' here once bound")
    parser.add_argument("--hold-after", type=int, metavar="N",
                        help="accept connections after the first N but never forward or "
                        "answer them (a server that serves one client at a time)")
    parser.add_argument("--drop-after-bytes", type=int, metavar="B",
                        help="drop every connection (as SIGUSR1 does) once B bytes have gone "
                        "from the server to the clients: a network cut mid-transfer, at a "
                        "point that does not depend on timing; once only")
    args = parser.parse_args()

    loop = asyncio.get_running_loop()
    proxy = Proxy(loop, args.to, args.delay_ms / 1000.0, args.hold_after, args.drop_after_bytes)
    server = await loop.create_server(proxy.new_client, args.listen[0], args.listen[1],
                                      reuse_address=True, backlog=128)
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, proxy.drop_all)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    if args.pidfile:
        with open(args.pidfile + ".tmp", "w") as f:
            f.write(f"{os.getpid()}\n")
        os.rename(args.pidfile + ".tmp", args.pidfile)
    bound = server.sockets[0].getsockname()
    line = f"listening {bound[0]}:{bound[1]}\n"
    if args.ready_file:
        with open(args.ready_file + ".tmp", "w") as f:
            f.write(line)
        os.rename(args.ready_file + ".tmp", args.ready_file)
    sys.stdout.write(line)
    sys.stdout.flush()
    await stop
    server.close()
    proxy.drop_all()


if __name__ == "__main__":
    asyncio.run(main())
