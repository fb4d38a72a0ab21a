//! The GSO write path through the runtime, without root: one stack's end
//! of an in-memory link takes virtio-net writes the way a TAP with
//! offloads does (a partial checksum is completed and the frame goes to
//! the peer whole, which the peer stack verifies), or refuses super-frames
//! (or any offload) with EINVAL as a kernel without that support would.

use std::io::{self, IoSlice, Read, Write};
use std::net::{SocketAddr, SocketAddrV4};
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use tapstack::api::{TcpListener, TcpStream};
use tapstack::device::pair::{self, PairDevice};
use tapstack::device::vnet::{
    F_NEEDS_CSUM, GSO_NONE, GSO_TCPV4, VNET_HDR_LEN, VnetHdr, complete_checksum,
};
use tapstack::device::{Device, RxMeta};
use tapstack::stack::RxChecksum;
use tapstack::stack::rng::Rng;

mod inmem;
use inmem::{B, Pair};

const WAIT: Duration = Duration::from_secs(10);
const EINVAL: i32 = 22;

/// What the device end says EINVAL to.
#[derive(Clone, Copy, PartialEq)]
enum Refuse {
    Nothing,
    /// Super-frames (a kernel without GSO for TAPs).
    Gso,
    /// GSO, and any checksum to complete once this many were: a kernel
    /// that changes its mind mid-transfer, so partial-sum segments are
    /// still queued when it does.
    OffloadsAfter(u64),
}

/// A pair end with GSO writes.
struct GsoEnd {
    inner: PairDevice,
    refuse: Refuse,
    super_frames: AtomicU64,
    /// Frames (merged or not) whose checksum this end completed.
    partial: AtomicU64,
}

impl Device for GsoEnd {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.recv(buf)
    }

    fn send(&self, frame: &[u8]) -> io::Result<usize> {
        self.inner.send(frame)
    }

    fn recv_frame(&self, buf: &mut [u8]) -> io::Result<(usize, RxMeta)> {
        self.inner.recv_frame(buf)
    }

    fn gso(&self) -> bool {
        true
    }

    /// What tun_get_user / virtio_net_hdr_to_skb check, then the frame.
    fn send_vnet(&self, parts: &[IoSlice<'_>]) -> io::Result<usize> {
        let bytes: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
        let hdr = VnetHdr::from_bytes(bytes[..VNET_HDR_LEN].try_into().unwrap());
        let mut frame = bytes[VNET_HDR_LEN..].to_vec();
        let invalid = || io::Error::from_raw_os_error(EINVAL);
        if hdr.gso_type != GSO_NONE {
            if self.refuse != Refuse::Nothing {
                return Err(invalid());
            }
            let ok = hdr.gso_type == GSO_TCPV4
                && hdr.gso_size > 0
                && hdr.flags & F_NEEDS_CSUM != 0
                && hdr.csum_offset == 16
                && usize::from(hdr.hdr_len) <= frame.len()
                && frame.len() - usize::from(hdr.hdr_len) > usize::from(hdr.gso_size);
            if !ok {
                return Err(invalid());
            }
            self.super_frames.fetch_add(1, Ordering::Relaxed);
        }
        if hdr.flags & F_NEEDS_CSUM != 0 {
            if let Refuse::OffloadsAfter(n) = self.refuse
                && self.partial.load(Ordering::Relaxed) >= n
            {
                return Err(invalid());
            }
            // skb_partial_csum_set: the field must lie in the frame.
            let (start, off) = (usize::from(hdr.csum_start), usize::from(hdr.csum_offset));
            if start < 14 || start + off + 2 > frame.len() {
                return Err(invalid());
            }
            self.partial.fetch_add(1, Ordering::Relaxed);
            complete_checksum(&mut frame, start, off);
        }
        self.inner.send(&frame)
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.inner.fd()
    }

    fn name(&self) -> &str {
        "gso-pair"
    }
}

/// The first connection on `l`; panics after `wait` without one.
fn accept_within(l: &TcpListener, wait: Duration) -> TcpStream {
    l.set_nonblocking(true).unwrap();
    let end = std::time::Instant::now() + wait;
    loop {
        match l.accept() {
            Ok((s, _)) => return s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                assert!(
                    std::time::Instant::now() < end,
                    "no connection within {wait:?}"
                );
                thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// What one transfer showed.
struct Seen {
    sender: tapstack::stack::Counters,
    receiver: tapstack::stack::Counters,
    super_frames: u64,
    partial: u64,
}

/// Sends `len` seeded bytes from a stack on a GSO end to a plain one
/// (after checking every byte arrived).
fn transfer(refuse: Refuse, len: usize) -> Seen {
    let (da, db) = pair::link().expect("socketpair");
    let gso = Arc::new(GsoEnd {
        inner: da,
        refuse,
        super_frames: AtomicU64::new(0),
        partial: AtomicU64::new(0),
    });
    let nets = Pair::on(gso.clone(), Arc::new(db));
    let listener = TcpListener::bind(&nets.b, "0.0.0.0:9000").unwrap();
    let mut data = vec![0u8; len];
    Rng::new(7).fill(&mut data);
    let sent = data.clone();
    let net_a = nets.a.clone();
    let sender = thread::spawn(move || {
        let to = SocketAddr::V4(SocketAddrV4::new(B, 9000));
        let mut s = TcpStream::connect_timeout(&net_a, &to, WAIT).unwrap();
        s.set_write_timeout(Some(WAIT)).unwrap();
        // Uneven writes: runs end at write boundaries (PSH) too.
        for chunk in sent.chunks(50_000) {
            s.write_all(chunk).unwrap();
        }
    });
    let mut conn = accept_within(&listener, WAIT);
    conn.set_read_timeout(Some(WAIT)).unwrap();
    let mut got = Vec::with_capacity(len);
    let mut buf = vec![0u8; 1 << 16];
    while got.len() < len {
        let n = conn.read(&mut buf).expect("read (timed out?)");
        assert!(n > 0, "EOF after {} of {len} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
    }
    sender.join().unwrap();
    assert!(got == data, "the data differs");
    Seen {
        sender: nets.a.counters(),
        receiver: nets.b.counters(),
        super_frames: gso.super_frames.load(Ordering::Relaxed),
        partial: gso.partial.load(Ordering::Relaxed),
    }
}

#[test]
fn segments_leave_as_gso_super_frames_byte_exact() {
    let seen = transfer(Refuse::Nothing, 8 << 20);
    let c = &seen.sender;
    let frames = c.get("tx.gso_frames");
    assert!(frames > 0, "no super-frame sent: {c}");
    assert_eq!(seen.super_frames, frames, "{c}");
    // Most data leaves merged: more than 2 segments per super-frame.
    assert!(c.get("tx.gso_segments") > 2 * frames, "{c}");
    assert_eq!(c.get("tx.gso_refused"), 0, "{c}");
    // The stack left every TCP checksum to the device (the handshake and
    // single segments too), and each came out right at the peer.
    assert!(
        seen.partial > frames,
        "{} partial frames: {c}",
        seen.partial
    );
    assert_eq!(
        seen.receiver.get("tcp.bad_checksum"),
        0,
        "{}",
        seen.receiver
    );
}

#[test]
fn a_device_that_refuses_gso_gets_single_frames() {
    let seen = transfer(Refuse::Gso, 2 << 20);
    let c = &seen.sender;
    assert_eq!(c.get("tx.gso_refused"), 1, "{c}");
    assert_eq!(c.get("tx.gso_frames"), 0, "{c}");
    assert_eq!(seen.super_frames, 0);
    // Still with partial checksums the device completes.
    assert!(seen.partial > 1000, "{} partial frames: {c}", seen.partial);
    assert_eq!(c.get("tx.csum_offload_refused"), 0, "{c}");
    assert_eq!(
        seen.receiver.get("tcp.bad_checksum"),
        0,
        "{}",
        seen.receiver
    );
}

#[test]
fn a_device_that_refuses_partial_checksums_gets_full_ones() {
    let seen = transfer(Refuse::OffloadsAfter(200), 4 << 20);
    let c = &seen.sender;
    assert_eq!(c.get("tx.csum_offload_refused"), 1, "{c}");
    assert_eq!(c.get("tx.gso_frames"), 0, "{c}");
    assert_eq!(seen.partial, 200);
    // Segments made with partial sums before the refusal got full ones on
    // the way out: none reached the peer with a bad checksum.
    assert_eq!(
        seen.receiver.get("tcp.bad_checksum"),
        0,
        "{}",
        seen.receiver
    );
}

/// A's frames as the wire carries them (super-segments cut as the kernel
/// cuts them, partial checksums completed), for `len` seeded bytes sent
/// from A to B in the sans-I/O core on a virtual clock, and the number of
/// super-segments among them. Checks every byte arrived.
fn core_transfer(offloads: bool, len: usize) -> (Vec<Vec<u8>>, usize) {
    use tapstack::device::vnet::{complete_checksum, segment};
    use tapstack::stack::iface::TxCsum;
    use tapstack::stack::{Instant, Stack};

    let mut a = Stack::new(inmem::config(inmem::A, 1));
    let mut b = Stack::new(inmem::config(B, 2));
    a.set_tx_offloads(offloads, offloads);
    let server = SocketAddrV4::new(B, 9000);
    let listener = b.tcp.listen(server, 4).unwrap();
    let mut now = Instant::from_micros(0);
    let ca = a.tcp.connect(now, None, server).unwrap();
    let mut data = vec![0u8; len];
    Rng::new(9).fill(&mut data);
    let (mut sent, mut got, mut cb) = (0, Vec::with_capacity(len), None);
    let (mut wire, mut supers, mut scratch) = (Vec::new(), 0, Vec::new());
    let mut buf = vec![0u8; 1 << 16];
    for _ in 0..100_000 {
        if got.len() == len {
            return (wire, supers);
        }
        now = Instant::from_micros(now.total_micros() + 20);
        if sent < len {
            sent += a.tcp.send(ca, &data[sent..]).unwrap_or(0);
        }
        for s in [&mut a, &mut b] {
            s.handle_timeout(now);
        }
        let mut to_b = Vec::new();
        while let Some(mut f) = a.poll_transmit() {
            let off = f.offload();
            if let Some(gso) = off.gso {
                supers += 1;
                segment(&f, gso, true, &mut scratch, &mut |s| to_b.push(s.to_vec()));
            } else {
                if let TxCsum::Partial { start, offset } = off.csum {
                    complete_checksum(&mut f, start.into(), offset.into());
                }
                to_b.push(f.to_vec());
            }
            a.recycle(f);
        }
        for f in &to_b {
            b.handle_frame(now, f, RxChecksum::Verify);
        }
        wire.extend(to_b);
        while let Some(f) = b.poll_transmit() {
            a.handle_frame(now, &f, RxChecksum::Verify);
            b.recycle(f);
        }
        if cb.is_none() {
            cb = b.tcp.accept(listener).ok().map(|(h, _)| h);
        }
        while let Some(h) = cb
            && let Ok(n) = b.tcp.recv(h, &mut buf)
            && n > 0
        {
            got.extend_from_slice(&buf[..n]);
        }
    }
    panic!("{} of {len} bytes after 100,000 rounds", got.len());
}

/// TCP segmentation offload changes nothing on the wire: with offloads,
/// A's stack hands over super-segments, and once cut as the kernel cuts
/// them they are byte for byte (sequence numbers, IP ids, flags,
/// checksums) the frames the same stack sends without offloads.
#[test]
fn super_segments_cut_back_are_the_frames_sent_without_offload() {
    let (plain, none) = core_transfer(false, 3 << 20);
    let (cut, supers) = core_transfer(true, 3 << 20);
    assert_eq!(none, 0);
    // 3 MiB in super-segments of up to 64 KiB: at least 48 if all were.
    assert!(supers > 40, "only {supers} super-segments");
    assert_eq!(cut.len(), plain.len(), "frame counts differ");
    for (i, (c, p)) in cut.iter().zip(&plain).enumerate() {
        assert!(c == p, "frame {i} differs: {c:02x?}\nvs {p:02x?}");
    }
}
