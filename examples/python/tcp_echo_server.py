#!/usr/bin/env python3
"""TCP echo server: tapstack run -- python3 tcp_echo_server.py PORT [COUNT]"""
import socket
import sys

port = int(sys.argv[1])
count = int(sys.argv[2]) if len(sys.argv) > 2 else -1
# socket(): a TCP endpoint.
lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
# bind(): any local address, this port.
lsock.bind(("0.0.0.0", port))
# listen(): passive; up to 16 established connections wait for accept.
lsock.listen(16)
print(f"listening on port {port}", flush=True)
while count != 0:
    # accept(): the next connection and the peer's address.
    conn, peer = lsock.accept()
    print(f"connection from {peer[0]}:{peer[1]}", flush=True)
    # recv()/send(): echo until the peer's FIN (recv returns b"").
    while data := conn.recv(4096):
        conn.sendall(data)
    # close(): our FIN.
    conn.close()
    count -= 1
lsock.close()
