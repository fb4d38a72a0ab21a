#!/usr/bin/env python3
"""UDP echo server: tapstack run -- python3 udp_echo_server.py PORT [COUNT]"""
import socket
import sys

port = int(sys.argv[1])
count = int(sys.argv[2]) if len(sys.argv) > 2 else -1
# socket(): a UDP endpoint.
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
# bind(): the port datagrams are addressed to.
s.bind(("0.0.0.0", port))
print(f"listening on port {port}", flush=True)
while count != 0:
    # recvfrom(): one datagram and its sender; sendto(): the same back.
    data, peer = s.recvfrom(65536)
    s.sendto(data, peer)
    count -= 1
# close(): release the port.
s.close()
