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

#[test]
fn hundred_thousand_connections_exchange_idle_and_close() {
    let mut l = Link {
        a: Stack::new(inmem::config(A_IP, 1)),
        b: Stack::new(inmem::config(B_IP, 2)),
        to_a: VecDeque::with_capacity(4 * BATCH),
        to_b: VecDeque::with_capacity(4 * BATCH),
        spare: Vec::with_capacity(8 * BATCH),
        now: Instant::ZERO,
        events: Vec::with_capacity(4 * BATCH),
    };
    let listeners: Vec<TcpHandle> = (0..PORTS)
        .map(|p| {
            let addr = SocketAddrV4::new(B_IP, BASE_PORT + p);
            l.b.tcp.listen(addr, BATCH).expect("listen")
        })
        .collect();
    // Warm up ARP and the link's frame buffers with one connection.
    let c =
        l.a.tcp
            .connect(l.now, None, SocketAddrV4::new(B_IP, BASE_PORT))
            .unwrap();
    l.step_until("warm-up accept", |l| l.b.tcp.accept(listeners[0]).is_ok());
    l.a.tcp.abort(c);
    l.step_until("warm-up close", |l| l.b.tcp.active_connections() == 0);

    let mut clients: Vec<TcpHandle> = Vec::with_capacity(N);
    let mut servers: Vec<TcpHandle> = Vec::with_capacity(N);
    let mut pending: Vec<usize> = Vec::with_capacity(BATCH);
    let mut buf = [0u8; 64];
    let baseline = heap_bytes();
    let started = std::time::Instant::now();
    while clients.len() < N {
        let first = clients.len();
        let n = BATCH.min(N - first);
        for i in first..first + n {
            let port = BASE_PORT + (i % PORTS as usize) as u16;
            let h = l.a.tcp.connect(l.now, None, SocketAddrV4::new(B_IP, port));
            clients.push(h.unwrap_or_else(|e| panic!("connect {i}: {e}")));
        }
        let target = first + n;
        l.step_until("accept", |l| {
            for &lh in &listeners {
                while let Ok((h, _)) = l.b.tcp.accept(lh) {
                    servers.push(h);
                }
            }
            servers.len() == target
        });
        for (i, &c) in clients.iter().enumerate().skip(first) {
            assert_eq!(l.a.tcp.send(c, &request(i)).ok(), Some(8), "request {i}");
        }
        // Servers echo what they read; they were accepted in some order,
        // so each echoes its own bytes back.
        pending.clear();
        pending.extend(first..target);
        l.step_until("echo", |l| {
            pending.retain(|&j| match l.b.tcp.recv(servers[j], &mut buf) {
                Ok(8) => {
                    assert_eq!(l.b.tcp.send(servers[j], &buf[..8]).ok(), Some(8));
                    false
                }
                Ok(k) => panic!("server read {k} bytes"),
                Err(_) => true,
            });
            pending.is_empty()
        });
        pending.extend(first..target);
        l.step_until("response", |l| {
            pending.retain(|&i| match l.a.tcp.recv(clients[i], &mut buf) {
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
    // Delayed ACKs go out; then every connection is idle.
    for _ in 0..500 {
        l.step();
    }
    let open_secs = started.elapsed().as_secs_f64();
    assert_eq!(l.a.tcp.active_connections(), N);
    assert_eq!(l.b.tcp.active_connections(), N);
    assert_eq!(l.a.tcp.buffer_bytes_in_use(), 0, "idle client buffers");
    assert_eq!(l.b.tcp.buffer_bytes_in_use(), 0, "idle server buffers");
    assert_eq!(l.a.tcp.rcv_mem(), (0, false), "client receive account");
    assert_eq!(l.b.tcp.rcv_mem(), (0, false), "server receive account");
    // Spare buffers the pools keep are not the connections'.
    let pooled = l.a.tcp.pooled_storage().1 + l.b.tcp.pooled_storage().1;
    let per_conn = ((heap_bytes() - baseline) as usize).saturating_sub(pooled) / (2 * N);
    let own = TcpLayer::connection_state_bytes(CcAlgorithm::default());
    eprintln!(
        "{N} connections opened and echoed in {open_secs:.1} s; \
         {per_conn} heap bytes per idle connection and end ({own} its own state)"
    );
    assert!(
        per_conn <= own + TABLE_BYTES_PER_IDLE_CONN,
        "{per_conn} bytes per idle connection: over {own} + {TABLE_BYTES_PER_IDLE_CONN}"
    );
    for st in [&l.a, &l.b] {
        let (bufs, bytes) = st.tcp.pooled_storage();
        assert!(
            bufs <= 256 && bytes <= 32 << 20,
            "pool holds {bufs} buffers, {bytes} bytes"
        );
    }

    // Clients close; servers see EOF and close; both counts reach 0.
    for batch in (0..N).step_by(BATCH) {
        let end = (batch + BATCH).min(N);
        for &c in &clients[batch..end] {
            l.a.tcp.close(c);
        }
        pending.clear();
        pending.extend(batch..end);
        l.step_until("close", |l| {
            pending.retain(|&j| match l.b.tcp.recv(servers[j], &mut buf) {
                Ok(0) => {
                    l.b.tcp.close(servers[j]);
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
    eprintln!("all closed after {:.1} s", started.elapsed().as_secs_f64());
}
