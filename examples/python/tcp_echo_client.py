#!/usr/bin/env python3
"""TCP echo client: tapstack run -- python3 tcp_echo_client.py HOST PORT MESSAGE"""
import socket
import sys

host, port, message = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
# socket(): a TCP endpoint.
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
# connect(): the three-way handshake.
s.connect((host, port))
# send(), then shutdown(SHUT_WR): our FIN.
s.sendall(message)
s.shutdown(socket.SHUT_WR)
# recv(): the echo until the server's FIN.
reply = b""
while data := s.recv(4096):
    reply += data
sys.stdout.write(reply.decode())
# close(): release the socket.
s.close()
