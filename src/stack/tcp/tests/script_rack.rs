//! RACK scripts (RFC 8985): a lost retransmission found by time order,
//! the reordering window and its timer, and the RTO where RACK has
//! nothing to go on. The peer SACKs; there are no timestamps, so every
//! RTT comes from RACK's per-segment send times.

use std::net::SocketAddrV4;
use std::time::Duration;

use super::harness::*;
use crate::stack::tcp::{TcpConfig, TcpHandle};

const MSS: usize = 1460;
const RTT: Duration = Duration::from_millis(10);

fn config(rack: bool) -> TcpConfig {
    TcpConfig {
        sack: true,
        rack,
        tx_buffer: 64 * MSS,
        ..plain_config()
    }
}

fn establish(h: &mut Harness) -> TcpHandle {
    let l = h.layer.listen(SocketAddrV4::new(LOCAL, LPORT), 8).unwrap();
    let mut syn = Seg::peer(IRS, None).syn();
    syn.sack_perm = true;
    syn.mss = Some(MSS as u16);
    h.send(syn);
    assert!(h.one().sack_perm);
    // One RTT for the handshake too: SRTT 10 ms, so the loss probe
    // (2*SRTT) stays out of the scripts' first round trip.
    h.advance(RTT);
    h.send(Seg::peer(IRS + 1, Some(ISS + 1)));
    let c = h.layer.accept(l).unwrap().0;
    h.layer.set_nodelay(c, true).unwrap();
    c
}

fn seq(i: usize) -> u32 {
    ISS + 1 + (i * MSS) as u32
}

/// The application queues `n` more segments; returns the sequence
/// numbers of what goes out now.
fn write(h: &mut Harness, c: TcpHandle, n: usize) -> Vec<u32> {
    let data = vec![7u8; n * MSS];
    assert_eq!(h.layer.send(c, &data).unwrap(), n * MSS);
    h.dispatch();
    h.sent().iter().map(|s| s.seq).collect()
}

/// Cumulative ACK `ack` with SACK blocks of whole segments `[lo, hi)`.
fn ack(h: &mut Harness, ack: usize, blocks: &[(usize, usize)]) -> Vec<u32> {
    let mut a = Seg::peer(IRS + 1, Some(seq(ack)));
    a.sack = blocks.iter().map(|&(lo, hi)| (seq(lo), seq(hi))).collect();
    h.send(a);
    h.sent().iter().map(|s| s.seq).collect()
}

/// Segment 1 is lost, then its fast retransmission too. Returns what is
/// sent when segment 8, sent after that retransmission, is SACKed.
fn lost_retransmission(rack: bool) -> (Harness, Vec<u32>) {
    let mut h = Harness::new(config(rack));
    let c = establish(&mut h);
    assert_eq!(write(&mut h, c, 8), (0..8).map(seq).collect::<Vec<_>>());
    h.advance(RTT);
    assert!(ack(&mut h, 1, &[]).is_empty());
    // Segments 2..8 arrive, 1 does not: fast retransmit of 1 only.
    let mut rtx = Vec::new();
    for hi in 3..=8 {
        rtx.extend(ack(&mut h, 1, &[(2, hi)]));
    }
    assert_eq!(rtx, [seq(1)]);
    // New data goes out after the retransmission.
    assert_eq!(write(&mut h, c, 1), [seq(8)]);
    h.advance(RTT);
    // The retransmission is lost; segment 8 arrives.
    let sent = ack(&mut h, 1, &[(8, 9), (2, 8)]);
    (h, sent)
}

#[test]
fn rack_detects_a_lost_retransmission_without_the_rto() {
    let (h, sent) = lost_retransmission(true);
    // One RTT after the retransmission, not an RTO (200 ms) later.
    assert_eq!(sent, [seq(1)]);
    let c = &h.layer.counters;
    assert_eq!(c.get("tcp.rack_lost_retransmit"), 1);
    assert_eq!(c.get("tcp.rto"), 0);
    // RFC 6675 alone retransmits each hole once per recovery: the same
    // script leaves the hole to the retransmission timer.
    let (h, sent) = lost_retransmission(false);
    assert!(sent.is_empty(), "{sent:?}");
    assert_eq!(h.layer.counters.get("tcp.rto"), 0);
}

/// Four segments out, segment 0 ACKed after one RTT (min_RTT 10 ms), then
/// segment 2 SACKed while segment 1 is missing.
fn one_hole(h: &mut Harness) {
    let c = establish(h);
    assert_eq!(write(h, c, 4).len(), 4);
    h.advance(RTT);
    assert!(ack(h, 1, &[]).is_empty());
    // Sent in the same burst as segment 2, segment 1 may just be late:
    // RACK waits reo_wnd = min_RTT/4 (one SACKed segment is below
    // DupThresh, and no recovery is on).
    assert!(ack(h, 1, &[(2, 3)]).is_empty());
}

#[test]
fn rack_reordering_window_waits_for_the_timer() {
    let mut h = Harness::new(config(true));
    one_hole(&mut h);
    assert_eq!(h.layer.counters.get("tcp.fast_retransmit"), 0);
    // The RACK timer: sent at 0, RACK.rtt 10 ms, reo_wnd 2.5 ms, now 10 ms.
    assert_eq!(h.next_deadline(), Duration::from_micros(2500));
    let r = h.one();
    assert_eq!((r.seq, r.payload.len()), (seq(1), MSS));
    let c = &h.layer.counters;
    assert_eq!(c.get("tcp.rack_timer_lost"), 1);
    assert_eq!(c.get("tcp.fast_retransmit"), 1);
}

#[test]
fn rack_reordering_window_spares_a_late_segment() {
    let mut h = Harness::new(config(true));
    one_hole(&mut h);
    // Segment 1 was only reordered: it arrives inside the window.
    h.advance(Duration::from_millis(1));
    assert!(ack(&mut h, 3, &[]).is_empty());
    h.advance(Duration::from_millis(5));
    h.nothing();
    assert_eq!(h.layer.counters.get("tcp.fast_retransmit"), 0);
    assert_eq!(h.layer.counters.get("tcp.retransmitted_segments"), 0);
}

#[test]
fn rto_still_fires_when_rack_sees_nothing_delivered() {
    let mut h = Harness::new(config(true));
    let c = establish(&mut h);
    assert_eq!(write(&mut h, c, 3).len(), 3);
    h.advance(RTT);
    assert!(ack(&mut h, 1, &[]).is_empty());
    // Segments 1 and 2 are lost and nothing after them arrives. The loss
    // probe (RFC 8985 7: PTO = 2*SRTT) resends the last segment, and is
    // lost too.
    assert_eq!(h.next_deadline(), 2 * RTT);
    assert_eq!(h.one().seq, seq(2));
    // Then only the RTO is left (RFC 6298: at least 200 ms after the
    // last ACK), and it resends the first segment.
    assert_eq!(h.next_deadline(), Duration::from_millis(180));
    let r = h.one();
    assert_eq!((r.seq, r.payload.len()), (seq(1), MSS));
    let c = &h.layer.counters;
    assert_eq!((c.get("tcp.tlp_probe"), c.get("tcp.rto")), (1, 1));
    assert_eq!(c.get("tcp.rack_lost"), 0);
}

/// In recovery with nothing left in flight but a lost retransmission.
/// Returns how long until the next transmission, and what it is.
fn lost_retransmission_at_the_tail(rack: bool) -> (Harness, Duration, u32) {
    let mut h = Harness::new(config(rack));
    let c = establish(&mut h);
    assert_eq!(write(&mut h, c, 6).len(), 6);
    h.advance(RTT);
    assert!(ack(&mut h, 1, &[]).is_empty());
    let mut rtx = Vec::new();
    for hi in 3..=6 {
        rtx.extend(ack(&mut h, 1, &[(2, hi)]));
    }
    assert_eq!(rtx, [seq(1)]);
    // That retransmission is lost; everything else has arrived, so no
    // ACK will come: RACK has nothing to go on.
    let waited = h.next_deadline();
    let r = h.one();
    (h, waited, r.seq)
}

#[test]
fn loss_probe_in_recovery_resends_the_head_before_the_rto() {
    let (h, waited, seq1) = lost_retransmission_at_the_tail(true);
    // PTO = 2*SRTT (SRTT 10 ms): a probe, not a 200 ms RTO.
    assert_eq!((waited, seq1), (2 * RTT, seq(1)));
    let c = &h.layer.counters;
    assert_eq!((c.get("tcp.tlp_probe"), c.get("tcp.rto")), (1, 0));
    // RFC 6675 alone: the retransmission timer, from the last ACK.
    let (h, waited, seq1) = lost_retransmission_at_the_tail(false);
    assert_eq!((waited, seq1), (Duration::from_millis(200), seq(1)));
    assert_eq!(h.layer.counters.get("tcp.rto"), 1);
}
