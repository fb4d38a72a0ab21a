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
