//! 100,000 concurrent TCP connections between two sans-I/O stacks on an
//! in-memory link (no root): each carries one request and its echo,
//! checked byte for byte, all stay open together while idle, then all
//! close. Memory is counted by a counting global allocator: an idle
//! connection must hold no buffer storage and only a few KiB in all, the
//! buffer pool stays within its bounds, and both stacks' connection counts
//! return to 0.

use std::alloc::System;
use std::collections::VecDeque;
use std::net::SocketAddrV4;

use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use tapstack::stack::socket::SocketId;
use tapstack::stack::tcp::{CcAlgorithm, TcpHandle, TcpLayer};
use tapstack::stack::{Instant, RxChecksum, Stack};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

mod inmem;
use inmem::{A as A_IP, B as B_IP};

/// Connections open at once.
const N: usize = 100_000;
/// Server ports: each takes N / PORTS connections from the client's one
/// address, within its ephemeral range.
const PORTS: u16 = 8;
const BASE_PORT: u16 = 6000;
/// Connections opened per batch (the link is stepped until the batch is
/// done before the next starts, as a client with a bounded backlog).
const BATCH: usize = 2000;
/// Heap bytes allowed per idle connection and end beyond the
/// connection's own state (`TcpLayer::connection_state_bytes`: control
/// block and congestion controller): the layer's tables (socket slot,
/// timer entry, 4-tuple map, local ports), each up to twice the count
/// after growth. Tight enough that a per-connection leftover of ~100
/// bytes (a Vec kept by an idle connection) fails. The target is
/// 100,000 idle connections in 512 MiB of the stack's resident memory
/// (5,368 bytes each), heap and everything else included.
const TABLE_BYTES_PER_IDLE_CONN: usize = 256;

/// Heap bytes in use, process-wide.
fn heap_bytes() -> isize {
    let s = GLOBAL.stats();
    s.bytes_allocated as isize - s.bytes_deallocated as isize + s.bytes_reallocated
}

struct Link {
    a: Stack,
    b: Stack,
    to_a: VecDeque<Vec<u8>>,
    to_b: VecDeque<Vec<u8>>,
    spare: Vec<Vec<u8>>,
    now: Instant,
    events: Vec<SocketId>,
}

impl Link {
    /// One round: both stacks transmit, then receive what the other sent;
    /// the clock moves 100 us.
    fn step(&mut self) {
        self.now = Instant::from_micros(self.now.total_micros() + 100);
        let now = self.now;
        for (from, to) in [(&mut self.a, &mut self.to_b), (&mut self.b, &mut self.to_a)] {
            from.handle_timeout(now);
            while let Some(f) = from.poll_transmit() {
                let mut copy = self.spare.pop().unwrap_or_default();
                copy.clear();
                copy.extend_from_slice(&f);
                to.push_back(copy);
                from.recycle(f);
            }
        }
        for (into, from) in [(&mut self.a, &mut self.to_a), (&mut self.b, &mut self.to_b)] {
            while let Some(f) = from.pop_front() {
                into.handle_frame(now, &f, RxChecksum::Verify);
                self.spare.push(f);
            }
        }
        for st in [&mut self.a, &mut self.b] {
            st.take_events(&mut self.events);
            self.events.clear();
        }
    }

    /// Steps until `done` holds; a phase that stops making progress for
    /// 2,000 rounds fails.
    fn step_until(&mut self, what: &str, mut done: impl FnMut(&mut Link) -> bool) {
        for _ in 0..2000 {
            if done(self) {
                return;
            }
            self.step();
        }
        let counters: Vec<_> = [&self.a, &self.b]
            .map(|s| s.counters().iter().collect::<Vec<_>>())
            .into();
        panic!("{what}: not done after 2,000 rounds; counters {counters:?}");
    }
}

/// The request of connection `i`: its index, so a misrouted echo shows.
fn request(i: usize) -> [u8; 8] {
    (i as u64 ^ 0x5ca1_e000_0000_0000).to_be_bytes()
}

/// Pairs of connections: the client's end and the server's, same index.
struct Pairs {
    clients: Vec<TcpHandle>,
    servers: Vec<TcpHandle>,
}

impl Link {
    /// Two stacks, nothing sent yet.
    fn new() -> Link {
        Link {
            a: Stack::new(inmem::config(A_IP, 1)),
            b: Stack::new(inmem::config(B_IP, 2)),
            to_a: VecDeque::with_capacity(4 * BATCH),
            to_b: VecDeque::with_capacity(4 * BATCH),
            spare: Vec::with_capacity(8 * BATCH),
            now: Instant::ZERO,
            events: Vec::with_capacity(4 * BATCH),
        }
    }

    /// Listeners on the PORTS server ports; ARP and the link's frame
    /// buffers warmed up with one connection, gone again.
    fn listen_and_warm_up(&mut self) -> Vec<TcpHandle> {
        let listeners: Vec<TcpHandle> = (0..PORTS)
            .map(|p| {
                let addr = SocketAddrV4::new(B_IP, BASE_PORT + p);
                self.b.tcp.listen(addr, BATCH).expect("listen")
            })
            .collect();
        let c = self
            .a
            .tcp
            .connect(self.now, None, SocketAddrV4::new(B_IP, BASE_PORT))
            .unwrap();
        self.step_until("warm-up accept", |l| l.b.tcp.accept(listeners[0]).is_ok());
        self.a.tcp.abort(c);
        self.step_until("warm-up close", |l| l.b.tcp.active_connections() == 0);
        listeners
    }

    /// Opens N connections into `p` (allocated beforehand, so that the
    /// test's own handle vectors are not counted as the stacks' memory),
    /// BATCH at a time; each carries one request and its echo, checked.
    fn open_and_echo(&mut self, listeners: &[TcpHandle], p: &mut Pairs) {
        while p.clients.len() < N {
            let first = p.clients.len();
            let n = BATCH.min(N - first);
            for i in first..first + n {
                let port = BASE_PORT + (i % PORTS as usize) as u16;
                let h = self
                    .a
                    .tcp
                    .connect(self.now, None, SocketAddrV4::new(B_IP, port));
                p.clients
                    .push(h.unwrap_or_else(|e| panic!("connect {i}: {e}")));
            }
            let target = first + n;
            let servers = &mut p.servers;
            self.step_until("accept", |l| {
                for &lh in listeners {
                    while let Ok((h, _)) = l.b.tcp.accept(lh) {
                        servers.push(h);
                    }
                }
                servers.len() == target
            });
            for (i, &c) in p.clients.iter().enumerate().skip(first) {
                assert_eq!(self.a.tcp.send(c, &request(i)).ok(), Some(8), "request {i}");
            }
            self.echo(p, first..target);
        }
    }

    /// The servers `range` echo what they read (they were accepted in
    /// some order, so each echoes its own bytes back); their clients
    /// check the echo.
    fn echo(&mut self, p: &Pairs, range: std::ops::Range<usize>) {
        let mut buf = [0u8; 64];
        let mut pending: Vec<usize> = range.clone().collect();
        self.step_until("echo", |l| {
            pending.retain(|&j| match l.b.tcp.recv(p.servers[j], &mut buf) {
                Ok(8) => {
                    assert_eq!(l.b.tcp.send(p.servers[j], &buf[..8]).ok(), Some(8));
                    false
                }
                Ok(k) => panic!("server read {k} bytes"),
                Err(_) => true,
            });
            pending.is_empty()
        });
        pending.extend(range);
        self.step_until("response", |l| {
            pending.retain(|&i| match l.a.tcp.recv(p.clients[i], &mut buf) {
                Ok(8) => {
                    assert_eq!(buf[..8], request(i), "echo of {i}");
                    false
                }
                Ok(k) => panic!("client read {k} bytes"),
                Err(_) => true,
            });
            pending.is_empty()
        });
    }

    /// Every connection idle: no buffer storage, no receive memory, and
    /// the heap's growth since `baseline` within the per-connection bound.
    fn assert_idle(&self, baseline: isize) {
        assert_eq!(self.a.tcp.active_connections(), N);
        assert_eq!(self.b.tcp.active_connections(), N);
        assert_eq!(self.a.tcp.buffer_bytes_in_use(), 0, "idle client buffers");
        assert_eq!(self.b.tcp.buffer_bytes_in_use(), 0, "idle server buffers");
        assert_eq!(self.a.tcp.rcv_mem(), (0, false), "client receive account");
        assert_eq!(self.b.tcp.rcv_mem(), (0, false), "server receive account");
        // Spare buffers the pools keep are not the connections'.
        let pooled = self.a.tcp.pooled_storage().1 + self.b.tcp.pooled_storage().1;
        let per_conn = ((heap_bytes() - baseline) as usize).saturating_sub(pooled) / (2 * N);
        let own = TcpLayer::connection_state_bytes(CcAlgorithm::default());
        eprintln!("{per_conn} heap bytes per idle connection and end ({own} its own state)");
        assert!(
            per_conn <= own + TABLE_BYTES_PER_IDLE_CONN,
            "{per_conn} bytes per idle connection: over {own} + {TABLE_BYTES_PER_IDLE_CONN}"
        );
        for st in [&self.a, &self.b] {
            let (bufs, bytes) = st.tcp.pooled_storage();
            assert!(
                bufs <= 256 && bytes <= 32 << 20,
                "pool holds {bufs} buffers, {bytes} bytes"
            );
        }
    }

    /// Clients close, BATCH at a time; servers see EOF and close; both
    /// counts reach 0.
    fn close_all(&mut self, p: &Pairs) {
        let mut buf = [0u8; 64];
        for batch in (0..N).step_by(BATCH) {
            let end = (batch + BATCH).min(N);
            for &c in &p.clients[batch..end] {
                self.a.tcp.close(c);
            }
            let mut pending: Vec<usize> = (batch..end).collect();
            self.step_until("close", |l| {
                pending.retain(|&j| match l.b.tcp.recv(p.servers[j], &mut buf) {
                    Ok(0) => {
                        l.b.tcp.close(p.servers[j]);
                        false
                    }
                    Ok(k) => panic!("server read {k} bytes after the echo"),
                    Err(_) => true,
                });
                if pending.is_empty() {
                    let left = N - end;
                    l.a.tcp.active_connections() == left && l.b.tcp.active_connections() == left
                } else {
                    false
                }
            });
        }
    }
}

#[test]
fn hundred_thousand_connections_exchange_idle_and_close() {
    let mut l = Link::new();
    let listeners = l.listen_and_warm_up();
    let mut pairs = Pairs {
        clients: Vec::with_capacity(N),
        servers: Vec::with_capacity(N),
    };
    let baseline = heap_bytes();
    let started = std::time::Instant::now();
    l.open_and_echo(&listeners, &mut pairs);
    // Delayed ACKs go out; then every connection is idle.
    for _ in 0..500 {
        l.step();
    }
    eprintln!(
        "{N} connections opened and echoed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    l.assert_idle(baseline);
    l.close_all(&pairs);
    eprintln!("all closed after {:.1} s", started.elapsed().as_secs_f64());
}
