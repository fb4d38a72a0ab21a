//! Arbitrary segments into an established connection while the
//! application sends and receives.
//!
//! The peer's byte stream is fixed: the byte at sequence number s is
//! `peer_byte(s - IRS - 1)`, so whatever segments the input makes (any
//! offset, length, flags, ACK, window, timestamps, SACK blocks, order,
//! duplicates), their payloads agree. Invariants: the application reads
//! exactly a prefix of that stream, never past what the peer sent; every
//! data byte we send is the application's byte at that offset and was
//! given by it; our output per step and the layer's queues stay bounded.
#![no_main]

use std::io::ErrorKind;
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tapstack::stack::ip::RxChecksum;
use tapstack::stack::ip::RecordingSink;
use tapstack::stack::tcp::{TcpConfig, TcpHandle, TcpLayer, TcpState};
use tapstack::stack::time::Instant;

const US: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const LPORT: u16 = 7;
const RPORT: u16 = 40000;
const ISS: u32 = 10_000;
const IRS: u32 = 50_000;
const BUF: usize = 16 * 1024;
const MAX_SEGMENTS_PER_STEP: usize = 4096;
const MAX_TIMERS: usize = 4096;

fn peer_byte(off: u32) -> u8 {
    (off.wrapping_mul(31) ^ (off >> 9)) as u8
}

fn our_byte(off: u32) -> u8 {
    (off.wrapping_mul(17).wrapping_add(3) ^ (off >> 11)) as u8
}

/// Reads the input; zeros once it runs out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
}

/// A segment from the peer; the payload is the peer's stream at `seq`.
struct PeerSeg {
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    ts: Option<(u32, u32)>,
    wscale: Option<u8>,
    sack: Vec<(u32, u32)>,
    len: usize,
}

impl PeerSeg {
    fn bytes(&self) -> Vec<u8> {
        let mut opts = Vec::new();
        if let Some((v, e)) = self.ts {
            opts.extend_from_slice(&[1, 1, 8, 10]);
            opts.extend_from_slice(&v.to_be_bytes());
            opts.extend_from_slice(&e.to_be_bytes());
        }
        if let Some(w) = self.wscale {
            opts.extend_from_slice(&[1, 3, 3, w]);
        }
        if !self.sack.is_empty() {
            opts.extend_from_slice(&[1, 1, 5, (2 + 8 * self.sack.len()) as u8]);
            for (l, r) in &self.sack {
                opts.extend_from_slice(&l.to_be_bytes());
                opts.extend_from_slice(&r.to_be_bytes());
            }
        }
        let hlen = 20 + opts.len();
        let mut b = vec![0u8; hlen + self.len];
        b[0..2].copy_from_slice(&RPORT.to_be_bytes());
        b[2..4].copy_from_slice(&LPORT.to_be_bytes());
        b[4..8].copy_from_slice(&self.seq.to_be_bytes());
        b[8..12].copy_from_slice(&self.ack.to_be_bytes());
        b[12] = ((hlen / 4) as u8) << 4;
        b[13] = self.flags;
        b[14..16].copy_from_slice(&self.window.to_be_bytes());
        b[20..hlen].copy_from_slice(&opts);
        // A SYN occupies the first sequence number; data follows it.
        let first = self.seq.wrapping_add(u32::from(self.flags & 2 != 0));
        for (i, x) in b[hlen..].iter_mut().enumerate() {
            *x = peer_byte(first.wrapping_add(i as u32).wrapping_sub(IRS + 1));
        }
        b
    }
}

struct World {
    layer: TcpLayer,
    sink: RecordingSink,
    now: Instant,
    c: TcpHandle,
    /// Bytes the application read, and the peer's highest byte sent.
    read: u32,
    peer_hi: u32,
    /// Bytes the application gave.
    written: u32,
    ts: u32,
}

impl World {
    fn feed(&mut self, seg: &PeerSeg) {
        if seg.len > 0 && seg.flags & 4 == 0 {
            let first = seg.seq.wrapping_add(u32::from(seg.flags & 2 != 0));
            let end = first.wrapping_add(seg.len as u32).wrapping_sub(IRS + 1);
            if end < 1 << 30 {
                self.peer_hi = self.peer_hi.max(end);
            }
        }
        let bytes = seg.bytes();
        self.layer.receive(
            self.now,
            PEER,
            US,
            &bytes,
            RxChecksum::Trusted,
        );
        self.step();
    }

    /// Dispatch, then check everything we sent.
    fn step(&mut self) {
        self.layer.dispatch(self.now, &mut self.sink);
        let sent = std::mem::take(&mut self.sink.sent);
        assert!(sent.len() <= MAX_SEGMENTS_PER_STEP, "unbounded output");
        for (dst, _, b) in &sent {
            assert_eq!(*dst, PEER);
            let hlen = usize::from(b[12] >> 4) * 4;
            let (seq, flags) = (u32::from_be_bytes([b[4], b[5], b[6], b[7]]), b[13]);
            let payload = &b[hlen..];
            if flags & 2 != 0 || payload.is_empty() {
                continue;
            }
            let off = seq.wrapping_sub(ISS + 1);
            assert!(
                u64::from(off) + payload.len() as u64 <= u64::from(self.written),
                "sent bytes the application never gave: {off}+{}",
                payload.len()
            );
            for (i, &x) in payload.iter().enumerate() {
                assert_eq!(
                    x,
                    our_byte(off + i as u32),
                    "our byte {} corrupted",
                    off + i as u32
                );
            }
        }
        // A runtime drains readiness events after every call; so do we, or
        // every connection the peer reopens would add one for good.
        let mut events = Vec::new();
        self.layer.take_events(&mut events);
        assert!(events.len() <= 16, "{} readiness events in one step", events.len());
        let q = self.layer.queue_lens();
        assert!(q[0] <= MAX_TIMERS, "timer heap grew to {}", q[0]);
        assert!(q[1] <= 2 && q[2] <= 4096 && q[3] <= 4, "queues {q:?}");
        if let Ok(info) = self.layer.info(self.c) {
            assert!(info.bytes_in_flight <= BUF + 2, "{info:?}");
            assert!(info.rcv_wnd <= 1 << 30, "{info:?}");
        }
    }

    fn recv(&mut self, max: usize) {
        let mut buf = vec![0u8; max.max(1)];
        match self.layer.recv(self.c, &mut buf) {
            Ok(n) => {
                for (i, &x) in buf[..n].iter().enumerate() {
                    let off = self.read + i as u32;
                    assert_eq!(x, peer_byte(off), "byte {off} read wrong");
                }
                self.read += n as u32;
                assert!(
                    self.read <= self.peer_hi,
                    "read {} > sent {}",
                    self.read,
                    self.peer_hi
                );
            }
            Err(e) => assert_ne!(e.kind(), ErrorKind::InvalidInput),
        }
        self.step();
    }

    fn send(&mut self, n: usize) {
        let data: Vec<u8> = (0..n as u32).map(|i| our_byte(self.written + i)).collect();
        if let Ok(k) = self.layer.send(self.c, &data) {
            self.written += k as u32;
        }
        self.step();
    }
}

fn establish(inp: &mut Input) -> Option<World> {
    let opts = inp.u8();
    let cfg = TcpConfig {
        rx_buffer: BUF,
        tx_buffer: BUF,
        sack: opts & 1 != 0,
        timestamps: opts & 2 != 0,
        window_scaling: opts & 4 != 0,
        rack: opts & 8 != 0,
        seed: Some(1),
        ..TcpConfig::default()
    };
    let mut layer = TcpLayer::new(cfg, US);
    layer.set_fixed_isn(Some(ISS));
    let l = layer.listen(SocketAddrV4::new(US, LPORT), 4).ok()?;
    let mut w = World {
        layer,
        sink: RecordingSink::new(US, 1500),
        now: Instant::from_secs(1000),
        c: l,
        read: 0,
        peer_hi: 0,
        written: 0,
        ts: 1,
    };
    // The SYN offers every option; the layer's config decides.
    let mut syn = PeerSeg {
        seq: IRS,
        ack: 0,
        flags: 2,
        window: 65535,
        ts: Some((1, 0)),
        wscale: Some(inp.u8() % 16),
        sack: Vec::new(),
        len: 0,
    };
    let mut b = syn.bytes();
    // MSS and SACK-permitted: NOP-padded in the spare room of the header.
    b.splice(20..20, [2, 4, 5, 0xb4, 1, 1, 4, 2]);
    b[12] = (((b.len()) / 4) as u8) << 4;
    w.layer
        .receive(w.now, PEER, US, &b, RxChecksum::Trusted);
    w.layer.dispatch(w.now, &mut w.sink);
    w.sink.sent.clear();
    syn.flags = 0x10;
    syn.seq = IRS + 1;
    syn.ack = ISS + 1;
    syn.wscale = None;
    syn.ts = Some((2, 0));
    w.feed(&syn);
    let (c, _) = w.layer.accept(l).ok()?;
    w.c = c;
    (w.layer.state(c) == TcpState::Established).then_some(w)
}

/// A segment from the peer: offset near RCV.NXT or anywhere, any flags,
/// length, ACK, window, timestamp and SACK blocks.
fn arbitrary_segment(w: &mut World, inp: &mut Input) -> PeerSeg {
    let far = inp.u8();
    let off = if far & 0x80 != 0 {
        inp.u32()
    } else {
        w.read
            .wrapping_add(u32::from(inp.u16()))
            .wrapping_sub(u32::from(far) << 4)
    };
    let flags = inp.u8();
    let len = usize::from(inp.u16() % 3000);
    let ack_sel = inp.u8();
    let ack = match ack_sel % 4 {
        0 => ISS + 1 + w.written,
        1 => inp.u32(),
        _ => (ISS + 1).wrapping_add(u32::from(inp.u16())),
    };
    w.ts += u32::from(ack_sel >> 4);
    let ts = (ack_sel & 4 != 0).then(|| (w.ts, inp.u32()));
    let nsack = usize::from(flags >> 6 & ack_sel >> 6);
    let sack = (0..nsack)
        .map(|_| {
            let l = (ISS + 1).wrapping_add(u32::from(inp.u16()));
            (l, l.wrapping_add(u32::from(inp.u16())))
        })
        .collect();
    PeerSeg {
        seq: off.wrapping_add(IRS + 1),
        ack,
        flags,
        window: inp.u16(),
        ts,
        wscale: None,
        sack,
        len,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let Some(mut w) = establish(&mut inp) else {
        panic!("handshake failed");
    };
    for _ in 0..4096 {
        if inp.0.is_empty() {
            break;
        }
        match inp.u8() % 8 {
            0 | 1 => {
                let seg = arbitrary_segment(&mut w, &mut inp);
                w.feed(&seg);
            }
            2 => {
                w.now += Duration::from_millis(u64::from(inp.u8()) * 7);
                w.step();
            }
            3 => {
                let n = usize::from(inp.u16());
                w.recv(n);
            }
            4 => {
                let n = usize::from(inp.u16());
                w.send(n);
            }
            5 => {
                // Only shutdowns: the handle stays valid for the checks.
                let how = match inp.u8() % 3 {
                    0 => Shutdown::Write,
                    1 => Shutdown::Read,
                    _ => Shutdown::Both,
                };
                let _ = w.layer.shutdown(w.c, how);
                w.step();
            }
            _ => {
                // An in-order, well-formed data segment that ACKs all we sent.
                let len = usize::from(inp.u8()) * 8;
                let seg = PeerSeg {
                    seq: (IRS + 1).wrapping_add(w.peer_hi),
                    ack: ISS + 1 + w.written,
                    flags: 0x18,
                    window: 65535,
                    ts: None,
                    wscale: None,
                    sack: Vec::new(),
                    len,
                };
                w.feed(&seg);
            }
        }
    }
    // Time runs out: read what is left, let every timer fire.
    for _ in 0..64 {
        w.recv(BUF);
        let Some(t) = w.layer.poll_at() else { break };
        w.now = w.now.max(t) + Duration::from_millis(1);
        w.step();
    }
});
