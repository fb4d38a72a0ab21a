"""Case scripts of pktimpact.py for segments with several control bits
(issue 13): on an established connection each gets TCP's own answer --
RFC 9293 3.10.7.4 checks the RST bit (second) before the SYN bit
(fourth), RFC 5961 3.2 resets only at RCV.NXT and challenges elsewhere in
the window, RFC 5961 4.2 challenges a SYN -- and the connection stays
usable (`alive`) unless the RST was exact. Also a SYN,ACK carrying a FIN
in SYN-SENT. The helpers are in pktimpact_cases.py.
"""

from pktimpact_cases import (ACK, DISCARD, FIN, RST, SYN, alive, case,
                             handshake)

PSH, URG, ECE, CWR = 0x08, 0x20, 0x40, 0x80
ALL6 = FIN | SYN | RST | PSH | ACK | URG
ALL8 = ALL6 | ECE | CWR
STD = [("mss", 1460), ("sackok", True), ("ws", 0)]


def established(listen):
    c = listen(DISCARD)
    handshake(c)
    return c


@case
def flags_syn_fin(listen, active):
    """SYN+FIN at RCV.NXT: the SYN check (fourth) -> challenge ACK (RFC
    5961 4.2); the FIN is not taken."""
    c = established(listen)
    c.x("syn_fin", SYN | FIN, advance=False)
    alive(c)


@case
def flags_syn_fin_ack_data(listen, active):
    """SYN+FIN+ACK+PSH with text: challenge ACK, text and FIN dropped."""
    c = established(listen)
    c.x("syn_fin_data", SYN | FIN | ACK | PSH, data=b"data", advance=False)
    alive(c)


@case
def flags_syn_ack_fin(listen, active):
    """SYN+ACK+FIN on an established connection: challenge ACK."""
    c = established(listen)
    c.x("syn_ack_fin", SYN | ACK | FIN, advance=False)
    alive(c)


@case
def flags_all_in_window(listen, active):
    """All six classic bits, in the window but not at RCV.NXT: the RST
    check comes first -> challenge ACK (RFC 5961 3.2)."""
    c = established(listen)
    c.x("all6", ALL6, seq=c.tisn + 1 + 10, advance=False)
    alive(c)


@case
def flags_all8_in_window(listen, active):
    """All eight bits (ECE, CWR too) in the window, not at RCV.NXT."""
    c = established(listen)
    c.x("all8", ALL8, seq=c.tisn + 1 + 10, advance=False)
    alive(c)


@case
def flags_all_exact(listen, active):
    """All eight bits at RCV.NXT: the RST check (second) resets; nothing
    is sent, then the connection is gone (RST to data)."""
    c = established(listen)
    c.x("all8", ALL8, advance=False)
    alive(c, "after")


@case
def flags_syn_rst_in_window(listen, active):
    """SYN+RST in the window, not at RCV.NXT -> challenge ACK."""
    c = established(listen)
    c.x("syn_rst", SYN | RST, seq=c.tisn + 1 + 10, advance=False)
    alive(c)


@case
def flags_syn_rst_exact(listen, active):
    """SYN+RST at RCV.NXT: the RST check comes before the SYN's -> reset."""
    c = established(listen)
    c.x("syn_rst", SYN | RST, advance=False)
    alive(c, "after")


@case
def flags_fin_rst_in_window(listen, active):
    """FIN+RST+ACK in the window, not at RCV.NXT -> challenge ACK."""
    c = established(listen)
    c.x("fin_rst", FIN | RST | ACK, seq=c.tisn + 1 + 10, advance=False)
    alive(c)


@case
def flags_fin_rst_exact(listen, active):
    """FIN+RST+ACK at RCV.NXT -> reset."""
    c = established(listen)
    c.x("fin_rst", FIN | RST | ACK, advance=False)
    alive(c, "after")


@case
def flags_fin_no_ack(listen, active):
    """FIN+PSH+URG without ACK: 3.10.7.4 fifth, ACK off -> drop."""
    c = established(listen)
    c.x("fin_psh_urg", FIN | PSH | URG, advance=False)
    alive(c)


@case
def synsent_synack_fin(listen, active):
    """3.10.7.3 fourth: a SYN,ACK carrying a FIN. "If there are other
    controls or text in the segment, then continue processing at the sixth
    step under Section 3.10.7.4": the FIN is ACKed (CLOSE-WAIT). (Nothing
    after it: `tapstack connect`, the DUT's application, exits at the
    peer's FIN.)"""
    c = active()
    c.x("synack_fin", SYN | ACK | FIN, opts=STD)
