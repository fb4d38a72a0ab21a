//! Unit tests of the receive half.

use super::*;
use crate::stack::tcp::rmem::TcpMem;

fn new_mem() -> RcvMem {
    RcvMem::new(TcpMem::default())
}

impl Receiver {
    fn receive_data_t(&mut self, seq: Seq, data: &[u8]) -> Delivered {
        self.receive_data(seq, data, &mut new_mem())
    }
    fn read_t(&mut self, buf: &mut [u8]) -> usize {
        self.read(buf, &mut new_mem())
    }
}

fn rx() -> Receiver {
    let mut r = Receiver::new(4000, 100, Instant::ZERO);
    r.synchronize(Seq(999));
    r
}

#[test]
fn every_second_segment_is_acked_at_once() {
    let mut r = rx();
    assert_eq!(r.receive_data_t(Seq(1000), &[1; 100]).ack, AckDue::Delayed);
    let d = r.receive_data_t(Seq(1100), &[2; 100]);
    assert_eq!((d.ack, d.readable), (AckDue::Now, true));
    r.on_ack_sent();
    assert_eq!(r.receive_data_t(Seq(1200), &[3; 100]).ack, AckDue::Delayed);
    assert_eq!(r.nxt(), Seq(1300));
    assert_eq!(r.readable_len(), 300);
}

/// The peer fills the window we offered, the application reads it
/// all: the ring doubles, up to what the window scale can offer.
#[test]
fn a_window_limited_fast_reader_gets_a_larger_ring() {
    let mut pool = BufferPool::default();
    let mem = new_mem();
    let mut r = Receiver::new(4000, 1000, Instant::ZERO);
    r.synchronize(Seq(999));
    r.negotiate(true, false, None, Instant::ZERO);
    r.wscale = 1; // largest window: 131,070
    let mut hdr = OutHdr::default();
    let mut buf = vec![0u8; 1 << 20];
    let mut next = Seq(1000);
    let mut caps = vec![];
    for _ in 0..8 {
        r.fill_ack(&mut hdr, &new_mem());
        r.on_ack_sent();
        let wnd = usize::from(hdr.window) << r.wscale;
        // Half the window: the peer had room for more, so our
        // window did not hold it back.
        r.provide(&mut pool);
        r.receive_data_t(next, &vec![1; wnd / 2]);
        next += wnd / 2;
        assert_eq!(r.read_t(&mut buf), wnd / 2);
        r.release_if_idle(&mut pool);
        assert!(!r.grow_if_limited(&mem));
        // Up to the edge: the application read it all, so it grows.
        r.provide(&mut pool);
        r.receive_data_t(next, &vec![2; wnd - wnd / 2]);
        next += wnd - wnd / 2;
        assert!(!r.grow_if_limited(&mem), "not while bytes are unread");
        r.read_t(&mut buf);
        r.release_if_idle(&mut pool);
        r.grow_if_limited(&mem);
        caps.push(r.capacity());
    }
    assert_eq!(caps[..3], [8000, 16000, 32000]);
    assert_eq!(*caps.last().unwrap(), 65535 << 1);
}

/// Shift 7, as Linux offers for its 6 MiB tcp_rmem maximum: a bulk
/// receiver's ring doubles from the default 256 KiB up to 6 MiB
/// and no further (RFC 7323 2.3: the window field reaches 8 MiB).
#[test]
fn the_offered_scale_lets_the_ring_grow_to_six_mib() {
    let mut pool = BufferPool::default();
    let mut mem = new_mem();
    let mut r = Receiver::new(256 << 10, 1448, Instant::ZERO);
    r.synchronize(Seq(999));
    r.negotiate(true, false, None, Instant::ZERO);
    assert_eq!(r.wscale(), 7);
    let mut hdr = OutHdr::default();
    let mut buf = vec![0u8; MAX_RX_BUFFER];
    let mut next = Seq(1000);
    let mut caps = vec![];
    for _ in 0..7 {
        r.fill_ack(&mut hdr, &mem);
        r.on_ack_sent();
        let wnd = usize::from(hdr.window) << r.wscale;
        assert!(wnd <= r.capacity(), "offers {wnd} > {}", r.capacity());
        r.provide(&mut pool);
        assert!(!r.receive_data(next, &buf[..wnd], &mut mem).buffer_full);
        next += wnd;
        assert_eq!(r.read(&mut buf, &mut mem), wnd);
        r.release_if_idle(&mut pool);
        r.grow_if_limited(&mem);
        caps.push(r.capacity() >> 10);
    }
    assert_eq!(caps, [512, 1024, 2048, 4096, 6144, 6144, 6144]);
}

/// A ring the application sized keeps the shift for its own size.
#[test]
fn a_sized_ring_offers_the_scale_of_its_size() {
    let mut r = Receiver::new(256 << 10, 1448, Instant::ZERO);
    r.set_capacity(3000);
    assert_eq!(r.offered_wscale(), 0);
    r.set_capacity(200_000);
    r.negotiate(true, false, None, Instant::ZERO);
    assert_eq!(r.wscale(), 2);
    assert_eq!(Receiver::wscale_for_growing(256 << 10), 7);
}

/// With 128-byte window units and an application that does not read,
/// a stream of small segments must not creep the window's right edge
/// past the end of the ring: every byte we offered is stored.
#[test]
fn small_segments_never_push_the_offered_window_past_the_ring() {
    let mut pool = BufferPool::default();
    let mut mem = new_mem();
    let mut r = Receiver::new(10_000, 100, Instant::ZERO);
    r.synchronize(Seq(999));
    r.negotiate(true, false, None, Instant::ZERO);
    r.wscale = 7;
    r.provide(&mut pool);
    let mut hdr = OutHdr::default();
    let mut next = Seq(1000);
    for i in 0..200 {
        r.fill_ack(&mut hdr, &mem);
        r.on_ack_sent();
        let wnd = usize::from(hdr.window) << 7;
        let free = r.capacity() - r.readable_len();
        assert!(
            wnd <= free,
            "ACK {i} offers {wnd} bytes, the ring has {free}"
        );
        if wnd == 0 {
            return;
        }
        // The peer sends what it may, in 90-byte segments.
        for _ in 0..2 {
            let n = 90.min(wnd);
            assert!(!r.receive_data(next, &[7; 90][..n], &mut mem).buffer_full);
            next += n;
        }
    }
    panic!("the window never closed");
}

#[test]
fn a_ring_the_application_sized_does_not_grow() {
    let mut pool = BufferPool::default();
    let mem = new_mem();
    let mut r = Receiver::new(4000, 1000, Instant::ZERO);
    r.set_capacity(3000);
    r.synchronize(Seq(999));
    r.negotiate(true, false, None, Instant::ZERO);
    let mut hdr = OutHdr::default();
    r.fill_ack(&mut hdr, &new_mem());
    r.on_ack_sent();
    r.provide(&mut pool);
    r.receive_data_t(Seq(1000), &[1; 3000]);
    r.read_t(&mut [0u8; 3000]);
    r.release_if_idle(&mut pool);
    assert!(!r.grow_if_limited(&mem));
    assert_eq!(r.capacity(), 3000);
}

#[test]
fn a_held_fin_comes_in_order_with_the_hole() {
    let mut r = rx();
    let d = r.receive_data_t(Seq(1100), &[2; 100]);
    assert!(d.out_of_order && !d.readable);
    assert_eq!(r.receive_fin(Seq(1200)), FinArrival::NotInOrder);
    let d = r.receive_data_t(Seq(1000), &[1; 100]);
    assert_eq!(d.fin_in_order, Some(Seq(1200)));
    assert_eq!(r.receive_fin(Seq(1200)), FinArrival::Accepted);
    assert_eq!(r.receive_fin(Seq(1200)), FinArrival::NotInOrder);
    assert!(r.fin_received() && r.nxt() == Seq(1201));
}

#[test]
fn sack_blocks_and_dsack_fill_the_ack() {
    let mut r = rx();
    r.negotiate(false, true, Some(7), Instant::ZERO);
    r.receive_data_t(Seq(1100), &[2; 100]);
    r.note_duplicate(Seq(900), Seq(950));
    let mut hdr = OutHdr {
        ts: Some((5, 0)),
        ..OutHdr::default()
    };
    r.fill_ack(&mut hdr, &new_mem());
    assert_eq!(hdr.ack, Some(Seq(1000)));
    assert_eq!(hdr.ts, Some((5, 7)));
    assert_eq!(
        hdr.sack.as_slice(),
        &[(Seq(900), Seq(950)), (Seq(1100), Seq(1200))]
    );
}
