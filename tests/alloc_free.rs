//! The hot path does not allocate: two sans-I/O stacks joined by a
//! zero-latency in-memory link move bulk TCP data both ways and UDP
//! datagrams, and a counting global allocator checks that, once the
//! connection is warmed up, the stacks' own calls (receive, dispatch,
//! transmit, recycle, and the socket send/recv calls) allocate nothing.
//! Only allocations made during those calls are counted (by the
//! `stats_alloc` allocator); the test's own link bookkeeping is not.

use std::alloc::System;
use std::cell::Cell;
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Mutex;

use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use tapstack::stack::rng::Rng;
use tapstack::stack::socket::SocketId;
use tapstack::stack::tcp::TcpHandle;
use tapstack::stack::udp::UdpHandle;
use tapstack::stack::{Instant, RxChecksum, Stack};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The allocator's counts are process-wide: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
    static BYTES: Cell<u64> = const { Cell::new(0) };
}

/// Runs `f`, adding the allocations (and reallocations) made meanwhile to
/// this thread's count.
fn counted<T>(f: impl FnOnce() -> T) -> T {
    let before = GLOBAL.stats();
    let r = f();
    let after = GLOBAL.stats();
    let n = (after.allocations + after.reallocations) - (before.allocations + before.reallocations);
    ALLOCS.with(|c| c.set(c.get() + n as u64));
    let bytes = after.bytes_allocated - before.bytes_allocated;
    BYTES.with(|c| c.set(c.get() + bytes as u64));
    r
}

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

fn bytes_allocated() -> u64 {
    BYTES.with(Cell::get)
}

/// At most one allocation per 10,000 frames: in practice none, with room
/// for the test harness's own threads, which the process-wide counts see.
fn assert_alloc_free(n: u64, frames: u64, what: &str) {
    assert!(
        n * 10_000 <= frames,
        "{n} allocations in the stacks over {frames} {what}"
    );
}

mod inmem;
use inmem::{A as A_IP, B as B_IP};
const PORT: u16 = 5000;

fn stack(ip: Ipv4Addr, last: u8) -> Stack {
    Stack::new(inmem::config(ip, last))
}

/// Two stacks and the frames in flight between them. Frame buffers are
/// reused, so the link itself stops allocating after warm-up too.
struct Link {
    a: Stack,
    b: Stack,
    to_a: VecDeque<Vec<u8>>,
    to_b: VecDeque<Vec<u8>>,
    spare: Vec<Vec<u8>>,
    now: Instant,
    frames: u64,
    events: Vec<SocketId>,
}

impl Link {
    fn new() -> Link {
        Link {
            a: stack(A_IP, 1),
            b: stack(B_IP, 2),
            to_a: VecDeque::with_capacity(4096),
            to_b: VecDeque::with_capacity(4096),
            spare: Vec::with_capacity(8192),
            now: Instant::from_micros(0),
            frames: 0,
            events: Vec::with_capacity(1024),
        }
    }

    /// One round: both stacks transmit, then receive what the other sent.
    /// The clock moves 10 us per round, so timers (delayed ACK) run too.
    fn step(&mut self) {
        self.now = Instant::from_micros(self.now.total_micros() + 10);
        let now = self.now;
        for (from, to) in [(&mut self.a, &mut self.to_b), (&mut self.b, &mut self.to_a)] {
            counted(|| from.handle_timeout(now));
            while let Some(f) = counted(|| from.poll_transmit()) {
                let mut copy = self.spare.pop().unwrap_or_default();
                copy.clear();
                copy.extend_from_slice(&f);
                to.push_back(copy);
                counted(|| from.recycle(f));
            }
        }
        for (into, from) in [(&mut self.a, &mut self.to_a), (&mut self.b, &mut self.to_b)] {
            while let Some(f) = from.pop_front() {
                counted(|| into.handle_frame(now, &f, RxChecksum::Verify));
                self.frames += 1;
                self.spare.push(f);
            }
        }
        // As the runtime does after every batch: collect readiness events.
        for st in [&mut self.a, &mut self.b] {
            counted(|| st.take_events(&mut self.events));
            self.events.clear();
        }
    }
}

/// Bytes of a seeded pattern, checked by FNV-1a hash at the receiver.
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// One direction of a bulk transfer: what was sent and what arrived.
struct Flow {
    data: Vec<u8>,
    sent: usize,
    got: usize,
    hash_got: u64,
}

impl Flow {
    fn new(seed: u64, len: usize) -> Flow {
        let mut data = vec![0u8; len];
        Rng::new(seed).fill(&mut data);
        Flow {
            data,
            sent: 0,
            got: 0,
            hash_got: 0xcbf2_9ce4_8422_2325,
        }
    }

    fn pump(&mut self, st: &mut Stack, h: TcpHandle) {
        if self.sent < self.data.len() {
            let end = (self.sent + 64 * 1024).min(self.data.len());
            let chunk = &self.data[self.sent..end];
            self.sent += counted(|| st.tcp.send(h, chunk)).unwrap_or(0);
        }
    }

    fn drain(&mut self, st: &mut Stack, h: TcpHandle, buf: &mut [u8]) {
        while let Ok(n) = counted(|| st.tcp.recv(h, buf)) {
            if n == 0 {
                break;
            }
            self.hash_got = fnv(self.hash_got, &buf[..n]);
            self.got += n;
        }
    }

    fn ok(&self) -> bool {
        self.got == self.data.len() && self.hash_got == fnv(0xcbf2_9ce4_8422_2325, &self.data)
    }
}

#[test]
fn tcp_bulk_both_ways_allocates_nothing_after_warm_up() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const LEN: usize = 64 << 20;
    const WARM: usize = 4 << 20;
    let mut l = Link::new();
    let listener =
        l.b.tcp
            .listen(SocketAddrV4::new(B_IP, PORT), 8)
            .expect("listen");
    let ca =
        l.a.tcp
            .connect(l.now, None, SocketAddrV4::new(B_IP, PORT))
            .expect("connect");
    let mut cb = None;
    for _ in 0..1000 {
        l.step();
        if let Ok((h, _)) = l.b.tcp.accept(listener) {
            cb = Some(h);
            break;
        }
    }
    let cb = cb.expect("no connection after 1000 rounds");
    let (mut ab, mut ba) = (Flow::new(1, LEN), Flow::new(2, LEN));
    let mut buf = vec![0u8; 256 * 1024];
    let mut counted_from = None;
    for _ in 0..2_000_000 {
        ab.pump(&mut l.a, ca);
        ba.pump(&mut l.b, cb);
        l.step();
        ab.drain(&mut l.b, cb, &mut buf);
        ba.drain(&mut l.a, ca, &mut buf);
        if counted_from.is_none() && ab.got >= WARM && ba.got >= WARM {
            counted_from = Some((allocs(), l.frames));
        }
        if ab.got == LEN && ba.got == LEN {
            break;
        }
    }
    assert!(
        ab.ok() && ba.ok(),
        "transfer incomplete or corrupted: {} / {} bytes",
        ab.got,
        ba.got
    );
    let (a0, f0) = counted_from.expect("never warmed up");
    let (n, frames) = (allocs() - a0, l.frames - f0);
    eprintln!("steady state: {n} allocations over {frames} frames");
    assert!(
        frames > 20_000,
        "only {frames} frames in the measured phase"
    );
    assert_alloc_free(n, frames, "frames");
}

#[test]
fn udp_datagrams_allocate_nothing_after_warm_up() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut l = Link::new();
    let ha: UdpHandle = l.a.udp.bind(SocketAddrV4::new(A_IP, 6000)).unwrap();
    let hb: UdpHandle = l.b.udp.bind(SocketAddrV4::new(B_IP, 6000)).unwrap();
    let payload = vec![7u8; 1200];
    let mut buf = vec![0u8; 2048];
    let mut received = 0u64;
    let mut counted_from = None;
    for round in 0..100_000u32 {
        if round == 2_000 {
            counted_from = Some((allocs(), received));
        }
        let now = l.now;
        for _ in 0..4 {
            let stack = &mut l.a;
            let cidr_bcast = |_ip: Ipv4Addr| false;
            counted(|| {
                stack.udp.send_to(
                    now,
                    ha,
                    &payload,
                    Some(SocketAddrV4::new(B_IP, 6000)),
                    &mut stack.iface,
                    cidr_bcast,
                )
            })
            .expect("send_to");
        }
        l.step();
        while let Ok((n, _)) = counted(|| l.b.udp.recv_from(hb, &mut buf, false)) {
            assert_eq!(&buf[..n], &payload[..]);
            received += 1;
        }
    }
    let (a0, r0) = counted_from.expect("measured");
    let (n, datagrams) = (allocs() - a0, received - r0);
    eprintln!("steady state: {n} allocations over {datagrams} datagrams");
    assert!(
        datagrams >= 4 * 97_000,
        "only {datagrams} datagrams arrived"
    );
    assert_alloc_free(n, datagrams, "datagrams");
}

/// Steps the link until `done` holds, at most 10,000 rounds.
fn step_until(l: &mut Link, what: &str, mut done: impl FnMut(&mut Link) -> bool) {
    for _ in 0..10_000 {
        l.step();
        if done(l) {
            return;
        }
    }
    panic!("{what}: not done after 10,000 rounds");
}

/// Short connections (connect, one byte each way, close) reuse the send
/// and receive buffers of the connections before them: without that, each
/// one allocates and zero-fills 256 KiB per buffer.
#[test]
fn short_connections_reuse_buffer_storage() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut l = Link::new();
    let server = SocketAddrV4::new(B_IP, PORT);
    let listener = l.b.tcp.listen(server, 64).expect("listen");
    let mut buf = [0u8; 16];
    let (warm, total) = (20u64, 120u64);
    let mut from = 0;
    for i in 0..total {
        if i == warm {
            from = bytes_allocated();
        }
        let now = l.now;
        let ca = counted(|| l.a.tcp.connect(now, None, server)).expect("connect");
        let mut cb = None;
        step_until(&mut l, "accept", |l| {
            cb = counted(|| l.b.tcp.accept(listener)).ok().map(|(h, _)| h);
            cb.is_some()
        });
        let cb = cb.expect("accepted");
        assert_eq!(counted(|| l.a.tcp.send(ca, b"q")).ok(), Some(1));
        step_until(&mut l, "request", |l| {
            counted(|| l.b.tcp.recv(cb, &mut buf)).ok() == Some(1)
        });
        assert_eq!(counted(|| l.b.tcp.send(cb, b"r")).ok(), Some(1));
        step_until(&mut l, "response", |l| {
            counted(|| l.a.tcp.recv(ca, &mut buf)).ok() == Some(1)
        });
        counted(|| l.a.tcp.close(ca));
        counted(|| l.b.tcp.close(cb));
        step_until(&mut l, "close", |l| {
            l.a.tcp.active_connections() == 0 && l.b.tcp.active_connections() == 0
        });
    }
    let per_conn = (bytes_allocated() - from) / (total - warm);
    eprintln!("{per_conn} bytes allocated per connection after warm-up");
    // Four 256 KiB buffers are touched per connection (both ends, both ways).
    assert!(
        per_conn < 64 * 1024,
        "{per_conn} bytes allocated per short connection"
    );
}
