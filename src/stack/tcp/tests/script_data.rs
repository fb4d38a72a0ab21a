//! Data-transfer scripts: delayed ACK, window updates, persist, RTO,
//! SACK generation, fast retransmit, NewReno and SACK recovery.

use std::io::ErrorKind;
use std::net::SocketAddrV4;
use std::time::Duration;

use super::harness::*;
use crate::stack::tcp::{TcpConfig, TcpHandle, TcpState};

const MSS: usize = 1460;

fn sack_config() -> TcpConfig {
    TcpConfig {
        sack: true,
        ..plain_config()
    }
}

/// Passive open negotiating SACK when `sack`.
fn establish_sack(h: &mut Harness) -> TcpHandle {
    let l = h.layer.listen(SocketAddrV4::new(LOCAL, LPORT), 8).unwrap();
    let mut syn = Seg::peer(IRS, None).syn();
    syn.sack_perm = true;
    syn.mss = Some(1460);
    h.send(syn);
    assert!(h.one().sack_perm);
    h.send(Seg::peer(IRS + 1, Some(ISS + 1)));
    h.layer.accept(l).unwrap().0
}

#[test]
fn delayed_ack_at_40ms_and_every_second_segment() {
    let mut h = Harness::new(plain_config());
    let (_l, c) = h.establish();
    h.send(Seg::peer(IRS + 1, Some(ISS + 1)).data(&[1; 100]));
    h.nothing();
    assert_eq!(h.next_deadline(), Duration::from_millis(40));
    assert_eq!(h.one().ack, Some(IRS + 101));
    h.send(Seg::peer(IRS + 101, Some(ISS + 1)).data(&[2; 100]));
    h.nothing();
    h.send(Seg::peer(IRS + 201, Some(ISS + 1)).data(&[3; 100]));
    assert_eq!(h.one().ack, Some(IRS + 301));
    let mut buf = [0u8; 400];
    assert_eq!(h.layer.recv(c, &mut buf).unwrap(), 300);
}

#[test]
fn window_update_after_application_reads() {
    let mut h = Harness::new(TcpConfig {
        rx_buffer: 4 * MSS,
        ..plain_config()
    });
    let (_l, c) = h.establish();
    for i in 0..4 {
        h.send(Seg::peer(IRS + 1 + (i * MSS) as u32, Some(ISS + 1)).data(&[7; MSS]));
    }
    let acks = h.sent();
    assert_eq!(acks.last().unwrap().window, 0);
    let mut buf = vec![0u8; MSS];
    let mut read_one = |h: &mut Harness| {
        h.layer.recv(c, &mut buf).unwrap();
        h.dispatch();
    };
    // Linux's tcp_cleanup_rbuf: a window at half the buffer or less is
    // announced once a read at least doubles it; one MSS is enough to
    // open a closed window (RFC 9293 3.8.6.2.2: min(BUFF/2, MSS)).
    read_one(&mut h);
    assert_eq!(h.one().window, MSS as u16);
    read_one(&mut h);
    assert_eq!(h.one().window, (2 * MSS) as u16);
    read_one(&mut h);
    h.nothing(); // 3 MSS is not twice 2 MSS
    read_one(&mut h);
    // The peer had filled the window and the application read it all:
    // the buffer doubled (`Receiver::grow_if_limited`).
    let upd = h.one();
    assert_eq!(
        (upd.ack, upd.window),
        (Some(IRS + 1 + 4 * MSS as u32), (8 * MSS) as u16)
    );
}

/// A bulk receive: each read of what one ACK left unread no longer sends
/// a window update (the ACK at arrival offered all the rest).
#[test]
fn reads_of_a_wide_window_send_no_update() {
    let mut h = Harness::new(TcpConfig {
        rx_buffer: 16 * MSS,
        ..plain_config()
    });
    let (_l, c) = h.establish();
    let mut buf = vec![0u8; 16 * MSS];
    for round in 0..8u32 {
        let seq = IRS + 1 + round * 2 * MSS as u32;
        h.send(Seg::peer(seq, Some(ISS + 1)).data(&[7; MSS]));
        h.send(Seg::peer(seq + MSS as u32, Some(ISS + 1)).data(&[8; MSS]));
        let ack = h.one();
        assert_eq!(ack.window, (14 * MSS) as u16);
        assert_eq!(h.layer.recv(c, &mut buf).unwrap(), 2 * MSS);
        h.dispatch();
        h.nothing();
    }
}

#[test]
fn zero_window_persist_probes_back_off() {
    let mut h = Harness::new(plain_config());
    let (_l, c) = h.establish();
    h.send(Seg::peer(IRS + 1, Some(ISS + 1)).win(0));
    h.layer.send(c, b"data").unwrap();
    h.dispatch();
    h.nothing();
    // The handshake gave an RTT sample of 0: RTO = 200 ms floor.
    assert_eq!(h.next_deadline(), Duration::from_millis(200));
    let probe = h.one();
    assert_eq!((probe.seq, probe.payload.len()), (ISS, 0));
    h.send(Seg::peer(IRS + 1, Some(ISS + 1)).win(0));
    h.nothing();
    assert_eq!(h.next_deadline(), Duration::from_millis(400));
    assert_eq!(h.one().seq, ISS);
    h.send(Seg::peer(IRS + 1, Some(ISS + 1)).win(1000));
    let d = h.one();
    assert_eq!((d.seq, d.payload.as_slice()), (ISS + 1, &b"data"[..]));
}

/// Our receive queue is full (the application reads nothing), and the
/// peer's ACK of our data was lost: its zero-window probes (no data, at
/// RCV.NXT - 1, as Linux's tcp_xmit_probe_skb) are then the only segments
/// it sends. Their ACK counts (RFC 9293 3.10.7.4: "special allowance ...
/// to accept valid ACKs" while the window is shut): our data is not sent
/// again, and the application may write more. Ignoring it (as Linux's
/// tcp_sequence does) left the data to a backed-off RTO while the peer
/// had it, a stall of seconds in the faults soak.
#[test]
fn a_peers_zero_window_probe_acknowledges_our_data() {
    let mut h = Harness::new(TcpConfig {
        rx_buffer: 2 * MSS,
        tx_buffer: 1000,
        ..plain_config()
    });
    let (_l, c) = h.establish();
    for i in 0..2 {
        h.send(Seg::peer(IRS + 1 + (i * MSS) as u32, Some(ISS + 1)).data(&[7; MSS]));
    }
    assert_eq!(h.sent().last().unwrap().window, 0);
    let nxt = IRS + 1 + 2 * MSS as u32;
    assert_eq!(h.layer.send(c, &[1; 1000]).unwrap(), 1000);
    h.dispatch();
    let d = h.one();
    assert_eq!((d.seq, d.payload.len()), (ISS + 1, 1000));
    // The peer's ACK of it is lost; its probe follows.
    h.send(Seg::peer(nxt - 1, Some(ISS + 1001)));
    let answer = h.one();
    assert_eq!(
        (answer.seq, answer.ack, answer.window),
        (ISS + 1001, Some(nxt), 0)
    );
    assert_eq!(h.layer.send(c, &[2; 1000]).unwrap(), 1000, "room again");
    h.dispatch();
    assert_eq!(h.one().seq, ISS + 1001, "new data, not the old again");
}

/// RFC 1122 4.2.2.17: a peer that answers every probe keeps the
/// connection however long its window stays shut; one that falls silent
/// loses it after `max_retries` unanswered probes (as Linux).
#[test]
fn zero_window_probing_lasts_while_answered_and_gives_up_on_silence() {
    let mut h = Harness::new(TcpConfig {
        max_retries: 3,
        ..plain_config()
    });
    let (_l, c) = h.establish();
    h.send(Seg::peer(IRS + 1, Some(ISS + 1)).win(0));
    h.layer.send(c, b"data").unwrap();
    h.dispatch();
    h.nothing();
    let mut probes = 0;
    for _ in 0..8 {
        h.next_deadline();
        assert_eq!(h.one().seq, ISS, "a probe");
        probes += 1;
        h.send(Seg::peer(IRS + 1, Some(ISS + 1)).win(0));
        h.nothing();
    }
    assert_eq!(
        h.layer.state(c),
        TcpState::Established,
        "{probes} answered probes"
    );
    // Silence: the probes counted from here on go unanswered.
    for _ in 0..3 {
        h.next_deadline();
        assert_eq!(h.one().seq, ISS, "a probe");
    }
    h.next_deadline();
    h.nothing();
    assert_eq!(h.layer.state(c), TcpState::Closed);
    assert_eq!(h.layer.take_error(c).unwrap().kind(), ErrorKind::TimedOut);
    assert_eq!(h.layer.counters.get("tcp.persist_give_up"), 1);
}

#[test]
fn syn_retransmission_doubles_from_one_second_then_times_out() {
    let mut h = Harness::new(TcpConfig {
        syn_retries: 3,
        ..plain_config()
    });
    let c = h
        .layer
        .connect(h.now, None, SocketAddrV4::new(REMOTE, RPORT))
        .unwrap();
    h.dispatch();
    h.one();
    for secs in [1, 2, 4] {
        assert_eq!(h.next_deadline(), Duration::from_secs(secs));
        assert!(h.one().syn);
    }
    assert_eq!(h.next_deadline(), Duration::from_secs(8));
    h.nothing();
    assert_eq!(h.layer.state(c), TcpState::Closed);
    assert_eq!(h.layer.take_error(c).unwrap().kind(), ErrorKind::TimedOut);
}

#[test]
fn data_rto_floor_doubling_and_give_up() {
    let mut h = Harness::new(TcpConfig {
        max_retries: 3,
        ..plain_config()
    });
    let (_l, c) = h.establish();
    h.layer.send(c, b"hello").unwrap();
    h.dispatch();
    assert_eq!(h.one().payload, b"hello");
    // No loss probe: RFC 8985 7.2 wants SACK, and with one segment in
    // flight PTO = 2*SRTT + WCDelAckT lies past the RTO anyway. One
    // retransmission per expiry (RFC 6298 5.4-5.6).
    for ms in [200, 400, 800] {
        assert_eq!(h.next_deadline(), Duration::from_millis(ms));
        let r = h.one();
        assert_eq!((r.seq, r.payload.as_slice()), (ISS + 1, &b"hello"[..]));
    }
    assert_eq!(h.next_deadline(), Duration::from_millis(1600));
    h.nothing();
    assert_eq!(h.layer.take_error(c).unwrap().kind(), ErrorKind::TimedOut);
    assert_eq!(h.layer.info(c).unwrap().retransmitted_segments, 3);
    assert_eq!(h.layer.counters.get("tcp.tlp_probe"), 0);
}

#[test]
fn sack_blocks_describe_holes_most_recent_first() {
    let mut h = Harness::new(sack_config());
    let c = establish_sack(&mut h);
    let base = IRS + 1;
    h.send(Seg::peer(base, Some(ISS + 1)).data(&[1; 100]));
    h.sent();
    h.send(Seg::peer(base + 200, Some(ISS + 1)).data(&[3; 100]));
    let a = h.one();
    assert_eq!(
        (a.ack, a.sack.clone()),
        (Some(base + 100), vec![(base + 200, base + 300)])
    );
    h.send(Seg::peer(base + 400, Some(ISS + 1)).data(&[5; 100]));
    let a = h.one();
    assert_eq!(
        a.sack,
        vec![(base + 400, base + 500), (base + 200, base + 300)]
    );
    // Filling the first hole: immediate ACK, one block left.
    h.send(Seg::peer(base + 100, Some(ISS + 1)).data(&[2; 100]));
    let a = h.one();
    assert_eq!(
        (a.ack, a.sack.clone()),
        (Some(base + 300), vec![(base + 400, base + 500)])
    );
    let mut buf = [0u8; 1000];
    assert_eq!(h.layer.recv(c, &mut buf).unwrap(), 300);
    assert_eq!(&buf[..300], &[[1u8; 100], [2; 100], [3; 100]].concat()[..]);
}

#[test]
fn sack_blocks_too_big_for_full_data_segments_follow_in_a_bare_ack() {
    // A full-sized data segment has no room for SACK blocks; they must
    // still reach the peer (RFC 2018 4: "SACK options SHOULD be included
    // in all ACKs which do not ACK the highest sequence number in the data
    // receiver's queue"). Without them a peer whose retransmission is lost
    // learns of nothing it sent later and waits for its RTO.
    let mut h = Harness::new(sack_config());
    let c = establish_sack(&mut h);
    let base = IRS + 1;
    let data = vec![7u8; 2 * MSS];
    assert_eq!(h.layer.send(c, &data).unwrap(), 2 * MSS);
    h.send(Seg::peer(base + 100, Some(ISS + 1)).data(&[2; 100]));
    let sent = h.sent();
    let shown: Vec<_> = sent
        .iter()
        .map(|s| (s.seq, s.payload.len(), s.ack, s.sack.clone()))
        .collect();
    let full = sent.iter().filter(|s| s.payload.len() == MSS).count();
    assert_eq!(full, 2, "{shown:?}");
    let sacks: Vec<&Seg> = sent.iter().filter(|s| !s.sack.is_empty()).collect();
    assert_eq!(sacks.len(), 1, "{shown:?}");
    assert_eq!(
        (sacks[0].ack, sacks[0].sack.clone(), sacks[0].payload.len()),
        (Some(base), vec![(base + 100, base + 200)], 0)
    );
    // Once the peer has it, data segments alone carry the ACK again.
    h.send(Seg::peer(base, Some(ISS + 1 + 2 * MSS as u32)).data(&[1; 100]));
    let a = h.one();
    assert_eq!((a.ack, a.sack.clone()), (Some(base + 200), vec![]));
}

/// Sends `n` full segments from us; returns them.
fn blast(h: &mut Harness, c: TcpHandle, n: usize) -> Vec<Seg> {
    h.layer.set_nodelay(c, true).unwrap();
    let data: Vec<u8> = (0..n * MSS).map(|i| i as u8).collect();
    assert_eq!(h.layer.send(c, &data).unwrap(), n * MSS);
    h.dispatch();
    let segs = h.sent();
    assert_eq!(segs.len(), n);
    segs
}

fn seg_seq(i: usize) -> u32 {
    ISS + 1 + (i * MSS) as u32
}

#[test]
fn fast_retransmit_after_three_dupacks() {
    let mut h = Harness::new(plain_config());
    let (_l, c) = h.establish();
    blast(&mut h, c, 6);
    h.send(Seg::peer(IRS + 1, Some(seg_seq(1))));
    h.sent();
    for _ in 0..2 {
        h.send(Seg::peer(IRS + 1, Some(seg_seq(1))));
        h.nothing();
    }
    h.send(Seg::peer(IRS + 1, Some(seg_seq(1))));
    let r = h.one();
    assert_eq!((r.seq, r.payload.len()), (seg_seq(1), MSS));
    assert_eq!(h.layer.counters.get("tcp.fast_retransmit"), 1);
}

/// RFC 5681 3.2: one duplicate ACK is no evidence of loss, even with two
/// segments outstanding and nothing left to send (RFC 5827 early
/// retransmit is not used, as in Linux; see also `script_timers`).
#[test]
fn no_early_retransmit_with_a_small_flight() {
    let mut h = Harness::new(plain_config());
    let (_l, c) = h.establish();
    blast(&mut h, c, 2);
    h.send(Seg::peer(IRS + 1, Some(seg_seq(0))));
    h.nothing();
    assert_eq!(h.layer.counters.get("tcp.fast_retransmit"), 0);
}

#[test]
fn limited_transmit_sends_new_data_on_early_dupacks() {
    let mut h = Harness::new(TcpConfig {
        tx_buffer: 64 * MSS,
        ..plain_config()
    });
    let (_l, c) = h.establish();
    h.layer.set_nodelay(c, true).unwrap();
    let data: Vec<u8> = (0..40 * MSS).map(|i| i as u8).collect();
    h.layer.send(c, &data).unwrap();
    h.dispatch();
    let first = h.sent();
    let next = seg_seq(first.len());
    // Two duplicate ACKs (segment 0 lost): each lets one new segment out
    // beyond cwnd (RFC 3042).
    h.send(Seg::peer(IRS + 1, Some(seg_seq(0))));
    assert_eq!(h.one().seq, next);
    h.send(Seg::peer(IRS + 1, Some(seg_seq(0))));
    assert_eq!(h.one().seq, next + MSS as u32);
    assert_eq!(h.layer.counters.get("tcp.fast_retransmit"), 0);
}

#[test]
fn newreno_partial_ack_retransmits_next_hole() {
    let mut h = Harness::new(plain_config());
    let (_l, c) = h.establish();
    blast(&mut h, c, 6);
    // Segments 1 and 3 lost.
    for _ in 0..4 {
        h.send(Seg::peer(IRS + 1, Some(seg_seq(1))));
    }
    let r = h.sent();
    assert_eq!(r[0].seq, seg_seq(1));
    // Partial ACK up to the second hole.
    h.send(Seg::peer(IRS + 1, Some(seg_seq(3))));
    let r = h.sent();
    assert_eq!(r[0].seq, seg_seq(3), "{r:#?}");
    assert_eq!(h.layer.counters.get("tcp.partial_ack"), 1);
}

#[test]
fn sack_recovery_retransmits_only_lost_segments() {
    let mut h = Harness::new(sack_config());
    let c = establish_sack(&mut h);
    blast(&mut h, c, 8);
    // Segments 1 and 4 lost; the rest SACKed.

    for (lo, hi) in [(2, 3), (2, 4), (5, 6), (5, 7), (5, 8)] {
        let mut a = Seg::peer(IRS + 1, Some(seg_seq(1)));
        a.sack = if lo == 2 {
            vec![(seg_seq(2), seg_seq(hi))]
        } else {
            vec![(seg_seq(5), seg_seq(hi)), (seg_seq(2), seg_seq(4))]
        };

        h.send(a);
    }
    let rtx: Vec<u32> = h
        .sent()
        .iter()
        .filter(|s| s.seq < seg_seq(8))
        .map(|s| s.seq)
        .collect();
    assert_eq!(rtx, vec![seg_seq(1), seg_seq(4)]);
    assert_eq!(h.layer.info(c).unwrap().retransmitted_segments, 2);
}
