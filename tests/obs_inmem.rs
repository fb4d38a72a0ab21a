//! The observation API (`Net::sockets`, `Net::frame_tap`, counters)
//! between two stacks on an in-memory link. No root needed.

use std::io::{Read, Write};
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use tapstack::api::{Direction, Protocol, SocketInfo, TcpListener, TcpStream, UdpSocket};

mod inmem;
use inmem::{A, B, Pair};

const WAIT: Duration = Duration::from_secs(10);

/// Polls `f` until it returns Some, at most WAIT.
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t0.elapsed() < WAIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn find<'a>(all: &'a [SocketInfo], state: &str, local_port: u16) -> Option<&'a SocketInfo> {
    all.iter()
        .find(|s| s.state == state && s.local.port() == local_port)
}

#[test]
fn sockets_show_listener_connection_udp_and_time_wait() {
    let p = Pair::new();
    let listener = TcpListener::bind(&p.b, "0.0.0.0:7000").unwrap();
    let client = TcpStream::connect(&p.a, SocketAddrV4::new(B, 7000)).unwrap();
    let cport = client.local_addr().unwrap().port();
    // Not accepted yet: the listener's accept queue holds it.
    let l = wait_for("accept queue", || {
        let all = p.b.sockets();
        find(&all, "LISTEN", 7000)
            .filter(|l| l.listen.as_ref().unwrap().accept_queue == 1)
            .cloned()
    });
    assert_eq!(l.remote, None);
    assert_eq!(
        (l.recv_q, l.send_q),
        (1, l.listen.as_ref().unwrap().accept_queue_max)
    );
    let (mut server, _) = listener.accept().unwrap();
    let mut c = client;
    c.write_all(&[7u8; 3000]).unwrap();
    let mut buf = [0u8; 1000];
    server.read_exact(&mut buf).unwrap();
    // 2000 bytes wait unread on the server side.
    let s = wait_for("recv-q", || {
        let all = p.b.sockets();
        find(&all, "ESTABLISHED", 7000)
            .filter(|s| s.recv_q == 2000)
            .cloned()
    });
    assert_eq!(s.protocol, Protocol::Tcp);
    assert_eq!(s.local, SocketAddrV4::new(B, 7000));
    assert_eq!(s.remote, Some(SocketAddrV4::new(A, cport)));
    let t = s.tcp.as_ref().unwrap();
    assert_eq!(t.bytes_received, 3000);
    assert!(t.cwnd > 0 && t.mss > 0 && t.rto > Duration::ZERO, "{t:?}");
    assert!(t.timers.keepalive.is_none());
    // The last ACK may be delayed (RFC 5681 4.2).
    let cs = wait_for("all acked", || {
        let all = p.a.sockets();
        find(&all, "ESTABLISHED", cport)
            .filter(|s| s.tcp.as_ref().unwrap().bytes_acked == 3000)
            .cloned()
    });
    let ct = cs.tcp.as_ref().unwrap();
    assert_eq!((ct.bytes_sent, ct.bytes_acked), (3000, 3000));
    assert!(ct.srtt.is_some(), "{ct:?}");
    assert_eq!(ct.snd_una, ct.iss.wrapping_add(3001));
    let id = cs.id;
    // UDP: unconnected, with a queued datagram.
    let u = UdpSocket::bind(&p.b, "0.0.0.0:5353").unwrap();
    let ua = UdpSocket::bind(&p.a, "0.0.0.0:0").unwrap();
    ua.send_to(b"hello", SocketAddrV4::new(B, 5353)).unwrap();
    let us = wait_for("udp recv-q", || {
        let all = p.b.sockets();
        all.iter()
            .find(|s| s.protocol == Protocol::Udp && s.recv_q == 5)
            .cloned()
    });
    assert_eq!((us.state, us.local.port()), ("UNCONN", 5353));
    drop(u);
    // The client closes first: it ends in TIME-WAIT, with the same id.
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    server.read_to_end(&mut rest).unwrap();
    drop(server);
    let tw = wait_for("TIME-WAIT", || {
        let all = p.a.sockets();
        find(&all, "TIME-WAIT", cport).cloned()
    });
    assert_eq!(tw.id, id);
    assert!(tw.time_wait_left.unwrap() > Duration::ZERO);
    drop(c);
}

#[test]
fn frame_tap_sees_both_directions_and_counts_drops() {
    let p = Pair::new();
    let tap = p.b.frame_tap(1024);
    let small = p.b.frame_tap(1);
    let _l = TcpListener::bind(&p.b, "0.0.0.0:7001").unwrap();
    let _c = TcpStream::connect(&p.a, SocketAddrV4::new(B, 7001)).unwrap();
    // SYN in (flags byte 0x02), SYN+ACK out (0x12), ACK in.
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let f = tap.recv_timeout(WAIT).expect("a frame");
        let tcp = f.frame.len() >= 54 && f.frame[12..14] == [8, 0] && f.frame[23] == 6;
        if tcp {
            seen.push((f.dir, f.frame[47]));
        }
    }
    assert_eq!(
        seen,
        [
            (Direction::In, 0x02),
            (Direction::Out, 0x12),
            (Direction::In, 0x10)
        ]
    );
    assert!(small.dropped() >= 2, "{}", small.dropped());
    assert!(p.b.counters().get("tap.dropped") >= 2);
    drop(small);
    drop(tap);
    p.b.shutdown();
}
