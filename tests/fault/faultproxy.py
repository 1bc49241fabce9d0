#!/usr/bin/python3
"""faultproxy: a TCP proxy on 127.0.0.1 that forwards to cairnd and injects
the faults libcairn must survive, by seeded chance:

  --lose P       for each response (an HTTP/2 HEADERS frame from the server
                 on a stream), with probability P reset both connections
                 instead of forwarding it: the server has committed the
                 request, the client never hears back. This is the case
                 idempotency keys exist for.
  --delay P      per connection: hold every chunk for --delay-ms first.
  --blackhole P  per connection: accept, read, never forward or answer.
  --refuse P     per connection: reset it at once.

It prints "listening on 127.0.0.1:PORT" when ready, one line per fault to
stderr ("lost", "refused", "blackholed", "delayed", "upstream-down"), and
totals on SIGTERM. Only Python's standard library; run it with Debian's
/usr/bin/python3.
"""
import argparse
import asyncio
import random
import signal
import socket
import struct
import sys

FRAME_HEADERS = 0x1
stats = {"connections": 0, "lost": 0, "refused": 0, "blackholed": 0, "delayed": 0,
         "upstream-down": 0, "responses": 0}


def note(what):
    stats[what] += 1
    print(what, stats[what], file=sys.stderr, flush=True)


def reset(writer):
    """Closes with RST rather than FIN: the peer sees a broken connection."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


class Proxy:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        host, port = args.upstream.rsplit(":", 1)
        self.upstream = (host, int(port))

    def chance(self, p):
        return p > 0 and self.rng.random() < p

    async def handle(self, creader, cwriter):
        stats["connections"] += 1
        a = self.args
        if self.chance(a.refuse):
            note("refused")
            reset(cwriter)
            return
        if self.chance(a.blackhole):
            note("blackholed")
            try:
                while await creader.read(65536):
                    pass
            except (ConnectionError, OSError):
                pass
            cwriter.close()
            return
        delay = a.delay_ms / 1000.0 if self.chance(a.delay) else 0.0
        if delay:
            note("delayed")
        try:
            sreader, swriter = await asyncio.open_connection(*self.upstream)
        except OSError:
            note("upstream-down")
            reset(cwriter)
            return
        done = asyncio.Event()

        def cut():
            reset(cwriter)
            reset(swriter)
            done.set()

        async def client_to_server():
            try:
                while True:
                    data = await creader.read(65536)
                    if not data:
                        break
                    if delay:
                        await asyncio.sleep(delay)
                    swriter.write(data)
                    await swriter.drain()
            except (ConnectionError, OSError):
                pass
            done.set()

        async def server_to_client():
            buf = b""
            answered = set()  # streams whose response already started
            try:
                while True:
                    data = await sreader.read(65536)
                    if not data:
                        break
                    buf += data
                    out = b""
                    # Forward whole frames; a response's HEADERS may be lost.
                    while len(buf) >= 9:
                        length = int.from_bytes(buf[0:3], "big")
                        if len(buf) < 9 + length:
                            break
                        ftype = buf[3]
                        stream = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
                        # A response starts with the stream's first HEADERS
                        # (its trailers come in a second one).
                        if ftype == FRAME_HEADERS and stream and stream not in answered:
                            answered.add(stream)
                            stats["responses"] += 1
                            if self.chance(a.lose):
                                if out:
                                    cwriter.write(out)
                                note("lost")
                                cut()
                                return
                        out += buf[:9 + length]
                        buf = buf[9 + length:]
                    if out:
                        if delay:
                            await asyncio.sleep(delay)
                        cwriter.write(out)
                        await cwriter.drain()
            except (ConnectionError, OSError):
                pass
            done.set()

        tasks = [asyncio.ensure_future(client_to_server()),
                 asyncio.ensure_future(server_to_client())]
        await done.wait()
        for t in tasks:
            t.cancel()
        for w in (cwriter, swriter):
            try:
                w.close()
            except OSError:
                pass


async def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--listen", default="127.0.0.1:0")
    p.add_argument("--upstream", required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--lose", type=float, default=0.0)
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--delay-ms", type=int, default=200)
    p.add_argument("--blackhole", type=float, default=0.0)
    p.add_argument("--refuse", type=float, default=0.0)
    args = p.parse_args()
    host, port = args.listen.rsplit(":", 1)
    if host not in ("127.0.0.1", "localhost"):
        sys.exit("faultproxy: --listen must be on 127.0.0.1")
    proxy = Proxy(args)
    server = await asyncio.start_server(proxy.handle, host, int(port))
    bound = server.sockets[0].getsockname()
    print("listening on %s:%d" % (bound[0], bound[1]), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    print("totals " + " ".join("%s=%d" % kv for kv in sorted(stats.items())),
          file=sys.stderr, flush=True)


if __name__ == "__main__":
    asyncio.run(main())
