//! The virtio-net header a TAP opened with IFF_VNET_HDR puts before every
//! frame, and the two offloads built on it (as QEMU and vhost-net use them):
//!
//! - read side: with TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4) the kernel
//!   hands over frames whose checksum is only partial (NEEDS_CSUM) and TCP
//!   super-frames of up to ~64 KB that it did not cut into segments.
//!   [`classify_rx`] says which, and whether the kernel vouches for the
//!   checksum: it built a NEEDS_CSUM packet itself, so the stack need not
//!   sum it at all ([`complete_checksum`] only when a capture must show
//!   it whole). The super-frame goes to the stack whole: cutting it
//!   into MSS-sized frames first measured ~25% slower (kernel->stack bulk,
//!   11-15 vs 15-18 Gbit/s), and the stack takes IPv4 packets up to 65,535
//!   bytes.
//! - write side: [`Coalescer`] merges runs of consecutive segments of one
//!   TCP flow into one super-frame with a GSO header; the kernel treats it
//!   like a TSO packet from a NIC driver (one skb, segmented only if it
//!   must be).
//!
//! Kernel contract (drivers/net/tun_vnet.h, include/linux/virtio_net.h,
//! Linux 6.x): `hdr_len` is raised to csum_start + csum_offset + 2 and must
//! not exceed the frame; with NEEDS_CSUM the kernel checks that csum_start
//! / csum_offset lie in the packet (skb_partial_csum_set) and, for
//! GSO_TCPV4, that csum_offset is the TCP checksum field (16); gso_size
//! must not be 0; a frame whose payload is not larger than gso_size is
//! taken as an ordinary packet. The TCP checksum field then holds the
//! pseudo-header sum only (CHECKSUM_PARTIAL, as tcp_v4_send_check leaves
//! it). No unsafe code here: the TAP does the I/O.

use std::io::{self, IoSlice};

use smoltcp::wire::{IpProtocol, Ipv4Address, checksum};

/// `struct virtio_net_hdr` (legacy layout, the TAP default size).
pub const VNET_HDR_LEN: usize = 10;
/// The checksum from `csum_start` to the end is partial: complete it.
pub const F_NEEDS_CSUM: u8 = 1;
/// The kernel already verified the checksum.
pub const F_DATA_VALID: u8 = 2;
/// Not a GSO frame.
pub const GSO_NONE: u8 = 0;
/// A TCP/IPv4 super-frame to cut at `gso_size`.
pub const GSO_TCPV4: u8 = 1;
/// Added to a GSO type when the flow uses ECN (CWR on the first segment).
pub const GSO_ECN: u8 = 0x80;

/// Most segments merged into one super-frame (one writev of 2 + this many
/// slices; 44 full segments already fill 64 KB at MSS 1448).
pub const MAX_SEGS: usize = 64;

const ETH: usize = 14;
/// TCP header offset in a frame whose IPv4 header has no options.
const L4: usize = ETH + 20;
/// Largest IPv4 datagram (RFC 791 total length).
const IP_MAX: usize = 65_535;
const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;

/// The header fields, in host order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHdr {
    /// F_NEEDS_CSUM / F_DATA_VALID.
    pub flags: u8,
    /// GSO_NONE or GSO_TCPV4 (plus GSO_ECN).
    pub gso_type: u8,
    /// Length of the headers before the payload (Ethernet to TCP).
    pub hdr_len: u16,
    /// Payload bytes per segment (the MSS) of a super-frame.
    pub gso_size: u16,
    /// Where the partially summed region starts.
    pub csum_start: u16,
    /// Where the checksum field is, from `csum_start`.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Legacy virtio, which a TAP speaks unless told TUNSETVNETLE/BE, uses
    /// the host's byte order for the 16-bit fields.
    pub fn to_bytes(self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }

    /// Reads the header (host byte order, see `to_bytes`).
    pub fn from_bytes(b: &[u8; VNET_HDR_LEN]) -> VnetHdr {
        let u16_at = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        }
    }
}

/// The zero header of a frame that needs nothing from the kernel.
pub const PLAIN: [u8; VNET_HDR_LEN] = [0; VNET_HDR_LEN];

/// What a received frame turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxKind {
    /// An ordinary frame.
    Plain,
    /// A TCP/IPv4 super-frame (TSO) the kernel did not cut into segments.
    Gso,
    /// Unusable; the name is the counter to bump.
    Dropped(&'static str),
}

/// What the kernel said of a received frame's transport checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxCsum {
    /// Nothing: the stack verifies it.
    Unknown,
    /// DATA_VALID: the kernel verified it.
    Valid,
    /// NEEDS_CSUM: the field at `start + offset` holds the pseudo-header
    /// sum only (CHECKSUM_PARTIAL): the kernel built the packet, or GRO
    /// merged segments whose sums it had checked. The offsets lie within
    /// the frame.
    Partial {
        /// Where the summed region starts.
        start: usize,
        /// Where the checksum field is, from `start`.
        offset: usize,
    },
}

/// A received frame's kind and checksum state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxMeta {
    /// Plain, super-frame or dropped.
    pub kind: RxKind,
    /// What is known of its transport checksum.
    pub csum: RxCsum,
}

impl RxMeta {
    /// An ordinary frame from a device without virtio-net headers.
    pub const PLAIN: RxMeta = RxMeta {
        kind: RxKind::Plain,
        csum: RxCsum::Unknown,
    };

    /// A read shorter than the virtio-net header.
    pub fn short() -> RxMeta {
        RxMeta::dropped("rx.vnet_short")
    }

    fn dropped(why: &'static str) -> RxMeta {
        RxMeta {
            kind: RxKind::Dropped(why),
            csum: RxCsum::Unknown,
        }
    }
}

/// Reads the header the kernel put before a frame of `len` bytes. A TCPv4
/// super-frame stays whole (the stack takes IPv4 packets up to 65,535
/// bytes); nothing is summed here.
pub fn classify_rx(hdr: &VnetHdr, len: usize) -> RxMeta {
    let csum = if hdr.flags & F_NEEDS_CSUM != 0 {
        let (start, offset) = (usize::from(hdr.csum_start), usize::from(hdr.csum_offset));
        if start < ETH || start + offset + 2 > len {
            return RxMeta::dropped("rx.vnet_bad_csum_offsets");
        }
        RxCsum::Partial { start, offset }
    } else if hdr.flags & F_DATA_VALID != 0 {
        RxCsum::Valid
    } else {
        RxCsum::Unknown
    };
    let kind = match hdr.gso_type & !GSO_ECN {
        GSO_NONE => RxKind::Plain,
        // We only offered TSO4 (TUNSETOFFLOAD); anything else is a kernel
        // we do not understand.
        GSO_TCPV4 if hdr.gso_size > 0 => RxKind::Gso,
        _ => return RxMeta::dropped("rx.vnet_unsupported_gso"),
    };
    RxMeta { kind, csum }
}

/// RFC 1071 over `frame[start..]`, whose checksum field at
/// `start + offset` already holds the pseudo-header sum; the result is
/// stored in that field. The offsets are those [`classify_rx`] checked
/// against this frame (a field past the end is left alone, not a panic).
pub fn complete_checksum(frame: &mut [u8], start: usize, offset: usize) {
    let at = start.saturating_add(offset);
    if at.saturating_add(2) > frame.len() {
        return;
    }
    let sum = checksum::data(&frame[start..]);
    frame[at..at + 2].copy_from_slice(&(!sum).to_be_bytes());
}

fn be16(f: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

fn be32(f: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([f[at], f[at + 1], f[at + 2], f[at + 3]])
}

/// What the coalescer needs of a TCP/IPv4 frame.
#[derive(Clone, Copy, Debug)]
struct Tcp4 {
    tcp_hlen: usize,
    payload: usize,
    seq: u32,
    ident: u16,
    flags: u8,
}

impl Tcp4 {
    /// An Ethernet frame carrying one whole TCP/IPv4 segment: IPv4 header
    /// without options, not a fragment, no Ethernet padding.
    fn parse(f: &[u8]) -> Option<Tcp4> {
        if tcp_start(f)? != L4 || usize::from(be16(f, ETH + 2)) != f.len() - ETH {
            return None;
        }
        let tcp_hlen = usize::from(f[L4 + 12] >> 4) * 4;
        if tcp_hlen < 20 || L4 + tcp_hlen > f.len() {
            return None;
        }
        Some(Tcp4 {
            tcp_hlen,
            payload: f.len() - L4 - tcp_hlen,
            seq: be32(f, L4 + 4),
            ident: be16(f, ETH + 4),
            flags: f[L4 + 13],
        })
    }

    fn hdr_len(&self) -> usize {
        L4 + self.tcp_hlen
    }
}

/// Where the TCP header of an IPv4 frame starts, if the frame is a whole
/// (unfragmented) TCP segment: the `csum_start` of its checksum.
fn tcp_start(f: &[u8]) -> Option<usize> {
    if f.len() < L4 || f[12..14] != [0x08, 0x00] || f[ETH] >> 4 != 4 || f[ETH + 9] != 6 {
        return None;
    }
    let start = ETH + usize::from(f[ETH] & 0x0f) * 4;
    let whole = be16(f, ETH + 6) & 0x3fff == 0;
    (whole && start >= L4 && start + 20 <= f.len()).then_some(start)
}

/// Writes the full TCP checksum of a whole TCP/IPv4 frame, whatever its
/// field held (a partial sum for a device that then refused to complete
/// it). Anything else is left alone.
pub fn fill_tcp_checksum(frame: &mut [u8]) {
    let Some(start) = tcp_start(frame) else {
        return;
    };
    let end = ETH + usize::from(be16(frame, ETH + 2));
    if end > frame.len() || end < start + 20 {
        return;
    }
    let src = Ipv4Address::from(be32(frame, ETH + 12));
    let dst = Ipv4Address::from(be32(frame, ETH + 16));
    let at = start + 16;
    frame[at..at + 2].fill(0);
    let pseudo = checksum::pseudo_header_v4(&src, &dst, IpProtocol::Tcp, (end - start) as u32);
    let sum = checksum::combine(&[pseudo, checksum::data(&frame[start..end])]);
    frame[at..at + 2].copy_from_slice(&(!sum).to_be_bytes());
}

/// Merges runs of consecutive frames of one TCP flow into GSO
/// super-frames. Feed frames in order with [`Coalescer::fits`] /
/// [`Coalescer::push`]; [`Coalescer::flush`] writes the run.
#[derive(Default)]
pub struct Coalescer {
    /// TCP segments arrive with the pseudo-header sum only (the stack's
    /// checksum offload): every one leaves with NEEDS_CSUM, merged or not.
    partial_tcp_csum: bool,
    /// Off once the device refused a super-frame: single frames only.
    no_merge: bool,
    /// The last flush wrote a NEEDS_CSUM header.
    sent_partial: bool,
    run: Vec<Vec<u8>>,
    /// Set while the run is mergeable TCP (the first and last segment).
    first: Option<Tcp4>,
    last: Option<Tcp4>,
    /// Payload bytes in the run.
    payload: usize,
    /// The super-frame's Ethernet + IPv4 + TCP header.
    header: Vec<u8>,
}

impl Coalescer {
    /// An empty coalescer.
    pub fn new() -> Coalescer {
        Coalescer::default()
    }

    /// A coalescer for a stack that leaves TCP checksums to the device.
    pub fn with_partial_tcp_checksums() -> Coalescer {
        Coalescer {
            partial_tcp_csum: true,
            ..Coalescer::default()
        }
    }

    /// Whether TCP frames are taken with partial checksums.
    pub fn partial_tcp_checksums(&self) -> bool {
        self.partial_tcp_csum
    }

    /// Whether the last [`Coalescer::flush`] asked the device to complete
    /// a checksum (what a refusal of that write refused).
    pub fn sent_partial(&self) -> bool {
        self.sent_partial
    }

    /// From now on every frame leaves on its own (still with NEEDS_CSUM
    /// where the checksum is partial).
    pub fn stop_merging(&mut self) {
        self.no_merge = true;
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.run.is_empty()
    }

    /// Frames in the run.
    pub fn len(&self) -> usize {
        self.run.len()
    }

    /// Whether `frame` may join the run: an empty run takes anything; a
    /// TCP run takes the next segment of the same flow when the kernel can
    /// cut the result back into exactly these segments (same addresses,
    /// ports, IP TOS/TTL/DF, ACK, window, options; contiguous sequence and
    /// IP ID; every segment but the last of the first one's size; flags ACK
    /// with PSH allowed on the last only), within 64 KB and MAX_SEGS.
    pub fn fits(&self, frame: &[u8]) -> bool {
        if self.run.is_empty() {
            return true;
        }
        if self.no_merge {
            return false;
        }
        let (Some(first), Some(last)) = (self.first, self.last) else {
            return false;
        };
        let Some(next) = Tcp4::parse(frame) else {
            return false;
        };
        let f = &self.run[0];
        let hl = first.hdr_len();
        last.flags == TCP_ACK
            && last.payload == first.payload
            && (next.flags & !TCP_PSH) == TCP_ACK
            && next.tcp_hlen == first.tcp_hlen
            && next.payload > 0
            && next.payload <= first.payload
            && next.seq == last.seq.wrapping_add(last.payload as u32)
            && next.ident == last.ident.wrapping_add(1)
            && self.run.len() < MAX_SEGS
            && 20 + first.tcp_hlen + self.payload + next.payload <= IP_MAX
            // MACs and ethertype; TOS; flags/fragment, TTL, protocol;
            // addresses and ports; ACK number; data offset; window,
            // checksum skipped, urgent pointer; options.
            && frame[..ETH] == f[..ETH]
            && frame[ETH + 1] == f[ETH + 1]
            && frame[ETH + 6..ETH + 10] == f[ETH + 6..ETH + 10]
            && frame[ETH + 12..L4 + 4] == f[ETH + 12..L4 + 4]
            && frame[L4 + 8..L4 + 13] == f[L4 + 8..L4 + 13]
            && frame[L4 + 14..L4 + 16] == f[L4 + 14..L4 + 16]
            && frame[L4 + 18..hl] == f[L4 + 18..hl]
    }

    /// Appends `frame`; the caller checked [`Coalescer::fits`] (a frame
    /// that does not fit starts a run of its own after a flush).
    pub fn push(&mut self, frame: Vec<u8>) {
        let seg = Tcp4::parse(&frame);
        if self.run.is_empty() {
            // A segment can start a super-frame only if it carries data.
            self.first = seg.filter(|s| s.payload > 0);
            self.payload = 0;
        }
        self.last = seg;
        self.payload += seg.map_or(0, |s| s.payload);
        self.run.push(frame);
    }

    /// Writes the run as one frame through `write` (given the slices of
    /// one TAP write: virtio-net header, then frame bytes) and hands the
    /// buffers to `recycle`. Returns the number of segments merged (1 for
    /// a frame sent as it was, 0 for an empty run).
    pub fn flush(
        &mut self,
        write: &mut dyn FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
        recycle: &mut dyn FnMut(Vec<u8>),
    ) -> io::Result<usize> {
        let n = self.run.len();
        self.sent_partial = false;
        let result = match (n, self.first) {
            (0, _) => Ok(0),
            (1, _) | (_, None) => {
                let hdr = self.single_header(&self.run[0]);
                self.sent_partial = hdr.flags & F_NEEDS_CSUM != 0;
                write(&[IoSlice::new(&hdr.to_bytes()), IoSlice::new(&self.run[0])])
            }
            (_, Some(first)) => {
                self.sent_partial = true;
                let vnet = self.build_header(first).to_bytes();
                let hl = first.hdr_len();
                let mut parts = [IoSlice::new(&[]); MAX_SEGS + 2];
                parts[0] = IoSlice::new(&vnet);
                parts[1] = IoSlice::new(&self.header);
                for (slot, f) in parts[2..].iter_mut().zip(&self.run) {
                    *slot = IoSlice::new(&f[hl..]);
                }
                write(&parts[..n + 2])
            }
        };
        for f in self.run.drain(..) {
            recycle(f);
        }
        self.first = None;
        self.last = None;
        result.map(|_| n)
    }

    /// The header of a frame that leaves on its own: NEEDS_CSUM for a TCP
    /// segment with a partial checksum, nothing otherwise.
    fn single_header(&self, frame: &[u8]) -> VnetHdr {
        match tcp_start(frame).filter(|_| self.partial_tcp_csum) {
            Some(start) => VnetHdr {
                flags: F_NEEDS_CSUM,
                gso_type: GSO_NONE,
                hdr_len: (start + 20) as u16,
                gso_size: 0,
                csum_start: start as u16,
                csum_offset: 16,
            },
            None => VnetHdr::default(),
        }
    }

    /// The super-frame header: the first segment's, with the IPv4 total
    /// length and header checksum of the whole, the last segment's flags
    /// (PSH), and the TCP checksum field set to the pseudo-header sum
    /// (not inverted) that the kernel completes per segment.
    fn build_header(&mut self, first: Tcp4) -> VnetHdr {
        let hl = first.hdr_len();
        let f = &self.run[0];
        self.header.clear();
        self.header.extend_from_slice(&f[..hl]);
        let h = &mut self.header;
        let tcp_len = first.tcp_hlen + self.payload;
        h[ETH + 2..ETH + 4].copy_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
        h[ETH + 10..ETH + 12].fill(0);
        let ip_sum = !checksum::data(&h[ETH..L4]);
        h[ETH + 10..ETH + 12].copy_from_slice(&ip_sum.to_be_bytes());
        h[L4 + 13] = self.last.map_or(TCP_ACK, |l| l.flags);
        let src = Ipv4Address::new(h[26], h[27], h[28], h[29]);
        let dst = Ipv4Address::new(h[30], h[31], h[32], h[33]);
        let pseudo = checksum::pseudo_header_v4(&src, &dst, IpProtocol::Tcp, tcp_len as u32);
        h[L4 + 16..L4 + 18].copy_from_slice(&pseudo.to_be_bytes());
        VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: hl as u16,
            gso_size: first.payload as u16,
            csum_start: L4 as u16,
            csum_offset: 16,
        }
    }
}

#[cfg(test)]
mod tests;
