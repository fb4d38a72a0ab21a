//! Arbitrary frames into a whole stack that has listeners (one with a
//! tiny SYN queue, so SYN cookies are reached), an active open, accepted
//! connections that an "application" reads, writes and closes, and a UDP
//! socket; the clock moves as the input says.
//!
//! Input: a sequence of operations. Byte `op`, then for a frame two bytes
//! of length and the frame. `op & 3 == 0` advances the clock by the next
//! byte in milliseconds x 8; otherwise a frame follows, and bits of `op`
//! ask for help past the layers a fuzzer finds hard (our MAC and
//! EtherType, a valid IPv4 header checksum and our address; the device
//! vouching for the transport checksum) and for application calls.
//!
//! Invariants: nothing panics, and what the stack emits for one step is
//! bounded.
#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use smoltcp::wire::{EthernetAddress, Ipv4Cidr};
use tapstack::stack::tcp::TcpHandle;
use tapstack::stack::time::Instant;
use tapstack::stack::ip::RxChecksum;
use tapstack::stack::{Stack, StackConfig};

const MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const US: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// More frames than one step can rightly emit (a full send buffer in
/// MSS segments for every connection, plus ARP and RSTs).
const MAX_FRAMES_PER_STEP: usize = 8192;

fn new_stack(now: Instant) -> (Stack, Vec<TcpHandle>) {
    let mut c = StackConfig::new(EthernetAddress(MAC), Ipv4Cidr::new(US, 24));
    c.seed = Some(1);
    c.tcp.syn_backlog = 4;
    c.tcp.rx_buffer = 16 * 1024;
    c.tcp.tx_buffer = 16 * 1024;
    let mut s = Stack::new(c);
    let l7 = s.tcp.listen(SocketAddrV4::new(US, 7), 2).unwrap();
    let l80 = s
        .tcp
        .listen(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80), 8)
        .unwrap();
    let _ = s.tcp.connect(now, None, SocketAddrV4::new(PEER, 5000));
    let _ = s.udp.bind(SocketAddrV4::new(US, 53));
    (s, vec![l7, l80])
}

/// Our MAC, IPv4 EtherType, our address and a good header checksum.
fn help(frame: &mut [u8]) {
    if frame.len() < 34 {
        return;
    }
    frame[..6].copy_from_slice(&MAC);
    frame[12..14].copy_from_slice(&[8, 0]);
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    if ihl < 20 || 14 + ihl > frame.len() {
        return;
    }
    frame[14] = 0x40 | (frame[14] & 0x0f);
    frame[26..30].copy_from_slice(&PEER.octets());
    frame[30..34].copy_from_slice(&US.octets());
    let total = (frame.len() - 14) as u16;
    frame[16..18].copy_from_slice(&total.to_be_bytes());
    frame[24..26].fill(0);
    let sum = ip_checksum(&frame[14..14 + ihl]);
    frame[24..26].copy_from_slice(&sum.to_be_bytes());
}

fn ip_checksum(h: &[u8]) -> u16 {
    let mut s: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn step(s: &mut Stack, now: Instant) {
    s.handle_timeout(now);
    let mut n = 0;
    while let Some(f) = s.poll_transmit() {
        n += 1;
        assert!(n <= MAX_FRAMES_PER_STEP, "unbounded output");
        s.recycle(f);
    }
}

/// The application: accepts, reads everything, echoes some, closes some.
fn app(s: &mut Stack, listeners: &[TcpHandle], conns: &mut Vec<TcpHandle>, op: u8) {
    for &l in listeners {
        while let Ok((c, _)) = s.tcp.accept(l) {
            if conns.len() < 32 {
                conns.push(c);
            } else {
                s.tcp.close(c);
            }
        }
    }
    let mut buf = [0u8; 4096];
    for &c in conns.iter() {
        while let Ok(n) = s.tcp.recv(c, &mut buf) {
            if n == 0 {
                break;
            }
            if op & 0x20 != 0 {
                let _ = s.tcp.send(c, &buf[..n]);
            }
        }
    }
    if op & 0x40 != 0
        && let Some(c) = conns.pop()
    {
        if op & 0x80 != 0 {
            s.tcp.abort(c);
        } else {
            s.tcp.close(c);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut now = Instant::from_secs(1000);
    let (mut s, listeners) = new_stack(now);
    let mut conns = Vec::new();
    let mut rest = data;
    let mut frame = Vec::with_capacity(2048);
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        if op & 3 == 0 {
            let Some((&ms, tail)) = rest.split_first() else {
                break;
            };
            rest = tail;
            now += Duration::from_millis(u64::from(ms) * 8);
        } else {
            if rest.len() < 2 {
                break;
            }
            let len =
                usize::from(u16::from_be_bytes([rest[0], rest[1]]) % 1600).min(rest.len() - 2);
            frame.clear();
            frame.extend_from_slice(&rest[2..2 + len]);
            rest = &rest[2 + len..];
            if op & 4 != 0 {
                help(&mut frame);
            }
            let csum = if op & 8 != 0 {
                RxChecksum::Trusted
            } else {
                RxChecksum::Verify
            };
            s.handle_frame(now, &frame, csum);
        }
        step(&mut s, now);
        app(&mut s, &listeners, &mut conns, op);
        step(&mut s, now);
    }
    // Let every timer run out (bounded: each deadline is met once).
    for _ in 0..64 {
        let Some(t) = s.poll_at() else { break };
        now = now.max(t) + Duration::from_millis(1);
        step(&mut s, now);
    }
});
