//! Scripts for differences from Linux that the same-script test
//! (tests/packetimpact.rs, issue 12) found.

use std::net::SocketAddrV4;

use super::harness::*;
use crate::stack::tcp::TcpConfig;

fn ts_config() -> TcpConfig {
    TcpConfig {
        timestamps: true,
        ..plain_config()
    }
}

/// Passive open and active close with timestamps, the peer's TSvals
/// 100..=102: the pair ends in TIME-WAIT with TS.Recent 102.
fn time_wait_with_timestamps(h: &mut Harness) {
    let _l = h.layer.listen(SocketAddrV4::new(LOCAL, LPORT), 8).unwrap();
    h.send(Seg::peer(IRS, None).syn().ts(100, 0));
    assert!(h.one().ts.is_some());
    h.send(Seg::peer(IRS + 1, Some(ISS + 1)).ts(101, 0));
    let c = h.layer.accept(_l).unwrap().0;
    h.layer.close(c);
    h.dispatch();
    assert!(h.one().fin);
    h.send(Seg::peer(IRS + 1, Some(ISS + 2)).fin().ts(102, 0));
    assert_eq!(h.one().ack, Some(IRS + 2));
}

/// RFC 6191 2 / RFC 7323 5.3 R1: in TIME-WAIT a new SYN whose TSval is
/// older than TS.Recent gets the TIME-WAIT ACK, even with a higher
/// sequence number (Linux: paws_reject); one with a newer TSval reuses
/// the pair.
#[test]
fn time_wait_syn_with_an_old_timestamp_is_refused() {
    let mut h = Harness::new(ts_config());
    time_wait_with_timestamps(&mut h);
    h.send(Seg::peer(IRS + 100_000, None).syn().ts(50, 0));
    let r = h.one();
    assert!(!r.syn && r.ack == Some(IRS + 2), "{r:?}");
    assert_eq!(h.layer.counters.get("tcp.time_wait_reused"), 0);
    h.send(Seg::peer(IRS + 100_000, None).syn().ts(103, 0));
    let r = h.one();
    assert!(r.syn && r.ack == Some(IRS + 100_001), "{r:?}");
    assert_eq!(h.layer.counters.get("tcp.time_wait_reused"), 1);
}

/// RFC 9293 3.10.7.4 fourth: a SYN with another ISN in the window of a
/// passively opened SYN-RECEIVED connection returns it to LISTEN; as
/// Linux, the peer gets a RST (<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>),
/// and the ACK that would have completed the handshake finds nothing.
#[test]
fn syn_received_drops_on_a_syn_with_another_isn() {
    let mut h = Harness::new(plain_config());
    let l = h.layer.listen(SocketAddrV4::new(LOCAL, LPORT), 8).unwrap();
    h.send(Seg::peer(IRS, None).syn());
    assert!(h.one().syn);
    h.send(Seg::peer(IRS + 100, None).syn());
    let r = h.one();
    assert_eq!((r.rst, r.seq, r.ack), (true, 0, Some(IRS + 101)), "{r:?}");
    assert_eq!(h.layer.active_connections(), 0);
    h.send(Seg::peer(IRS + 1, Some(ISS + 1)));
    let r = h.one();
    assert_eq!((r.rst, r.seq, r.ack), (true, ISS + 1, None), "{r:?}");
    assert!(h.layer.accept(l).is_err());
}

/// RFC 2018 3: a SACK block is a range of sequence space, so the one for
/// out-of-order data carrying a FIN covers the FIN too (as Linux's); it
/// goes when the hole is filled and the FIN taken.
#[test]
fn sack_block_covers_an_out_of_order_fin() {
    let mut h = Harness::new(TcpConfig {
        sack: true,
        ..plain_config()
    });
    let l = h.layer.listen(SocketAddrV4::new(LOCAL, LPORT), 8).unwrap();
    let mut syn = Seg::peer(IRS, None).syn();
    syn.sack_perm = true;
    h.send(syn);
    assert!(h.one().sack_perm);
    h.send(Seg::peer(IRS + 1, Some(ISS + 1)));
    let c = h.layer.accept(l).unwrap().0;
    h.send(Seg::peer(IRS + 11, Some(ISS + 1)).data(&[1; 10]).fin());
    let r = h.one();
    assert_eq!(r.ack, Some(IRS + 1));
    assert_eq!(r.sack, [(IRS + 11, IRS + 22)], "{r:?}");
    h.send(Seg::peer(IRS + 1, Some(ISS + 1)).data(&[0; 10]));
    let r = h.one();
    assert_eq!((r.ack, r.sack.len()), (Some(IRS + 22), 0), "{r:?}");
    let mut buf = [0; 32];
    assert_eq!(h.layer.recv(c, &mut buf).unwrap(), 20);
    assert_eq!(h.layer.recv(c, &mut buf).unwrap(), 0, "EOF");
}

/// RFC 9293 3.8.6: with the peer's window at 100 bytes and 1000 queued,
/// the RTO retransmissions do not send past SND.UNA + SND.WND (and no
/// loss probe is armed while the window holds data back: `script_linux`).
#[test]
fn retransmissions_stay_inside_a_small_window() {
    for sack in [true, false] {
        let mut h = Harness::new(TcpConfig {
            sack: true,
            ..plain_config()
        });
        let l = h.layer.listen(SocketAddrV4::new(LOCAL, LPORT), 8).unwrap();
        let mut syn = Seg::peer(IRS, None).syn();
        syn.sack_perm = sack;
        syn.window = 100;
        h.send(syn);
        h.one();
        // RTT 330 ms: a loss probe (2*SRTT + 200 ms) would come before
        // the RTO (990 ms).
        h.advance(std::time::Duration::from_millis(330));
        let mut ack = Seg::peer(IRS + 1, Some(ISS + 1));
        ack.window = 100;
        h.send(ack);
        let c = h.layer.accept(l).unwrap().0;
        assert_eq!(h.layer.send(c, &[7; 1000]).unwrap(), 1000);
        h.dispatch();
        let mut sent = h.sent();
        for _ in 0..4 {
            h.next_deadline();
            sent.extend(h.sent());
        }
        assert!(sent.len() >= 4, "sack {sack}: {sent:?}");
        let probes = h.layer.counters.get("tcp.tlp_probe");
        assert_eq!(probes, 0, "sack {sack}");
        for s in &sent {
            let end = s.seq + s.payload.len() as u32;
            assert!(end <= ISS + 101, "sack {sack}: past the window: {s:?}");
        }
    }
}
