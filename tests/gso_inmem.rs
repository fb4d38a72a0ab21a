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
