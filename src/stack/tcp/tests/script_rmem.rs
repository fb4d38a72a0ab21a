//! The layer-wide receive-memory account (`TcpConfig::tcp_mem`, Linux's
//! tcp_mem): several scripted peers against one layer with marks a few
//! rings wide. Growth stops under pressure; past the hard limit data that
//! needs new storage is dropped and counted, then accepted once an
//! application reads; every byte arrives; no right edge moves left.

use std::collections::HashMap;
use std::net::SocketAddrV4;

use super::harness::*;
use crate::stack::tcp::{TcpConfig, TcpHandle, TcpMem};

/// Our MSS (the peer's segments are larger, as GRO'd frames are).
const MSS: usize = 1460;
/// The peer's segments: one page, the account's unit.
const SEG: usize = 4096;
/// Every connection's ring: 4 segments.
const RING: usize = 4 * SEG;

fn config(low: usize, pressure: usize, high: usize) -> TcpConfig {
    TcpConfig {
        rx_buffer: RING,
        tcp_mem: TcpMem {
            low,
            pressure,
            high,
        },
        ..plain_config()
    }
}

/// A segment from the peer at `port`.
fn from(port: u16, seq: u32) -> Seg {
    let mut s = Seg::peer(seq, Some(ISS + 1));
    s.src_port = port;
    s
}

/// A distinct byte pattern per connection and offset.
fn pattern(port: u16, off: usize, len: usize) -> Vec<u8> {
    (off..off + len)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(u32::from(port)) as u8)
        .collect()
}

/// `len` bytes of data from `port` at stream offset `off`.
fn data(port: u16, off: usize, len: usize) -> Seg {
    from(port, IRS + 1 + off as u32).data(&pattern(port, off, len))
}

struct Peers {
    h: Harness,
    listener: TcpHandle,
    conns: HashMap<u16, TcpHandle>,
    /// Right edge (ACK + window) of the last segment sent to each peer.
    edges: HashMap<u16, u32>,
    /// Everything each application read.
    read: HashMap<u16, Vec<u8>>,
}

impl Peers {
    fn new(cfg: TcpConfig) -> Peers {
        let mut h = Harness::new(cfg);
        let listener = h.layer.listen(SocketAddrV4::new(LOCAL, LPORT), 16).unwrap();
        Peers {
            h,
            listener,
            conns: HashMap::new(),
            edges: HashMap::new(),
            read: HashMap::new(),
        }
    }

    /// A passive open from `port`.
    fn open(&mut self, port: u16) {
        let mut syn = from(port, IRS).syn();
        syn.ack = None;
        syn.mss = Some(MSS as u16);
        self.send(syn);
        self.send(from(port, IRS + 1));
        let (c, _) = self.h.layer.accept(self.listener).unwrap();
        self.conns.insert(port, c);
    }

    /// Feeds one segment; returns what was sent, after checking that no
    /// right edge moved left (RFC 9293 3.8.6) and the account's bounds.
    fn send(&mut self, seg: Seg) -> Vec<Seg> {
        self.h.send(seg);
        self.sent()
    }

    fn sent(&mut self) -> Vec<Seg> {
        let out = self.h.sent();
        for s in &out {
            let (Some(ack), false) = (s.ack, s.rst) else {
                continue;
            };
            let edge = ack.wrapping_add(u32::from(s.window));
            if let Some(&prev) = self.edges.get(&s.dst_port) {
                assert!(
                    (edge.wrapping_sub(prev) as i32) >= 0,
                    "right edge moved left: {prev} -> {edge} in {s:?}"
                );
            }
            self.edges.insert(s.dst_port, edge);
        }
        // Past `high` by at most one segment (here a page) per connection:
        // the forced in-order segment onto an empty queue.
        let (held, _) = self.h.layer.rcv_mem();
        let high = self.h.layer.config().tcp_mem.high;
        assert!(held <= high + self.conns.len() * SEG, "{held}");
        assert_eq!(held, self.h.layer.rcv_mem_recount(), "account drifted");
        out
    }

    /// The application on `port` reads everything buffered; returns the
    /// segments that sent.
    fn read_all(&mut self, port: u16) -> Vec<Seg> {
        let c = self.conns[&port];
        let mut buf = vec![0u8; 1 << 16];
        let n = self.h.layer.recv(c, &mut buf).unwrap_or(0);
        self.read.entry(port).or_default().extend(&buf[..n]);
        self.h.dispatch();
        self.sent()
    }

    fn counter(&self, name: &str) -> u64 {
        self.h.layer.counters.get(name)
    }

    fn held(&self) -> usize {
        self.h.layer.rcv_mem().0
    }
}

/// The segments in `segs` to `port`.
fn to(port: u16, segs: Vec<Seg>) -> Vec<Seg> {
    segs.into_iter().filter(|s| s.dst_port == port).collect()
}

/// (ACK, window) of the last segment.
fn last_ack(segs: &[Seg]) -> (Option<u32>, u16) {
    let s = segs.last().expect("no segment sent");
    (s.ack, s.window)
}

/// The peer fills the window and the application reads it all: the ring
/// doubles (`Receiver::grow_if_limited`), except while the account is
/// above `pressure`; it grows again once it falls below `low`.
#[test]
fn buffers_stop_growing_under_memory_pressure() {
    // A's full ring holds `low`; B's second page passes `pressure`.
    let mut p = Peers::new(config(RING, RING + SEG, 1 << 20));
    let (a, b) = (RPORT, RPORT + 1);
    p.open(a);
    p.open(b);
    for i in 0..4 {
        p.send(data(a, i * SEG, SEG));
    }
    assert_eq!((p.held(), p.counter("tcp.mem_pressure")), (RING, 0));
    for i in 0..4 {
        p.send(data(b, i * SEG, SEG));
    }
    assert_eq!(p.counter("tcp.mem_pressure"), 1);
    assert_eq!(p.h.layer.rcv_mem(), (2 * RING, true));
    // B's application reads all: without pressure the update would offer
    // twice the ring.
    let upd = p.read_all(b);
    assert_eq!(last_ack(&upd), (Some(IRS + 1 + RING as u32), RING as u16));
    assert_eq!(p.counter("tcp.rx_buffer_grown"), 0);
    assert_eq!(p.h.layer.rcv_mem(), (RING, true), "A holds `low`");
    // A reads: the account is below `low`, pressure ends, and A's ring
    // (its peer had filled it too) grows.
    p.read_all(a);
    assert_eq!(p.h.layer.rcv_mem(), (0, false));
    assert_eq!(p.counter("tcp.rx_buffer_grown"), 1);
    for i in 4..8 {
        p.send(data(b, i * SEG, SEG));
    }
    let upd = p.read_all(b);
    assert_eq!(p.counter("tcp.rx_buffer_grown"), 2);
    assert_eq!(
        last_ack(&upd),
        (Some(IRS + 1 + 2 * RING as u32), 2 * RING as u16)
    );
    assert_eq!(p.read[&b], pattern(b, 0, 8 * SEG));
    assert_eq!(p.read[&a], pattern(a, 0, RING));
    assert_eq!(p.counter("tcp.mem_pressure"), 1);
}

/// Past the hard limit: in-order data that needs a new page is dropped
/// with an ACK at once (tcp.rcvq_drop), out-of-order data silently
/// (tcp.ofo_drop); data that fits a page already charged is still taken,
/// and so is in-order data onto an empty queue (Linux's forced charge).
/// Once an application reads, the retransmissions are taken, and every
/// byte reaches the applications.
#[test]
fn data_past_the_hard_limit_is_dropped_then_taken_after_a_read() {
    let mut p = Peers::new(config(3 * SEG, 3 * SEG, 3 * SEG));
    let (a, b) = (RPORT, RPORT + 1);
    p.open(a);
    p.open(b);
    // A takes the three pages the limit allows.
    p.send(data(a, 0, SEG));
    p.send(data(a, SEG, SEG));
    p.send(data(a, 2 * SEG, 100));
    assert_eq!(p.held(), 3 * SEG);
    // B's queue is empty: its in-order segment is taken past the limit.
    let ack = to(b, p.send(data(b, 0, SEG)));
    assert_eq!(last_ack(&ack).0, Some(IRS + 1 + SEG as u32));
    assert_eq!(p.held(), 4 * SEG);
    // B's next one would need a new page: dropped, and the ACK at once
    // repeats RCV.NXT and the right edge already offered.
    let ack = p.send(data(b, SEG, SEG));
    assert_eq!(ack.len(), 1, "{ack:?}");
    assert_eq!(ack[0].dst_port, b);
    assert_eq!(
        last_ack(&ack),
        (Some(IRS + 1 + SEG as u32), (RING - SEG) as u16)
    );
    assert_eq!(p.counter("tcp.rcvq_drop"), 1);
    // Beyond a hole: dropped without an ACK (Linux tcp_data_queue_ofo).
    assert!(p.send(data(b, 2 * SEG, SEG)).is_empty());
    assert_eq!(p.counter("tcp.ofo_drop"), 1);
    // A's third page has room: more data for it is taken.
    let ack = to(a, p.send(data(a, 2 * SEG + 100, 100)));
    assert_eq!(last_ack(&ack).0, Some(IRS + 1 + 2 * SEG as u32 + 200));
    assert_eq!(p.counter("tcp.rcvq_drop"), 1);
    // A's application reads: its pages go back, B's retransmissions
    // (out of order first) are taken.
    p.read_all(a);
    assert_eq!(p.held(), SEG);
    let dup = p.send(data(b, 2 * SEG, SEG));
    assert_eq!(
        last_ack(&dup).0,
        Some(IRS + 1 + SEG as u32),
        "duplicate ACK for the hole"
    );
    let ack = p.send(data(b, SEG, SEG));
    assert_eq!(last_ack(&ack).0, Some(IRS + 1 + 3 * SEG as u32));
    assert_eq!(
        (p.counter("tcp.rcvq_drop"), p.counter("tcp.ofo_drop")),
        (1, 1)
    );
    p.read_all(b);
    assert_eq!(p.read[&a], pattern(a, 0, 2 * SEG + 200));
    assert_eq!(p.read[&b], pattern(b, 0, 3 * SEG));
    assert_eq!(p.h.layer.rcv_mem(), (0, false));
}

/// The window offers no storage the account would refuse: a connection's
/// right edge stops where the account's pages end (it never moves left),
/// however large its ring.
#[test]
fn the_window_stops_at_the_hard_limit() {
    let mut p = Peers::new(config(2 * SEG, 2 * SEG, 2 * SEG));
    let (a, b) = (RPORT, RPORT + 1);
    p.open(a);
    p.open(b);
    // B: one segment, ACKed with the 3 segments of window its ring has.
    let ack = p.send(data(b, 0, SEG));
    assert_eq!(
        last_ack(&ack),
        (Some(IRS + 1 + SEG as u32), (3 * SEG) as u16)
    );
    // A takes the second page.
    p.send(data(a, 0, SEG));
    assert_eq!(p.held(), 2 * SEG);
    // B's next segment needs a third page: dropped; its ACK keeps the
    // right edge where it was.
    let ack = p.send(data(b, SEG, SEG));
    assert_eq!(p.counter("tcp.rcvq_drop"), 1);
    assert_eq!(
        last_ack(&ack),
        (Some(IRS + 1 + SEG as u32), (3 * SEG) as u16)
    );
    // A's application reads: B's retransmission takes the free page.
    p.read_all(a);
    let ack = to(b, p.send(data(b, SEG, SEG)));
    assert_eq!(
        last_ack(&ack),
        (Some(IRS + 1 + 2 * SEG as u32), (2 * SEG) as u16)
    );
    // B reads: the account is empty, and its two pages are what B's
    // window already offers: no update, where the ring alone would offer
    // 4 segments.
    assert!(p.read_all(b).is_empty());
    assert_eq!(p.held(), 0);
    // More from B is taken, and its ACK still ends at the same edge,
    // where the ring alone would offer 3 segments.
    let ack = to(b, p.send(data(b, 2 * SEG, SEG)));
    assert_eq!(last_ack(&ack), (Some(IRS + 1 + 3 * SEG as u32), SEG as u16));
    p.read_all(b);
    assert_eq!(p.read[&b], pattern(b, 0, 3 * SEG));
    assert_eq!(p.read[&a], pattern(a, 0, SEG));
}

/// An application that waits on one connection while others hold the
/// whole account still gets its data, as in Linux: in-order data onto
/// an empty queue is taken, and a window closed at the limit reopens by
/// a page once the application has read everything.
#[test]
fn a_reader_of_an_empty_queue_progresses_at_the_limit() {
    let mut p = Peers::new(config(2 * SEG, 2 * SEG, 2 * SEG));
    let (a, b) = (RPORT, RPORT + 1);
    p.open(a);
    p.open(b);
    p.send(data(a, 0, SEG));
    p.send(data(a, SEG, SEG));
    assert_eq!(p.held(), 2 * SEG);
    // B is read a segment at a time, past its first window (RING): the
    // window closes at its right edge, and each read reopens a page.
    let n = 2 * RING / SEG;
    for i in 0..n {
        let edge = p.edges[&b];
        assert!(
            (edge.wrapping_sub(IRS + 1 + (i * SEG) as u32) as i32) >= SEG as i32,
            "segment {i}: no window: {edge}"
        );
        let ack = to(b, p.send(data(b, i * SEG, SEG)));
        assert_eq!(last_ack(&ack).0, Some(IRS + 1 + ((i + 1) * SEG) as u32));
        p.read_all(b);
    }
    assert_eq!(p.read[&b], pattern(b, 0, n * SEG));
    assert_eq!(p.counter("tcp.rcvq_drop"), 0);
    assert_eq!(p.held(), 2 * SEG, "A still holds the account");
}
