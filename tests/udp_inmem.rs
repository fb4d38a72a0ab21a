//! UDP through the public API between two full stacks (each with its own
//! stack thread) joined by an in-memory Ethernet link. No root needed.

use std::collections::{BTreeSet, HashSet};
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Barrier, mpsc};
use std::time::{Duration, Instant};

use tapstack::api::bsd::{self, Domain, Errno, PollFd, SockOpt, Type};
use tapstack::api::{Events, Interest, Poll, Token, UdpSocket};
use tapstack::device::fault::FaultConfig;
use tapstack::runtime::link::LinkOptions;
use tapstack::stack::rng::Rng;

mod inmem;
use inmem::{A, B, Pair};

fn addr(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(ip, port))
}

/// A payload whose bytes depend on `tag` and position.
fn pattern(len: usize, tag: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    Rng::new(tag).fill(&mut v);
    v
}

const WAIT: Duration = Duration::from_secs(5);

#[test]
fn datagrams_of_every_size_arrive_byte_exact() {
    let p = Pair::new();
    let rx = UdpSocket::bind(&p.b, "0.0.0.0:5000").unwrap();
    rx.set_read_timeout(Some(WAIT)).unwrap();
    let tx = UdpSocket::bind(&p.a, "0.0.0.0:0").unwrap();
    let tx_port = tx.local_addr().unwrap().port();
    let mut buf = vec![0u8; 70_000];
    for (i, len) in [0usize, 1, 1472, 1473, 65_507].into_iter().enumerate() {
        let data = pattern(len, i as u64);
        assert_eq!(tx.send_to(&data, addr(B, 5000)).unwrap(), len);
        let (n, from) = rx.recv_from(&mut buf).unwrap();
        assert_eq!(n, len, "size {len}");
        assert!(buf[..n] == data[..], "payload of {len} bytes differs");
        assert_eq!(from, addr(A, tx_port));
    }
    // 1473 and 65,507 need fragments (1472 is the most one frame holds).
    assert_eq!(p.a.counters().get("ipv4.fragmented_tx"), 2);
    assert_eq!(p.b.counters().get("ipv4.reassembled"), 2);
    let e = tx.send_to(&vec![0u8; 65_508], addr(B, 5000)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
}

#[test]
fn closed_port_refuses_the_connected_sender() {
    let p = Pair::new();
    let s = UdpSocket::bind(&p.a, "0.0.0.0:0").unwrap();
    s.connect(addr(B, 4444)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.send(b"anyone?").unwrap();
    let e = s.recv(&mut [0u8; 16]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
    assert_eq!(p.b.counters().get("udp.no_socket"), 1);
    // The error is reported once.
    s.set_nonblocking(true).unwrap();
    let e = s.recv(&mut [0u8; 16]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WouldBlock);
}

#[test]
fn read_timeout_and_nonblocking_return_would_block() {
    let p = Pair::new();
    let s = UdpSocket::bind(&p.a, "0.0.0.0:0").unwrap();
    let timeout = Duration::from_millis(300);
    s.set_read_timeout(Some(timeout)).unwrap();
    let t = Instant::now();
    let e = s.recv_from(&mut [0u8; 8]).unwrap_err();
    let took = t.elapsed();
    assert_eq!(e.kind(), ErrorKind::WouldBlock);
    assert!(took >= timeout, "returned after {took:?}");
    assert!(took < timeout + Duration::from_secs(2), "took {took:?}");

    s.set_read_timeout(None).unwrap();
    s.set_nonblocking(true).unwrap();
    let t = Instant::now();
    let e = s.recv_from(&mut [0u8; 8]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WouldBlock);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
}

#[test]
fn second_bind_of_a_port_is_addr_in_use() {
    let p = Pair::new();
    let _first = UdpSocket::bind(&p.a, "0.0.0.0:6000").unwrap();
    let e = UdpSocket::bind(&p.a, "0.0.0.0:6000").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AddrInUse);
    let e = UdpSocket::bind(&p.a, "10.0.0.1:6000").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AddrInUse);
    // The other stack has its own ports.
    UdpSocket::bind(&p.b, "0.0.0.0:6000").unwrap();
}

#[test]
fn broadcast_needs_set_broadcast() {
    let p = Pair::new();
    let rx = UdpSocket::bind(&p.b, "0.0.0.0:6700").unwrap();
    rx.set_read_timeout(Some(WAIT)).unwrap();
    let s = UdpSocket::bind(&p.a, "0.0.0.0:0").unwrap();
    for dst in [Ipv4Addr::new(10, 0, 0, 255), Ipv4Addr::BROADCAST] {
        let e = s.send_to(b"hi all", addr(dst, 6700)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{dst}");
    }
    s.set_broadcast(true).unwrap();
    s.send_to(b"hi all", addr(Ipv4Addr::new(10, 0, 0, 255), 6700))
        .unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = rx.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hi all");
    assert_eq!(from.ip(), A);
}

#[test]
fn peek_then_recv_get_the_same_datagram() {
    let p = Pair::new();
    let rx = UdpSocket::bind(&p.b, "0.0.0.0:5100").unwrap();
    rx.set_read_timeout(Some(WAIT)).unwrap();
    let tx = UdpSocket::bind(&p.a, "0.0.0.0:0").unwrap();
    tx.send_to(b"first", addr(B, 5100)).unwrap();
    tx.send_to(b"second", addr(B, 5100)).unwrap();
    let mut buf = [0u8; 16];
    let (n1, f1) = rx.peek_from(&mut buf).unwrap();
    assert_eq!(&buf[..n1], b"first");
    let (n1b, _) = rx.peek_from(&mut buf).unwrap();
    assert_eq!(&buf[..n1b], b"first", "peek must not consume");
    let mut buf2 = [0u8; 16];
    let (n2, f2) = rx.recv_from(&mut buf2).unwrap();
    assert_eq!((&buf2[..n2], f2), (&b"first"[..], f1));
    let (n3, _) = rx.recv_from(&mut buf2).unwrap();
    assert_eq!(&buf2[..n3], b"second");
}

/// 64 threads each blocked in `recv` on its own socket; one datagram per
/// socket in random order. Each thread must get its own datagram (and only
/// it): a wrong wake-up would show as a foreign datagram or a thread
/// left waiting, a lost wake-up as a thread that misses the 10 s bound.
#[test]
fn exact_wakeups_for_64_blocked_receivers() {
    const N: usize = 64;
    let p = Pair::new();
    let start = Instant::now();
    let socks: Vec<UdpSocket> = (0..N)
        .map(|i| UdpSocket::bind(&p.b, ("0.0.0.0", 7000 + i as u16)).unwrap())
        .collect();
    let ready = Arc::new(Barrier::new(N + 1));
    let (done_tx, done_rx) = mpsc::channel();
    let mut handles = Vec::new();
    for (i, s) in socks.into_iter().enumerate() {
        let (ready, done) = (ready.clone(), done_tx.clone());
        handles.push(std::thread::spawn(move || {
            // Bounded even if a wake-up is lost, so the thread ends.
            s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
            ready.wait();
            let mut buf = [0u8; 64];
            let got = s.recv(&mut buf).map(|n| buf[..n].to_vec());
            // Nothing else is queued for this socket.
            s.set_nonblocking(true).unwrap();
            let extra = s.recv(&mut buf).map(|n| buf[..n].to_vec());
            let _ = done.send((i, got.map_err(|e| e.kind()), extra.err().map(|e| e.kind())));
        }));
    }
    drop(done_tx);
    ready.wait();
    // Let every thread reach its wait before anything arrives.
    std::thread::sleep(Duration::from_millis(200));
    let mut order: Vec<usize> = (0..N).collect();
    let mut rng = Rng::new(64);
    for i in (1..N).rev() {
        order.swap(i, rng.range(0, i as u64 + 1) as usize);
    }
    let tx = UdpSocket::bind(&p.a, "0.0.0.0:0").unwrap();
    for &i in &order {
        let msg = format!("for socket {i}");
        tx.send_to(msg.as_bytes(), addr(B, 7000 + i as u16))
            .unwrap();
    }
    let deadline = start + Duration::from_secs(10);
    let mut seen = BTreeSet::new();
    while seen.len() < N {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok((i, got, extra)) = done_rx.recv_timeout(left) else {
            let missing: Vec<usize> = (0..N).filter(|i| !seen.contains(i)).collect();
            panic!("lost wake-ups: threads {missing:?} still waiting after 10 s");
        };
        let expected = format!("for socket {i}").into_bytes();
        assert_eq!(got, Ok(expected), "thread {i}");
        assert_eq!(extra, Some(ErrorKind::WouldBlock), "thread {i}");
        assert!(seen.insert(i));
    }
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn poll_reports_exactly_the_sockets_with_data() {
    const N: usize = 1000;
    let p = Pair::new();
    let poll = Poll::new(&p.b);
    let socks: Vec<UdpSocket> = (0..N)
        .map(|i| UdpSocket::bind(&p.b, ("0.0.0.0", 20_000 + i as u16)).unwrap())
        .collect();
    for (i, s) in socks.iter().enumerate() {
        poll.register(s, Token(i), Interest::READABLE).unwrap();
    }
    let mut events = Events::with_capacity(N);
    assert_eq!(poll.poll(&mut events, Some(Duration::ZERO)).unwrap(), 0);

    let mut rng = Rng::new(1000);
    let mut chosen = BTreeSet::new();
    while chosen.len() < 10 {
        chosen.insert(rng.range(0, N as u64) as usize);
    }
    let tx = UdpSocket::bind(&p.a, "0.0.0.0:0").unwrap();
    for &i in &chosen {
        tx.send_to(&[i as u8], addr(B, 20_000 + i as u16)).unwrap();
    }
    let deadline = Instant::now() + WAIT;
    let mut got = BTreeSet::new();
    while got.len() < chosen.len() && Instant::now() < deadline {
        poll.poll(&mut events, Some(Duration::from_millis(500)))
            .unwrap();
        for e in &events {
            assert!(e.is_readable());
            assert!(chosen.contains(&e.token().0), "unexpected {:?}", e.token());
            got.insert(e.token().0);
        }
    }
    assert_eq!(got, chosen);
    // Level-triggered: still reported, and still only those.
    assert_eq!(poll.poll(&mut events, Some(Duration::ZERO)).unwrap(), 10);
    let again: BTreeSet<usize> = events.iter().map(|e| e.token().0).collect();
    assert_eq!(again, chosen);
    // Reading them empties the set.
    for &i in &chosen {
        let mut b = [0u8; 4];
        assert_eq!(socks[i].recv(&mut b).unwrap(), 1);
        assert_eq!(b[0], i as u8);
    }
    assert_eq!(poll.poll(&mut events, Some(Duration::ZERO)).unwrap(), 0);
}

/// The two classic flows written with the BSD facade.
#[test]
fn bsd_server_and_client_flow() {
    let p = Pair::new();
    let server_addr = SocketAddrV4::new(B, 7007);
    let sfd = bsd::socket(&p.b, Domain::Inet, Type::Dgram).unwrap();
    bsd::setsockopt(&p.b, sfd, SockOpt::RcvTimeo(Some(WAIT))).unwrap();
    // server: socket() -> bind() -> recvfrom() -> sendto()
    bsd::bind(&p.b, sfd, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 7007)).unwrap();
    let nb = p.b.clone();
    let server = std::thread::spawn(move || -> Result<SocketAddrV4, Errno> {
        let mut buf = [0u8; 1500];
        let (n, from) = bsd::recvfrom(&nb, sfd, &mut buf, 0)?;
        buf[..n].reverse();
        bsd::sendto(&nb, sfd, &buf[..n], 0, from)?;
        bsd::close(&nb, sfd)?;
        Ok(from)
    });
    // client: socket() -> connect() -> send() -> recvfrom() -> close()
    let cfd = bsd::socket(&p.a, Domain::Inet, Type::Dgram).unwrap();
    bsd::setsockopt(&p.a, cfd, SockOpt::RcvTimeo(Some(WAIT))).unwrap();
    bsd::connect(&p.a, cfd, server_addr).unwrap();
    assert_eq!(bsd::getpeername(&p.a, cfd), Ok(server_addr));
    let local = bsd::getsockname(&p.a, cfd).unwrap();
    assert_eq!(*local.ip(), A);
    assert_ne!(local.port(), 0);
    assert_eq!(bsd::send(&p.a, cfd, b"olleh", 0), Ok(5));
    let mut buf = [0u8; 64];
    let (n, from) = bsd::recvfrom(&p.a, cfd, &mut buf, 0).unwrap();
    assert_eq!(&buf[..n], b"hello");
    assert_eq!(from, server_addr);
    bsd::close(&p.a, cfd).unwrap();
    assert_eq!(server.join().unwrap(), Ok(local));
    assert_eq!(bsd::close(&p.a, cfd), Err(Errno::EBADF));
    assert_eq!(bsd::close(&p.b, sfd), Err(Errno::EBADF));
}

#[test]
fn bsd_errors_flags_and_poll() {
    let p = Pair::new();
    assert_eq!(
        bsd::socket(&p.a, Domain::Inet6, Type::Stream),
        Err(Errno::EAFNOSUPPORT)
    );
    assert_eq!(
        bsd::socket(&p.a, Domain::Inet6, Type::Dgram),
        Err(Errno::EAFNOSUPPORT)
    );
    let fd = bsd::socket(&p.a, Domain::Inet, Type::Dgram).unwrap();
    assert!(fd >= bsd::FIRST_FD);
    let mut buf = [0u8; 16];
    // Unbound and unconnected.
    assert_eq!(
        bsd::getsockname(&p.a, fd),
        Ok(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))
    );
    assert_eq!(bsd::getpeername(&p.a, fd), Err(Errno::ENOTCONN));
    assert_eq!(bsd::send(&p.a, fd, b"x", 0), Err(Errno::EDESTADDRREQ));
    assert_eq!(
        bsd::recv(&p.a, fd, &mut buf, bsd::MSG_DONTWAIT),
        Err(Errno::EAGAIN)
    );
    let mut pf = [bsd::PollFd::new(fd, bsd::POLLIN | bsd::POLLOUT)];
    assert_eq!(bsd::poll(&p.a, &mut pf, Some(Duration::ZERO)), Ok(1));
    assert_eq!(pf[0].revents, bsd::POLLOUT);

    // Lazy bind by the first sendto.
    let rx = bsd::socket(&p.b, Domain::Inet, Type::Dgram).unwrap();
    bsd::bind(&p.b, rx, SocketAddrV4::new(B, 7100)).unwrap();
    bsd::setsockopt(&p.b, rx, SockOpt::RcvTimeo(Some(WAIT))).unwrap();
    assert_eq!(
        bsd::bind(&p.b, rx, SocketAddrV4::new(B, 7101)),
        Err(Errno::EINVAL),
        "already bound"
    );
    let other = bsd::socket(&p.b, Domain::Inet, Type::Dgram).unwrap();
    assert_eq!(
        bsd::bind(&p.b, other, SocketAddrV4::new(B, 7100)),
        Err(Errno::EADDRINUSE)
    );
    assert_eq!(
        bsd::bind(&p.b, other, SocketAddrV4::new(A, 7100)),
        Err(Errno::EADDRNOTAVAIL)
    );
    let dst = SocketAddrV4::new(B, 7100);
    assert_eq!(
        bsd::sendto(&p.a, fd, &vec![0; 65_508], 0, dst),
        Err(Errno::EMSGSIZE)
    );
    assert_eq!(
        bsd::sendto(
            &p.a,
            fd,
            b"x",
            0,
            SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 255), 1)
        ),
        Err(Errno::EACCES)
    );
    assert_eq!(bsd::sendto(&p.a, fd, b"peekaboo", 0, dst), Ok(8));
    assert_ne!(bsd::getsockname(&p.a, fd).unwrap().port(), 0);

    // poll waits for the datagram; MSG_PEEK leaves it queued.
    let mut pf = [
        PollFd::new(rx, bsd::POLLIN),
        PollFd::new(other, bsd::POLLIN),
        PollFd::new(9999, bsd::POLLIN),
    ];
    let mut n = 0;
    let deadline = Instant::now() + WAIT;
    while pf[0].revents == 0 && Instant::now() < deadline {
        n = bsd::poll(&p.b, &mut pf, Some(Duration::from_millis(200))).unwrap();
    }
    assert_eq!(n, 2);
    assert_eq!(
        [pf[0].revents, pf[1].revents, pf[2].revents],
        [bsd::POLLIN, 0, bsd::POLLNVAL]
    );
    let (k, from) = bsd::recvfrom(&p.b, rx, &mut buf, bsd::MSG_PEEK).unwrap();
    let port = bsd::getsockname(&p.a, fd).unwrap().port();
    assert_eq!(
        (&buf[..k], from),
        (&b"peekaboo"[..], SocketAddrV4::new(A, port))
    );
    assert_eq!(bsd::recv(&p.b, rx, &mut buf[..4], 0), Ok(4), "truncated");
    assert_eq!(&buf[..4], b"peek");
    let t = Instant::now();
    assert_eq!(
        bsd::recv(&p.b, rx, &mut buf, bsd::MSG_DONTWAIT),
        Err(Errno::EAGAIN)
    );
    assert!(t.elapsed() < Duration::from_secs(1), "MSG_DONTWAIT waited");
    // Options set before binding survive the lazy bind.
    bsd::setsockopt(
        &p.b,
        other,
        SockOpt::RcvTimeo(Some(Duration::from_millis(100))),
    )
    .unwrap();
    bsd::bind(&p.b, other, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)).unwrap();
    let t = Instant::now();
    assert_eq!(bsd::recv(&p.b, other, &mut buf, 0), Err(Errno::EAGAIN));
    assert!(t.elapsed() >= Duration::from_millis(100));
    bsd::setsockopt(&p.b, other, SockOpt::NonBlocking(true)).unwrap();
    assert_eq!(bsd::recv(&p.b, other, &mut buf, 0), Err(Errno::EAGAIN));
    assert_eq!(
        bsd::recv(&p.b, other, &mut buf, 0x1),
        Err(Errno::EOPNOTSUPP)
    );

    // A closed port: the connected socket's next recv is refused.
    bsd::connect(&p.a, fd, SocketAddrV4::new(B, 1)).unwrap();
    bsd::setsockopt(&p.a, fd, SockOpt::RcvTimeo(Some(WAIT))).unwrap();
    bsd::send(&p.a, fd, b"knock", 0).unwrap();
    assert_eq!(bsd::recv(&p.a, fd, &mut buf, 0), Err(Errno::ECONNREFUSED));

    for (net, f) in [(&p.a, fd), (&p.b, rx), (&p.b, other)] {
        bsd::close(net, f).unwrap();
    }
}

/// A lossy, duplicating, reordering, corrupting link: whatever arrives is
/// exactly one of the datagrams that were sent, never a damaged or
/// partial one.
///
/// The seed matters for one reason: ARP carries no checksum, so a
/// corrupted ARP reply can poison the sender's cache with a wrong MAC and
/// stall the flow for the entry's lifetime (seed 1 does that: 2 datagrams
/// arrive, then every frame is `eth.not_for_us`). The ARP frames are the
/// first through each injector, so with a fixed seed their fate is fixed.
#[test]
fn lossy_link_never_delivers_a_damaged_datagram() {
    let fault = FaultConfig {
        loss: 0.2,
        dup: 0.1,
        reorder: 0.1,
        corrupt: 0.05,
        seed: 0x5eed,
    };
    let lossy = LinkOptions {
        fault,
        ..LinkOptions::default()
    };
    let p = Pair::with_links(LinkOptions::default(), lossy);
    let rx = UdpSocket::bind(&p.b, "0.0.0.0:8000").unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let tx = UdpSocket::bind(&p.a, "0.0.0.0:0").unwrap();
    let sizes = [1usize, 100, 1472, 1473, 3000, 9000];
    let mut sent = HashSet::new();
    let mut received = Vec::new();
    let mut buf = vec![0u8; 70_000];
    // Warm up until one datagram gets through, so that a lost or damaged
    // ARP exchange (ARP has no checksum) only delays the test.
    for round in 1000..1020u64 {
        let data = pattern(64, round);
        tx.send_to(&data, addr(B, 8000)).unwrap();
        sent.insert(data);
        if let Ok(n) = rx.recv(&mut buf) {
            received.push(buf[..n].to_vec());
            break;
        }
    }
    assert!(!received.is_empty(), "nothing got through the lossy link");
    for round in 0..300u64 {
        let data = pattern(sizes[round as usize % sizes.len()], round);
        tx.send_to(&data, addr(B, 8000)).unwrap();
        sent.insert(data);
        // Drain what has arrived so far, without waiting.
        while let Ok(n) = try_recv(&rx, &mut buf) {
            received.push(buf[..n].to_vec());
        }
        if round % 50 == 0 {
            // Give ARP retries a chance if the first exchange was lost.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    while let Ok(n) = rx.recv(&mut buf) {
        received.push(buf[..n].to_vec());
    }
    for (i, r) in received.iter().enumerate() {
        assert!(
            sent.contains(r),
            "datagram {i} ({} bytes) was never sent",
            r.len()
        );
    }
    let c = p.b.counters();
    assert!(
        received.len() >= 50,
        "only {} of ~300 arrived\n{c}",
        received.len()
    );
    let caught = c.get("ipv4.bad_checksum") + c.get("udp.bad_checksum");
    assert!(caught > 0, "no corruption was caught by checksums\n{c}");
}

/// One receive that does not wait.
fn try_recv(s: &UdpSocket, buf: &mut [u8]) -> std::io::Result<usize> {
    s.set_nonblocking(true)?;
    let r = s.recv(buf);
    s.set_nonblocking(false)?;
    r
}
