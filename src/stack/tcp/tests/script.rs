//! Connection management scripts: opens, closes, resets, RFC 5961, PAWS,
//! backlog bounds, TIME-WAIT.

use std::io::ErrorKind;
use std::net::{Shutdown, SocketAddrV4};
use std::time::Duration;

use super::harness::*;
use crate::stack::tcp::{TcpConfig, TcpState};

#[test]
fn passive_open_with_options() {
    let mut h = Harness::new(TcpConfig {
        seed: Some(1),
        ..TcpConfig::default()
    });
    let l = h.layer.listen(SocketAddrV4::new(LOCAL, LPORT), 8).unwrap();
    assert_eq!(h.layer.state(l), TcpState::Listen);
    let mut syn = Seg::peer(IRS, None).syn().ts(777, 0);
    syn.mss = Some(1400);
    syn.wscale = Some(7);
    syn.sack_perm = true;
    h.send(syn);
    let now_ms = h.now.total_millis() as u32;
    let mut expect = Seg::ours(ISS, Some(IRS + 1), 65535).syn().ts(now_ms, 777);
    expect.mss = Some(1460);
    expect.wscale = Some(7); // room to grow to 6 MiB (Receiver::MAX_RX_BUFFER)
    expect.sack_perm = true;
    assert_eq!(h.one(), expect);
    assert!(h.layer.accept(l).is_err());
    h.send(Seg::peer(IRS + 1, Some(ISS + 1)).ts(778, now_ms));
    let (c, peer) = h.layer.accept(l).unwrap();
    assert_eq!(peer, SocketAddrV4::new(REMOTE, RPORT));
    assert_eq!(h.layer.state(c), TcpState::Established);
    let info = h.layer.info(c).unwrap();
    assert!(info.sack && info.timestamps);
    assert_eq!((info.snd_wscale, info.rcv_wscale), (7, 7));
    assert_eq!(info.mss, 1400 - 12);
    assert_eq!(h.layer.state(l), TcpState::Listen);
    h.nothing();
}

#[test]
fn active_open() {
    let mut h = Harness::new(plain_config());
    let c = h
        .layer
        .connect(h.now, None, SocketAddrV4::new(REMOTE, RPORT))
        .unwrap();
    assert_eq!(h.layer.state(c), TcpState::SynSent);
    assert_eq!(
        h.layer.send(c, b"x").unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    h.dispatch();
    let syn = h.one();
    let lport = syn.src_port;
    assert!(syn.syn && syn.ack.is_none() && syn.seq == ISS && syn.mss == Some(1460));
    assert!(!syn.sack_perm && syn.ts.is_none() && syn.wscale.is_none());
    let mut synack = Seg::peer(IRS, Some(ISS + 1)).syn();
    synack.dst_port = lport;
    synack.mss = Some(1000);
    h.send(synack);
    let ack = h.one();
    assert_eq!((ack.seq, ack.ack, ack.syn), (ISS + 1, Some(IRS + 1), false));
    assert_eq!(h.layer.state(c), TcpState::Established);
    assert!(h.layer.readiness(c).writable);
    assert_eq!(h.layer.info(c).unwrap().mss, 1000);
}

#[test]
fn simultaneous_open() {
    let mut h = Harness::new(plain_config());
    let c = h.connect();
    h.send(Seg::peer(IRS, None).syn());
    assert_eq!(h.layer.state(c), TcpState::SynReceived);
    let synack = h.one();
    assert_eq!(
        (synack.syn, synack.seq, synack.ack),
        (true, ISS, Some(IRS + 1))
    );
    // The peer's SYN,ACK: old sequence number, answered with an ACK.
    h.send(Seg::peer(IRS, Some(ISS + 1)).syn());
    let ack = h.one();
    assert_eq!((ack.seq, ack.ack, ack.syn), (ISS + 1, Some(IRS + 1), false));
    h.send(Seg::peer(IRS + 1, Some(ISS + 1)));
    assert_eq!(h.layer.state(c), TcpState::Established);
}

#[test]
fn rst_to_closed_port_both_forms() {
    let mut h = Harness::new(plain_config());
    h.send(Seg::peer(IRS, None).syn());
    let mut expect = Seg::ours(0, Some(IRS + 1), 0).rst();
    expect.window = 0;
    assert_eq!(h.one(), expect);
    h.send(Seg::peer(IRS, Some(1234)).data(b"abc"));
    assert_eq!(h.one(), Seg::ours(1234, None, 0).rst());
    h.send(Seg::peer(IRS, Some(1234)).rst());
    h.nothing();
    assert_eq!(h.layer.counters.get("tcp.closed_port"), 2);
}

#[test]
fn refused_connect() {
    let mut h = Harness::new(plain_config());
    let c = h
        .layer
        .connect(
            h.now,
            Some(SocketAddrV4::new(LOCAL, LPORT)),
            SocketAddrV4::new(REMOTE, RPORT),
        )
        .unwrap();
    h.dispatch();
    h.one();
    // A RST with an unacceptable ACK is ignored (the SYN goes again, as
    // Linux's: `script_linux`).
    h.send(Seg::peer(0, Some(ISS + 5)).rst());
    assert!(h.one().syn);
    assert_eq!(h.layer.state(c), TcpState::SynSent);
    h.send(Seg::peer(0, Some(ISS + 1)).rst());
    assert_eq!(h.layer.state(c), TcpState::Closed);
    assert!(h.layer.readiness(c).error);
    assert_eq!(
        h.layer.take_error(c).unwrap().kind(),
        ErrorKind::ConnectionRefused
    );
    assert_eq!(
        h.layer.send(c, b"x").unwrap_err().kind(),
        ErrorKind::ConnectionRefused
    );
    h.nothing();
}

#[test]
fn active_close_through_time_wait() {
    let mut h = Harness::new(plain_config());
    let (_l, c) = h.establish();
    h.layer.shutdown(c, Shutdown::Write).unwrap();
    assert_eq!(h.layer.state(c), TcpState::FinWait1);
    h.dispatch();
    let fin = h.one();
    assert_eq!((fin.fin, fin.seq, fin.ack), (true, ISS + 1, Some(IRS + 1)));
    h.send(Seg::peer(IRS + 1, Some(ISS + 2)));
    assert_eq!(h.layer.state(c), TcpState::FinWait2);
    h.send(Seg::peer(IRS + 1, Some(ISS + 2)).fin());
    let ack = h.one();
    assert_eq!((ack.seq, ack.ack), (ISS + 2, Some(IRS + 2)));
    assert_eq!(h.layer.state(c), TcpState::TimeWait);
    assert_eq!(h.layer.recv(c, &mut [0; 4]).unwrap(), 0);
    // A retransmitted FIN is ACKed again from the TIME-WAIT table.
    h.send(Seg::peer(IRS + 1, Some(ISS + 2)).fin());
    assert_eq!(h.one().ack, Some(IRS + 2));
    h.advance(Duration::from_millis(1900));
    assert_eq!(h.layer.state(c), TcpState::TimeWait);
    h.advance(Duration::from_millis(200));
    assert_eq!(h.layer.state(c), TcpState::Closed);
    h.nothing();
}

#[test]
fn passive_close() {
    let mut h = Harness::new(plain_config());
    let (_l, c) = h.establish();
    h.send(Seg::peer(IRS + 1, Some(ISS + 1)).fin());
    // The FIN's ACK waits (delayed ACK, as Linux's): our FIN carries it.
    h.nothing();
    assert_eq!(h.layer.state(c), TcpState::CloseWait);
    assert_eq!(h.layer.recv(c, &mut [0; 4]).unwrap(), 0);
    h.layer.send(c, b"bye").unwrap();
    h.layer.close(c);
    h.dispatch();
    let fin = h.one();
    assert_eq!(
        (fin.fin, fin.payload.as_slice(), fin.seq, fin.ack),
        (true, &b"bye"[..], ISS + 1, Some(IRS + 2))
    );
    h.send(Seg::peer(IRS + 2, Some(ISS + 5)));
    assert_eq!(h.layer.state(c), TcpState::Closed);
    assert_eq!(h.layer.active_connections(), 0);
    h.nothing();
}

#[test]
fn passive_close_acks_the_fin_after_the_delayed_ack_timeout() {
    let mut h = Harness::new(plain_config());
    let (_l, c) = h.establish();
    h.send(Seg::peer(IRS + 1, Some(ISS + 1)).fin());
    h.nothing();
    // The application does not close: the ACK leaves on the delayed-ACK
    // timer (40 ms), alone.
    h.advance(Duration::from_millis(39));
    h.nothing();
    h.advance(Duration::from_millis(2));
    let ack = h.one();
    assert_eq!((ack.ack, ack.fin), (Some(IRS + 2), false));
    assert_eq!(h.layer.state(c), TcpState::CloseWait);
    // A retransmitted FIN is ACKed at once (a duplicate).
    h.send(Seg::peer(IRS + 1, Some(ISS + 1)).fin());
    assert_eq!(h.one().ack, Some(IRS + 2));
}

#[test]
fn simultaneous_close() {
    let mut h = Harness::new(plain_config());
    let (_l, c) = h.establish();
    h.layer.shutdown(c, Shutdown::Write).unwrap();
    h.dispatch();
    assert!(h.one().fin);
    h.send(Seg::peer(IRS + 1, Some(ISS + 1)).fin());
    assert_eq!(h.layer.state(c), TcpState::Closing);
    assert_eq!(h.one().ack, Some(IRS + 2));
    h.send(Seg::peer(IRS + 2, Some(ISS + 2)));
    assert_eq!(h.layer.state(c), TcpState::TimeWait);
}

#[test]
fn half_close_still_reads() {
    let mut h = Harness::new(plain_config());
    let (_l, c) = h.establish();
    h.layer.shutdown(c, Shutdown::Write).unwrap();
    h.dispatch();
    h.one();
    assert_eq!(
        h.layer.send(c, b"x").unwrap_err().kind(),
        ErrorKind::BrokenPipe
    );
    h.send(Seg::peer(IRS + 1, Some(ISS + 2)).data(b"hello"));
    assert_eq!(h.layer.state(c), TcpState::FinWait2);
    let mut buf = [0u8; 16];
    assert_eq!(h.layer.recv(c, &mut buf).unwrap(), 5);
    assert_eq!(&buf[..5], b"hello");
}

#[test]
fn close_with_unread_data_sends_rst() {
    let mut h = Harness::new(plain_config());
    let (_l, c) = h.establish();
    h.send(Seg::peer(IRS + 1, Some(ISS + 1)).data(b"unread"));
    h.layer.close(c);
    h.dispatch();
    let rst = h.sent().into_iter().find(|s| s.rst).expect("RST");
    assert_eq!((rst.seq, rst.ack), (ISS + 1, Some(IRS + 7)));
    assert_eq!(h.layer.active_connections(), 0);
    assert_eq!(h.layer.counters.get("tcp.close_with_unread_data"), 1);
}

#[test]
fn inexact_rst_gets_challenge_ack() {
    let mut h = Harness::new(plain_config());
    let (_l, c) = h.establish();
    h.send(Seg::peer(IRS + 100, None).rst());
    let ack = h.one();
    assert_eq!((ack.seq, ack.ack, ack.rst), (ISS + 1, Some(IRS + 1), false));
    assert_eq!(h.layer.state(c), TcpState::Established);
}

#[test]
fn exact_rst_resets() {
    let mut h = Harness::new(plain_config());
    let (_l, c) = h.establish();
    h.send(Seg::peer(IRS + 1, None).rst());
    h.nothing();
    assert_eq!(h.layer.state(c), TcpState::Closed);
    assert_eq!(
        h.layer.recv(c, &mut [0; 4]).unwrap_err().kind(),
        ErrorKind::ConnectionReset
    );
    assert_eq!(
        h.layer.send(c, b"x").unwrap_err().kind(),
        ErrorKind::ConnectionReset
    );
}

#[test]
fn out_of_window_rst_ignored() {
    let mut h = Harness::new(plain_config());
    let (_l, c) = h.establish();
    h.send(Seg::peer(IRS + 1 + 1_000_000, None).rst());
    h.nothing();
    assert_eq!(h.layer.state(c), TcpState::Established);
    assert_eq!(h.layer.counters.get("tcp.rst_out_of_window"), 1);
}

#[test]
fn syn_in_established_gets_challenge_ack() {
    let mut h = Harness::new(plain_config());
    let (_l, c) = h.establish();
    h.send(Seg::peer(IRS + 5, None).syn());
    let ack = h.one();
    assert_eq!((ack.seq, ack.ack, ack.syn), (ISS + 1, Some(IRS + 1), false));
    assert_eq!(h.layer.state(c), TcpState::Established);
}

/// One per 500 ms per connection (more in `script_linux`).
#[test]
fn challenge_acks_are_rate_limited() {
    let mut h = Harness::new(plain_config());
    let (_l, _c) = h.establish();
    for i in 0..5 {
        h.send(Seg::peer(IRS + 10 + i, None).rst());
    }
    assert_eq!(h.sent().len(), 1);
    assert_eq!(h.layer.counters.get("tcp.challenge_ack_limited"), 4);
    h.advance(Duration::from_millis(500));
    h.send(Seg::peer(IRS + 10, None).rst());
    assert_eq!(h.sent().len(), 1);
}

#[test]
fn paws_rejects_old_timestamp() {
    let mut h = Harness::new(TcpConfig {
        timestamps: true,
        ..plain_config()
    });
    let l = h.layer.listen(SocketAddrV4::new(LOCAL, LPORT), 8).unwrap();
    h.send(Seg::peer(IRS, None).syn().ts(1000, 0));
    let synack = h.one();
    let our_ts = synack.ts.unwrap().0;
    h.send(Seg::peer(IRS + 1, Some(ISS + 1)).ts(1001, our_ts));
    let (c, _) = h.layer.accept(l).unwrap();
    h.send(
        Seg::peer(IRS + 1, Some(ISS + 1))
            .ts(900, our_ts)
            .data(b"old"),
    );
    let dup = h.one();
    assert_eq!(dup.ack, Some(IRS + 1));
    assert_eq!(dup.ts, Some((h.now.total_millis() as u32, 1001)));
    assert_eq!(h.layer.counters.get("tcp.paws_rejected"), 1);
    assert!(h.layer.recv(c, &mut [0; 8]).is_err());
    h.send(
        Seg::peer(IRS + 1, Some(ISS + 1))
            .ts(1002, our_ts)
            .data(b"new"),
    );
    assert_eq!(h.layer.recv(c, &mut [0; 8]).unwrap(), 3);
}

#[test]
fn syn_queue_bound() {
    let mut h = Harness::new(TcpConfig {
        syn_backlog: 2,
        syncookies: false,
        ..plain_config()
    });
    h.layer.listen(SocketAddrV4::new(LOCAL, LPORT), 8).unwrap();
    for p in 0..3 {
        let mut syn = Seg::peer(IRS, None).syn();
        syn.src_port = 41000 + p;
        h.send(syn);
    }
    assert_eq!(h.sent().len(), 2);
    assert_eq!(h.layer.counters.get("tcp.syn_queue_full"), 1);
}

#[test]
fn accept_queue_bound() {
    let mut h = Harness::new(plain_config());
    let l = h.layer.listen(SocketAddrV4::new(LOCAL, LPORT), 1).unwrap();
    h.send(Seg::peer(IRS, None).syn());
    h.one();
    h.send(Seg::peer(IRS + 1, Some(ISS + 1)));
    assert!(h.layer.readiness(l).readable);
    let mut syn = Seg::peer(IRS, None).syn();
    syn.src_port = 41000;
    h.send(syn);
    h.nothing();
    assert_eq!(h.layer.counters.get("tcp.accept_queue_full"), 1);
    h.layer.accept(l).unwrap();
    let mut syn = Seg::peer(IRS, None).syn();
    syn.src_port = 41000;
    h.send(syn);
    assert!(h.one().syn);
}

#[test]
fn syn_ack_retransmitted_then_dropped() {
    let mut h = Harness::new(TcpConfig {
        syn_retries: 2,
        ..plain_config()
    });
    let l = h.layer.listen(SocketAddrV4::new(LOCAL, LPORT), 1).unwrap();
    h.send(Seg::peer(IRS, None).syn());
    h.one();
    assert_eq!(h.next_deadline(), Duration::from_secs(1));
    assert!(h.one().syn);
    assert_eq!(h.next_deadline(), Duration::from_secs(2));
    assert!(h.one().syn);
    h.advance(Duration::from_secs(5));
    h.nothing();
    assert_eq!(h.layer.active_connections(), 0);
    assert!(h.layer.accept(l).is_err());
}

#[test]
fn time_wait_reused_by_new_syn() {
    let mut h = Harness::new(plain_config());
    let (_l, c) = h.establish();
    h.layer.close(c);
    h.dispatch();
    assert!(h.one().fin);
    h.send(Seg::peer(IRS + 1, Some(ISS + 2)).fin());
    h.one();
    // An old SYN (not above RCV.NXT) is answered by an ACK only.
    h.send(Seg::peer(IRS, None).syn());
    let ack = h.one();
    assert!(!ack.syn && ack.ack == Some(IRS + 2));
    h.send(Seg::peer(IRS + 100_000, None).syn());
    let synack = h.one();
    assert!(synack.syn && synack.ack == Some(IRS + 100_001));
    assert_eq!(h.layer.counters.get("tcp.time_wait_reused"), 1);
}

#[test]
fn closing_listener_resets_unaccepted() {
    let mut h = Harness::new(plain_config());
    let l = h.layer.listen(SocketAddrV4::new(LOCAL, LPORT), 4).unwrap();
    h.send(Seg::peer(IRS, None).syn());
    h.one();
    h.send(Seg::peer(IRS + 1, Some(ISS + 1)));
    h.layer.close(l);
    h.dispatch();
    assert!(h.one().rst);
    assert!(h.layer.listen(SocketAddrV4::new(LOCAL, LPORT), 4).is_ok());
}

#[test]
fn stale_handle_never_reaches_another_socket() {
    let mut h = Harness::new(plain_config());
    let (l, c) = h.establish();
    h.layer.abort(c);
    h.dispatch();
    assert!(h.one().rst);
    let c2 = h
        .layer
        .connect(h.now, None, SocketAddrV4::new(REMOTE, 9))
        .unwrap();
    assert_ne!(c, c2);
    assert_eq!(
        h.layer.send(c, b"x").unwrap_err().kind(),
        ErrorKind::NotConnected
    );
    assert_eq!(h.layer.state(c), TcpState::Closed);
    assert_eq!(
        h.layer.accept(c).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    let _ = l;
}
