#!/usr/bin/env python3
"""Drives headless Chromium over the Chrome DevTools Protocol (CDP, with
the `websockets` sync client) through the web page's story, for
tests/kernel_web.rs. Prints key=value lines; every wait is bounded.

  web_page.py DEVTOOLS_PORT PAGE_URL STACK_IP TAP SCREENSHOT

1. tcpdump on TAP records the echo connection (absolute numbers, -S);
2. the page opens; its watch channel and its echo channel open;
3. text that looks like a push goes through the echo box: it must come
   back as an echo and never reach the table (a MutationObserver watches);
4. a kernel client connects to STACK_IP:7, sends a line, gets it back;
   the table must show it ESTABLISHED; the row is clicked;
5. the client half-closes and closes; the ladder must draw the close;
6. the ladder's rows, the table row, tcpdump's lines and a screenshot
   are the output;
7. a bulk transfer from chargen (port 19), read at about 16 MB/s, is
   selected: the plot must get at least 10 samples and the ladder 100
   segments; a second screenshot (SCREENSHOT with -bulk) is taken.
"""
import base64
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request

from websockets.sync.client import connect

ECHO_PORT = 7
INJECT = json.dumps({"type": "conns", "rows": [{
    "c": None, "live": True, "proto": "tcp", "state": "INJECTED",
    "local": "6.6.6.6:6", "remote": "6.6.6.6:6", "rq": 0, "sq": 0}],
    "sockets": 1, "untracked": 0, "tap_dropped": 0})


def fail(why):
    print(f"error={why}", flush=True)
    sys.exit(1)


class Cdp:
    """One CDP session on a page target."""

    def __init__(self, url):
        self.ws = connect(url, max_size=64 << 20, open_timeout=20)
        self.next_id = 0

    def call(self, method, params=None, timeout=30):
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                fail(f"cdp {method}: no answer in {timeout} s")
            msg = json.loads(self.ws.recv(timeout=left))
            if msg.get("id") == mid:
                if "error" in msg:
                    fail(f"cdp {method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expr):
        r = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True})
        if "exceptionDetails" in r:
            fail(f"js {expr!r}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait(self, expr, what, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = self.js(expr)
            if v:
                return v
            time.sleep(0.1)
        fail(f"timeout: {what}")


def page_target(port, timeout=60):
    """The WebSocket URL of Chromium's first page target."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                for t in json.load(r):
                    if t.get("type") == "page":
                        return t["webSocketDebuggerUrl"]
        except OSError as e:
            last = e
        time.sleep(0.2)
    fail(f"no DevTools page target on port {port}: {last}")


def start_tcpdump(tap):
    p = subprocess.Popen(
        ["tcpdump", "-i", tap, "-n", "-S", "-l", "-U", f"tcp port {ECHO_PORT}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready = threading.Event()
    lines = []

    def read_err():
        for line in p.stderr:
            if "listening on" in line:
                ready.set()

    def read_out():
        for line in p.stdout:
            lines.append(line.rstrip("\n"))

    threading.Thread(target=read_err, daemon=True).start()
    threading.Thread(target=read_out, daemon=True).start()
    if not ready.wait(20):
        p.kill()
        fail("tcpdump did not start")
    return p, lines


def bulk(cdp, stack_ip, shot):
    b = socket.create_connection((stack_ip, 19), timeout=20)
    bport = b.getsockname()[1]
    stop = threading.Event()
    got = [0]

    def reader():
        while not stop.is_set():
            try:
                d = b.recv(16384)
            except OSError:
                return
            if not d:
                return
            got[0] += len(d)
            time.sleep(0.001)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    sel = f"tr.conn[data-remote=\"10.0.0.1:{bport}\"]"
    cdp.wait(f"document.querySelector('{sel}') !== null", "the bulk connection in the table", 20)
    cdp.js(f"document.querySelector('{sel}').click(); true")
    points = cdp.wait("""(() => {
        const p = document.querySelector('#plot .series-1');
        const n = p ? p.getAttribute('points').trim().split(' ').length : 0;
        return n >= 10 && document.querySelectorAll('#ladder g.seg').length >= 100 ? n : 0;
      })()""", "10 samples in the plot and 100 segments in the ladder", 30)
    cwnd_max = cdp.js("Math.max(...samples.map((s) => s[1]))")
    segs = cdp.js("document.querySelectorAll('#ladder g.seg').length")
    marks = cdp.js("""['retx', 'dup'].map((c) => document.querySelectorAll('#ladder g.seg.' + c).length)
        .concat([document.querySelectorAll('#ladder tspan.sack').length])""")
    # A retransmission in view if there is one (a run with --loss).
    cdp.js("document.querySelector('#ladder g.seg.retx')?.scrollIntoView({block: 'center'}); true")
    shot_data = cdp.call("Page.captureScreenshot", {"format": "png"}, timeout=60)["data"]
    with open(shot, "wb") as f:
        f.write(base64.b64decode(shot_data))
    stop.set()
    b.close()
    t.join(10)
    print(f"bulk_samples={points}", flush=True)
    print(f"bulk_cwnd_max={cwnd_max}", flush=True)
    print(f"bulk_segs={segs}", flush=True)
    print(f"bulk_bytes={got[0]}", flush=True)
    print(f"bulk_marks_retx_dup_sack={marks}", flush=True)
    print(f"bulk_screenshot={shot}", flush=True)


def main():
    port, page_url, stack_ip, tap, shot = sys.argv[1:6]
    dump, dump_lines = start_tcpdump(tap)
    cdp = Cdp(page_target(port))
    cdp.call("Emulation.setDeviceMetricsOverride",
             {"width": 1100, "height": 1900, "deviceScaleFactor": 1, "mobile": False})
    cdp.call("Page.enable")
    cdp.call("Page.navigate", {"url": page_url})
    cdp.wait("document.getElementById('watch-state')?.textContent === 'open' && "
             "document.getElementById('echo-state')?.textContent === 'open'",
             "the page's watch and echo WebSockets open", 60)
    cdp.wait("document.querySelectorAll('#conns-body tr.conn').length > 0",
             "a first table push", 30)

    # A push look-alike through the echo box: echoed, never in the table.
    cdp.js("""window.injected = 0;
      new MutationObserver(() => {
        if (document.querySelector('tr.conn[data-state="INJECTED"]')) window.injected++;
      }).observe(document.getElementById('conns-body'), {childList: true, subtree: true});
      true""")
    cdp.js(f"document.getElementById('text').value = {json.dumps(INJECT)};"
           "document.getElementById('send').click(); true")
    cdp.wait(f"document.getElementById('echo').textContent.includes('< ' + {json.dumps(INJECT)})",
             "the push look-alike echoed back", 20)
    # Two table refreshes after the echo came back.
    cdp.js("window.tables = 0; new MutationObserver(() => window.tables++)"
           ".observe(document.getElementById('conns-body'), {childList: true}); true")
    cdp.wait("window.tables >= 2", "table refreshes after the echo", 20)
    print("echoed=1", flush=True)
    print(f"injected_seen={cdp.js('window.injected')}", flush=True)

    # A kernel client on the echo port.
    s = socket.create_connection((stack_ip, ECHO_PORT), timeout=20)
    cport = s.getsockname()[1]
    print(f"client_port={cport}", flush=True)
    s.sendall(b"hello, ladder\n")
    got = b""
    while len(got) < 14:
        chunk = s.recv(100)
        if not chunk:
            break
        got += chunk
    if got != b"hello, ladder\n":
        fail(f"echo returned {got!r}")
    peer = f"10.0.0.1:{cport}"
    sel = f"tr.conn[data-remote=\"{peer}\"]"
    row = cdp.wait(f"""(() => {{
        const tr = document.querySelector('{sel}');
        if (!tr || tr.dataset.state !== 'ESTABLISHED') return null;
        return {{state: tr.dataset.state, local: tr.dataset.local, remote: tr.dataset.remote,
                 c: tr.dataset.c, cells: [...tr.cells].map((td) => td.textContent)}};
      }})()""", "the client's connection ESTABLISHED in the table", 20)
    print(f"table_row={json.dumps(row, separators=(',', ':'))}", flush=True)
    cdp.js(f"document.querySelector('{sel}').click(); true")
    cdp.wait("document.querySelectorAll('#ladder g.seg').length >= 5",
             "the handshake and the echo in the ladder", 20)

    # The close: our FIN, the echo server's FIN.
    s.shutdown(socket.SHUT_WR)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if not s.recv(100):
            break
    s.close()
    cdp.wait("document.querySelector('#ladder g.seg[data-rs=\"CLOSED\"]') !== null",
             "the close drawn to CLOSED in the ladder", 20)
    ladder = cdp.js("""[...document.querySelectorAll('#ladder g.seg')].map((g) => {
        const o = {};
        for (const a of g.getAttributeNames())
          if (a.startsWith('data-')) o[a.slice(5)] = g.getAttribute(a);
        return o;
      })""")
    for r in ladder:
        print(f"ladder={json.dumps(r, separators=(',', ':'))}", flush=True)

    shot_data = cdp.call("Page.captureScreenshot", {"format": "png"}, timeout=60)["data"]
    with open(shot, "wb") as f:
        f.write(base64.b64decode(shot_data))
    print(f"screenshot={shot}", flush=True)

    bulk(cdp, stack_ip, shot.replace(".png", "-bulk.png"))

    time.sleep(0.3)  # tcpdump prints line-buffered; the close is long done
    dump.terminate()
    try:
        dump.wait(10)
    except subprocess.TimeoutExpired:
        dump.kill()
    for line in dump_lines:
        if f".{cport} " in line or f".{cport}:" in line:
            print(f"tcpdump={line}", flush=True)
    print("done=1", flush=True)


if __name__ == "__main__":
    main()
