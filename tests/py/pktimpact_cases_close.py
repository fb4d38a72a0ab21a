"""Case scripts of pktimpact.py for the closing states (CLOSE-WAIT,
LAST-ACK, FIN-WAIT-1/2, CLOSING, TIME-WAIT) and for active opens
(SYN-SENT); the helpers and the rest are in pktimpact_cases.py.
"""

import time

from pktimpact_cases import (ACK, CHARGEN, ECHO, FIN, HTTP, REQUEST, RST,
                             SLOW_RTT, SYN, CaseError, alive, case,
                             handshake)


# ------------------------------------------------------------ CLOSE-WAIT
def close_wait(listen):
    """chargen with a zero window: our FIN leaves it in CLOSE-WAIT with
    data it cannot send (its probes are left out of the record)."""
    c = listen(CHARGEN)
    c.win = 0
    c.drop_probes = True
    # Our FIN goes well before its first probe (~1 s).
    handshake(c, rtt=SLOW_RTT)
    c.x("fin", FIN | ACK)
    return c


@case
def closewait_fin_again(listen, active):
    """3.10.7.4 first: a retransmitted FIN is old -> ACK."""
    c = close_wait(listen)
    c.x("fin_again", FIN | ACK, seq=c.tisn + 1)


@case
def closewait_rst_in_window(listen, active):
    """RFC 5961 3.2 in CLOSE-WAIT -> challenge ACK."""
    c = close_wait(listen)
    c.x("rst", RST, seq=c.snd_nxt + 5)


@case
def closewait_syn(listen, active):
    """RFC 5961 4.2 in CLOSE-WAIT -> challenge ACK."""
    c = close_wait(listen)
    c.x("syn", SYN, seq=c.snd_nxt, advance=False)


@case
def closewait_data(listen, active):
    """3.10.7.4 seventh, CLOSE-WAIT: text after our FIN is ignored."""
    c = close_wait(listen)
    c.x("data", ACK, data=b"late", advance=False)


@case
def closewait_rst_exact(listen, active):
    """RFC 5961 3.2: RST at RCV.NXT in CLOSE-WAIT resets."""
    c = close_wait(listen)
    c.x("rst", RST)
    c.x("after", ACK)


# -------------------------------------------------------------- LAST-ACK
def last_ack(listen):
    """echo: our FIN -> its ACK and FIN: LAST-ACK (FIN retransmissions
    are left out of the record except in lastack_fin_rtx)."""
    c = listen(ECHO)
    # RTT 0.4 s: its RTO and loss probe (> 0.8 s) come after the steps
    # (0.3 s each), so they do not race them.
    handshake(c, rtt=0.4)
    c.x("fin", FIN | ACK, want=2)
    return c


@case
def lastack_ack(listen, active):
    """3.10.7.4 LAST-ACK: the ACK of our FIN closes; then RST to an ACK."""
    c = last_ack(listen)
    c.x("ack_fin", ACK)
    c.x("after", ACK)


@case
def lastack_rst_in_window(listen, active):
    """RFC 5961 3.2 in LAST-ACK -> challenge ACK."""
    c = last_ack(listen)
    c.x("rst", RST, seq=c.snd_nxt + 5)


@case
def lastack_syn(listen, active):
    """RFC 5961 4.2 in LAST-ACK -> challenge ACK."""
    c = last_ack(listen)
    c.x("syn", SYN, seq=c.snd_nxt, advance=False)


@case
def lastack_rst_exact(listen, active):
    """3.10.7.4 second: RST at RCV.NXT in LAST-ACK -> CLOSED."""
    c = last_ack(listen)
    c.x("rst", RST)
    c.x("after", ACK)


@case
def lastack_fin_rtx(listen, active):
    """FIN retransmission timing: RFC 8985 7 loss probe, RFC 6298 5.5
    doubling."""
    c = listen(ECHO)
    handshake(c, rtt=SLOW_RTT)  # as est_data_rto
    c.x("fin", FIN | ACK, timed=True, dur=2.5)


# ------------------------------------------- FIN-WAIT-1/2, CLOSING, TIME-WAIT
def fin_wait_1(listen):
    """HTTP: our request -> response and FIN (FIN-WAIT-1 until ACKed);
    retransmissions are left out of the record."""
    c = listen(HTTP)
    # RTT 0.4 s, as in last_ack.
    handshake(c, rtt=0.4)
    c.x("request", ACK, data=REQUEST, want=141)  # response and FIN
    if c.rcv_nxt == (c.disn + 1) & 0xFFFFFFFF:
        raise CaseError("no response")
    return c


def time_wait(listen):
    c = fin_wait_1(listen)
    c.x("ack_all", ACK)
    c.x("fin", FIN | ACK)
    return c


@case
def finwait1_data(listen, active):
    """3.10.7.4 seventh, FIN-WAIT-1: text is still taken and ACKed."""
    c = fin_wait_1(listen)
    c.x("data", ACK, data=b"more", ack=c.disn + 1)


@case
def finwait1_simultaneous_close(listen, active):
    """Simultaneous close (RFC 9293 Figure 13): our FIN not ACKing theirs
    -> ACK (CLOSING); our ACK -> TIME-WAIT; our FIN again -> ACK."""
    c = fin_wait_1(listen)
    c.x("fin_no_ack", FIN | ACK, ack=c.disn + 1)
    c.x("ack_all", ACK)
    c.x("fin_again", FIN | ACK, seq=c.snd_nxt - 1, advance=False)


@case
def finwait1_rst_in_window(listen, active):
    """RFC 5961 3.2 in FIN-WAIT-1 -> challenge ACK."""
    c = fin_wait_1(listen)
    c.x("rst", RST, seq=c.snd_nxt + 5)


@case
def finwait2_fin(listen, active):
    """FIN-WAIT-1 -> (ACK of its FIN) FIN-WAIT-2 -> (our FIN) ACK."""
    c = fin_wait_1(listen)
    c.x("ack_all", ACK)
    c.x("fin", FIN | ACK)


@case
def finwait2_data(listen, active):
    """3.10.7.4 seventh, FIN-WAIT-2: text is taken and ACKed."""
    c = fin_wait_1(listen)
    c.x("ack_all", ACK)
    c.x("data", ACK, data=b"more")


@case
def finwait2_rst_exact(listen, active):
    """3.10.7.4 second: RST at RCV.NXT in FIN-WAIT-2 -> CLOSED."""
    c = fin_wait_1(listen)
    c.x("ack_all", ACK)
    c.x("rst", RST)
    c.x("after", ACK)


@case
def finwait2_rst_in_window(listen, active):
    """RFC 5961 3.2 in FIN-WAIT-2 -> challenge ACK."""
    c = fin_wait_1(listen)
    c.x("ack_all", ACK)
    c.x("rst", RST, seq=c.snd_nxt + 5)


@case
def closing_rst_in_window(listen, active):
    """RFC 5961 3.2 in CLOSING -> challenge ACK."""
    c = fin_wait_1(listen)
    c.x("fin_no_ack", FIN | ACK, ack=c.disn + 1)
    c.x("rst", RST, seq=c.snd_nxt + 5, ack=c.disn + 1)


@case
def timewait_fin_again(listen, active):
    """3.10.7.4 TIME-WAIT: a retransmitted FIN -> ACK it (restart 2MSL)."""
    c = time_wait(listen)
    c.x("fin_again", FIN | ACK, seq=c.snd_nxt - 1, advance=False)


@case
def timewait_syn_reuse(listen, active):
    """RFC 6191 / RFC 9293 3.10.7.4 TIME-WAIT note: a new SYN with a
    higher sequence number (and TSval) reopens the pair -> SYN,ACK."""
    c = time_wait(listen)
    c.disn = None
    c.tisn = (c.snd_nxt + 100000) & 0xFFFFFFFF
    c.snd_nxt = c.tisn
    c.syn()
    c.obs("new_syn")
    if c.disn is not None:
        c.x("ack", ACK)
        c.x("data", ACK, data=b"again")


@case
def timewait_syn_reuse_ts(listen, active):
    """RFC 6191 2: in TIME-WAIT a SYN with a lower sequence number but a
    newer TSval is a new connection too -> SYN,ACK."""
    c = time_wait(listen)
    c.disn = None
    c.tisn = (c.tisn - 100000) & 0xFFFFFFFF
    c.snd_nxt = c.tisn
    c.syn()
    c.obs("new_syn")


@case
def timewait_syn_old_ts(listen, active):
    """RFC 6191 / RFC 7323 5.3: in TIME-WAIT a SYN with a higher sequence
    number but an older TSval fails PAWS -> ACK, no new connection."""
    c = time_wait(listen)
    c.x("syn_old_ts", SYN, seq=c.snd_nxt + 100000, tsval=1, advance=False)


@case
def timewait_ack(listen, active):
    """3.10.7.4 TIME-WAIT: a plain ACK (nothing new) gets no reply."""
    c = time_wait(listen)
    c.x("ack", ACK)


@case
def timewait_syn_old(listen, active):
    """RFC 5961 4.2 / RFC 6191: a SYN at an old sequence number with an
    old TSval in TIME-WAIT is not a new connection -> ACK."""
    c = time_wait(listen)
    c.x("old_syn", SYN, seq=c.tisn, tsval=1, advance=False)


@case
def timewait_rst(listen, active):
    """RFC 1337 (TIME-WAIT assassination): Linux (tcp_rfc1337=0) ends
    TIME-WAIT on a RST; the next ACK tells which."""
    c = time_wait(listen)
    c.x("rst", RST)
    c.x("after", ACK, seq=c.snd_nxt)


@case
def timewait_data(listen, active):
    """3.10.7.4 TIME-WAIT, seventh: text is ignored, the segment ACKed."""
    c = time_wait(listen)
    c.x("data", ACK, data=b"late", advance=False)


# -------------------------------------------------------------- SYN-SENT
STD = [("mss", 1460), ("sackok", True), ("ws", 0)]


@case
def synsent_synack(listen, active):
    """3.10.7.3 SYN-SENT fourth: SYN,ACK -> ACK (ESTABLISHED); the SYN's
    options are in step `syn`."""
    c = active()
    c.x("synack", SYN | ACK, opts=STD)
    alive(c)


@case
def synsent_synack_data(listen, active):
    """3.10.7.3 fourth: text on the SYN,ACK is taken and ACKed."""
    c = active()
    c.x("synack_data", SYN | ACK, opts=STD, data=b"hello")


@case
def active_close(listen, active):
    """Our side as the passive closer: the DUT's application sends data,
    then closes (FIN-WAIT-1); our ACK moves it to FIN-WAIT-2."""
    c = active()
    c.x("synack", SYN | ACK, opts=STD)
    c.drop_rtx = True  # repeats of its data are not what this case is about
    c.app("write", lambda: c.handle.write(b"hello\n"), want=7)
    c.x("ack_data", ACK)
    c.app("close", c.handle.shutdown, want=8)
    c.x("ack_fin", ACK)


@case
def synsent_bad_ack(listen, active):
    """3.10.7.3 first: SEG.ACK =< ISS or > SND.NXT -> <SEQ=SEG.ACK><RST>;
    the SYN-SENT connection stays."""
    c = active()
    disn = c.disn
    c.x("bad_synack", SYN | ACK, ack=disn + 1000, opts=STD, advance=False)
    c.disn = disn
    c.x("synack", SYN | ACK, opts=STD)


@case
def synsent_rst_ack(listen, active):
    """3.10.7.3 second: RST with an acceptable ACK -> connection reset
    (nothing is sent)."""
    c = active()
    c.x("rst_ack", RST | ACK)


@case
def synsent_rst_no_ack(listen, active):
    """3.10.7.3 second: RST without ACK -> drop; SYN,ACK still works."""
    c = active()
    c.x("rst", RST, ack=0)
    c.x("synack", SYN | ACK, opts=STD)


@case
def synsent_rst_bad_ack(listen, active):
    """3.10.7.3 first: bad ACK with RST -> drop; SYN,ACK still works."""
    c = active()
    c.x("rst_bad", RST | ACK, ack=c.disn + 1000)
    c.x("synack", SYN | ACK, opts=STD)


@case
def synsent_ack_only(listen, active):
    """3.10.7.3: bad ACK alone -> RST; acceptable ACK without SYN -> drop
    (fifth); SYN,ACK still works."""
    c = active()
    disn = c.disn
    c.x("bad_ack", ACK, ack=disn + 1000, advance=False)
    c.disn = disn
    c.x("good_ack", ACK, advance=False)
    c.x("synack", SYN | ACK, opts=STD)


@case
def synsent_simultaneous_open(listen, active):
    """3.10.7.3 fourth, simultaneous open: SYN -> SYN,ACK (SYN-RECEIVED);
    our ACK -> ESTABLISHED."""
    c = active()
    c.x("syn", SYN, opts=STD)
    c.x("ack", ACK)
    alive(c)


@case
def synsent_syn_rtx(listen, active):
    """SYN retransmission timing: RFC 6298 2.1 (1 s) and 5.5 doubling."""
    c = active()
    c.t_wall = c.syn_at  # delays from the first SYN, for 3.6 s from now
    c.t_send = time.monotonic()
    c.obs("syn_rtx", timed=True, dur=3.6)
