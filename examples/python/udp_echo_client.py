#!/usr/bin/env python3
"""UDP echo client: tapstack run -- python3 udp_echo_client.py HOST PORT MESSAGE"""
import socket
import sys

host, port, message = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
# socket(): a UDP endpoint; the stack picks our port at the first send.
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.2)
for _ in range(10):
    # sendto(): one datagram (sent again if no echo comes: UDP may lose it).
    s.sendto(message, (host, port))
    try:
        # recvfrom(): the echo.
        data, _ = s.recvfrom(65536)
        sys.stdout.write(data.decode())
        break
    except socket.timeout:
        pass
else:
    sys.exit("no reply")
# close(): release the socket.
s.close()
