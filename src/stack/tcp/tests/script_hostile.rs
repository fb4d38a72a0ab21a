//! Segments with several control bits reach TCP and get its own answer
//! (RFC 9293 3.10.7, RFC 5961 4) in LISTEN, ESTABLISHED and on a closed
//! port; malformed options are ignored, not the segment (as Linux).

use std::io::ErrorKind;
use std::net::SocketAddrV4;

use super::harness::*;
use crate::stack::tcp::{TcpConfig, TcpState};

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;
const URG: u8 = 0x20;
const ALL: u8 = 0xff;

/// A segment from the peer at `seq` with raw flag byte `f` (ACK = ISS+1).
fn raw(seq: u32, f: u8) -> Seg {
    Seg::peer(seq, Some(ISS + 1)).flags(f)
}

/// The challenge ACK (or any pure ACK) of an established connection.
fn assert_ack(s: &Seg) {
    assert_eq!(
        (s.seq, s.ack, s.syn, s.fin, s.rst),
        (ISS + 1, Some(IRS + 1), false, false, false),
        "{s:?}"
    );
}

#[test]
fn syn_with_other_bits_in_window_gets_a_challenge_ack() {
    for f in [
        SYN | FIN,
        SYN | FIN | ACK | PSH | URG,
        ALL & !RST,
        SYN | ACK,
    ] {
        let mut h = Harness::new(plain_config());
        let (_, c) = h.establish();
        h.send(raw(IRS + 1, f).data(b"data"));
        assert_ack(&h.one());
        assert_eq!(h.layer.state(c), TcpState::Established, "flags {f:#x}");
        assert_eq!(h.layer.counters.get("tcp.syn_in_window"), 1, "flags {f:#x}");
        assert_eq!(h.layer.counters.get("tcp.challenge_ack_sent"), 1);
        // Neither the data nor the FIN was taken.
        assert_eq!(
            h.layer.recv(c, &mut [0; 8]).unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
    }
}

#[test]
fn syn_out_of_window_gets_a_rate_limited_challenge_ack() {
    let mut h = Harness::new(TcpConfig {
        challenge_ack_limit: 1,
        ..plain_config()
    });
    let (_, c) = h.establish();
    h.send(raw(IRS + 1_000_000, SYN | FIN));
    assert_ack(&h.one());
    assert_eq!(h.layer.counters.get("tcp.syn_unacceptable"), 1);
    // RFC 5961 7: the second within the second is not answered.
    h.send(raw(IRS + 2_000_000, SYN));
    h.nothing();
    assert_eq!(h.layer.counters.get("tcp.challenge_ack_limited"), 1);
    assert_eq!(h.layer.state(c), TcpState::Established);
}

#[test]
fn rst_with_other_bits_resets_only_at_rcv_nxt() {
    for f in [SYN | RST, FIN | RST, ALL, RST | ACK | PSH | URG] {
        // In window but not at RCV.NXT: challenge ACK (RFC 5961 3.2).
        let mut h = Harness::new(plain_config());
        let (_, c) = h.establish();
        h.send(raw(IRS + 100, f));
        assert_ack(&h.one());
        assert_eq!(h.layer.state(c), TcpState::Established, "flags {f:#x}");
        // At RCV.NXT: the connection is reset, nothing is sent.
        h.send(raw(IRS + 1, f));
        h.nothing();
        assert_eq!(h.layer.state(c), TcpState::Closed, "flags {f:#x}");
        assert_eq!(
            h.layer.recv(c, &mut [0; 8]).unwrap_err().kind(),
            ErrorKind::ConnectionReset
        );
    }
}

#[test]
fn segment_without_ack_or_control_bits_is_dropped_in_established() {
    let mut h = Harness::new(plain_config());
    let (_, c) = h.establish();
    for f in [0, FIN, FIN | PSH | URG] {
        h.send(Seg::peer(IRS + 1, None).flags(f).data(b"x"));
        h.nothing();
    }
    assert_eq!(h.layer.counters.get("tcp.no_ack"), 3);
    assert_eq!(h.layer.state(c), TcpState::Established);
}

#[test]
fn listener_answers_combinations_as_linux() {
    let mut h = Harness::new(plain_config());
    let l = h.layer.listen(SocketAddrV4::new(LOCAL, LPORT), 8).unwrap();
    // Silently dropped: RST in any combination, SYN+FIN, and no SYN.
    for f in [
        SYN | RST,
        ALL,
        SYN | FIN,
        SYN | FIN | PSH | URG,
        0,
        FIN,
        FIN | PSH | URG,
    ] {
        h.send(Seg::peer(IRS, None).flags(f));
        h.nothing();
    }
    assert_eq!(h.layer.counters.get("tcp.listen_rst_ignored"), 2);
    assert_eq!(h.layer.counters.get("tcp.listen_syn_fin"), 2);
    assert_eq!(h.layer.counters.get("tcp.listen_no_syn"), 3);
    // With ACK (and no RST): <SEQ=SEG.ACK><CTL=RST>.
    h.send(Seg::peer(IRS, Some(777)).flags(SYN | ACK | FIN | PSH));
    assert_eq!(h.one(), Seg::ours(777, None, 0).rst());
    assert_eq!(h.layer.active_connections(), 0);
    assert!(h.layer.accept(l).is_err());
    // A SYN with PSH, URG, ECE and CWR is still a SYN.
    h.send(Seg::peer(IRS, None).flags(SYN | PSH | URG | 0xc0));
    let synack = h.one();
    assert!(synack.syn && synack.ack == Some(IRS + 1));
}

#[test]
fn closed_port_resets_combinations() {
    let mut h = Harness::new(plain_config());
    // SEG.LEN counts SYN and FIN: <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>.
    for (f, len) in [(SYN | FIN, 2), (FIN | PSH | URG, 1), (0, 0), (SYN | PSH, 1)] {
        h.send(Seg::peer(IRS, None).flags(f));
        let mut expect = Seg::ours(0, Some(IRS + len), 0).rst();
        expect.window = 0;
        assert_eq!(h.one(), expect, "flags {f:#x}");
    }
    h.send(Seg::peer(IRS, None).flags(SYN | RST));
    h.send(Seg::peer(IRS, Some(5)).flags(ALL));
    h.nothing();
}

#[test]
fn malformed_options_are_ignored_not_the_segment() {
    let mut h = Harness::new(TcpConfig {
        window_scaling: true,
        ..plain_config()
    });
    let l = h.layer.listen(SocketAddrV4::new(LOCAL, LPORT), 8).unwrap();
    // MSS 1000, then a window-scale option whose length (0) is invalid:
    // Linux stops reading options there and keeps the segment.
    let mut syn = Seg::peer(IRS, None).syn();
    syn.mss = Some(1000);
    syn.extra_options = vec![1, 3, 0, 7, 1, 3, 3, 7];
    h.send(syn);
    let synack = h.one();
    assert!(synack.syn && synack.ack == Some(IRS + 1));
    assert_eq!(synack.wscale, None, "options after the bad one are ignored");
    assert_eq!(h.layer.counters.get("tcp.malformed"), 0);
    h.send(Seg::peer(IRS + 1, Some(ISS + 1)));
    let (c, _) = h.layer.accept(l).unwrap();
    // The MSS before the bad option counts; nothing after it does.
    assert_eq!(h.layer.info(c).unwrap().mss, 1000);
}

#[test]
fn paws_rejected_syn_gets_a_challenge_ack_other_segments_a_dupack() {
    let mut h = Harness::new(TcpConfig {
        timestamps: true,
        challenge_ack_limit: 1,
        ..plain_config()
    });
    let l = h.layer.listen(SocketAddrV4::new(LOCAL, LPORT), 8).unwrap();
    h.send(Seg::peer(IRS, None).syn().ts(1000, 0));
    let our_ts = h.one().ts.unwrap().0;
    h.send(Seg::peer(IRS + 1, Some(ISS + 1)).ts(1001, our_ts));
    let (c, _) = h.layer.accept(l).unwrap();
    // An old timestamp: a SYN among other bits gets the challenge ACK,
    // which uses up this second's allowance of one...
    h.send(raw(IRS + 1, SYN | FIN | ACK).ts(900, our_ts));
    assert_eq!(h.one().ack, Some(IRS + 1));
    assert_eq!(h.layer.counters.get("tcp.syn_unacceptable"), 1);
    h.send(raw(IRS + 1, SYN | ACK).ts(901, our_ts));
    h.nothing();
    // ...while a plain segment rejected by PAWS still gets its ACK.
    h.send(raw(IRS + 1, ACK).ts(902, our_ts).data(b"old"));
    assert_eq!(h.one().ack, Some(IRS + 1));
    assert_eq!(h.layer.counters.get("tcp.paws_rejected"), 3);
    assert_eq!(h.layer.state(c), TcpState::Established);
}

/// An active open in SYN-SENT; returns the connection and its local port.
fn syn_sent(h: &mut Harness) -> (crate::stack::tcp::TcpHandle, u16) {
    let c = h
        .layer
        .connect(h.now, None, SocketAddrV4::new(REMOTE, RPORT))
        .unwrap();
    h.dispatch();
    let syn = h.one();
    assert!(syn.syn && syn.seq == ISS);
    (c, syn.src_port)
}

#[test]
fn synack_with_text_and_fin_in_syn_sent_goes_to_close_wait() {
    // RFC 9293 3.10.7.3 fourth: after the SYN,ACK's ACK "continue
    // processing at the sixth step": the text is taken, then the FIN.
    for text in [&b""[..], b"hello"] {
        let mut h = Harness::new(plain_config());
        let (c, lport) = syn_sent(&mut h);
        let mut synack = raw(IRS, SYN | ACK | FIN).data(text);
        synack.dst_port = lport;
        h.send(synack);
        let end = IRS + 1 + text.len() as u32 + 1; // SYN, text, FIN
        let ack = h.one();
        assert_eq!(
            (ack.seq, ack.ack, ack.syn, ack.fin, ack.rst),
            (ISS + 1, Some(end), false, false, false),
            "text {text:?}"
        );
        assert_eq!(h.layer.state(c), TcpState::CloseWait, "text {text:?}");
        let mut buf = [0u8; 16];
        assert_eq!(h.layer.recv(c, &mut buf).unwrap(), text.len());
        assert_eq!(&buf[..text.len()], text);
        assert_eq!(h.layer.recv(c, &mut buf).unwrap(), 0, "end of stream");
        // The connection still sends: our data, then our FIN (LAST-ACK).
        h.layer.send(c, b"bye").unwrap();
        h.dispatch();
        let data = h.one();
        assert_eq!((data.seq, data.payload.as_slice()), (ISS + 1, &b"bye"[..]));
    }
}
