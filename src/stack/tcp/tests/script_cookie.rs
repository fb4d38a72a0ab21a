//! SYN cookies (RFC 4987 3.6) and SYN queue eviction, as scripts.

use std::net::SocketAddrV4;
use std::time::Duration;

use super::harness::*;
use crate::stack::tcp::{TcpConfig, TcpHandle, TcpState};

/// A SYN from the peer's port `port`.
fn syn_from(port: u16, mss: u16) -> Seg {
    let mut syn = Seg::peer(IRS, None).syn();
    syn.src_port = port;
    syn.mss = Some(mss);
    syn
}

fn cookie_config() -> TcpConfig {
    TcpConfig {
        syn_backlog: 1,
        ..plain_config()
    }
}

#[test]
fn full_syn_queue_answers_with_a_cookie_that_makes_the_connection() {
    let mut h = Harness::new(cookie_config());
    let l = h.layer.listen(SocketAddrV4::new(LOCAL, LPORT), 8).unwrap();
    h.send(syn_from(41000, 1460));
    assert_eq!(h.one().seq, ISS, "the first SYN gets state");
    h.send(syn_from(41001, 1400));
    let synack = h.one();
    assert!(synack.syn && synack.ack == Some(IRS + 1));
    assert_ne!(synack.seq, ISS, "a cookie, not the fixed ISN");
    // No timestamps: MSS only (Linux clears the other options).
    assert_eq!(synack.mss, Some(1460));
    assert!(synack.wscale.is_none() && !synack.sack_perm && synack.ts.is_none());
    assert_eq!(h.layer.counters.get("tcp.syncookies_sent"), 1);
    assert_eq!(h.layer.active_connections(), 1, "the cookie kept no state");
    h.layer.set_fixed_isn(None);
    let cookie = synack.seq;
    let mut ack = Seg::peer(IRS + 1, Some(cookie.wrapping_add(1))).data(b"hello");
    ack.src_port = 41001;
    h.send(ack);
    assert_eq!(h.layer.counters.get("tcp.syncookies_validated"), 1);
    let (c, peer) = h.layer.accept(l).unwrap();
    assert_eq!(peer.port(), 41001);
    assert_eq!(h.layer.state(c), TcpState::Established);
    let mut buf = [0u8; 16];
    assert_eq!(h.layer.recv(c, &mut buf).unwrap(), 5);
    assert_eq!(&buf[..5], b"hello");
    // The peer said 1400: the cookie can say 1300 (Linux's table).
    assert_eq!(h.layer.info(c).unwrap().mss, 1300);
    // Data flows both ways on the cookie's sequence numbers.
    h.layer.send(c, b"back").unwrap();
    h.advance(Duration::from_millis(50));
    let out = h.sent();
    let data = out.iter().find(|s| !s.payload.is_empty()).expect("data");
    assert_eq!(data.seq, cookie.wrapping_add(1));
    assert_eq!(data.ack, Some(IRS + 6));
    assert_eq!(data.payload, b"back");
}

#[test]
fn cookie_carries_window_scale_and_sack_in_the_timestamp() {
    let mut h = Harness::new(TcpConfig {
        syn_backlog: 1,
        seed: Some(1),
        ..TcpConfig::default()
    });
    let l = h.layer.listen(SocketAddrV4::new(LOCAL, LPORT), 8).unwrap();
    h.send(syn_from(41000, 1460));
    h.one();
    let mut syn = syn_from(41001, 9000).ts(777, 0);
    syn.wscale = Some(7);
    syn.sack_perm = true;
    h.send(syn);
    let synack = h.one();
    let now_ms = h.now.total_millis() as u32;
    let (tsval, tsecr) = synack.ts.expect("timestamps kept");
    assert_eq!(tsecr, 777);
    assert_eq!(tsval & 63, 7 | 16, "wscale 7 and SACK in the low bits");
    assert!(now_ms.wrapping_sub(tsval) < 64, "{tsval} vs {now_ms}");
    assert_eq!(synack.wscale, Some(7));
    assert!(synack.sack_perm);
    let mut ack = Seg::peer(IRS + 1, Some(synack.seq.wrapping_add(1))).ts(778, tsval);
    ack.src_port = 41001;
    h.send(ack);
    let (c, _) = h.layer.accept(l).unwrap();
    let info = h.layer.info(c).unwrap();
    assert!(info.sack && info.timestamps);
    assert_eq!((info.snd_wscale, info.rcv_wscale), (7, 7));
    assert_eq!(info.mss, 1460 - 12);
    assert_eq!(info.srtt, None, "no RTT sample from a cookie's TSecr");
}

#[test]
fn forged_or_unexpected_cookie_acks_are_reset() {
    let mut h = Harness::new(cookie_config());
    let l = h.layer.listen(SocketAddrV4::new(LOCAL, LPORT), 8).unwrap();
    // No overflow yet: an ACK is not checked against cookies at all.
    let mut stray = Seg::peer(IRS + 1, Some(1234));
    stray.src_port = 41005;
    h.send(stray.clone());
    assert_eq!(h.one(), {
        let mut r = Seg::ours(1234, None, 0).rst();
        r.dst_port = 41005;
        r
    });
    assert_eq!(h.layer.counters.get("tcp.syncookies_failed"), 0);
    h.send(syn_from(41000, 1460));
    h.one();
    h.send(syn_from(41001, 1460));
    let cookie = h.one().seq;
    // Wrong cookie, wrong peer ISN, wrong port: each fails with a RST.
    for (port, seq, ack) in [
        (41001, IRS + 1, cookie.wrapping_add(2)),
        (41001, IRS + 1001, cookie.wrapping_add(1)),
        (41002, IRS + 1, cookie.wrapping_add(1)),
    ] {
        let mut a = Seg::peer(seq, Some(ack));
        a.src_port = port;
        h.send(a);
        assert!(h.one().rst);
    }
    assert_eq!(h.layer.counters.get("tcp.syncookies_failed"), 3);
    assert!(h.layer.accept(l).is_err());
    // Two minutes on the cookie has expired.
    h.now += Duration::from_secs(121);
    let mut late = Seg::peer(IRS + 1, Some(cookie.wrapping_add(1)));
    late.src_port = 41001;
    h.send(late);
    assert!(h.sent().iter().any(|s| s.rst && s.dst_port == 41001));
    assert_eq!(h.layer.counters.get("tcp.syncookies_validated"), 0);
}

#[test]
fn cookie_ack_waits_for_room_in_the_accept_queue() {
    let mut h = Harness::new(cookie_config());
    let l = h.layer.listen(SocketAddrV4::new(LOCAL, LPORT), 1).unwrap();
    h.send(syn_from(41000, 1460));
    h.one();
    h.send(syn_from(41001, 1460));
    let cookie = h.one().seq;
    h.send(Seg {
        src_port: 41000,
        ..Seg::peer(IRS + 1, Some(ISS + 1))
    });
    // The accept queue (1) is full: the cookie ACK is dropped, no RST.
    let mut ack = Seg::peer(IRS + 1, Some(cookie.wrapping_add(1)));
    ack.src_port = 41001;
    h.send(ack.clone());
    h.nothing();
    assert_eq!(h.layer.counters.get("tcp.syncookies_validated"), 0);
    h.layer.accept(l).unwrap();
    h.send(ack);
    let (_, peer) = h.layer.accept(l).unwrap();
    assert_eq!(peer.port(), 41001);
}

#[test]
fn unanswered_half_open_entry_is_evicted_first() {
    let mut h = Harness::new(cookie_config());
    let l = h.layer.listen(SocketAddrV4::new(LOCAL, LPORT), 8).unwrap();
    h.send(syn_from(41000, 1460));
    h.one();
    // Still young: the next SYN gets a cookie, the entry stays.
    h.send(syn_from(41001, 1460));
    assert_ne!(h.one().seq, ISS);
    assert_eq!(h.layer.counters.get("tcp.syn_queue_evicted"), 0);
    // Its SYN,ACK times out unanswered (1 s initial RTO) and is resent:
    // the peer may have lost only its ACK, so the entry still stays.
    h.advance(Duration::from_millis(1100));
    let rtx = h.one();
    assert!(rtx.syn && rtx.dst_port == 41000);
    h.send(syn_from(41001, 1460));
    assert_ne!(h.one().seq, ISS, "a cookie again");
    assert_eq!(h.layer.counters.get("tcp.syn_queue_evicted"), 0);
    // The retransmission goes unanswered too (2 s): now it is stale.
    h.advance(Duration::from_millis(2100));
    let rtx = h.one();
    assert!(rtx.syn && rtx.dst_port == 41000);
    h.send(syn_from(41002, 1460));
    let synack = h.one();
    assert_eq!(synack.seq, ISS, "state again: the stale entry made room");
    assert_eq!(synack.dst_port, 41002);
    assert_eq!(h.layer.counters.get("tcp.syn_queue_evicted"), 1);
    assert_eq!(h.layer.active_connections(), 1);
    // The evicted peer's late ACK finds nothing (no cookie either).
    let mut late = Seg::peer(IRS + 1, Some(ISS + 1));
    late.src_port = 41000;
    h.send(late);
    assert!(h.one().rst);
    let mut ack = Seg::peer(IRS + 1, Some(ISS + 1));
    ack.src_port = 41002;
    h.send(ack);
    assert_eq!(h.layer.accept(l).unwrap().1.port(), 41002);
}

/// A connection made from a cookie with timestamps on, from the peer's
/// port 41001 (41000 fills the SYN queue), its handshake ACK sent at
/// TSval 110: (harness, listener, cookie, our SYN,ACK's TSval).
fn cookie_connection_with_timestamps() -> (Harness, TcpHandle, u32, u32) {
    let mut h = Harness::new(TcpConfig {
        syn_backlog: 1,
        seed: Some(1),
        ..TcpConfig::default()
    });
    let l = h.layer.listen(SocketAddrV4::new(LOCAL, LPORT), 8).unwrap();
    h.send(syn_from(41000, 1460).ts(100, 0));
    assert_eq!(h.one().seq, ISS);
    h.send(syn_from(41001, 1460).ts(100, 0));
    let synack = h.one();
    let cookie = synack.seq;
    let (tsval, _) = synack.ts.expect("timestamps");
    h.send(from_41001(IRS + 1, cookie + 1).ts(110, tsval));
    h.nothing();
    assert_eq!(h.layer.counters.get("tcp.syncookies_validated"), 1);
    (h, l, cookie, tsval)
}

fn from_41001(seq: u32, ack: u32) -> Seg {
    Seg {
        src_port: 41001,
        ..Seg::peer(seq, Some(ack))
    }
}

/// Echoes what the peer sent at TSval 120 on the cookie connection; the
/// echo segment.
fn echo_hello(h: &mut Harness, l: TcpHandle, cookie: u32, tsval: u32) -> (TcpHandle, Seg) {
    h.now += Duration::from_millis(5);
    h.send(
        from_41001(IRS + 1, cookie + 1)
            .ts(120, tsval)
            .data(b"hello"),
    );
    let (c, _) = h.layer.accept(l).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(h.layer.recv(c, &mut buf).unwrap(), 5);
    h.layer.send(c, &buf[..5]).unwrap();
    h.dispatch();
    let echo = h.one();
    assert_eq!(echo.payload, b"hello");
    (c, echo)
}

#[test]
fn cookie_connection_echoes_the_latest_timestamp() {
    let (mut h, l, cookie, tsval) = cookie_connection_with_timestamps();
    let (_, echo) = echo_hello(&mut h, l, cookie, tsval);
    // RFC 7323 4.3: the data segment covered Last.ACK.sent (the cookie
    // SYN,ACK acknowledged IRS + 1), so TS.Recent is its TSval, not the
    // handshake ACK's 110.
    assert_eq!(echo.ts.map(|(_, ecr)| ecr), Some(120));
}

#[test]
fn late_ack_after_a_cookie_connection_closed_opens_nothing() {
    let (mut h, l, cookie, tsval) = cookie_connection_with_timestamps();
    let (c, echo) = echo_hello(&mut h, l, cookie, tsval);
    let (echo_ts, _) = echo.ts.unwrap();
    // The peer acknowledges the echo and closes; we close after it.
    h.send(from_41001(IRS + 6, cookie + 6).ts(130, echo_ts).fin());
    h.nothing(); // the FIN's ACK waits for ours
    h.layer.close(c);
    h.dispatch();
    let fin = h.one();
    assert!(fin.fin && fin.seq == cookie + 6 && fin.ack == Some(IRS + 7));
    let (fin_ts, _) = fin.ts.unwrap();
    let last_ack = from_41001(IRS + 7, cookie + 7).ts(140, fin_ts);
    h.send(last_ack.clone());
    h.nothing();
    assert_eq!(h.layer.active_connections(), 1, "41000's half-open entry");
    // The same ACK again, late (say for a retransmitted FIN): SEQ and ACK
    // moved alike from the handshake's, yet it is no cookie: no second
    // connection for a peer that has none, the RST of a segment for LISTEN.
    h.now += Duration::from_millis(300);
    h.send(last_ack.ts(150, fin_ts));
    let rst = h.one();
    assert!(rst.rst && rst.seq == cookie + 7 && rst.dst_port == 41001);
    assert_eq!(h.layer.active_connections(), 1);
    assert_eq!(h.layer.counters.get("tcp.passive_open"), 2);
    assert_eq!(h.layer.counters.get("tcp.syncookies_validated"), 1);
    assert!(h.layer.accept(l).is_err());
}
