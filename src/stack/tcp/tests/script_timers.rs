//! Retransmission-timer, loss-probe, duplicate-ACK, small-window and
//! D-SACK scripts (issue 12 "the fixes", issue 13 "windows"). The peer
//! SACKs where a test says so; no timestamps, so RTTs come from send
//! times (RACK's records or the timed segment).

use std::net::{Shutdown, SocketAddrV4};
use std::time::Duration;

use super::harness::*;
use crate::stack::tcp::{TcpConfig, TcpHandle};

const MSS: usize = 1460;
const RTT: Duration = Duration::from_millis(10);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn sack_config() -> TcpConfig {
    TcpConfig {
        sack: true,
        tx_buffer: 64 * MSS,
        ..plain_config()
    }
}

/// Passive open with one RTT of 10 ms for the handshake (SRTT 10 ms,
/// RTO at its 200 ms floor); SACK offered when `sack`.
pub(super) fn establish(h: &mut Harness, sack: bool) -> TcpHandle {
    let l = h.layer.listen(SocketAddrV4::new(LOCAL, LPORT), 8).unwrap();
    let mut syn = Seg::peer(IRS, None).syn();
    syn.sack_perm = sack;
    syn.mss = Some(MSS as u16);
    h.send(syn);
    assert_eq!(h.one().sack_perm, sack);
    h.advance(RTT);
    h.send(Seg::peer(IRS + 1, Some(ISS + 1)));
    let c = h.layer.accept(l).unwrap().0;
    h.layer.set_nodelay(c, true).unwrap();
    c
}

fn seq(i: usize) -> u32 {
    ISS + 1 + (i * MSS) as u32
}

/// Queues `n` full segments; returns the sequence numbers sent now.
fn write(h: &mut Harness, c: TcpHandle, n: usize) -> Vec<u32> {
    assert_eq!(h.layer.send(c, &vec![7u8; n * MSS]).unwrap(), n * MSS);
    h.dispatch();
    h.sent().iter().map(|s| s.seq).collect()
}

/// Cumulative ACK of segment `ack` with SACK blocks `[lo, hi)` of segments.
fn ack(h: &mut Harness, ack: usize, blocks: &[(usize, usize)]) -> Vec<Seg> {
    let mut a = Seg::peer(IRS + 1, Some(seq(ack)));
    a.sack = blocks.iter().map(|&(lo, hi)| (seq(lo), seq(hi))).collect();
    h.send(a);
    h.sent()
}

/// RFC 6298 5.4-5.6: each expiry sends the earliest unacknowledged
/// segment once, and the timer doubles. One segment in flight: no loss
/// probe, since PTO = 2*SRTT + WCDelAckT (RFC 8985 7.2) lies beyond the
/// RTO.
#[test]
fn rto_resends_a_lone_segment_once_per_expiry_with_backoff() {
    for sack in [false, true] {
        let mut h = Harness::new(sack_config());
        let c = establish(&mut h, sack);
        h.layer.send(c, b"hello").unwrap();
        h.dispatch();
        assert_eq!(h.one().payload, b"hello");
        for n in [200, 400, 800, 1600] {
            assert_eq!(h.next_deadline(), ms(n), "sack {sack}");
            let r = h.one();
            assert_eq!((r.seq, r.payload.as_slice()), (ISS + 1, &b"hello"[..]));
        }
        let c = &h.layer.counters;
        assert_eq!((c.get("tcp.rto"), c.get("tcp.tlp_probe")), (4, 0));
        assert_eq!(c.get("tcp.retransmitted_segments"), 4);
    }
}

/// The same for a FIN nobody acknowledges.
#[test]
fn rto_resends_an_unacked_fin_once_per_expiry() {
    let mut h = Harness::new(sack_config());
    let c = establish(&mut h, true);
    h.layer.shutdown(c, Shutdown::Write).unwrap();
    h.dispatch();
    let fin = h.one();
    assert!(fin.fin && fin.seq == ISS + 1);
    for n in [200, 400, 800] {
        assert_eq!(h.next_deadline(), ms(n));
        let r = h.one();
        assert!(r.fin && r.seq == ISS + 1 && r.payload.is_empty());
    }
    assert_eq!(h.layer.counters.get("tcp.tlp_probe"), 0);
}

/// Three segments lost whole: one loss probe at 2*SRTT (more than one
/// segment in flight), then RTO recovery, where RFC 8985 7.2 schedules
/// no probe: one segment per expiry, doubling.
#[test]
fn no_loss_probe_in_rto_recovery() {
    let mut h = Harness::new(TcpConfig {
        rack: true,
        ..sack_config()
    });
    let c = establish(&mut h, true);
    assert_eq!(write(&mut h, c, 3), [seq(0), seq(1), seq(2)]);
    assert_eq!(h.next_deadline(), 2 * RTT);
    assert_eq!(h.one().seq, seq(2), "the probe resends the last segment");
    // The RTO, 200 ms after the head was sent (as Linux re-arms it
    // after a probe).
    assert_eq!(h.next_deadline(), ms(180));
    assert_eq!(h.one().seq, seq(0));
    for n in [400, 800, 1600] {
        assert_eq!(h.next_deadline(), ms(n));
        assert_eq!(h.one().seq, seq(0));
    }
    let c = &h.layer.counters;
    assert_eq!((c.get("tcp.tlp_probe"), c.get("tcp.rto")), (1, 4));
}

/// RFC 8985 7.3: the RTO is re-armed after a loss probe; when the probe
/// resent the head (a lone segment) it counts from the probe, as Linux's
/// tcp_rearm_rto does: a full RTO between the copies, not what was left
/// of the first one.
#[test]
fn rto_counts_from_a_probe_that_resent_the_head() {
    let mut h = Harness::new(sack_config());
    let l = h.layer.listen(SocketAddrV4::new(LOCAL, LPORT), 8).unwrap();
    let mut syn = Seg::peer(IRS, None).syn();
    syn.sack_perm = true;
    syn.mss = Some(MSS as u16);
    h.send(syn);
    h.one();
    // One RTT of 330 ms: SRTT 330, RTO 990 ms; PTO 2*330 + 200 = 860 ms.
    h.advance(ms(330));
    h.send(Seg::peer(IRS + 1, Some(ISS + 1)));
    let c = h.layer.accept(l).unwrap().0;
    h.layer.send(c, b"hello").unwrap();
    h.dispatch();
    assert_eq!(h.one().payload, b"hello");
    assert_eq!(h.next_deadline(), ms(860));
    assert_eq!(h.one().payload, b"hello", "the probe");
    assert_eq!(h.layer.counters.get("tcp.tlp_probe"), 1);
    assert_eq!(h.next_deadline(), ms(990), "a full RTO after the probe");
    assert_eq!(h.one().payload, b"hello");
    assert_eq!(h.layer.counters.get("tcp.rto"), 1);
}

/// After an ACK leaves one segment in flight, the probe timeout allows
/// for the peer's delayed ACK of it (WCDelAckT 200 ms): no probe before
/// the RTO.
#[test]
fn loss_probe_allows_for_the_peers_delayed_ack() {
    let mut h = Harness::new(sack_config());
    let c = establish(&mut h, true);
    assert_eq!(write(&mut h, c, 2).len(), 2);
    h.advance(RTT);
    assert!(ack(&mut h, 1, &[]).is_empty());
    assert_eq!(h.next_deadline(), ms(200));
    assert_eq!(h.one().seq, seq(1));
    assert_eq!(h.layer.counters.get("tcp.tlp_probe"), 0);
}

/// RFC 5681 3.2: one duplicate ACK without SACK blocks is no evidence of
/// loss (RFC 5827 early retransmit is not used, as in Linux); three are
/// without SACK (with SACK they need blocks: `script_linux`).
#[test]
fn fast_retransmit_needs_three_duplicate_acks() {
    for sack in [false, true] {
        let mut h = Harness::new(sack_config());
        let c = establish(&mut h, sack);
        assert_eq!(write(&mut h, c, 2).len(), 2);
        h.advance(ms(1));
        assert!(ack(&mut h, 0, &[]).is_empty(), "sack {sack}");
        assert_eq!(h.layer.counters.get("tcp.fast_retransmit"), 0);
        if sack {
            continue;
        }

        let mut h = Harness::new(sack_config());
        let c = establish(&mut h, sack);
        assert_eq!(write(&mut h, c, 6).len(), 6);
        h.advance(ms(1));
        assert!(ack(&mut h, 1, &[]).is_empty());
        for _ in 0..2 {
            ack(&mut h, 1, &[]);
            assert_eq!(h.layer.counters.get("tcp.fast_retransmit"), 0);
        }
        let r = ack(&mut h, 1, &[]);
        assert_eq!(r.first().map(|s| s.seq), Some(seq(1)), "sack {sack}");
        assert_eq!(h.layer.counters.get("tcp.fast_retransmit"), 1);
    }
}

/// RFC 9293 3.8.6.2.1: a peer re-offering a small window after every
/// segment gets one segment per SWS override timeout (within 0.1-1.0 s;
/// 200 ms here as Linux), without backoff while it ACKs.
#[test]
fn small_window_is_used_every_override_timeout_without_backoff() {
    let mut h = Harness::new(plain_config());
    let (_l, c) = h.establish();
    h.send(Seg::peer(IRS + 1, Some(ISS + 1)).win(10));
    h.layer.send(c, &[5u8; 100]).unwrap();
    h.dispatch();
    h.nothing();
    for i in 0..6u32 {
        assert_eq!(h.next_deadline(), ms(200), "segment {i}");
        let s = h.one();
        assert_eq!((s.seq, s.payload.len()), (ISS + 1 + 10 * i, 10));
        h.send(Seg::peer(IRS + 1, Some(ISS + 11 + 10 * i)).win(10));
        h.nothing();
    }
}

/// Issue 13: a 1-byte receive window moves 100 bytes in under 30 s.
#[test]
fn one_byte_window_moves_100_bytes_in_under_30_s() {
    let mut h = Harness::new(plain_config());
    let (_l, c) = h.establish();
    h.send(Seg::peer(IRS + 1, Some(ISS + 1)).win(1));
    h.layer.send(c, &[9u8; 100]).unwrap();
    let start = h.now;
    let mut got = 0u32;
    for _ in 0..1000 {
        if got == 100 || h.now - start > Duration::from_secs(60) {
            break;
        }
        let waited = h.next_deadline();
        assert!(waited <= Duration::from_secs(1), "gap {waited:?}");
        for s in h.sent() {
            if s.seq == ISS + 1 + got && s.payload.len() == 1 {
                got += 1;
            }
        }
        h.send(Seg::peer(IRS + 1, Some(ISS + 1 + got)).win(1));
    }
    let took = h.now - start;
    assert_eq!(got, 100, "after {took:?}");
    assert!(took < Duration::from_secs(30), "100 bytes took {took:?}");
}

/// RFC 2883: a duplicate segment is reported in the first SACK block:
/// below the cumulative ACK alone, above it followed by the block that
/// holds it.
#[test]
fn dsack_reports_duplicate_segments() {
    let mut h = Harness::new(sack_config());
    let _c = establish(&mut h, true);
    let base = IRS + 1;
    h.send(Seg::peer(base, Some(ISS + 1)).data(&[1; 100]));
    h.advance(ms(50));
    assert_eq!(h.one().sack, vec![]);
    h.send(Seg::peer(base, Some(ISS + 1)).data(&[1; 100]));
    let a = h.one();
    assert_eq!(
        (a.ack, a.sack),
        (Some(base + 100), vec![(base, base + 100)])
    );
    h.send(Seg::peer(base + 200, Some(ISS + 1)).data(&[3; 100]));
    assert_eq!(h.one().sack, vec![(base + 200, base + 300)]);
    h.send(Seg::peer(base + 200, Some(ISS + 1)).data(&[3; 100]));
    assert_eq!(
        h.one().sack,
        vec![(base + 200, base + 300), (base + 200, base + 300)]
    );
    // Reported once: the next ACK is back to plain SACK.
    h.send(Seg::peer(base + 400, Some(ISS + 1)).data(&[5; 100]));
    assert_eq!(
        h.one().sack,
        vec![(base + 400, base + 500), (base + 200, base + 300)]
    );
    // No D-SACK without SACK negotiated.
    let mut h = Harness::new(sack_config());
    establish(&mut h, false);
    h.send(Seg::peer(base, Some(ISS + 1)).data(&[1; 100]));
    h.advance(ms(50));
    h.sent();
    h.send(Seg::peer(base, Some(ISS + 1)).data(&[1; 100]));
    assert_eq!(h.one().sack, vec![]);
}

/// A D-SACK for data we retransmitted counts a spurious retransmission
/// (RFC 2883 / RFC 3708) and widens RACK's reordering window (RFC 8985
/// 6.2 step 4: reo_wnd_mult 2, so reo_wnd = 2 * min_RTT/4 = 5 ms).
#[test]
fn dsack_counts_spurious_retransmission_and_widens_reo_wnd() {
    let mut h = Harness::new(TcpConfig {
        rack: true,
        ..sack_config()
    });
    let c = establish(&mut h, true);
    assert_eq!(write(&mut h, c, 3).len(), 3);
    assert_eq!(h.next_deadline(), 2 * RTT);
    assert_eq!(h.one().seq, seq(2), "the loss probe");
    // The originals were only slow: the ACK of all three, then the
    // D-SACK of the probe's copy.
    assert!(ack(&mut h, 3, &[]).is_empty());
    assert_eq!(h.layer.counters.get("tcp.spurious_rtx"), 0);
    assert!(ack(&mut h, 3, &[(2, 3)]).is_empty());
    assert_eq!(h.layer.counters.get("tcp.spurious_rtx"), 1);
    // Four new segments, the first ACKed after one RTT, the third SACKed
    // while the second is missing: RACK waits the widened window.
    h.advance(RTT);
    assert_eq!(write(&mut h, c, 4).len(), 4);
    h.advance(RTT);
    assert!(ack(&mut h, 4, &[]).is_empty());
    assert!(ack(&mut h, 4, &[(5, 6)]).is_empty());
    assert_eq!(h.next_deadline(), ms(5));
    assert_eq!(h.one().seq, seq(4));
}

/// Ten segments ACKed one by one (slow start sends twenty more), of
/// which the odd ones are lost: the peer gets segment 10 and the even ones and
/// SACKs them as a receiver does (RFC 2018 4: the newest block first,
/// three blocks). Returns the SACKed segments.
fn odd_segments_lost(h: &mut Harness, c: TcpHandle) -> Vec<usize> {
    assert_eq!(write(h, c, 30).len(), 10);
    h.advance(RTT);
    let mut next = 10;
    for i in 1..=10 {
        next += ack(h, i, &[]).len();
    }
    assert_eq!(next, 30, "slow start: two segments per ACK");
    h.advance(RTT);
    ack(h, 11, &[]);
    let mut sacked = Vec::new();
    for k in (12..30).step_by(2) {
        sacked.push(k);
        let blocks: Vec<(usize, usize)> =
            sacked.iter().rev().take(3).map(|&s| (s, s + 1)).collect();
        ack(h, 11, &blocks);
    }
    sacked
}

/// Issue 13 stall: after a second RTO the stack forgot what the peer had
/// SACKed (the "reneging" guess of RFC 2018 8) and resent it in bursts;
/// the peer reports only its three newest blocks, so the rest was never
/// learnt again. RFC 8985 6.3 keeps SACKed segments through an RTO; only
/// an ACK that stops at SACKed data shows reneging.
#[test]
fn sacked_data_is_not_resent_after_repeated_rtos() {
    let mut h = Harness::new(TcpConfig {
        rack: true,
        ..sack_config()
    });
    let c = establish(&mut h, true);
    let sacked = odd_segments_lost(&mut h, c);
    // Everything sent from here is lost until two RTOs have passed.
    let mut rtos = 0;
    for _ in 0..20 {
        h.next_deadline();
        h.sent();
        rtos = h.layer.counters.get("tcp.rto");
        if rtos == 2 {
            break;
        }
    }
    assert_eq!(rtos, 2);
    // The head arrives; the peer reports its three newest blocks only.
    let blocks: Vec<(usize, usize)> = sacked.iter().rev().take(3).map(|&s| (s, s + 1)).collect();
    let mut sent = ack(&mut h, 13, &blocks);
    h.advance(Duration::from_secs(3));
    sent.extend(h.sent());
    let resent: Vec<u32> = sent
        .iter()
        .map(|s| s.seq)
        .filter(|&q| sacked.iter().any(|&k| seq(k) == q))
        .collect();
    assert!(resent.is_empty(), "SACKed segments resent: {resent:?}");
}

/// RFC 5681 3.1: every expiry sets cwnd to the loss window, also a
/// second one in the same episode after ACKs grew it again.
#[test]
fn every_rto_expiry_sends_one_segment() {
    let mut h = Harness::new(TcpConfig {
        rack: true,
        ..sack_config()
    });
    let c = establish(&mut h, true);
    assert_eq!(write(&mut h, c, 10).len(), 10);
    // All lost: the probe, then the RTO resends segment 0.
    assert_eq!(h.next_deadline(), 2 * RTT);
    h.sent();
    assert_eq!(h.next_deadline(), ms(180));
    assert_eq!(h.one().seq, seq(0));
    // It arrives: cwnd grows and more retransmissions leave, all lost.
    h.advance(RTT);
    let r = ack(&mut h, 1, &[]);
    assert!(r.len() >= 2, "{r:?}");
    let waited = h.next_deadline();
    assert!(waited >= ms(200), "{waited:?}");
    let r = h.sent();
    assert_eq!(r.len(), 1, "{r:#?}");
    assert_eq!(r[0].seq, seq(1));
}

/// RFC 2018 8: a receiver may discard data it SACKed. An ACK that stops
/// at SACKed data shows it did; then the RTO forgets the scoreboard and
/// resends that data first, rather than data above it.
#[test]
fn reneged_sack_is_forgotten_at_the_rto() {
    let mut h = Harness::new(TcpConfig {
        rack: true,
        ..sack_config()
    });
    let c = establish(&mut h, true);
    assert_eq!(write(&mut h, c, 4).len(), 4);
    h.advance(RTT);
    ack(&mut h, 1, &[(2, 3)]);
    // Segment 1 arrives late; the receiver has dropped segment 2.
    ack(&mut h, 2, &[]);
    h.advance(Duration::from_secs(1));
    let first = h.sent().into_iter().find(|s| s.seq >= seq(2));
    assert_eq!(first.map(|s| s.seq), Some(seq(2)));
    assert_eq!(h.layer.counters.get("tcp.sack_reneging"), 1);
}

/// After an RTO, the ACK of the retransmission echoes its timestamp: a
/// valid RTT sample (RFC 7323 4.3) that ends the backoff (RFC 6298 5.7),
/// so the next expiry is one RTO after it, not a doubled one.
#[test]
fn timestamp_echo_of_a_retransmission_ends_the_backoff() {
    let mut h = Harness::new(TcpConfig {
        rack: true,
        timestamps: true,
        ..sack_config()
    });
    let l = h.layer.listen(SocketAddrV4::new(LOCAL, LPORT), 8).unwrap();
    let mut syn = Seg::peer(IRS, None).syn().ts(100, 0);
    syn.sack_perm = true;
    syn.mss = Some(MSS as u16);
    h.send(syn);
    let synack = h.one();
    h.advance(RTT);
    h.send(Seg::peer(IRS + 1, Some(ISS + 1)).ts(110, synack.ts.unwrap().0));
    let c = h.layer.accept(l).unwrap().0;
    h.layer.set_nodelay(c, true).unwrap();
    h.layer.send(c, &vec![7u8; 4 * 1448]).unwrap();
    h.dispatch();
    assert_eq!(h.sent().len(), 4);
    // All lost: the probe, then the RTO resends the head.
    h.next_deadline();
    h.sent();
    h.next_deadline();
    let rtx = h.one();
    assert_eq!(h.layer.counters.get("tcp.rto"), 1);
    h.advance(RTT);
    let mut a = Seg::peer(IRS + 1, Some(rtx.seq + 1448)).ts(500, rtx.ts.unwrap().0);
    a.window = 65535;
    h.send(a);
    h.sent();
    // The rest is lost again: the next expiry comes one (un-backed-off)
    // RTO after that ACK: the 200 ms floor.
    let mut waited = Duration::ZERO;
    for _ in 0..10 {
        waited += h.next_deadline();
        h.sent();
        if h.layer.counters.get("tcp.rto") == 2 {
            break;
        }
    }
    assert_eq!(h.layer.counters.get("tcp.rto"), 2);
    assert_eq!(waited, ms(200));
}
