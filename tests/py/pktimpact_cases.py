"""The case scripts of pktimpact.py: each runs unchanged against tapstack
and against Linux. A case gets `listen(port)` (a Conn to a service of the
DUT: 7 echo, 9 discard, 19 chargen, 8080 HTTP that closes first, 1 closed)
and `active()` (the DUT connects to us; the Conn starts after its SYN).

Conn.x(label, flags, ...) sends one segment and records the replies;
`seq`/`ack` default to what the tester has sent / seen. Numbers in the
record are relative: d+N to the DUT's ISN, t+N to ours; "-" is silence.
The section of RFC 9293 3.10.7 ("segment arrives") or the other RFC a
case exercises is named in its docstring. LISTEN, CLOSED, SYN-RECEIVED
and ESTABLISHED are here; the closing states and SYN-SENT are in
pktimpact_cases_close.py.
"""

import time

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
ECHO, DISCARD, CHARGEN, HTTP, CLOSED = 7, 9, 19, 8080, 1
# HTTP/1.0: the server answers and closes (RFC 9112 9.3: no persistence
# unless asked), as tapstack's keep-alive web server and the Linux app do.
REQUEST = b"GET /nope HTTP/1.0\r\nHost: x\r\n\r\n"
FAR = 400000  # beyond any receive window either DUT offers here
# An RTT that puts a DUT's RTO (3 RTT on both) at ~1 s, after the steps
# of a case and in the middle of a delay class.
SLOW_RTT = 0.33

CASES = []


class CaseError(Exception):
    """The script cannot go on (e.g. no SYN-ACK); recorded as a step."""


def case(fn):
    CASES.append((fn.__name__, fn))
    return fn


def handshake(c, quiet=0.2, rtt=0.0, **kw):
    """SYN, SYN-ACK, ACK: the DUT ends in ESTABLISHED. `rtt` delays our
    ACK, which sets the DUT's first RTT sample (and so its RTO)."""
    c.syn(**kw)
    c.obs("synack", until=SYN)
    if c.disn is None:
        raise CaseError("no SYN-ACK")
    time.sleep(rtt)
    c.ack()
    c.obs("ack3", quiet=quiet)


def alive(c, label="alive"):
    """10 bytes of data: ACKed if the connection is still there."""
    c.x(label, ACK, data=b"0123456789")


# ---------------------------------------------------------------- LISTEN
@case
def listen_syn(listen, active):
    """3.10.7.2 LISTEN, third: SYN -> SYN,ACK with our options echoed."""
    c = listen(DISCARD)
    c.syn()
    c.obs("synack", until=SYN)
    c.x("rst", RST)


@case
def listen_ack(listen, active):
    """3.10.7.2 LISTEN, second: any ACK -> <SEQ=SEG.ACK><CTL=RST>."""
    c = listen(DISCARD)
    c.disn = 0x55550000  # the anchor the RST's seq is measured from
    c.x("ack", ACK, ack=c.disn)


@case
def listen_rst(listen, active):
    """3.10.7.2 LISTEN, first: an incoming RST is ignored."""
    c = listen(DISCARD)
    c.x("rst", RST)
    c.x("rst_ack", RST | ACK, ack=0x1234)


@case
def listen_no_flags(listen, active):
    """3.10.7.2 LISTEN, fourth: other text or control -> drop."""
    c = listen(DISCARD)
    c.x("data", 0, data=b"hello", advance=False)
    c.x("fin", FIN, advance=False)


@case
def listen_synack(listen, active):
    """3.10.7.2 LISTEN, second: a SYN,ACK carries an ACK -> RST with
    SEQ=SEG.ACK."""
    c = listen(DISCARD)
    c.disn = 0x57570000
    c.x("synack", SYN | ACK, ack=c.disn, opts=[("mss", 1460)])


@case
def listen_syn_fin(listen, active):
    """SYN+FIN to a listener (no RFC rule; Linux drops it)."""
    c = listen(DISCARD)
    c.x("synfin", SYN | FIN, opts=[("mss", 1460), ("sackok", True),
                                    ("ws", 0)])
    if c.disn is not None:
        c.x("rst", RST, seq=c.tisn + 1)


@case
def listen_syn_data(listen, active):
    """3.10.7.2: SYN with text; without TFO the text is not ACKed, the
    peer sends it again after the handshake."""
    c = listen(DISCARD)
    c.syn(data=b"early-data", advance=False)
    c.snd_nxt = c.tisn + 1
    c.obs("synack", until=SYN)
    if c.disn is None:
        raise CaseError("no SYN-ACK")
    c.x("ack", ACK)
    c.x("data", ACK, data=b"early-data")


@case
def listen_syn_no_options(listen, active):
    """A SYN without options gets a SYN-ACK with no TS/SACK/WS (RFC 7323
    3.2, RFC 2018: only if offered)."""
    c = listen(DISCARD)
    c.ts_on = False
    c.syn(opts=[])
    c.obs("synack", until=SYN)
    c.x("rst", RST)


# ----------------------------------------------------------- CLOSED port
@case
def closed_syn(listen, active):
    """3.10.7.1 CLOSED: no ACK -> <SEQ=0><ACK=SEG.SEQ+SEG.LEN><RST,ACK>."""
    c = listen(CLOSED)
    c.syn()
    c.obs("syn")


@case
def closed_syn_data(listen, active):
    """3.10.7.1: SEG.LEN counts the SYN and the text."""
    c = listen(CLOSED)
    c.syn(data=b"0123456789")
    c.obs("syn")


@case
def closed_ack(listen, active):
    """3.10.7.1: ACK on -> <SEQ=SEG.ACK><CTL=RST>."""
    c = listen(CLOSED)
    c.disn = 0x66660000
    c.x("ack", ACK, ack=c.disn)
    c.x("fin", FIN | ACK, ack=c.disn)


@case
def closed_synack(listen, active):
    """3.10.7.1: a SYN,ACK to a closed port -> <SEQ=SEG.ACK><CTL=RST>."""
    c = listen(CLOSED)
    c.disn = 0x68680000
    c.x("synack", SYN | ACK, ack=c.disn, opts=[("mss", 1460)])


@case
def closed_rst(listen, active):
    """3.10.7.1: an incoming RST is discarded."""
    c = listen(CLOSED)
    c.x("rst", RST)
    c.x("rst_ack", RST | ACK, ack=0x1234)


@case
def closed_data_no_ack(listen, active):
    """3.10.7.1: text without ACK -> RST,ACK acking it."""
    c = listen(CLOSED)
    c.x("data", 0, data=b"hello")
    c.x("fin", FIN, seq=c.tisn + 100)


# ---------------------------------------------------------- SYN-RECEIVED
@case
def synrcvd_bad_ack(listen, active):
    """3.10.7.4 SYN-RECEIVED, fifth: unacceptable ACK -> RST with
    SEQ=SEG.ACK; the half-open connection stays."""
    c = listen(DISCARD)
    c.syn()
    c.obs("synack", until=SYN)
    if c.disn is None:
        raise CaseError("no SYN-ACK")
    c.x("bad_ack", ACK, ack=c.disn + 1000)
    c.x("good_ack", ACK)
    alive(c)


@case
def synrcvd_rst(listen, active):
    """3.10.7.4 SYN-RECEIVED, second: an acceptable RST from a passive
    open returns to LISTEN (the connection is gone)."""
    c = listen(DISCARD)
    c.syn()
    c.obs("synack", until=SYN)
    c.x("rst", RST)
    c.x("ack", ACK)


@case
def synrcvd_dup_syn(listen, active):
    """A retransmitted SYN (same ISN) gets the SYN,ACK again."""
    c = listen(DISCARD)
    c.drop_rtx = False
    c.syn()
    c.obs("synack", until=SYN)
    c.x("syn_again", SYN, seq=c.tisn, opts=[("mss", 1460), ("sackok", True),
                                             ("ws", 0)])
    c.x("rst", RST, seq=c.tisn + 1)


@case
def synrcvd_syn_in_window(listen, active):
    """3.10.7.4 fourth / RFC 5961 4.2: a SYN with another sequence number
    in the window -> challenge ACK, the connection stays."""
    c = listen(DISCARD)
    c.syn()
    c.obs("synack", until=SYN)
    c.x("syn_other", SYN, seq=c.tisn + 100, opts=[("mss", 1460)])
    c.x("ack", ACK, seq=c.tisn + 1)


@case
def synrcvd_synack_rtx(listen, active):
    """SYN,ACK retransmission timing: RFC 6298 2.1 (1 s) and 5.5 (back
    off): at ~1 s and ~3 s."""
    c = listen(DISCARD)
    c.syn()
    c.obs("synack_rtx", timed=True, dur=3.6)
    c.x("rst", RST)


@case
def synrcvd_ack_with_data(listen, active):
    """3.10.7.4: the ACK that completes the handshake may carry text."""
    c = listen(DISCARD)
    c.syn()
    c.obs("synack", until=SYN)
    c.x("ack_data", ACK, data=b"x" * 20)


@case
def synrcvd_no_ack_data(listen, active):
    """3.10.7.4 fifth, SYN-RECEIVED: text without ACK is dropped; the
    connection stays half-open (our ACK then completes it)."""
    c = listen(DISCARD)
    c.syn()
    c.obs("synack", until=SYN)
    c.x("no_ack", 0, data=b"x" * 10, advance=False)
    c.x("ack", ACK)
    alive(c)


@case
def synrcvd_ack_fin(listen, active):
    """3.10.7.4: the ACK completing the handshake carries a FIN: ESTABLISHED
    then CLOSE-WAIT; discard closes too (LAST-ACK)."""
    c = listen(DISCARD)
    c.syn()
    c.obs("synack", until=SYN)
    c.x("ack_fin", FIN | ACK, want=2)
    c.x("ack", ACK)


# ----------------------------------------------------------- ESTABLISHED
@case
def est_data(listen, active):
    """3.10.7.4 seventh: in-order text is ACKed."""
    c = listen(DISCARD)
    handshake(c)
    c.x("data", ACK, data=b"a" * 100)


@case
def est_out_of_order(listen, active):
    """Text beyond a hole: immediate duplicate ACK with a SACK block (RFC
    5681 4.2, RFC 2018 4); filling the hole ACKs both."""
    c = listen(DISCARD)
    handshake(c)
    c.x("ooo", ACK, seq=c.tisn + 101, data=b"b" * 100, advance=False)
    c.x("hole", ACK, data=b"a" * 100)
    c.snd_nxt = c.tisn + 201


@case
def est_old_data(listen, active):
    """3.10.7.4 first: a segment wholly before RCV.NXT -> ACK (with a
    D-SACK block, RFC 2883 4)."""
    c = listen(DISCARD)
    handshake(c)
    c.x("data", ACK, data=b"a" * 100)
    c.x("again", ACK, seq=c.tisn + 1, data=b"a" * 100)


@case
def est_overlap(listen, active):
    """3.10.7.4 first/seventh: a segment starting before RCV.NXT and
    ending after it is acceptable; its new part is taken."""
    c = listen(DISCARD)
    handshake(c)
    c.x("data", ACK, data=b"a" * 10)
    c.x("overlap", ACK, seq=c.tisn + 1 + 5, data=b"b" * 10)


@case
def est_ooo_fin(listen, active):
    """A FIN beyond a hole is held (3.10.7.4 eighth: FIN only when all
    before it arrived): SACK block; filling the hole ACKs the FIN too."""
    c = listen(DISCARD)
    handshake(c)
    c.x("fin_after_hole", FIN | ACK, seq=c.tisn + 1 + 10, data=b"z" * 10,
        advance=False)
    c.x("hole", ACK, data=b"a" * 10)
    c.snd_nxt = c.tisn + 22


@case
def est_keepalive_probe(listen, active):
    """RFC 1122 4.2.3.6: a keep-alive probe (SEG.SEQ = RCV.NXT-1, no data)
    is not acceptable (3.10.7.4 first) -> ACK."""
    c = listen(DISCARD)
    handshake(c)
    c.x("keepalive", ACK, seq=c.tisn, advance=False)


@case
def est_seq_beyond_window(listen, active):
    """3.10.7.4 first: not acceptable -> <SEQ=SND.NXT><ACK=RCV.NXT><ACK>."""
    c = listen(DISCARD)
    handshake(c)
    c.x("far", ACK, seq=c.tisn + 1 + FAR, data=b"z" * 10, advance=False)
    alive(c)


@case
def est_ack_unsent(listen, active):
    """3.10.7.4 fifth: SEG.ACK > SND.NXT -> send an ACK, drop the segment."""
    c = listen(DISCARD)
    handshake(c)
    c.x("ack_unsent", ACK, ack=c.disn + 1 + 1000, data=b"q" * 10,
        advance=False)
    alive(c)


@case
def est_ack_old(listen, active):
    """3.10.7.4 fifth: SND.UNA - MAX.SND.WND =< SEG.ACK < SND.UNA (RFC 5961
    5.2), within what was sent: an old ACK, ignored."""
    c = listen(ECHO)
    handshake(c)
    c.x("data", ACK, data=b"e" * 100, want=101)
    c.x("ack_echo", ACK)
    c.x("ack_old", ACK, ack=c.disn + 1 + 50)


@case
def est_ack_before_iss(listen, active):
    """An ACK below ISS+1 when nothing was sent yet: within MAX.SND.WND
    (RFC 5961 5.2 accepts and ignores it); Linux caps the range at the
    bytes acked so far and sends a challenge ACK."""
    c = listen(DISCARD)
    handshake(c)
    c.x("ack_old", ACK, ack=c.disn + 1 - 100)


@case
def est_ack_too_old(listen, active):
    """RFC 5961 5.2: SEG.ACK < SND.UNA - MAX.SND.WND -> challenge ACK and
    drop (the text is not taken)."""
    c = listen(DISCARD)
    handshake(c)
    c.x("ack_too_old", ACK, ack=c.disn + 1 - 300000, data=b"q" * 10,
        advance=False)
    alive(c)


@case
def est_rst_exact(listen, active):
    """RFC 5961 3.2: RST with SEQ = RCV.NXT resets; then the port is
    closed for this connection (RST to an ACK)."""
    c = listen(DISCARD)
    handshake(c)
    c.x("rst", RST)
    alive(c, "after")


@case
def est_rst_with_data(listen, active):
    """RFC 9293 3.5.3 / RFC 1122 4.2.2.12: a RST may carry data (a
    diagnostic); at RCV.NXT it resets all the same."""
    c = listen(DISCARD)
    handshake(c)
    c.x("rst_data", RST, data=b"reason")
    alive(c, "after")


@case
def est_window_update(listen, active):
    """A pure window update (same seq and ack, new window) needs no
    reply (RFC 9293 3.10.7.4 fifth: update SND.WND)."""
    c = listen(DISCARD)
    handshake(c)
    c.x("update", ACK, win=30000)


@case
def est_rst_in_window(listen, active):
    """RFC 5961 3.2: RST in the window but not RCV.NXT -> challenge ACK."""
    c = listen(DISCARD)
    handshake(c)
    c.x("rst", RST, seq=c.tisn + 1 + 10)
    alive(c)


@case
def est_rst_twice(listen, active):
    """RFC 5961 7: challenge ACKs SHOULD be throttled; two in-window RSTs
    back to back."""
    c = listen(DISCARD)
    handshake(c)
    c.x("rst1", RST, seq=c.tisn + 1 + 10, quiet=0.2)
    c.x("rst2", RST, seq=c.tisn + 1 + 20, quiet=0.2)


@case
def est_rst_out_of_window(listen, active):
    """RFC 5961 3.2: RST outside the window -> discarded silently."""
    c = listen(DISCARD)
    handshake(c)
    c.x("rst", RST, seq=c.tisn + 1 + FAR)
    alive(c)


@case
def est_rst_ack_ignored(listen, active):
    """3.10.7.4 second: the RST check uses the sequence number only; a
    RST,ACK with an odd ACK at RCV.NXT still resets."""
    c = listen(DISCARD)
    handshake(c)
    c.x("rst_ack", RST | ACK, ack=c.disn + 12345)
    alive(c, "after")


@case
def est_syn_in_window(listen, active):
    """RFC 5961 4.2 (3.10.7.4 fourth): a SYN in a synchronized state ->
    challenge ACK, the connection stays."""
    c = listen(DISCARD)
    handshake(c)
    c.x("syn", SYN, seq=c.tisn + 1, advance=False)
    alive(c)


@case
def est_syn_old(listen, active):
    """RFC 5961 4.2: a SYN whatever its sequence number -> challenge ACK."""
    c = listen(DISCARD)
    handshake(c)
    c.x("syn", SYN, seq=c.tisn - 100000, advance=False)
    alive(c)


@case
def est_no_ack_flag(listen, active):
    """3.10.7.4 fifth: ACK bit off -> drop the segment (its text is not
    taken: the same text again is ACKed as new)."""
    c = listen(DISCARD)
    handshake(c)
    c.x("no_ack", 0, data=b"0123456789", advance=False)
    alive(c)


@case
def est_fin(listen, active):
    """3.10.7.4 eighth: FIN -> ACK (CLOSE-WAIT); discard then closes
    (LAST-ACK); our ACK of its FIN closes it; then RST to an ACK."""
    c = listen(DISCARD)
    handshake(c)
    c.x("fin", FIN | ACK, want=2)
    c.x("ack_fin", ACK)
    alive(c, "after")


@case
def est_paws_old_ts(listen, active):
    """RFC 7323 5.3 R1: TSval older than TS.Recent -> ACK, drop; the ACK
    echoes the last valid TSval."""
    c = listen(DISCARD)
    handshake(c)
    c.x("data", ACK, data=b"a" * 10)
    c.x("old_ts", ACK, data=b"b" * 10, tsval=1, advance=False)
    c.x("fresh", ACK, data=b"b" * 10)


@case
def est_paws_old_ack(listen, active):
    """RFC 7323 5.3 R1 for a pure ACK: TSval older than TS.Recent (by more
    than Linux's disordered-ACK allowance) -> ACK, drop."""
    c = listen(DISCARD)
    handshake(c)
    c.x("old_ts_ack", ACK, tsval=1)


@case
def est_small_mss(listen, active):
    """RFC 9293 3.7.1 / RFC 6691: the peer's MSS of 100 bounds the data
    plus TCP options (12 bytes of TSopt): 88-byte segments."""
    c = listen(ECHO)
    c.coalesce = False
    handshake(c, opts=[("mss", 100), ("sackok", True), ("ws", 0)])
    c.x("data", ACK, data=b"m" * 300, want=301)


@case
def est_paws_rst(listen, active):
    """RFC 7323 5.3 / Linux: a RST is not subject to PAWS; at RCV.NXT it
    resets even with an old TSval."""
    c = listen(DISCARD)
    handshake(c)
    c.x("rst_old_ts", RST, tsval=1)
    alive(c, "after")


@case
def est_missing_ts(listen, active):
    """RFC 7323 3.2: a non-RST segment without TSopt on a TS connection
    SHOULD be dropped (Linux accepts it)."""
    c = listen(DISCARD)
    handshake(c)
    c.x("no_ts", ACK, data=b"a" * 10, ts=False)
    alive(c)


@case
def est_data_rto(listen, active):
    """Retransmission of unACKed data: RFC 6298 5.4-5.6, RFC 8985 7.2
    (one probe, then RTOs doubling); echo's reply is never ACKed."""
    c = listen(ECHO)
    # SLOW_RTT: the probe and the RTO come at ~1 s, the next at ~2 s.
    handshake(c, rtt=SLOW_RTT)
    c.x("echo", ACK, data=b"r" * 10, timed=True, dur=2.5)


@case
def est_zero_window(listen, active):
    """RFC 9293 3.8.6.1 / RFC 1122 4.2.2.17: peer's window 0 -> probes on
    the persist timer, doubling; opening the window sends the data."""
    c = listen(ECHO)
    handshake(c, rtt=SLOW_RTT)  # first probe at ~1 s, the next 2 s on
    c.x("data_win0", ACK, data=b"z" * 10, win=0, timed=True, dur=1.6)
    c.x("open", ACK, want=11)


@case
def est_small_window(listen, active):
    """RFC 9293 3.8.6.2.1: a small window re-offered after each segment:
    SWS override timer of 0.1-1 s, no backoff (Linux ~0.2 s)."""
    c = listen(ECHO)
    c.win = 100
    handshake(c)
    c.x("data", ACK, data=b"s" * 1000)
    for i in range(3):
        c.x("reoffer%d" % i, ACK, timed=True)


@case
def est_small_window_reoffer(listen, active):
    """Issue 12 1(c): after a large window the peer re-offers 10 bytes after
    each segment; RFC 9293 3.8.6.2.1 SWS override timer (0.1-1 s), with
    no backoff (backoff is for a zero window); Linux sends every ~0.2 s."""
    c = listen(ECHO)
    handshake(c, rtt=SLOW_RTT)
    c.x("echo", ACK, data=b"e" * 10, quiet=0.2, want=11)
    c.win = 10
    c.x("shrink", ACK, quiet=0.2)
    # 1.6 s: the first send (~1 s) but not its repeat (~2 s later).
    c.x("data", ACK, data=b"w" * 1000, timed=True, dur=1.6)
    for i in range(3):
        c.x("reoffer%d" % i, ACK, timed=True, dur=1.6)


@case
def est_dupacks(listen, active):
    """RFC 5681 3.2: fast retransmit after the third duplicate ACK, not
    the first (no SACK on this connection)."""
    c = listen(CHARGEN)
    c.win = 4 * 988
    # An RTT of 0.8 s puts the DUT's loss probe and RTO (> 1.6 s) after
    # the ~1.1 s this script takes.
    handshake(c, opts=[("mss", 1000), ("ws", 0)], quiet=0.3, rtt=0.8)
    first = (c.disn + 1 + 988) & 0xFFFFFFFF
    c.x("ack1", ACK, ack=first, quiet=0.3, limit=0.4)
    c.x("dup1", ACK, ack=first, dur=0.15, timed=True)
    c.x("dup2", ACK, ack=first, dur=0.15, timed=True)
    c.x("dup3", ACK, ack=first, dur=0.2, timed=True)
    c.x("rst", RST)


@case
def est_dupacks_sack(listen, active):
    """RFC 6675 5 / RFC 8985: on a SACK connection, duplicate ACKs without
    SACK blocks are no evidence of loss: no fast retransmit."""
    c = listen(CHARGEN)
    c.win = 4 * 988
    handshake(c, opts=[("mss", 1000), ("sackok", True), ("ws", 0)],
              quiet=0.3, rtt=0.8)  # as est_dupacks
    first = (c.disn + 1 + 988) & 0xFFFFFFFF
    c.x("ack1", ACK, ack=first, quiet=0.3, limit=0.4)
    c.x("dup1", ACK, ack=first, dur=0.15, timed=True)
    c.x("dup2", ACK, ack=first, dur=0.15, timed=True)
    c.x("dup3", ACK, ack=first, dur=0.2, timed=True)
    c.x("rst", RST)
