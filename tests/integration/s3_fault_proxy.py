#!/usr/bin/env python3
"""A fault-injecting HTTP proxy on 127.0.0.1 in front of an S3 gateway (python3 stdlib only).

Run:   python3 s3_fault_proxy.py --upstream PORT [--listen PORT] [--control PORT]
       (port 0, the default, picks a free port). Once listening it prints one JSON line on stdout,
       {"listen": P, "control": C, "upstream": U}, and serves until SIGTERM or SIGINT.
Ask:   python3 s3_fault_proxy.py ctl CONTROL_PORT COMMAND [KEY=VALUE...]
       prints the reply; exit 0 if it says "ok": true, else 1.
Python: FaultProxy(upstream_port) below starts it as a subprocess and wraps the commands.

Pass-through: every request is forwarded to 127.0.0.1:UPSTREAM as it comes, keep-alive included.
Requests are parsed at their boundaries (request line, headers, then a Content-Length or chunked
body), so each one is counted and can be matched; responses are forwarded as bytes.

Control protocol: TCP on 127.0.0.1:CONTROL, one command per line, one JSON line back per command
({"ok": true, ...} or {"ok": false, "error": "..."}); a connection may carry several commands.
Arguments are KEY=VALUE. COUNT is a number or "all" (default 1). MATCH (optional) is a substring
of the request's "METHOD TARGET" line, e.g. match=PUT or match=/bucket/key or match=uploadId=.
  cut dir=up|down bytes=N [count=K] [match=S] [mode=rst|fin]
      The next K connections (or all) that forward data in that direction while a matching
      request is their current one are cut after N more bytes in that direction: up = client
      to gateway (mid-upload), down = gateway to client (mid-download). The byte count starts at
      the connection's first forwarded byte after the rule is set, so a kept-alive connection
      is cut too; a connection that ends before its cut gives the claim back to the rule.
      mode=rst (default) resets both sides (a client sees ECONNRESET); mode=fin closes them
      (a client sees a short body, e.g. an IncompleteRead).
  fail [status=503] [code=C] [count=K] [match=S]
      The next K matching requests are answered by the proxy, not forwarded: an S3 XML error
      (<Error><Code>SlowDown</Code>...) with that status; code defaults to SlowDown for 503,
      InternalError for 500. A request body is read and dropped first; a request that waits
      for "100-continue" gets the error at once and the connection is closed after it.
  stall [count=K] [match=S]
      The next K matching requests are held, neither forwarded nor answered, until `clear` (or
      300 s): a gateway that hangs.
  clear        drop every rule and release stalled requests (counters stay)
  stats        {"ok", "connections", "requests", "forwarded", "bytes_up", "bytes_down",
               "upstream_refused", "faults": {"cut_up", "cut_down", "fail_503", "stall", ...},
               "rules": [...], "recent": ["PUT /b/k -> fail_503", ...] (the last 200 requests)}
  reset        zero the counters and forget the recent requests (rules stay)
  ping         {"ok": true}
Only 127.0.0.1 is ever listened on or connected to.
"""
import argparse
import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from http import HTTPStatus

HOST = "127.0.0.1"
IO_SIZE = 256 * 1024
MAX_HEAD = 64 * 1024  # request line + headers
MAX_CHUNK_LINE = 4096
STALL_LIMIT_S = 300.0
RECENT = 200
DEFAULT_CODES = {500: "InternalError", 503: "SlowDown", 403: "AccessDenied", 404: "NoSuchKey"}
MESSAGES = {
    "SlowDown": "Please reduce your request rate.",
    "InternalError": "We encountered an internal error. Please try again.",
}


class Cut(Exception):
    """The connection was cut (by a rule or by a peer): stop pumping it. gentle: close with FIN
    rather than RST."""

    def __init__(self, why, gentle=False):
        super().__init__(why)
        self.gentle = gentle


# ---------------------------------------------------------------- rules and counters


class Rule:
    """One armed fault. `count` is the number of claims left, None for all."""

    def __init__(self, kind, count, match, **params):
        self.kind, self.count, self.match, self.params = kind, count, match, params

    def matches(self, request_line):
        return self.match is None or self.match in (request_line or "")

    def describe(self):
        return {"kind": self.kind, "count": "all" if self.count is None else self.count,
                "match": self.match, **self.params}


class State:
    """Rules and counters shared by all connections; every access holds `lock`."""

    def __init__(self):
        self.lock = threading.Lock()
        self.rules = []
        self.stall_release = threading.Event()
        self.reset()

    def reset(self):
        self.counts = {"connections": 0, "requests": 0, "forwarded": 0, "bytes_up": 0,
                       "bytes_down": 0, "upstream_refused": 0}
        self.faults = {}
        self.recent = []

    def add(self, key, n=1):
        with self.lock:
            self.counts[key] += n

    def fault(self, name, request_line):
        with self.lock:
            self.faults[name] = self.faults.get(name, 0) + 1
            self.recent.append(f"{request_line} -> {name}")
            del self.recent[:-RECENT]

    def note_request(self, request_line):
        with self.lock:
            self.counts["requests"] += 1
            self.recent.append(request_line)
            del self.recent[:-RECENT]

    def claim(self, kind, request_line):
        """Takes one claim of the first rule of that kind matching the request, or None."""
        with self.lock:
            for rule in self.rules:
                if rule.kind == kind and rule.matches(request_line):
                    if rule.count is not None:
                        rule.count -= 1
                        if rule.count <= 0:
                            self.rules.remove(rule)
                    return rule
        return None

    def unclaim(self, rule):
        """Gives back a claim that never fired (its connection ended first): the fault is
        still owed, and a count that counted claims would differ from one that counts cuts."""
        with self.lock:
            if rule.count is not None:
                if rule.count <= 0:
                    self.rules.insert(0, rule)
                rule.count += 1

    def snapshot(self):
        with self.lock:
            return {**self.counts, "faults": dict(self.faults),
                    "rules": [r.describe() for r in self.rules], "recent": list(self.recent)}


# ---------------------------------------------------------------- one proxied connection


def hard_close(sock):
    """Closes with RST (SO_LINGER 0) after waking any thread blocked reading it."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RD)
    with contextlib.suppress(OSError):
        sock.close()


class Reader:
    """Buffered reads from the client socket, for request parsing."""

    def __init__(self, sock):
        self.sock, self.buf = sock, bytearray()

    def fill(self):
        data = self.sock.recv(IO_SIZE)
        if not data:
            raise EOFError
        self.buf += data

    def until(self, delim, limit, eof_ok=False):
        """Bytes up to and including delim. At the client's end before any byte: EOFError if
        eof_ok (between requests), else Cut."""
        while True:
            i = self.buf.find(delim)
            if i >= 0:
                out = bytes(self.buf[:i + len(delim)])
                del self.buf[:i + len(delim)]
                return out
            if len(self.buf) > limit:
                raise Cut(f"line or header block over {limit} bytes")
            try:
                self.fill()
            except EOFError:
                if self.buf or not eof_ok:
                    raise Cut("client closed mid-request") from None
                raise

    def some(self, limit):
        """Up to `limit` (> 0) bytes, at least one."""
        if not self.buf:
            try:
                self.fill()
            except EOFError:
                raise Cut("client closed mid-body") from None
        out = bytes(self.buf[:limit])
        del self.buf[:limit]
        return out


class Request:
    def __init__(self, head):
        self.raw = head
        lines = head.decode("latin-1").split("\r\n")
        self.line = lines[0]
        parts = self.line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise Cut(f"not an HTTP/1.x request line: {self.line[:100]!r}")
        self.method, self.target, self.version = parts
        self.headers = {}
        for h in lines[1:]:
            if h:
                k, _, v = h.partition(":")
                self.headers[k.strip().lower()] = v.strip()
        self.chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        cl = self.headers.get("content-length", "0")
        if not cl.isdigit():
            raise Cut(f"bad Content-Length {cl!r}")
        self.length = 0 if self.chunked else int(cl)
        self.expects_continue = self.headers.get("expect", "").lower() == "100-continue"
        self.wants_close = (self.headers.get("connection", "").lower() == "close"
                            or self.version == "HTTP/1.0")

    def summary(self):
        return f"{self.method} {self.target}"


class Conn:
    """A client connection and its (lazily opened) gateway connection: the client-to-gateway
    pump parses requests and runs on the accepting thread; a second thread pumps responses."""

    def __init__(self, state, client, upstream_port):
        self.state, self.client, self.upstream_port = state, client, upstream_port
        self.reader = Reader(client)
        self.upstream = None
        self.current = None  # the request line being sent or answered, for MATCH
        self.cuts = {}  # dir -> [bytes left before the cut, mode, rule], once claimed
        self.write_lock = threading.Lock()  # client writes: responses and injected errors
        self.close_lock = threading.Lock()
        self.closed = False

    # -- lifecycle

    def release_unfired_cuts(self):
        for claimed in self.cuts.values():
            if claimed[0] > 0:
                self.state.unclaim(claimed[2])
                claimed[0] = 0

    def abort(self):
        with self.close_lock:
            if self.closed:
                return
            self.closed = True
            self.release_unfired_cuts()
        hard_close(self.client)
        if self.upstream is not None:
            hard_close(self.upstream)

    def finish(self):
        """Orderly end: the gateway gets a FIN, then both close once responses are drained."""
        if self.upstream is not None:
            with contextlib.suppress(OSError):
                self.upstream.shutdown(socket.SHUT_WR)
        else:
            self.close_gently()

    def close_gently(self):
        with self.close_lock:
            if self.closed:
                return
            self.closed = True
            self.release_unfired_cuts()
        for s in (self.client, self.upstream):
            if s is not None:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)  # wakes the other pump if it is in recv
                with contextlib.suppress(OSError):
                    s.close()

    def run(self):
        try:
            while True:
                try:
                    head = self.reader.until(b"\r\n\r\n", MAX_HEAD, eof_ok=True)
                except EOFError:
                    self.finish()
                    return
                if not self.handle(Request(head)):
                    return
        except Cut as e:
            self.close_gently() if e.gentle else self.abort()
        except OSError:
            self.abort()

    # -- one request

    def handle(self, req):
        """Answers or forwards one request; False once the connection is done."""
        self.current = req.summary()
        self.state.note_request(self.current)
        if self.state.claim("stall", self.current):
            self.state.fault("stall", self.current)
            self.state.stall_release.wait(STALL_LIMIT_S)
        rule = self.state.claim("fail", self.current)
        if rule is not None:
            return self.answer(req, rule)
        self.forward(req)
        return True

    def answer(self, req, rule):
        status, code = rule.params["status"], rule.params["code"]
        close = req.expects_continue or req.wants_close
        if not req.expects_continue:
            self.drain_body(req)
        body = error_body(code, req.target, self.state)
        self.state.fault(f"fail_{status}", self.current)
        with self.write_lock:
            self.client.sendall(error_head(status, len(body), close)
                                + (b"" if req.method == "HEAD" else body))
        if close:
            # A client that still sends the body it announced must not see an RST before it
            # reads the answer: stop writing, drop what comes for a moment, then close.
            with contextlib.suppress(OSError):
                self.client.shutdown(socket.SHUT_WR)
                self.client.settimeout(1.0)
                while self.client.recv(IO_SIZE):
                    pass
            self.close_gently()
            return False
        return True

    def drain_body(self, req):
        self.body(req, lambda data: None)

    def forward(self, req):
        if self.upstream is None:
            self.connect_upstream()
        self.state.add("forwarded")
        self.send_up(req.raw)
        self.body(req, self.send_up)

    def body(self, req, sink):
        if req.chunked:
            self.chunked_body(sink)
            return
        left = req.length
        while left > 0:
            data = self.reader.some(min(left, IO_SIZE))
            left -= len(data)
            sink(data)

    def chunked_body(self, sink):
        while True:
            line = self.reader.until(b"\r\n", MAX_CHUNK_LINE)
            sink(line)
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise Cut(f"bad chunk size line {line[:60]!r}") from None
            if size == 0:
                break
            left = size + 2  # the data and its CRLF
            while left > 0:
                data = self.reader.some(min(left, IO_SIZE))
                left -= len(data)
                sink(data)
        while True:  # trailers, up to the empty line
            line = self.reader.until(b"\r\n", MAX_HEAD)
            sink(line)
            if line == b"\r\n":
                return

    # -- byte pumps

    def connect_upstream(self):
        try:
            self.upstream = socket.create_connection((HOST, self.upstream_port), timeout=10)
        except OSError:
            self.state.add("upstream_refused")
            raise
        self.upstream.settimeout(None)
        self.upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=self.pump_down, daemon=True).start()

    def limit(self, direction, data):
        """The part of `data` to forward before a cut in `direction`, and the cut's mode
        (how to close: "rst" or "fin") if it comes now, else None."""
        claimed = self.cuts.get(direction)
        if claimed is None:
            rule = self.state.claim(f"cut_{direction}", self.current)
            if rule is None:
                return data, None
            claimed = self.cuts[direction] = [rule.params["bytes"], rule.params["mode"], rule]
        left, mode = claimed[0], claimed[1]
        if len(data) < left:
            claimed[0] = left - len(data)
            return data, None
        claimed[0] = 0  # fired: nothing to give back when the connection closes
        return data[:left], mode

    def send_up(self, data):
        data, cut = self.limit("up", data)
        if data:
            self.upstream.sendall(data)
            self.state.add("bytes_up", len(data))
        if cut:
            self.state.fault("cut_up", self.current)
            raise Cut("cut_up", gentle=cut == "fin")

    def pump_down(self):
        try:
            while True:
                data = self.upstream.recv(IO_SIZE)
                if not data:
                    break
                data, cut = self.limit("down", data)
                if data:
                    with self.write_lock:
                        self.client.sendall(data)
                    self.state.add("bytes_down", len(data))
                if cut:
                    self.state.fault("cut_down", self.current)
                    self.close_gently() if cut == "fin" else self.abort()
                    return
        except OSError:
            self.abort()
            return
        # The gateway closed (idle keep-alive, or it stopped): so does the client's connection.
        with contextlib.suppress(OSError):
            self.client.shutdown(socket.SHUT_RDWR)
        self.close_gently()


def error_head(status, length, close):
    reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())
    lines = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/xml",
             f"Content-Length: {length}", f"Date: {date}", "x-amz-request-id: s3-fault-proxy",
             f"Connection: {'close' if close else 'keep-alive'}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def error_body(code, resource, state):
    message = MESSAGES.get(code, code)
    with state.lock:
        n = sum(state.faults.values()) + 1
    resource = resource.split("?", 1)[0].replace("&", "&amp;").replace("<", "&lt;")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message} (injected by s3_fault_proxy)</Message>"
            f"<Resource>{resource}</Resource><RequestId>s3-fault-proxy-{n}</RequestId></Error>"
            ).encode()


# ---------------------------------------------------------------- control commands


def parse_count(text):
    if text == "all":
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"count must be a positive number or 'all', got {text!r}")
    return int(text)


def parse_int(args, key, default, lo, hi):
    text = args.pop(key, None)
    if text is None:
        if default is None:
            raise ValueError(f"{key}= is required")
        return default
    if not text.isdigit() or not lo <= int(text) <= hi:
        raise ValueError(f"{key} must be a number in {lo}..{hi}, got {text!r}")
    return int(text)


def make_rule(verb, args):
    count = parse_count(args.pop("count", "1"))
    match = args.pop("match", None)
    if verb == "cut":
        direction = args.pop("dir", None)
        if direction not in ("up", "down"):
            raise ValueError(f"dir must be up or down, got {direction!r}")
        nbytes = parse_int(args, "bytes", None, 0, 1 << 62)
        mode = args.pop("mode", "rst")
        if mode not in ("rst", "fin"):
            raise ValueError(f"mode must be rst or fin, got {mode!r}")
        rule = Rule(f"cut_{direction}", count, match, bytes=nbytes, mode=mode)
    elif verb == "fail":
        status = parse_int(args, "status", 503, 400, 599)
        code = args.pop("code", None) or DEFAULT_CODES.get(status)
        if code is None:
            raise ValueError(f"status {status} needs code=")
        rule = Rule("fail", count, match, status=status, code=code)
    else:
        rule = Rule("stall", count, match)
    if args:
        raise ValueError(f"unknown arguments for {verb}: {', '.join(sorted(args))}")
    return rule


def execute(state, line):
    """Runs one control command line; returns the reply as a dict."""
    words = line.split()
    if not words:
        raise ValueError("empty command")
    verb, args = words[0], {}
    for w in words[1:]:
        key, eq, value = w.partition("=")
        if not eq:
            raise ValueError(f"arguments are KEY=VALUE, got {w!r}")
        args[key] = value
    if verb in ("cut", "fail", "stall"):
        rule = make_rule(verb, args)
        with state.lock:
            if verb == "stall":
                state.stall_release.clear()
            state.rules.append(rule)
        return {"ok": True, "rule": rule.describe()}
    if args:
        raise ValueError(f"{verb} takes no arguments")
    if verb == "clear":
        with state.lock:
            state.rules.clear()
            state.stall_release.set()
        return {"ok": True}
    if verb == "stats":
        return {"ok": True, **state.snapshot()}
    if verb == "reset":
        with state.lock:
            state.reset()
        return {"ok": True}
    if verb == "ping":
        return {"ok": True}
    raise ValueError(f"unknown command {verb!r} (cut, fail, stall, clear, stats, reset, ping)")


def control_session(state, sock):
    with sock, sock.makefile("rwb") as f:
        for raw in f:
            try:
                reply = execute(state, raw.decode("utf-8", "replace"))
            except ValueError as e:
                reply = {"ok": False, "error": str(e)}
            f.write((json.dumps(reply) + "\n").encode())
            f.flush()


# ---------------------------------------------------------------- the server


def listen_on(port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, port))
    sock.listen(128)
    return sock


def accept_loop(lsock, handle):
    while True:
        sock, _ = lsock.accept()
        threading.Thread(target=handle, args=(sock,), daemon=True).start()


def serve(listen_port, upstream_port, control_port):
    state = State()
    proxy, control = listen_on(listen_port), listen_on(control_port)

    def handle_client(sock):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        state.add("connections")
        Conn(state, sock, upstream_port).run()

    threading.Thread(target=accept_loop, args=(proxy, handle_client), daemon=True).start()
    threading.Thread(target=accept_loop, args=(control, lambda s: control_session(state, s)),
                     daemon=True).start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(json.dumps({"listen": proxy.getsockname()[1], "control": control.getsockname()[1],
                      "upstream": upstream_port}), flush=True)
    while not stop.wait(3600):
        pass


def control_command(control_port, line, timeout=30.0):
    """Sends one command line to a proxy's control port; returns the reply dict."""
    with socket.create_connection((HOST, control_port), timeout=timeout) as s, \
            s.makefile("rwb") as f:
        f.write((line.strip() + "\n").encode())
        f.flush()
        reply = f.readline()
    if not reply:
        raise RuntimeError(f"s3_fault_proxy on control port {control_port} closed without reply")
    return json.loads(reply)


# ---------------------------------------------------------------- python API


class FaultProxy:
    """The proxy as a subprocess in front of 127.0.0.1:upstream_port; a context manager.

        with FaultProxy(rgw.port) as proxy:
            s3 = rgw.client(endpoint=proxy.endpoint)
            proxy.fail(503, count=1)            # the next request gets SlowDown
            proxy.cut("down", 1 << 20)          # the next download is cut after 1 MiB
            assert proxy.stats()["faults"]["cut_down"] == 1
    """

    def __init__(self, upstream_port, listen_port=0, control_port=0, start_timeout=10.0):
        argv = [sys.executable, os.path.abspath(__file__), "--upstream", str(upstream_port),
                "--listen", str(listen_port), "--control", str(control_port)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        try:
            info = json.loads(self._first_line(start_timeout))
        except BaseException:
            self.close()
            raise
        self.port, self.control_port = info["listen"], info["control"]
        self.endpoint = f"http://{HOST}:{self.port}"

    def _first_line(self, timeout):
        import selectors
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                raise RuntimeError(f"s3_fault_proxy did not start within {timeout}s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"s3_fault_proxy exited at start: {self.proc.wait()}")
        return line

    def command(self, line):
        reply = control_command(self.control_port, line)
        if not reply.get("ok"):
            raise RuntimeError(f"s3_fault_proxy: {line!r}: {reply.get('error')}")
        return reply

    @staticmethod
    def _args(count, match, **kw):
        kw["count"] = "all" if count is None or count == "all" else int(count)
        if match is not None:
            if any(c.isspace() for c in match):
                raise ValueError(f"match must not contain spaces: {match!r}")
            kw["match"] = match
        return " ".join(f"{k}={v}" for k, v in kw.items() if v is not None)

    def cut(self, direction, nbytes, count=1, match=None, mode="rst"):
        """Cut the next `count` connections (None or "all": every one) after nbytes more bytes
        in `direction` ("up": client to gateway, "down": gateway to client), with an RST
        (mode="rst") or a FIN ("fin")."""
        return self.command(
            f"cut {self._args(count, match, dir=direction, bytes=int(nbytes), mode=mode)}")

    def fail(self, status=503, count=1, match=None, code=None):
        """Answer the next `count` matching requests with an S3 error (503 SlowDown default)."""
        return self.command(f"fail {self._args(count, match, status=int(status), code=code)}")

    def stall(self, count=1, match=None):
        """Hold the next `count` matching requests until clear()."""
        return self.command(f"stall {self._args(count, match)}")

    def clear(self):
        return self.command("clear")

    def stats(self):
        return self.command("stats")

    def reset(self):
        return self.command("reset")

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------- command line


def main(argv):
    if argv[:1] == ["ctl"]:
        if len(argv) < 3 or not argv[1].isdigit():
            sys.exit("usage: s3_fault_proxy.py ctl CONTROL_PORT COMMAND [KEY=VALUE...]")
        reply = control_command(int(argv[1]), " ".join(argv[2:]))
        print(json.dumps(reply))
        return 0 if reply.get("ok") else 1
    ap = argparse.ArgumentParser(description="Fault-injecting S3 proxy on 127.0.0.1 "
                                 "(see the module docstring for the control protocol).")
    ap.add_argument("--upstream", type=int, required=True, help="the gateway's port")
    ap.add_argument("--listen", type=int, default=0, help="the proxy's port (0: pick one)")
    ap.add_argument("--control", type=int, default=0, help="the control port (0: pick one)")
    args = ap.parse_args(argv)
    serve(args.listen, args.upstream, args.control)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
