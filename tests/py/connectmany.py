"""Opens many TCP connections from one process with non-blocking connects
(standard library only). Shared by tests/py/many_echo.py and
scripts/bench_idle.py, which import it through sys.path.
"""
import errno
import selectors
import socket
import time

IP_BIND_ADDRESS_NO_PORT = 24  # the port is chosen at connect(), per 4-tuple


def connect_many(host, port, n, src=None, in_flight=256, end=None):
    """Opens n connections to host:port, at most in_flight handshakes at a
    time, until all are done or the time.monotonic() deadline end passes.
    With src, each binds to that local address (IP_BIND_ADDRESS_NO_PORT: one
    address's ephemeral ports are reused per destination 4-tuple).

    Returns (opened sockets, failed): failed counts refusals, errors and the
    handshakes still pending at the deadline (those sockets are closed).
    The opened sockets are non-blocking and registered nowhere."""
    if end is None:
        end = time.monotonic() + 240
    sel = selectors.DefaultSelector()
    opened, pending, failed, started = [], 0, 0, 0
    while (started < n or pending) and time.monotonic() < end:
        while started < n and pending < in_flight:
            s = socket.socket()
            s.setblocking(False)
            try:
                if src:
                    s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                    s.bind((src, 0))
                err = s.connect_ex((host, port))
            except OSError as e:
                err = e.errno
            started += 1
            if err not in (0, errno.EINPROGRESS):
                failed += 1
                s.close()
                continue
            sel.register(s, selectors.EVENT_WRITE)
            pending += 1
        for key, _ in sel.select(timeout=1.0):
            s = key.fileobj
            sel.unregister(s)
            pending -= 1
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                opened.append(s)
            else:
                failed += 1
                s.close()
    for key in list(sel.get_map().values()):  # still pending at the deadline
        key.fileobj.close()
    sel.close()
    return opened, failed + pending
