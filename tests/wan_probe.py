"""wan_probe.py - measures what tests/wanemu sets (t0400), run inside the
hosts' namespaces:

  echo ADDR PORT               TCP server: echoes each "x" alone in a read, swallows
                               the rest, answers "!" when the client shuts down;
                               prints "peer IP" for each connection it accepts
  try ADDR PORT SECONDS        one TCP connect, given up after SECONDS; prints
                               "connected", "refused", "unreachable" or "timeout"
  rtt ADDR PORT N              N 1-byte round trips; prints "rtt_ms MIN MEDIAN MAX"
  send ADDR PORT BYTES         sends BYTES over TCP after the round trips' connection
                               is up; prints "goodput_mbit X seconds Y" (from the
                               first byte to the server's acknowledgement of the last)
  udp-sink ADDR PORT SECONDS   counts UDP datagrams until SECONDS pass without one;
                               prints "received N in_order 0|1"
  udp-send ADDR PORT N SIZE GAP_MS
                               N datagrams of SIZE bytes (a sequence number first),
                               GAP_MS apart (0: as fast as the socket takes them)

Every client but try retries its connection for 10 s (the server may start late).
"""
import errno
import socket
import struct
import sys
import time


def connect(addr, port):
    end = time.monotonic() + 10
    while True:
        try:
            c = socket.create_connection((addr, port), timeout=10)
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return c
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.1)


def echo(addr, port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(4)
    while True:
        c, peer = s.accept()
        print("peer %s" % peer[0], flush=True)
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            d = c.recv(1 << 16)
            if not d:
                break
            if d == b"x":
                c.sendall(d)  # a round-trip probe (bulk data is all "y")
        c.sendall(b"!")  # the whole transfer is in
        c.close()


def try_connect(addr, port, seconds):
    try:
        c = socket.create_connection((addr, port), timeout=seconds)
        c.close()
        print("connected")
    except ConnectionRefusedError:
        print("refused")
    except socket.timeout:
        print("timeout")
    except OSError as e:
        # no route (EHOSTUNREACH, ENETUNREACH) and the like
        print("unreachable" if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH)
              else "error %s" % e.strerror)


def rtt(addr, port, n):
    c = connect(addr, port)
    got = []
    for _ in range(n):
        t = time.monotonic()
        c.sendall(b"x")
        if c.recv(1) != b"x":
            sys.exit("rtt: bad echo")
        got.append((time.monotonic() - t) * 1000)
    c.close()
    got.sort()
    print("rtt_ms %.2f %.2f %.2f" % (got[0], got[len(got) // 2], got[-1]))


def send(addr, port, nbytes):
    c = connect(addr, port)
    c.sendall(b"x")  # one round trip first: the connection is up
    c.recv(1)
    chunk = b"y" * (1 << 16)
    t = time.monotonic()
    sent = 0
    while sent < nbytes:
        k = min(len(chunk), nbytes - sent)
        c.sendall(chunk[:k])
        sent += k
    c.shutdown(socket.SHUT_WR)
    if c.recv(1) != b"!":
        sys.exit("send: no acknowledgement")
    dt = time.monotonic() - t
    print("goodput_mbit %.3f seconds %.3f" % (nbytes * 8 / dt / 1e6, dt))


def udp_sink(addr, port, quiet):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind((addr, port))
    print("listening", flush=True)
    s.settimeout(30)  # the first datagram
    n, last, ordered = 0, -1, 1
    while True:
        try:
            d = s.recv(1 << 16)
        except socket.timeout:
            break
        seq = struct.unpack("!I", d[:4])[0]
        if seq <= last:
            ordered = 0
        last = seq
        n += 1
        s.settimeout(quiet)
    print("received %d in_order %d" % (n, ordered))


def udp_send(addr, port, n, size, gap_ms):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    pad = b"z" * (size - 4)
    for i in range(n):
        s.sendto(struct.pack("!I", i) + pad, (addr, port))
        if gap_ms > 0:
            time.sleep(gap_ms / 1000.0)


def main(a):
    cmd, addr, port = a[0], a[1], int(a[2])
    if cmd == "echo":
        echo(addr, port)
    elif cmd == "try":
        try_connect(addr, port, float(a[3]))
    elif cmd == "rtt":
        rtt(addr, port, int(a[3]))
    elif cmd == "send":
        send(addr, port, int(a[3]))
    elif cmd == "udp-sink":
        udp_sink(addr, port, float(a[3]))
    elif cmd == "udp-send":
        udp_send(addr, port, int(a[3]), int(a[4]), float(a[5]))
    else:
        sys.exit("wan_probe: unknown command " + cmd)


if __name__ == "__main__":
    main(sys.argv[1:])
