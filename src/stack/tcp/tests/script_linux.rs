//! Scripts for the differences from Linux that the same-script test
//! (`tests/packetimpact.rs`) found (issue 12): each answer is Linux's
//! unless an RFC says otherwise.

use std::net::SocketAddrV4;
use std::time::Duration;

use super::harness::*;
use super::script_timers::establish;
use crate::stack::tcp::cc::CcAlgorithm;
use crate::stack::tcp::{TcpConfig, TcpHandle, TcpState};

const RTT: Duration = Duration::from_millis(10);

fn sack_config() -> TcpConfig {
    TcpConfig {
        sack: true,
        ..plain_config()
    }
}

/// RFC 2883 4: a duplicate FIN is a duplicate segment too, and its
/// sequence space (the FIN's one number) is reported in a D-SACK block,
/// as Linux does (tcp_send_dupack with the segment's end_seq).
#[test]
fn duplicate_fin_is_reported_by_dsack() {
    let mut h = Harness::new(sack_config());
    let c = establish(&mut h, true);
    h.send(Seg::peer(IRS + 1, Some(ISS + 1)).data(b"ab").fin());
    h.nothing(); // the FIN's ACK is delayed (Linux's pingpong mode)
    assert_eq!(h.layer.state(c), TcpState::CloseWait);
    h.send(Seg::peer(IRS + 3, Some(ISS + 1)).fin());
    let a = h.one();
    assert_eq!((a.ack, a.sack), (Some(IRS + 4), vec![(IRS + 3, IRS + 4)]));
    // The data and FIN again: the whole segment is the duplicate.
    h.send(Seg::peer(IRS + 1, Some(ISS + 1)).data(b"ab").fin());
    assert_eq!(h.one().sack, vec![(IRS + 1, IRS + 4)]);
}

/// RFC 6675 2: on a SACK connection a DupAck is an ACK whose SACK blocks
/// report octets not yet acknowledged or SACKed; duplicate ACKs without
/// blocks are no evidence of loss (RFC 8985 needs SACKs too). Linux
/// (tcp_time_to_recover) does not retransmit on them; nor do we, with or
/// without RACK. The same ACKs with new SACK blocks do.
#[test]
fn dupacks_without_sack_blocks_do_not_fast_retransmit_with_sack() {
    for rack in [false, true] {
        let mut h = Harness::new(TcpConfig {
            rack,
            ..sack_config()
        });
        let c = establish(&mut h, true);
        h.layer.send(c, &[7; 6 * 1460]).unwrap();
        h.dispatch();
        let segs = h.sent();
        assert_eq!(segs.len(), 6);
        h.advance(Duration::from_millis(5));
        for _ in 0..4 {
            h.send(Seg::peer(IRS + 1, Some(ISS + 1)));
            h.nothing();
        }
        assert_eq!(
            h.layer.counters.get("tcp.fast_retransmit"),
            0,
            "rack {rack}"
        );
        // SACK evidence: segments beyond the first arrived.
        let mut a = Seg::peer(IRS + 1, Some(ISS + 1));
        let end = segs.last().map(|s| s.seq + s.payload.len() as u32).unwrap();
        a.sack = vec![(segs[1].seq, end)];
        h.send(a);
        // RACK may wait out its reordering window (RFC 8985 6.2).
        h.advance(Duration::from_millis(5));
        let r = h.sent();
        assert_eq!(
            r.first().map(|s| s.seq),
            Some(ISS + 1),
            "rack {rack}: {r:?}"
        );
        assert_eq!(
            h.layer.counters.get("tcp.fast_retransmit"),
            1,
            "rack {rack}"
        );
    }
}

/// RFC 9293 3.10.7.3 first: an unacceptable ACK in SYN-SENT is answered
/// with `<SEQ=SEG.ACK><CTL=RST>` (or dropped with RST). Then, as Linux
/// (tcp_rcv_synsent_state_process: "Previous FIN/ACK or RST/ACK might be
/// ignored", retransmit timer at TCP_TIMEOUT_MIN while the SYN has not
/// been retransmitted), the SYN goes again at once rather than after the
/// 1 s RTO; the RTO backs off as after any SYN retransmission.
#[test]
fn syn_sent_resends_its_syn_after_an_unacceptable_ack() {
    for (flags, rst) in [(0x12u8, true), (0x10, true), (0x14, false)] {
        let mut h = Harness::new(plain_config());
        let c = h.connect();
        h.send(Seg::peer(IRS, Some(ISS + 1000)).flags(flags));
        let r = h.sent();
        let syn = r.last().expect("the SYN again");
        assert!(syn.syn && syn.ack.is_none() && syn.seq == ISS, "{r:?}");
        if rst {
            assert_eq!(r.len(), 2, "{r:?}");
            assert!(r[0].rst && r[0].seq == ISS + 1000, "{r:?}");
        } else {
            assert_eq!(r.len(), 1, "{r:?}");
        }
        assert_eq!(h.layer.state(c), TcpState::SynSent);
        // Once only: the SYN has been retransmitted now.
        h.send(Seg::peer(IRS, Some(ISS + 1000)).flags(flags));
        assert_eq!(h.sent().len(), usize::from(rst), "flags {flags:#x}");
        // The next SYN after the backed-off RTO (2 s).
        assert_eq!(h.next_deadline(), Duration::from_secs(2));
        assert!(h.one().syn);
        let mut synack = Seg::peer(IRS, Some(ISS + 1)).syn();
        synack.mss = Some(1000);
        h.send(synack);
        assert_eq!(h.one().ack, Some(IRS + 1));
        assert_eq!(h.layer.state(c), TcpState::Established);
    }
}

/// A second handshake on the listener `l`, from remote port `port`.
fn open_from(h: &mut Harness, l: TcpHandle, port: u16) -> TcpHandle {
    let mut syn = Seg::peer(IRS, None).syn();
    syn.src_port = port;
    h.send(syn);
    assert!(h.one().syn);
    let mut ack = Seg::peer(IRS + 1, Some(ISS + 1));
    ack.src_port = port;
    h.send(ack);
    h.layer.accept(l).unwrap().0
}

/// An in-window RST not at RCV.NXT (RFC 5961 3.2: challenge ACK).
fn rst_from(port: u16) -> Seg {
    let mut r = Seg::peer(IRS + 20, None).rst();
    r.src_port = port;
    r
}

/// RFC 5961 7 ACK throttling, as current Linux does it: per connection,
/// one challenge ACK per net.ipv4.tcp_invalid_ratelimit (500 ms), a limit
/// shared with the duplicate ACKs for out-of-window pure ACKs
/// (tcp_send_challenge_ack, tcp_oow_rate_limited); data segments are
/// always answered. One layer-wide counter would let one connection's
/// challenges silence another's (CVE-2016-5696's side channel).
#[test]
fn challenge_acks_are_limited_per_connection() {
    let mut h = Harness::new(plain_config());
    let l = h.layer.listen(SocketAddrV4::new(LOCAL, LPORT), 8).unwrap();
    let a = open_from(&mut h, l, RPORT);
    let b = open_from(&mut h, l, RPORT + 1);
    h.send(rst_from(RPORT));
    assert_eq!(h.one().dst_port, RPORT);
    h.send(rst_from(RPORT));
    h.nothing();
    // Another connection is not held back by the first one's.
    h.send(rst_from(RPORT + 1));
    assert_eq!(h.one().dst_port, RPORT + 1);
    // Out-of-window pure ACKs share the limit; data does not.
    h.send(Seg::peer(IRS + 1_000_000, Some(ISS + 1)));
    h.nothing();
    h.send(Seg::peer(IRS + 1_000_000, Some(ISS + 1)).data(b"x"));
    assert_eq!(h.one().ack, Some(IRS + 1));
    assert_eq!(h.layer.counters.get("tcp.challenge_ack_limited"), 1);
    assert_eq!(h.layer.counters.get("tcp.oow_ack_limited"), 1);
    h.advance(Duration::from_millis(499));
    h.send(rst_from(RPORT));
    h.nothing();
    h.advance(Duration::from_millis(1));
    h.send(rst_from(RPORT));
    assert_eq!(h.one().dst_port, RPORT);
    h.send(Seg::peer(IRS + 1_000_000, Some(ISS + 1)));
    h.nothing();
    for c in [a, b] {
        assert_eq!(h.layer.state(c), TcpState::Established);
    }
}

/// The layer-wide cap (`challenge_ack_limit` per second; Linux's
/// net.ipv4.tcp_challenge_ack_limit, off by default since Linux 6.0)
/// still applies after the per-connection limit when set.
#[test]
fn layer_wide_challenge_ack_cap_when_set() {
    let mut h = Harness::new(TcpConfig {
        challenge_ack_limit: 1,
        ..plain_config()
    });
    let l = h.layer.listen(SocketAddrV4::new(LOCAL, LPORT), 8).unwrap();
    open_from(&mut h, l, RPORT);
    open_from(&mut h, l, RPORT + 1);
    h.send(rst_from(RPORT));
    assert_eq!(h.one().dst_port, RPORT);
    h.send(rst_from(RPORT + 1));
    h.nothing();
    h.advance(Duration::from_millis(1000));
    h.send(rst_from(RPORT + 1));
    assert_eq!(h.one().dst_port, RPORT + 1);
}

/// A peer that offers a 100-byte window and re-offers it with each ACK,
/// 300 ms after each segment (packetimpact est_small_window). While its
/// window, not cwnd, holds the queued data back, no loss probe goes out:
/// the segment is repeated by the RTO only, as Linux does (here SRTT
/// 37.5 ms after the second ACK: PTO 275 ms, RTO 337 ms).
#[test]
fn no_loss_probe_while_the_peers_window_holds_data_back() {
    let mut h = Harness::new(TcpConfig {
        timestamps: true,
        ..sack_config()
    });
    let l = h.layer.listen(SocketAddrV4::new(LOCAL, LPORT), 8).unwrap();
    let mut syn = Seg::peer(IRS, None).syn().ts(100, 0).win(100);
    syn.sack_perm = true;
    syn.mss = Some(1460);
    h.send(syn);
    let mut tsv = h.one().ts.unwrap().0;
    h.send(Seg::peer(IRS + 1, Some(ISS + 1)).ts(101, tsv).win(100));
    let c = h.layer.accept(l).unwrap().0;
    h.layer.send(c, &[1; 1000]).unwrap();
    h.dispatch();
    let mut sent: Vec<(u32, Duration)> = Vec::new();
    for step in 0..3u32 {
        let start = h.now;
        let mut last = h.now;
        for _ in 0..100 {
            for s in h.sent() {
                tsv = s.ts.unwrap().0;
                last = h.now;
                sent.push((s.seq - ISS, h.now - start));
            }
            let quiet_end = last + Duration::from_millis(300);
            match h.layer.poll_at() {
                Some(t) if t < quiet_end => {
                    h.now = t;
                    h.dispatch();
                }
                _ => {
                    h.now = quiet_end;
                    break;
                }
            }
        }
        h.send(
            Seg::peer(IRS + 1, Some(ISS + 101 + 100 * step))
                .ts(102 + step, tsv)
                .win(100),
        );
    }
    let ms = Duration::from_millis;
    // Step 0: the RTO (200 ms: SRTT 0 from the handshake) repeats the
    // first segment; steps 1 and 2: each new segment once, at once.
    assert_eq!(
        sent,
        vec![(1, ms(0)), (1, ms(200)), (101, ms(0)), (201, ms(0))]
    );
    assert_eq!(h.layer.counters.get("tcp.tlp_probe"), 0);
}

/// Rounds of: everything the stack sends now is ACKed one RTT later with
/// window `win`. Returns cwnd after each round.
fn ack_rounds(h: &mut Harness, c: TcpHandle, win: u16, rounds: usize) -> Vec<usize> {
    let mut out = Vec::new();
    for _ in 0..rounds {
        h.dispatch();
        let sent = h.sent();
        let Some(last) = sent.last() else { break };
        let end = last.seq + last.payload.len() as u32;
        h.advance(RTT);
        // One ACK per two segments, as a delayed-ACK receiver.
        for pair in sent.chunks(2) {
            let p = pair.last().unwrap();
            let ack = Seg::peer(IRS + 1, Some(p.seq + p.payload.len() as u32)).win(win);
            h.send(ack);
        }
        assert!(h.layer.info(c).unwrap().snd_una == end || sent.is_empty());
        out.push(h.layer.info(c).unwrap().cwnd);
    }
    out
}

/// RFC 7661 / Linux tcp_is_cwnd_limited: cwnd grows only on ACKs of a
/// flight that cwnd limited (in slow start: that used over half of it).
/// A sender held back by the peer's window (3 segments; cwnd 10) keeps
/// its initial window however many rounds it sends; the same sender with
/// an open window grows.
#[test]
fn cwnd_grows_only_when_cwnd_limited() {
    for cc in [CcAlgorithm::Reno, CcAlgorithm::Cubic] {
        for (win, grows) in [(3 * 1460u16, false), (65535, true)] {
            let mut h = Harness::new(TcpConfig {
                cc,
                tx_buffer: 1 << 20,
                ..sack_config()
            });
            let c = establish(&mut h, true);
            h.send(Seg::peer(IRS + 1, Some(ISS + 1)).win(win));
            let iw = h.layer.info(c).unwrap().cwnd;
            h.layer.send(c, &vec![3; 1 << 20]).unwrap();
            let cwnds = ack_rounds(&mut h, c, win, 6);
            assert_eq!(cwnds.len(), 6);
            let last = *cwnds.last().unwrap();
            assert_eq!(last > iw, grows, "{cc} window {win}: iw {iw}, {cwnds:?}");
        }
    }
}
