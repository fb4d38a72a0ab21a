//! TCP through the BSD facade between two full stacks (each with its own
//! stack thread) joined by an in-memory Ethernet link, as in
//! tests/udp_inmem.rs. No root needed. Every blocking call runs under
//! SO_RCVTIMEO/SO_SNDTIMEO, so a failing test fails instead of hanging.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::thread;
use std::time::{Duration, Instant};

use tapstack::api::Net;
use tapstack::api::bsd::{self, Domain, Errno, Fd, PollFd, SockOpt, Type};
use tapstack::stack::rng::Rng;

mod inmem;
use inmem::{A, B, Pair};

const WAIT: Duration = Duration::from_secs(10);

fn any(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)
}

/// A stream descriptor whose every wait is bounded by WAIT.
fn stream(net: &Net) -> Fd {
    let fd = bsd::socket(net, Domain::Inet, Type::Stream).unwrap();
    bsd::setsockopt(net, fd, SockOpt::RcvTimeo(Some(WAIT))).unwrap();
    bsd::setsockopt(net, fd, SockOpt::SndTimeo(Some(WAIT))).unwrap();
    fd
}

/// A listener on `net`, port `port` of any address.
fn listener(net: &Net, port: u16) -> Fd {
    let fd = stream(net);
    bsd::bind(net, fd, any(port)).unwrap();
    bsd::listen(net, fd, 16).unwrap();
    fd
}

/// A connected pair: (client on a, accepted on b).
fn connected(p: &Pair, lfd: Fd, port: u16) -> (Fd, Fd) {
    let cfd = stream(&p.a);
    bsd::connect(&p.a, cfd, SocketAddrV4::new(B, port)).unwrap();
    let (afd, peer) = bsd::accept(&p.b, lfd).unwrap();
    assert_eq!(peer, bsd::getsockname(&p.a, cfd).unwrap());
    (cfd, afd)
}

/// FNV-1a, 64 bits: a digest to report alongside the full comparison.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Reads until end of stream (bounded: each recv waits at most WAIT, and
/// at most `limit` bytes are taken).
fn read_to_eof(net: &Net, fd: Fd, limit: usize) -> Result<Vec<u8>, Errno> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 3000];
    while got.len() <= limit {
        let n = bsd::recv(net, fd, &mut buf, 0)?;
        if n == 0 {
            return Ok(got);
        }
        got.extend_from_slice(&buf[..n]);
    }
    panic!("more than {limit} bytes before EOF");
}

/// Polls `fd` for `events` until some `revents` or WAIT passes.
fn poll_one(net: &Net, fd: Fd, events: i16) -> i16 {
    let mut pf = [PollFd::new(fd, events)];
    let n = bsd::poll(net, &mut pf, Some(WAIT)).unwrap();
    assert_eq!(n, usize::from(pf[0].revents != 0));
    pf[0].revents
}

/// An echo server and client written only with the facade: 1 MiB each
/// way, the client sending and receiving on two threads at once.
#[test]
fn echo_1mib_byte_exact() {
    const LEN: usize = 1 << 20;
    let p = Pair::new();
    let lfd = listener(&p.b, 7000);
    assert_eq!(bsd::getsockname(&p.b, lfd), Ok(any(7000)));
    let nb = p.b.clone();
    let server = thread::spawn(move || -> Result<(usize, SocketAddrV4), Errno> {
        let (cfd, peer) = bsd::accept(&nb, lfd)?;
        let mut buf = vec![0u8; 8192];
        let mut total = 0;
        loop {
            let n = bsd::recv(&nb, cfd, &mut buf, 0)?;
            if n == 0 {
                break;
            }
            // Blocking send queues everything, as on Linux.
            assert_eq!(bsd::send(&nb, cfd, &buf[..n], 0)?, n);
            total += n;
        }
        bsd::close(&nb, cfd)?;
        Ok((total, peer))
    });

    let cfd = stream(&p.a);
    bsd::connect(&p.a, cfd, SocketAddrV4::new(B, 7000)).unwrap();
    assert_eq!(bsd::getpeername(&p.a, cfd), Ok(SocketAddrV4::new(B, 7000)));
    let local = bsd::getsockname(&p.a, cfd).unwrap();
    assert_eq!(*local.ip(), A);
    assert_ne!(local.port(), 0);
    let mut data = vec![0u8; LEN];
    Rng::new(7).fill(&mut data);
    let sent = data.clone();
    let na = p.a.clone();
    let sender = thread::spawn(move || -> Result<(), Errno> {
        // An odd chunk size, so writes and segments never line up.
        for chunk in sent.chunks(10_007) {
            assert_eq!(bsd::send(&na, cfd, chunk, bsd::MSG_NOSIGNAL)?, chunk.len());
        }
        bsd::shutdown(&na, cfd, bsd::SHUT_WR)
    });
    let start = Instant::now();
    let got = read_to_eof(&p.a, cfd, LEN).unwrap();
    let secs = start.elapsed().as_secs_f64();
    sender.join().unwrap().unwrap();
    assert_eq!(got.len(), LEN);
    assert_eq!(fnv1a(&got), fnv1a(&data), "echo differs");
    assert!(got == data, "echo differs");
    eprintln!(
        "bsd echo: 1 MiB each way in {secs:.3} s, fnv1a {:016x}",
        fnv1a(&got)
    );
    assert_eq!(server.join().unwrap(), Ok((LEN, local)));
    bsd::close(&p.a, cfd).unwrap();
    bsd::close(&p.b, lfd).unwrap();
}

#[test]
fn errors_are_the_ones_linux_gives() {
    let p = Pair::new();
    let mut buf = [0u8; 16];
    // Never connected.
    let fd = stream(&p.a);
    assert_eq!(bsd::recv(&p.a, fd, &mut buf, 0), Err(Errno::ENOTCONN));
    assert_eq!(bsd::send(&p.a, fd, b"x", 0), Err(Errno::EPIPE));
    assert_eq!(bsd::shutdown(&p.a, fd, bsd::SHUT_WR), Err(Errno::ENOTCONN));
    assert_eq!(bsd::shutdown(&p.a, fd, 7), Err(Errno::EINVAL));
    assert_eq!(bsd::getpeername(&p.a, fd), Err(Errno::ENOTCONN));
    assert_eq!(bsd::getsockname(&p.a, fd), Ok(any(0)));
    assert_eq!(bsd::accept(&p.a, fd).map(|_| ()), Err(Errno::EINVAL));
    assert_eq!(
        bsd::recv(&p.a, fd, &mut buf, 0x1),
        Err(Errno::EOPNOTSUPP),
        "MSG_OOB"
    );

    // Nothing listens: refused, and the descriptor can try again.
    assert_eq!(
        bsd::connect(&p.a, fd, SocketAddrV4::new(B, 4444)),
        Err(Errno::ECONNREFUSED)
    );
    assert_eq!(bsd::getpeername(&p.a, fd), Err(Errno::ENOTCONN));

    // Ports: held from bind on, per stack.
    let l1 = stream(&p.b);
    bsd::bind(&p.b, l1, SocketAddrV4::new(B, 7001)).unwrap();
    assert_eq!(
        bsd::bind(&p.b, l1, any(7002)),
        Err(Errno::EINVAL),
        "bound twice"
    );
    let l2 = stream(&p.b);
    assert_eq!(bsd::bind(&p.b, l2, any(7001)), Err(Errno::EADDRINUSE));
    bsd::listen(&p.b, l1, 4).unwrap();
    bsd::listen(&p.b, l1, 8).unwrap(); // again: allowed
    assert_eq!(bsd::bind(&p.b, l2, any(7001)), Err(Errno::EADDRINUSE));
    assert_eq!(
        bsd::bind(&p.b, l2, SocketAddrV4::new(A, 7002)),
        Err(Errno::EADDRNOTAVAIL)
    );
    let elsewhere = stream(&p.a);
    bsd::bind(&p.a, elsewhere, any(7001)).unwrap();
    // listen() on an unbound socket binds an ephemeral port.
    let l3 = stream(&p.b);
    bsd::listen(&p.b, l3, 0).unwrap();
    assert_ne!(bsd::getsockname(&p.b, l3).unwrap().port(), 0);
    assert_eq!(bsd::getpeername(&p.b, l3), Err(Errno::ENOTCONN));
    assert_eq!(bsd::recv(&p.b, l3, &mut buf, 0), Err(Errno::ENOTCONN));
    assert_eq!(bsd::send(&p.b, l3, b"x", 0), Err(Errno::EPIPE));
    assert_eq!(
        bsd::connect(&p.b, l3, SocketAddrV4::new(B, 7001)),
        Err(Errno::EISCONN)
    );
    assert_eq!(
        bsd::shutdown(&p.b, l3, bsd::SHUT_WR),
        Ok(()),
        "no-op, as Linux"
    );

    // The refused descriptor connects now; connected, it cannot again.
    bsd::connect(&p.a, fd, SocketAddrV4::new(B, 7001)).unwrap();
    let (afd, peer) = bsd::accept(&p.b, l1).unwrap();
    assert_eq!(peer, bsd::getsockname(&p.a, fd).unwrap());
    assert_eq!(bsd::getpeername(&p.b, afd), Ok(peer));
    assert_eq!(bsd::getsockname(&p.b, afd), Ok(SocketAddrV4::new(B, 7001)));
    assert_eq!(
        bsd::connect(&p.a, fd, SocketAddrV4::new(B, 7001)),
        Err(Errno::EISCONN)
    );
    assert_eq!(bsd::listen(&p.a, fd, 1), Err(Errno::EINVAL));
    assert_eq!(bsd::bind(&p.a, fd, any(0)), Err(Errno::EINVAL));
    assert_eq!(bsd::accept(&p.a, fd).map(|_| ()), Err(Errno::EINVAL));

    // A listener's SHUT_RD stops it; the port stays bound and `listen`
    // reopens it.
    bsd::shutdown(&p.b, l1, bsd::SHUT_RD).unwrap();
    assert_eq!(bsd::accept(&p.b, l1).map(|_| ()), Err(Errno::EINVAL));
    let late = stream(&p.a);
    assert_eq!(
        bsd::connect(&p.a, late, SocketAddrV4::new(B, 7001)),
        Err(Errno::ECONNREFUSED)
    );
    assert_eq!(bsd::bind(&p.b, l2, any(7001)), Err(Errno::EADDRINUSE));
    bsd::listen(&p.b, l1, 4).unwrap();
    bsd::connect(&p.a, late, SocketAddrV4::new(B, 7001)).unwrap();

    // UDP-only calls on the other kind, and the reverse.
    let u = bsd::socket(&p.a, Domain::Inet, Type::Dgram).unwrap();
    assert_eq!(bsd::listen(&p.a, u, 1), Err(Errno::EOPNOTSUPP));
    assert_eq!(bsd::accept(&p.a, u).map(|_| ()), Err(Errno::EOPNOTSUPP));
    assert_eq!(bsd::shutdown(&p.a, u, bsd::SHUT_WR), Err(Errno::ENOTCONN));

    let (a, b) = (&p.a, &p.b);
    for (net, f) in [
        (a, fd),
        (b, afd),
        (b, l1),
        (b, l2),
        (b, l3),
        (a, elsewhere),
        (a, late),
        (a, u),
    ] {
        bsd::close(net, f).unwrap();
    }
    assert_eq!(bsd::close(&p.a, fd), Err(Errno::EBADF));
}

#[test]
fn shutdown_wr_gives_the_peer_eof() {
    let p = Pair::new();
    let lfd = listener(&p.b, 7010);
    let (cfd, afd) = connected(&p, lfd, 7010);
    assert_eq!(bsd::send(&p.a, cfd, b"last words", 0), Ok(10));
    bsd::shutdown(&p.a, cfd, bsd::SHUT_WR).unwrap();
    assert_eq!(read_to_eof(&p.b, afd, 100).unwrap(), b"last words");
    let mut buf = [0u8; 8];
    assert_eq!(bsd::recv(&p.b, afd, &mut buf, 0), Ok(0), "EOF stays EOF");
    assert_eq!(bsd::send(&p.a, cfd, b"x", 0), Err(Errno::EPIPE));
    // The other direction still flows.
    assert_eq!(bsd::send(&p.b, afd, b"reply", 0), Ok(5));
    bsd::shutdown(&p.b, afd, bsd::SHUT_WR).unwrap();
    assert_eq!(read_to_eof(&p.a, cfd, 100).unwrap(), b"reply");
    let r = poll_one(&p.a, cfd, bsd::POLLIN);
    assert_eq!(r & (bsd::POLLIN | bsd::POLLHUP), bsd::POLLIN | bsd::POLLHUP);
    for (net, f) in [(&p.a, cfd), (&p.b, afd), (&p.b, lfd)] {
        bsd::close(net, f).unwrap();
    }
}

#[test]
fn nonblocking_accept_recv_and_connect() {
    let p = Pair::new();
    let lfd = listener(&p.b, 7020);
    bsd::setsockopt(&p.b, lfd, SockOpt::NonBlocking(true)).unwrap();
    let t = Instant::now();
    assert_eq!(bsd::accept(&p.b, lfd).map(|_| ()), Err(Errno::EAGAIN));
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "non-blocking accept waited"
    );
    let mut pf = [PollFd::new(lfd, bsd::POLLIN)];
    assert_eq!(bsd::poll(&p.b, &mut pf, Some(Duration::ZERO)), Ok(0));

    // A descriptor that is neither connected nor listening: POLLOUT|POLLHUP.
    let cfd = stream(&p.a);
    let mut pf = [PollFd::new(cfd, bsd::POLLIN | bsd::POLLOUT)];
    assert_eq!(bsd::poll(&p.a, &mut pf, Some(Duration::ZERO)), Ok(1));
    assert_eq!(pf[0].revents, bsd::POLLOUT | bsd::POLLHUP);

    // Non-blocking connect: EINPROGRESS, POLLOUT once established, then 0
    // from connect, then EISCONN.
    bsd::setsockopt(&p.a, cfd, SockOpt::NonBlocking(true)).unwrap();
    let server = SocketAddrV4::new(B, 7020);
    assert_eq!(bsd::connect(&p.a, cfd, server), Err(Errno::EINPROGRESS));
    let again = bsd::connect(&p.a, cfd, server);
    assert!(matches!(again, Err(Errno::EALREADY) | Ok(())), "{again:?}");
    assert_ne!(poll_one(&p.a, cfd, bsd::POLLOUT) & bsd::POLLOUT, 0);
    if again.is_err() {
        assert_eq!(bsd::connect(&p.a, cfd, server), Ok(()));
    }
    assert_eq!(bsd::connect(&p.a, cfd, server), Err(Errno::EISCONN));

    assert_eq!(poll_one(&p.b, lfd, bsd::POLLIN), bsd::POLLIN);
    let (afd, _) = bsd::accept(&p.b, lfd).unwrap();
    // The accepted descriptor did not inherit O_NONBLOCK: it waits out
    // its (inherited, then shortened) SO_RCVTIMEO.
    bsd::setsockopt(
        &p.b,
        afd,
        SockOpt::RcvTimeo(Some(Duration::from_millis(100))),
    )
    .unwrap();
    let mut buf = [0u8; 16];
    let t = Instant::now();
    assert_eq!(bsd::recv(&p.b, afd, &mut buf, 0), Err(Errno::EAGAIN));
    assert!(t.elapsed() >= Duration::from_millis(100));
    assert_eq!(
        bsd::recv(&p.b, afd, &mut buf, bsd::MSG_DONTWAIT),
        Err(Errno::EAGAIN)
    );
    assert_eq!(bsd::recv(&p.a, cfd, &mut buf, 0), Err(Errno::EAGAIN));

    // MSG_PEEK leaves the data for the next recv.
    assert_eq!(bsd::send(&p.a, cfd, b"peek", 0), Ok(4));
    assert_eq!(poll_one(&p.b, afd, bsd::POLLIN), bsd::POLLIN);
    assert_eq!(bsd::recv(&p.b, afd, &mut buf, bsd::MSG_PEEK), Ok(4));
    assert_eq!(&buf[..4], b"peek");
    let (n, from) = bsd::recvfrom(&p.b, afd, &mut buf, 0).unwrap();
    assert_eq!(
        (&buf[..n], from),
        (&b"peek"[..], bsd::getsockname(&p.a, cfd).unwrap())
    );
    assert_eq!(
        bsd::recv(&p.b, afd, &mut buf, bsd::MSG_DONTWAIT),
        Err(Errno::EAGAIN)
    );

    // Refused without blocking: POLLERR, then connect reports it.
    let x = stream(&p.a);
    bsd::setsockopt(&p.a, x, SockOpt::NonBlocking(true)).unwrap();
    let closed = SocketAddrV4::new(B, 4445);
    assert_eq!(bsd::connect(&p.a, x, closed), Err(Errno::EINPROGRESS));
    assert_ne!(poll_one(&p.a, x, bsd::POLLOUT) & bsd::POLLERR, 0);
    assert_eq!(bsd::connect(&p.a, x, closed), Err(Errno::ECONNREFUSED));

    for (net, f) in [(&p.a, cfd), (&p.b, afd), (&p.b, lfd), (&p.a, x)] {
        bsd::close(net, f).unwrap();
    }
}

#[test]
fn socket_options() {
    let p = Pair::new();
    let u = bsd::socket(&p.a, Domain::Inet, Type::Dgram).unwrap();
    assert_eq!(
        bsd::setsockopt(&p.a, u, SockOpt::NoDelay(true)),
        Err(Errno::ENOPROTOOPT)
    );
    assert_eq!(
        bsd::setsockopt(&p.a, u, SockOpt::Linger(Some(Duration::ZERO))),
        Ok(())
    );

    let lfd = listener(&p.b, 7030);
    let fd = stream(&p.a);
    for (opt, want) in [
        (
            SockOpt::Linger(Some(Duration::from_secs(1))),
            Err(Errno::EOPNOTSUPP),
        ),
        (SockOpt::KeepCnt(0), Err(Errno::EINVAL)),
        (SockOpt::KeepIdle(Duration::ZERO), Err(Errno::EINVAL)),
        (
            SockOpt::KeepIntvl(Duration::from_secs(40_000)),
            Err(Errno::EINVAL),
        ),
        (SockOpt::KeepIdle(Duration::from_secs(60)), Ok(())),
        (SockOpt::KeepAlive(true), Ok(())),
        (SockOpt::NoDelay(true), Ok(())),
        (SockOpt::Broadcast(true), Ok(())),
    ] {
        assert_eq!(bsd::setsockopt(&p.a, fd, opt), want, "{opt:?}");
    }
    // Set before connecting, applied on connect: SO_LINGER {on, 0} makes
    // close() reset the connection.
    bsd::setsockopt(&p.a, fd, SockOpt::Linger(Some(Duration::ZERO))).unwrap();
    bsd::connect(&p.a, fd, SocketAddrV4::new(B, 7030)).unwrap();
    let (afd, _) = bsd::accept(&p.b, lfd).unwrap();
    assert_eq!(bsd::send(&p.a, fd, b"hi", 0), Ok(2));
    let mut buf = [0u8; 4];
    assert_eq!(bsd::recv(&p.b, afd, &mut buf, 0), Ok(2));
    bsd::close(&p.a, fd).unwrap();
    assert_eq!(bsd::recv(&p.b, afd, &mut buf, 0), Err(Errno::ECONNRESET));
    assert_eq!(bsd::getpeername(&p.b, afd), Err(Errno::ENOTCONN));
    for (net, f) in [(&p.b, afd), (&p.b, lfd), (&p.a, u)] {
        bsd::close(net, f).unwrap();
    }
}

#[test]
fn bad_descriptors_are_ebadf() {
    let p = Pair::new();
    let net = &p.a;
    let mut buf = [0u8; 4];
    assert_eq!(bsd::close(net, -1), Err(Errno::EBADF));
    assert_eq!(bsd::recv(net, 1, &mut buf, 0), Err(Errno::EBADF));
    assert_eq!(bsd::bind(net, 2, any(0)), Err(Errno::EBADF));
    assert_eq!(bsd::listen(net, 2, 1), Err(Errno::EBADF));
    assert_eq!(bsd::accept(net, 2).map(|_| ()), Err(Errno::EBADF));
    assert_eq!(bsd::shutdown(net, 2, bsd::SHUT_WR), Err(Errno::EBADF));
    assert_eq!(bsd::getsockname(net, i32::MAX), Err(Errno::EBADF));
    let mut pf = [PollFd::new(-5, bsd::POLLIN)];
    assert_eq!(bsd::poll(net, &mut pf, Some(Duration::ZERO)), Ok(1));
    assert_eq!(pf[0].revents, bsd::POLLNVAL);
}

/// Each `Net` has its own descriptor table, as each process has: both
/// stacks hand out 3 first, and closing one stack's 3 leaves the other's
/// open (with one process-wide table, tests running in parallel saw each
/// other's descriptors).
#[test]
fn each_net_has_its_own_descriptors() {
    let p = Pair::new();
    let fa = bsd::socket(&p.a, Domain::Inet, Type::Dgram).unwrap();
    let fb = bsd::socket(&p.b, Domain::Inet, Type::Stream).unwrap();
    assert_eq!((fa, fb), (bsd::FIRST_FD, bsd::FIRST_FD));
    bsd::bind(&p.b, fb, any(7040)).unwrap();
    bsd::close(&p.a, fa).unwrap();
    assert_eq!(bsd::close(&p.a, fa), Err(Errno::EBADF));
    assert_eq!(bsd::getsockname(&p.b, fb), Ok(any(7040)));
    // A clone of a `Net` shares its table.
    let b2 = p.b.clone();
    assert_eq!(bsd::getsockname(&b2, fb), Ok(any(7040)));
    bsd::close(&b2, fb).unwrap();
    assert_eq!(bsd::close(&p.b, fb), Err(Errno::EBADF));
}
