#!/usr/bin/env python3
"""The Linux DUT's applications for pktimpact.py, run inside the DUT's
namespace: the same services `tapstack echo` runs, written to behave the
same way on the socket API (src/apps/services.rs, src/apps/http.rs):

  7 echo (close on EOF), 9 discard (close on EOF), 19 chargen (write the
  pattern forever, read and discard until EOF), 8080 one HTTP request
  answered with tapstack's exact 404 bytes, then shutdown(SHUT_WR) and a
  2 s lingering read before close.

Commands on stdin, one per line (the `tapstack connect` equivalents):
  connect ID HOST PORT | write ID HEX | shutdown ID | close ID
Prints "ready" once listening. Standard library only.
"""
import socket
import sys
import threading
import time

HTTP_404 = (b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; "
            b"charset=utf-8\r\nContent-Length: 9\r\nCache-Control: no-store"
            b"\r\nConnection: close\r\n\r\nNot Found")
LINGER = 2.0


def chargen_block():
    out = bytearray()
    line = 0
    while len(out) < 9 * 74 * 95:
        out += bytes(32 + (line + i) % 95 for i in range(72)) + b"\r\n"
        line = (line + 1) % 95
    return bytes(out)


def serve(conn, port):
    try:
        if port == 7:
            while True:
                d = conn.recv(65536)
                if not d:
                    break
                conn.sendall(d)
        elif port == 9:
            while conn.recv(65536):
                pass
        elif port == 19:
            def drain():
                try:
                    while conn.recv(4096):
                        pass
                except OSError:
                    pass
            threading.Thread(target=drain, daemon=True).start()
            block = chargen_block()
            while True:
                conn.sendall(block)
        elif port == 8080:
            head = b""
            conn.settimeout(5)
            while b"\r\n\r\n" not in head and len(head) < 16384:
                d = conn.recv(4096)
                if not d:
                    break
                head += d
            conn.sendall(HTTP_404)
            conn.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER
            while time.monotonic() < deadline:
                conn.settimeout(max(0.01, deadline - time.monotonic()))
                if not conn.recv(2048):
                    break
    except OSError:
        pass
    finally:
        conn.close()


def listener(port):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(1024)
    return ls


def accept_loop(ls, port):
    while True:
        conn, _ = ls.accept()
        threading.Thread(target=serve, args=(conn, port), daemon=True).start()


def client(conns, ident, host, port):
    s = socket.socket()
    conns[ident] = s
    try:
        s.connect((host, port))
        while s.recv(65536):
            pass
    except OSError:
        pass


def main():
    listeners = [(listener(p), p) for p in (7, 9, 19, 8080)]
    for ls, p in listeners:
        threading.Thread(target=accept_loop, args=(ls, p), daemon=True).start()
    print("ready", flush=True)
    conns = {}
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        cmd, ident = words[0], int(words[1])
        try:
            if cmd == "connect":
                threading.Thread(target=client, daemon=True,
                                 args=(conns, ident, words[2],
                                       int(words[3]))).start()
            elif cmd == "write":
                conns[ident].sendall(bytes.fromhex(words[2]))
            elif cmd == "shutdown":
                conns[ident].shutdown(socket.SHUT_WR)
            elif cmd == "close":
                conns.pop(ident).close()
        except (OSError, KeyError) as e:
            print("error %s: %s" % (line.strip(), e), file=sys.stderr)


if __name__ == "__main__":
    main()
