//! The runtime's hand-off between application threads and the stack thread
//! (deadlines, leader/follower), over in-memory links. No root.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown};
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::{Duration, Instant};

mod inmem;

use smoltcp::wire::{ArpOperation, ArpPacket, ArpRepr, EthernetFrame, EthernetProtocol};
use tapstack::api::{Events, Interest, Net, Poll, TcpListener, TcpStream, Token, UdpSocket};
use tapstack::device::Device;
use tapstack::device::fault::{FaultConfig, REORDER_HOLD};
use tapstack::device::pair::{self, PairDevice};
use tapstack::device::{RxCsum, RxKind, RxMeta};
use tapstack::runtime::link::LinkOptions;

/// Waits up to `within` for an ARP request for `target` at the far end of
/// the link (skipping the stack's own announcement).
fn arp_request_for(far: &dyn Device, target: Ipv4Addr, within: Duration) -> Option<Instant> {
    let mut buf = vec![0u8; 2048];
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        match far.recv(&mut buf) {
            Ok(n) => {
                let Ok(eth) = EthernetFrame::new_checked(&buf[..n]) else {
                    continue;
                };
                if eth.ethertype() != EthernetProtocol::Arp {
                    continue;
                }
                if let Ok(ArpRepr::EthernetIpv4 {
                    operation: ArpOperation::Request,
                    target_protocol_addr,
                    ..
                }) = ArpPacket::new_checked(eth.payload()).and_then(|p| ArpRepr::parse(&p))
                    && target_protocol_addr == target
                {
                    return Some(Instant::now());
                }
            }
            // Bounded by the deadline; the nap keeps the loop from spinning.
            Err(_) => std::thread::sleep(Duration::from_micros(200)),
        }
    }
    None
}

/// An application thread's send makes a frame that the link's fault
/// injector holds for REORDER_HOLD (2 ms): a new deadline, earlier than the
/// one the sleeping stack thread computed (its next timer is ~1 s away).
/// Application threads wake the stack thread only when they move its
/// deadline earlier; if that check were wrong, the frame would wait for the
/// stack thread's own timer.
#[test]
fn a_deadline_set_by_an_application_thread_wakes_the_stack_thread() {
    let (near, far) = pair::link().expect("socketpair");
    let cfg = inmem::config(inmem::A, 1);
    let link = LinkOptions {
        fault: FaultConfig {
            reorder: 1.0,
            seed: 1,
            ..FaultConfig::default()
        },
        ..LinkOptions::default()
    };
    let net = Net::start(Arc::new(near), cfg, &link).expect("start");
    let sock = UdpSocket::bind(&net, "0.0.0.0:0").unwrap();
    // The start-up announcement is itself held 2 ms; once it is out, the
    // injector holds nothing and the stack thread's next deadline is far.
    arp_request_for(&far, Ipv4Addr::new(10, 0, 0, 1), Duration::from_secs(3))
        .expect("no ARP announcement");
    let asleep_by = Instant::now() + Duration::from_secs(3);
    while !net.stack_thread_sleeping() {
        assert!(
            Instant::now() < asleep_by,
            "the stack thread never went to sleep"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let sent = Instant::now();
    // No neighbour answers: the datagram waits for ARP, whose request is
    // the frame held by the injector.
    let target = Ipv4Addr::new(10, 0, 0, 9);
    sock.send_to(b"x", (target, 9)).unwrap();
    let arrived = arp_request_for(&far, target, Duration::from_secs(3));
    net.shutdown();
    let took = arrived.expect("no ARP request within 3 s") - sent;
    assert!(
        took < Duration::from_millis(300),
        "the held frame left after {took:?}, not about {REORDER_HOLD:?}"
    );
}

// ---- leader/follower (src/runtime/lead.rs) ----------------------------

const LEADER: &str = "runtime.frames_read_by_leader";
const STACK_THREAD: &str = "runtime.frames_read_by_stack_thread";

fn counter(net: &Net, name: &str) -> u64 {
    net.counters().get(name)
}

/// Polls `cond` every millisecond until it holds, failing with `what`
/// after `within`.
fn wait_until(what: &str, within: Duration, cond: impl Fn() -> bool) {
    let until = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < until, "{what} (after {within:?})");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A connection from a to b on `port`: (client end, server end).
fn connected(pair: &inmem::Pair, port: u16) -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind(&pair.b, ("0.0.0.0", port)).unwrap();
    let client = TcpStream::connect(&pair.a, (inmem::B, port)).unwrap();
    let (server, _) = listener.accept().unwrap();
    for s in [&client, &server] {
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    }
    (client, server)
}

/// Reads `n` bytes on a new thread; the result arrives on the channel.
fn read_on_thread(s: &TcpStream, n: usize) -> mpsc::Receiver<std::io::Result<Vec<u8>>> {
    let s = s.try_clone().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; n];
        let _ = tx.send((&s).read_exact(&mut buf).map(|()| buf));
    });
    rx
}

fn result(rx: &mpsc::Receiver<std::io::Result<Vec<u8>>>) -> std::io::Result<Vec<u8>> {
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the blocked call never returned")
}

/// A blocked read leads: the request's frame is read and processed by
/// the reader's own thread, not handed over by the stack thread.
#[test]
fn a_blocked_reader_reads_the_device_itself() {
    let pair = inmem::Pair::new();
    let (client, server) = connected(&pair, 7001);
    for round in 0..10u8 {
        let got = read_on_thread(&server, 3);
        wait_until(
            "the blocked reader never led",
            Duration::from_secs(5),
            || pair.b.application_thread_leads(),
        );
        let (stack, leader) = (counter(&pair.b, STACK_THREAD), counter(&pair.b, LEADER));
        (&client).write_all(&[round; 3]).unwrap();
        assert_eq!(result(&got).expect("read"), vec![round; 3]);
        assert!(
            counter(&pair.b, LEADER) > leader,
            "the reader did not read the frame"
        );
        assert_eq!(
            counter(&pair.b, STACK_THREAD),
            stack,
            "the stack thread read a frame while a reader led"
        );
    }
}

/// Two calls blocked at once on different sockets, one a read and one a
/// `Poll::poll`: whichever leads, each is woken for its own socket's data,
/// in either order of arrival (the leader wakes the follower, or hands
/// the device on to it).
#[test]
fn two_blocked_calls_on_different_sockets_are_both_woken() {
    let pair = inmem::Pair::new();
    let (c1, s1) = connected(&pair, 7002);
    let (c2, s2) = connected(&pair, 7003);
    let poll = Arc::new(Poll::new(&pair.b));
    // No timeouts on the blocked calls: a call that times out re-checks
    // its socket and would hide a missing wake-up. The channels bound
    // the wait.
    s1.set_read_timeout(None).unwrap();
    s2.set_nonblocking(true).unwrap();
    poll.register(&s2, Token(2), Interest::READABLE).unwrap();
    let leader_before = counter(&pair.b, LEADER);
    for round in 0..20u8 {
        let got1 = read_on_thread(&s1, 1);
        let (tx, got2) = mpsc::channel();
        let p = poll.clone();
        std::thread::spawn(move || {
            let mut events = Events::with_capacity(4);
            let r = p.poll(&mut events, None);
            let _ = tx.send(r.map(|_| events.iter().map(|e| e.token()).collect::<Vec<_>>()));
        });
        wait_until(
            "not one leader and one follower",
            Duration::from_secs(5),
            || pair.b.application_thread_leads() && pair.b.followers() == 1,
        );
        // One socket at a time, the second written only once the first
        // call returned: when the follower's data comes first, the
        // leader alone can wake it.
        let check_read = || assert_eq!(result(&got1).expect("read"), vec![round]);
        let check_poll = || {
            let tokens = got2
                .recv_timeout(Duration::from_secs(10))
                .expect("the blocked poll never returned");
            assert_eq!(tokens.expect("poll"), vec![Token(2)]);
        };
        if round % 2 == 0 {
            (&c1).write_all(&[round]).unwrap();
            check_read();
            (&c2).write_all(&[round]).unwrap();
            check_poll();
        } else {
            (&c2).write_all(&[round]).unwrap();
            check_poll();
            (&c1).write_all(&[round]).unwrap();
            check_read();
        }
        // Readable, as the poll said.
        let mut b = [0u8; 1];
        assert_eq!((&s2).read(&mut b).expect("read after poll"), 1);
        assert_eq!(b, [round]);
    }
    assert!(counter(&pair.b, LEADER) > leader_before, "nobody led");
}

/// The leader's socket becomes ready: it returns, and the follower takes
/// the device over and reads the next frame itself.
#[test]
fn the_device_is_handed_on_when_the_leader_returns() {
    let pair = inmem::Pair::new();
    let (c1, s1) = connected(&pair, 7004);
    let (c2, s2) = connected(&pair, 7005);
    for round in 0..5u8 {
        let got1 = read_on_thread(&s1, 1);
        wait_until("the first reader never led", Duration::from_secs(5), || {
            pair.b.application_thread_leads()
        });
        let got2 = read_on_thread(&s2, 1);
        wait_until(
            "the second reader never followed",
            Duration::from_secs(5),
            || pair.b.followers() == 1,
        );
        (&c1).write_all(&[round]).unwrap();
        assert_eq!(result(&got1).expect("read 1"), vec![round]);
        wait_until(
            "the follower never took the device over",
            Duration::from_secs(5),
            || pair.b.application_thread_leads() && pair.b.followers() == 0,
        );
        let stack = counter(&pair.b, STACK_THREAD);
        (&c2).write_all(&[round]).unwrap();
        assert_eq!(result(&got2).expect("read 2"), vec![round]);
        assert_eq!(
            counter(&pair.b, STACK_THREAD),
            stack,
            "the new leader did not read"
        );
    }
}

/// With no application thread blocked (the last one led, returned and
/// left the device leased), timers still fire: keepalive probes to a
/// peer that went silent run out and end the connection.
#[test]
fn timers_fire_when_no_application_thread_is_blocked() {
    let pair = inmem::Pair::new();
    let (client, server) = connected(&pair, 7006);
    let got = read_on_thread(&client, 1);
    wait_until("the reader never led", Duration::from_secs(5), || {
        pair.a.application_thread_leads()
    });
    (&server).write_all(b"x").unwrap();
    assert_eq!(result(&got).expect("read"), b"x");
    pair.b.shutdown(); // the peer goes silent
    let probe = Duration::from_millis(50);
    client.set_keepalive(Some((probe, probe, 2))).unwrap();
    wait_until("keepalive never gave up", Duration::from_secs(5), || {
        counter(&pair.a, "tcp.keepalive_timeout") == 1
    });
    assert!(counter(&pair.a, "tcp.keepalive_probe") >= 2);
    assert!(!pair.a.application_thread_leads());
}

/// Shutting the stack down releases a call that leads (it sleeps in
/// epoll, not on a condition).
#[test]
fn shutdown_releases_a_leading_call() {
    let pair = inmem::Pair::new();
    let (_client, server) = connected(&pair, 7007);
    server.set_read_timeout(None).unwrap();
    let got = read_on_thread(&server, 1);
    wait_until("the reader never led", Duration::from_secs(5), || {
        pair.b.application_thread_leads()
    });
    pair.b.shutdown();
    let err = result(&got).expect_err("read after shutdown");
    assert_eq!(err.kind(), std::io::ErrorKind::NotConnected);
}

/// A leader sleeps in epoll, not on its socket's condition: when the
/// stack thread's timer (keepalive giving up on a silent peer) ends its
/// connection, it must be kicked awake.
#[test]
fn a_leader_is_woken_when_a_timer_ends_its_connection() {
    let pair = inmem::Pair::new();
    let (client, _server) = connected(&pair, 7008);
    client.set_read_timeout(None).unwrap();
    pair.b.shutdown(); // the peer goes silent
    // Long enough for the reader to be leading when keepalive gives up.
    let probe = Duration::from_millis(200);
    client.set_keepalive(Some((probe, probe, 2))).unwrap();
    let got = read_on_thread(&client, 1);
    wait_until("the reader never led", Duration::from_secs(5), || {
        pair.a.application_thread_leads() || counter(&pair.a, "tcp.keepalive_timeout") > 0
    });
    let err = result(&got).expect_err("read on a connection keepalive ended");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
}

/// A pair end that counts the frames it sends and, while armed, holds
/// every read (the leader's) until released: a test's way to have frames
/// queued behind the one that wakes the leader.
struct GatedEnd {
    inner: PairDevice,
    sent: AtomicUsize,
    /// Reads that found the gate armed.
    held: AtomicUsize,
    armed: Mutex<bool>,
    released: Condvar,
}

impl GatedEnd {
    fn new(inner: PairDevice) -> GatedEnd {
        GatedEnd {
            inner,
            sent: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            armed: Mutex::new(false),
            released: Condvar::new(),
        }
    }

    fn set_armed(&self, on: bool) {
        *self.armed.lock().unwrap() = on;
        self.released.notify_all();
    }
}

impl Device for GatedEnd {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let armed = self.armed.lock().unwrap();
        if *armed {
            self.held.fetch_add(1, Ordering::SeqCst);
        }
        // Bounded: a test that never releases fails on its own bound.
        let _held = self
            .released
            .wait_timeout_while(armed, Duration::from_secs(10), |on| *on)
            .unwrap();
        self.inner.recv(buf)
    }

    fn send(&self, frame: &[u8]) -> io::Result<usize> {
        self.sent.fetch_add(1, Ordering::SeqCst);
        self.inner.send(frame)
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.inner.fd()
    }

    fn name(&self) -> &str {
        self.inner.name()
    }
}

/// A call that blocks while the stack thread reads the device waits as a
/// follower; when that read is done the stack thread hands it the device
/// (as a returning leader does), rather than leave it waiting for its
/// socket's news with nobody asleep on the device. (Under load this race
/// was common enough to fail the tests that wait for a reader to lead.)
#[test]
fn a_call_blocked_during_the_stack_threads_read_leads_after_it() {
    let (da, db) = pair::link().expect("socketpair");
    let b_end = Arc::new(GatedEnd::new(db));
    let pair = inmem::Pair::on(Arc::new(da), b_end.clone());
    let (c1, s1) = connected(&pair, 7012);
    let (c2, _s2) = connected(&pair, 7013);
    s1.set_read_timeout(None).unwrap();
    b_end.set_armed(true);
    (&c2).write_all(b"x").unwrap();
    // Nobody is blocked on b: the stack thread reads the frame (once any
    // lease has run out) and is held at the gate.
    wait_until(
        "the stack thread never read",
        Duration::from_secs(5),
        || b_end.held.load(Ordering::SeqCst) > 0,
    );
    let reader = read_on_thread(&s1, 1);
    wait_until("the reader never waited", Duration::from_secs(5), || {
        pair.b.followers() > 0
    });
    b_end.set_armed(false);
    wait_until("the follower never led", Duration::from_secs(5), || {
        pair.b.application_thread_leads()
    });
    (&c1).write_all(b"y").unwrap();
    assert_eq!(result(&reader).expect("read"), b"y");
}

/// A FIN alone does not stop the leader reading (`stops_reading` in
/// src/runtime/mod.rs): a frame queued behind it, for another socket, is
/// read and processed by the leader before its read returns end of
/// stream. (Connections/s: the next connection's SYN, behind the last
/// one's FIN, is answered before the application closes.)
#[test]
fn a_fin_does_not_stop_the_leader_reading_the_frames_behind_it() {
    let (da, db) = pair::link().expect("socketpair");
    let (a_end, b_end) = (Arc::new(GatedEnd::new(da)), Arc::new(GatedEnd::new(db)));
    let pair = inmem::Pair::on(a_end.clone(), b_end.clone());
    for round in 0..3u16 {
        let (c1, s1) = connected(&pair, 7100 + 2 * round);
        let (c2, s2) = connected(&pair, 7101 + 2 * round);
        s1.set_read_timeout(None).unwrap();
        let (tx, eof) = mpsc::channel();
        let reader = s1.try_clone().unwrap();
        std::thread::spawn(move || {
            let _ = tx.send((&reader).read(&mut [0u8; 4]));
        });
        wait_until("the reader never led", Duration::from_secs(5), || {
            pair.b.application_thread_leads()
        });
        let (leader, stack) = (counter(&pair.b, LEADER), counter(&pair.b, STACK_THREAD));
        b_end.set_armed(true);
        let sent = a_end.sent.load(Ordering::SeqCst);
        c1.shutdown(Shutdown::Write).unwrap();
        (&c2).write_all(&[round as u8]).unwrap();
        // Both frames are in the link before the leader reads the first.
        wait_until(
            "the FIN and the data were not sent",
            Duration::from_secs(5),
            || a_end.sent.load(Ordering::SeqCst) >= sent + 2,
        );
        b_end.set_armed(false);
        let got = eof
            .recv_timeout(Duration::from_secs(10))
            .expect("the read never returned");
        assert_eq!(got.expect("read"), 0, "end of stream");
        assert!(
            counter(&pair.b, LEADER) >= leader + 2,
            "the leader stopped at the FIN: {} frames read by it, {} by the stack thread",
            counter(&pair.b, LEADER) - leader,
            counter(&pair.b, STACK_THREAD) - stack
        );
        assert_eq!(counter(&pair.b, STACK_THREAD), stack);
        s2.set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        assert_eq!((&s2).read(&mut b).expect("the data is there already"), 1);
        assert_eq!(b, [round as u8]);
    }
}

/// What a TAP with offloads says of an `n`-byte frame: over 1000 bytes,
/// a TSO super-frame (`RxKind::Gso`).
fn offload_meta(n: usize) -> RxMeta {
    let kind = if n > 1000 { RxKind::Gso } else { RxKind::Plain };
    RxMeta {
        kind,
        csum: RxCsum::Unknown,
    }
}

/// End b of the link as a TAP with offloads looks to the runtime
/// (`offload_meta`).
struct SuperFrames(pair::PairDevice);

impl Device for SuperFrames {
    fn recv(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.recv(buf)
    }

    fn recv_frame(&self, buf: &mut [u8]) -> std::io::Result<(usize, RxMeta)> {
        let n = self.0.recv(buf)?;
        Ok((n, offload_meta(n)))
    }

    fn send(&self, frame: &[u8]) -> std::io::Result<usize> {
        self.0.send(frame)
    }

    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.fd()
    }

    fn name(&self) -> &str {
        self.0.name()
    }
}

/// A leader whose first frame is a super-frame (a bulk sender's) reads
/// the frames queued behind it in the same pass, before its call
/// returns: one pass for them, not a wake-up each. Without
/// that, a blocked read returns the first frame's bytes alone. Three
/// segments are sent back to back while the reader leads; the leader's
/// wake-up takes longer than the three sends, but not always on a loaded
/// machine, so one round in 20 suffices.
#[test]
fn a_leader_takes_the_frames_queued_behind_a_super_frame_in_one_pass() {
    let (da, db) = pair::link().expect("socketpair");
    let pair = inmem::Pair::on(Arc::new(da), Arc::new(SuperFrames(db)));
    let (client, server) = connected(&pair, 7009);
    let mut most = 0;
    for round in 0..20u8 {
        let s = server.try_clone().unwrap();
        let (tx, got) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 8192];
            let _ = tx.send((&s).read(&mut buf).map(|n| buf[..n].to_vec()));
        });
        wait_until("the reader never led", Duration::from_secs(5), || {
            pair.b.application_thread_leads()
        });
        let data = vec![round; 3000];
        (&client).write_all(&data).unwrap();
        let mut first = result(&got).expect("read");
        most = most.max(first.len());
        let mut rest = vec![0u8; data.len() - first.len()];
        (&server).read_exact(&mut rest).unwrap();
        first.extend(rest);
        assert_eq!(first, data, "round {round}: bytes differ");
        if most > 1500 {
            return;
        }
    }
    panic!("no read returned more than one segment ({most} bytes at most)");
}

/// A gated end b (see `GatedEnd`) that reads as a TAP with offloads
/// (`SuperFrames`) and journals, in order, its reads of super-frames
/// (`R`) and its sends (`S`).
struct JournalEnd {
    gate: GatedEnd,
    journal: Mutex<Vec<u8>>,
}

impl Device for JournalEnd {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_frame(buf).map(|(n, _)| n)
    }

    fn recv_frame(&self, buf: &mut [u8]) -> io::Result<(usize, RxMeta)> {
        let n = self.gate.recv(buf)?;
        let meta = offload_meta(n);
        if meta.kind == RxKind::Gso {
            self.journal.lock().unwrap().push(b'R');
        }
        Ok((n, meta))
    }

    fn send(&self, frame: &[u8]) -> io::Result<usize> {
        self.journal.lock().unwrap().push(b'S');
        self.gate.send(frame)
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.gate.fd()
    }

    fn name(&self) -> &str {
        self.gate.name()
    }
}

/// In a pass over a bulk sender's super-frames, the leader ACKs each
/// before it reads the next (as Linux ACKs each GRO packet), not once
/// for the pass: the sender's clock runs on those ACKs (a kernel sender
/// went from about 0.8x to 0.95x its veth rate). Four segments are
/// queued before the leader's read is let go, so one pass takes them.
#[test]
fn a_leader_acks_each_super_frame_before_it_reads_the_next() {
    let (da, db) = pair::link().expect("socketpair");
    let a_end = Arc::new(GatedEnd::new(da));
    let b_end = Arc::new(JournalEnd {
        gate: GatedEnd::new(db),
        journal: Mutex::new(Vec::new()),
    });
    let pair = inmem::Pair::on(a_end.clone(), b_end.clone());
    let (client, server) = connected(&pair, 7011);
    server.set_read_timeout(None).unwrap();
    let (tx, got) = mpsc::channel();
    let reader = server.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        let _ = tx.send((&reader).read(&mut buf));
    });
    wait_until("the reader never led", Duration::from_secs(5), || {
        pair.b.application_thread_leads()
    });
    b_end.gate.set_armed(true);
    let sent = a_end.sent.load(Ordering::SeqCst);
    (&client).write_all(&[9u8; 4 * 1400]).unwrap();
    wait_until("the segments were not sent", Duration::from_secs(5), || {
        a_end.sent.load(Ordering::SeqCst) >= sent + 4
    });
    b_end.journal.lock().unwrap().clear();
    b_end.gate.set_armed(false);
    let n = got
        .recv_timeout(Duration::from_secs(10))
        .expect("the read never returned")
        .expect("read");
    let journal = String::from_utf8(b_end.journal.lock().unwrap().clone()).unwrap();
    assert_eq!(n, 4 * 1400, "one pass took all four: {journal}");
    let last_read = journal.rfind('R').unwrap();
    assert!(
        journal[..last_read].contains('S'),
        "no ACK before the last super-frame was read: {journal}"
    );
}

/// Receive coalescing (lead.rs): after a pass that read a super-frame the
/// leader's next wait is a short timed one, not a sleep on the device
/// (whose every frame would cost the sender a wake-up); the first such
/// wait that finds nothing ends it, so an idle reader sleeps on the
/// device again instead of waking every 50 us.
#[test]
fn a_leader_coalesces_after_super_frames_and_stops_when_they_stop() {
    const WAITS: &str = "runtime.coalesced_waits";
    let (da, db) = pair::link().expect("socketpair");
    let pair = inmem::Pair::on(Arc::new(da), Arc::new(SuperFrames(db)));
    let (client, server) = connected(&pair, 7010);
    server.set_read_timeout(None).unwrap();
    assert_eq!(counter(&pair.b, WAITS), 0, "plain frames started it");
    let data: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    // The reader leads before the data comes, so that its own pass (not
    // the stack thread's, as it may be on a loaded machine) reads the
    // super-frames.
    let reader = read_on_thread(&server, data.len());
    wait_until("the first reader never led", Duration::from_secs(5), || {
        pair.b.application_thread_leads()
    });
    (&client).write_all(&data).unwrap();
    assert_eq!(result(&reader).expect("read"), data);
    // A reader now blocks with nothing coming: one timed wait at most
    // (the one that finds nothing), then it sleeps on the device.
    let pending = read_on_thread(&server, 1);
    wait_until("the reader never led", Duration::from_secs(5), || {
        pair.b.application_thread_leads()
    });
    wait_until("no coalesced wait", Duration::from_secs(5), || {
        counter(&pair.b, WAITS) > 0
    });
    let after = counter(&pair.b, WAITS);
    std::thread::sleep(Duration::from_millis(100));
    let idle = counter(&pair.b, WAITS) - after;
    assert!(idle <= 1, "{idle} timed wake-ups in 100 ms idle");
    (&client).write_all(b"z").unwrap();
    assert_eq!(result(&pending).expect("read"), b"z");
}
