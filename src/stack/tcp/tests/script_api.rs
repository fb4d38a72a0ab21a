//! Socket calls that fail have no side effects, and data buffered before
//! a reset or a read shutdown stays readable (Linux's inet_shutdown and
//! tcp_recvmsg): the two fuzz findings of issue 13; and the third, the
//! TIME-WAIT ACK's window.

use std::io::ErrorKind;
use std::net::Shutdown;

use super::harness::*;
use crate::stack::tcp::TcpState;

/// Established, with `data` from the peer buffered unread.
fn with_unread(data: &[u8]) -> (Harness, crate::stack::tcp::TcpHandle) {
    let mut h = Harness::new(plain_config());
    let (_, c) = h.establish();
    h.send(Seg::peer(IRS + 1, Some(ISS + 1)).data(data));
    h.sent();
    (h, c)
}

fn recv(h: &mut Harness, c: crate::stack::tcp::TcpHandle) -> std::io::Result<Vec<u8>> {
    let mut buf = [0u8; 64];
    h.layer.recv(c, &mut buf).map(|n| buf[..n].to_vec())
}

#[test]
fn shutdown_both_after_reset_fails_and_keeps_the_unread_data() {
    let (mut h, c) = with_unread(b"unread");
    h.send(Seg::peer(IRS + 7, None).rst());
    assert_eq!(h.layer.state(c), TcpState::Closed);
    for how in [Shutdown::Both, Shutdown::Read, Shutdown::Write] {
        let e = h.layer.shutdown(c, how).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotConnected, "{how:?}");
    }
    assert_eq!(recv(&mut h, c).unwrap(), b"unread");
    assert_eq!(
        recv(&mut h, c).unwrap_err().kind(),
        ErrorKind::ConnectionReset
    );
}

#[test]
fn shutdown_read_in_time_wait_fails_and_keeps_the_unread_data() {
    let (mut h, c) = with_unread(b"last words");
    h.layer.shutdown(c, Shutdown::Write).unwrap();
    h.dispatch();
    assert!(h.one().fin);
    h.send(Seg::peer(IRS + 11, Some(ISS + 2)).fin());
    assert_eq!(h.layer.state(c), TcpState::TimeWait);
    let e = h.layer.shutdown(c, Shutdown::Read).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotConnected);
    assert_eq!(recv(&mut h, c).unwrap(), b"last words");
    assert_eq!(recv(&mut h, c).unwrap(), b"", "then EOF");
}

#[test]
fn shutdown_read_keeps_buffered_data_and_drops_later_data() {
    let (mut h, c) = with_unread(b"before");
    h.layer.shutdown(c, Shutdown::Read).unwrap();
    assert_eq!(h.layer.peek(c, &mut [0; 64]).unwrap(), 6);
    assert_eq!(recv(&mut h, c).unwrap(), b"before");
    assert_eq!(recv(&mut h, c).unwrap(), b"", "EOF once drained");
    // Later data is acknowledged (so the peer is not stuck) and dropped.
    h.send(Seg::peer(IRS + 7, Some(ISS + 1)).data(b"after"));
    h.advance(std::time::Duration::from_millis(100));
    let acks = h.sent();
    assert_eq!(acks.last().and_then(|s| s.ack), Some(IRS + 12), "{acks:?}");
    assert_eq!(recv(&mut h, c).unwrap(), b"");
}

#[test]
fn reset_after_shutdown_read_gives_data_then_the_error() {
    let (mut h, c) = with_unread(b"abc");
    h.layer.shutdown(c, Shutdown::Read).unwrap();
    h.send(Seg::peer(IRS + 4, None).rst());
    assert_eq!(recv(&mut h, c).unwrap(), b"abc");
    assert_eq!(
        recv(&mut h, c).unwrap_err().kind(),
        ErrorKind::ConnectionReset
    );
}

/// The window in TIME-WAIT ACKs is rounded up like the live path's, so
/// the right edge they announce never lies left of an earlier one (with
/// window scale 3 it moved left by up to 7 bytes).
#[test]
fn time_wait_ack_keeps_the_right_edge() {
    let mut h = Harness::new(crate::stack::tcp::TcpConfig {
        window_scaling: true,
        rx_buffer: 256 * 1024,
        ..plain_config()
    });
    let l = h
        .layer
        .listen(std::net::SocketAddrV4::new(LOCAL, LPORT), 8)
        .unwrap();
    let mut syn = Seg::peer(IRS, None).syn();
    syn.wscale = Some(7);
    h.send(syn);
    assert_eq!(h.one().wscale, Some(7));
    h.send(Seg::peer(IRS + 1, Some(ISS + 1)));
    let (c, _) = h.layer.accept(l).unwrap();
    let mut edges = Vec::new();
    let mut record = |segs: Vec<Seg>| {
        for s in segs {
            edges.push(s.ack.unwrap().wrapping_add(u32::from(s.window) << 7));
        }
    };
    h.send(Seg::peer(IRS + 1, Some(ISS + 1)).data(b"12345"));
    h.advance(std::time::Duration::from_millis(100));
    record(h.sent());
    h.layer.shutdown(c, Shutdown::Write).unwrap();
    h.dispatch();
    record(h.sent());
    h.send(Seg::peer(IRS + 6, Some(ISS + 2)).fin());
    assert_eq!(h.layer.state(c), TcpState::TimeWait);
    record(h.sent());
    // The peer's FIN again: the TIME-WAIT table answers.
    h.send(Seg::peer(IRS + 6, Some(ISS + 2)).fin());
    let tw_ack = h.one();
    assert_eq!(tw_ack.ack, Some(IRS + 7));
    record(vec![tw_ack]);
    assert!(edges.len() >= 4, "{edges:?}");
    for w in edges.windows(2) {
        assert!(
            w[1].wrapping_sub(w[0]) as i32 >= 0,
            "edge moved left: {edges:?}"
        );
    }
}
