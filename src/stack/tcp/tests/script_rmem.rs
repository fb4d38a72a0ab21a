//! The layer-wide receive-memory account (`TcpConfig::tcp_mem`, Linux's
//! tcp_mem): several scripted peers against one layer with marks a few
//! rings wide. Growth stops under pressure; past the hard limit data that
//! needs new storage is dropped and counted, then accepted once an
//! application reads; every byte arrives; no right edge moves left.

use std::collections::HashMap;
use std::net::SocketAddrV4;

use super::harness::*;
use crate::stack::tcp::{TcpConfig, TcpHandle, TcpMem};

const MSS: usize = 1460;
/// Every connection's ring: 4 segments.
const RING: usize = 4 * MSS;

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

/// `n` segments of data from `port` starting at stream offset `off`.
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
        let (held, _) = self.h.layer.rcv_mem();
        assert!(held <= self.h.layer.config().tcp_mem.high, "{held}");
        // Nothing is sent in these scripts: all storage is receive storage.
        assert_eq!(held, self.h.layer.buffer_bytes_in_use(), "account drifted");
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
}

/// The peer fills the window and the application reads it all: the ring
/// doubles (`Receiver::grow_if_limited`), except while the account is
/// above `pressure`; it grows again once it falls below `low`.
#[test]
fn buffers_stop_growing_under_memory_pressure() {
    // Two full rings pass `pressure`; one still holds `low`.
    let mut p = Peers::new(config(RING, RING, 1 << 20));
    let (a, b) = (RPORT, RPORT + 1);
    p.open(a);
    p.open(b);
    p.send(data(a, 0, MSS));
    assert_eq!(p.counter("tcp.mem_pressure"), 0);
    for i in 0..4 {
        p.send(data(b, i * MSS, MSS));
    }
    assert_eq!(p.counter("tcp.mem_pressure"), 1);
    assert_eq!(p.h.layer.rcv_mem(), (2 * RING, true));
    // B's application reads all: without pressure the update would offer
    // 8 segments.
    let upd = p.read_all(b);
    assert_eq!(upd.last().map(|s| s.window), Some(RING as u16));
    assert_eq!(p.counter("tcp.rx_buffer_grown"), 0);
    assert_eq!(p.h.layer.rcv_mem(), (RING, true), "A holds `low`");
    // A reads: the account is below `low`, pressure ends.
    p.read_all(a);
    assert_eq!(p.h.layer.rcv_mem(), (0, false));
    for i in 4..8 {
        p.send(data(b, i * MSS, MSS));
    }
    let upd = p.read_all(b);
    assert_eq!(p.counter("tcp.rx_buffer_grown"), 1);
    assert_eq!(upd.last().map(|s| s.window), Some((2 * RING) as u16));
    assert_eq!(p.read[&b], pattern(b, 0, 8 * MSS));
    assert_eq!(p.read[&a], pattern(a, 0, MSS));
}

/// Past the hard limit: in-order data that needs a new ring is dropped
/// with an ACK at once (tcp.rcvq_drop), out-of-order data silently
/// (tcp.ofo_drop); a ring already held still takes what fits. Once an
/// application reads, the retransmissions are taken, and every byte
/// reaches the applications.
#[test]
fn data_past_the_hard_limit_is_dropped_then_taken_after_a_read() {
    let mut p = Peers::new(config(RING, RING, RING));
    let (a, b) = (RPORT, RPORT + 1);
    p.open(a);
    p.open(b);
    // A takes the only ring the limit allows (its delayed ACK aside).
    assert!(p.send(data(a, 0, MSS)).is_empty());
    // B's in-order segment would need a second ring: dropped, and the
    // ACK at once repeats RCV.NXT and the window already offered.
    let ack = p.send(data(b, 0, MSS));
    assert_eq!(ack.len(), 1, "{ack:?}");
    assert_eq!(
        (ack[0].dst_port, ack[0].ack, ack[0].window, ack[0].payload.len()),
        (b, Some(IRS + 1), RING as u16, 0)
    );
    assert_eq!(p.counter("tcp.rcvq_drop"), 1);
    // Beyond a hole: dropped without an ACK (Linux tcp_data_queue_ofo).
    assert!(p.send(data(b, 2 * MSS, MSS)).is_empty());
    assert_eq!(p.counter("tcp.ofo_drop"), 1);
    // A's ring is held: more data for it is taken (ACKed, second segment).
    let ack = p.send(data(a, MSS, MSS));
    assert_eq!(ack.len(), 1);
    assert_eq!(ack[0].ack, Some(IRS + 1 + 2 * MSS as u32));
    assert_eq!(p.h.layer.rcv_mem().0, RING);
    // A's application reads: its ring goes back, B's retransmissions
    // (out of order first) are taken.
    p.read_all(a);
    assert_eq!(p.h.layer.rcv_mem().0, 0);
    let dup = p.send(data(b, 2 * MSS, MSS));
    assert_eq!(dup.len(), 1);
    assert_eq!(dup[0].ack, Some(IRS + 1), "duplicate ACK for the hole");
    p.send(data(b, 0, MSS));
    let ack = p.send(data(b, MSS, MSS));
    assert_eq!(ack.last().unwrap().ack, Some(IRS + 1 + 3 * MSS as u32));
    assert_eq!((p.counter("tcp.rcvq_drop"), p.counter("tcp.ofo_drop")), (1, 1));
    p.read_all(b);
    assert_eq!(p.read[&a], pattern(a, 0, 2 * MSS));
    assert_eq!(p.read[&b], pattern(b, 0, 3 * MSS));
    assert_eq!(p.h.layer.rcv_mem(), (0, false));
}

/// A connection holding no storage, with the account at the hard limit,
/// does not advance its window: it offers no storage it would refuse. It
/// keeps what it offered (the right edge never moves left) and advances
/// once storage is to be had.
#[test]
fn a_window_without_storage_stops_at_the_hard_limit() {
    let mut p = Peers::new(config(2 * RING, 2 * RING, 2 * RING));
    let (a, b, c) = (RPORT, RPORT + 1, RPORT + 2);
    p.open(a);
    p.open(b);
    p.open(c);
    // B: one segment, ACKed (delayed) with 3 segments of window; its
    // application reads it, which sends no update (more than half is
    // open) and gives the ring back.
    p.send(data(b, 0, MSS));
    p.h.advance(std::time::Duration::from_millis(50));
    let ack = p.sent();
    assert_eq!((ack[0].ack, ack[0].window), (Some(IRS + 1 + MSS as u32), (3 * MSS) as u16));
    assert!(p.read_all(b).is_empty());
    // A and C take the two rings the limit allows.
    p.send(data(a, 0, MSS));
    p.send(data(c, 0, MSS));
    assert_eq!(p.h.layer.rcv_mem().0, 2 * RING);
    // B's next segment is dropped; its ACK offers the same right edge,
    // not the empty ring's 4 segments.
    let ack = p.send(data(b, MSS, MSS));
    assert_eq!(p.counter("tcp.rcvq_drop"), 1);
    assert_eq!(ack.len(), 1);
    assert_eq!((ack[0].ack, ack[0].window), (Some(IRS + 1 + MSS as u32), (3 * MSS) as u16));
    // C's application reads: B's retransmission is taken, and its
    // (delayed) ACK moves the right edge on by what was taken.
    p.read_all(c);
    p.send(data(b, MSS, MSS));
    p.h.advance(std::time::Duration::from_millis(50));
    let to_b: Vec<_> = p.sent().into_iter().filter(|s| s.dst_port == b).collect();
    assert_eq!(to_b.len(), 1, "{to_b:?}");
    assert_eq!(
        (to_b[0].ack, to_b[0].window),
        (Some(IRS + 1 + 2 * MSS as u32), (3 * MSS) as u16)
    );
    p.read_all(b);
    p.h.advance(std::time::Duration::from_millis(50));
    p.sent();
    p.read_all(a);
    assert_eq!(p.read[&b], pattern(b, 0, 2 * MSS));
    assert_eq!(p.read[&a], pattern(a, 0, MSS));
    assert_eq!(p.read[&c], pattern(c, 0, MSS));
}
