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
//! - write side: TCP builds super-segments itself (TSO) and every frame
//!   carries its offload state as data ([`Offload`]: partial checksum,
//!   segment size); [`tx_header`] only translates that into the header,
//!   and the kernel treats a super-segment like a TSO packet from a NIC
//!   driver (one skb, segmented only if it must be). Where the device
//!   cannot take it, [`segment`] cuts it as the kernel would.
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

use smoltcp::wire::{IpProtocol, Ipv4Address, checksum};

use crate::stack::iface::{Gso, Offload, TxCsum};

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

const ETH: usize = 14;
/// TCP header offset in a frame whose IPv4 header has no options.
const L4: usize = ETH + 20;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

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

/// The header for a frame the stack built, from the offload state it
/// carries: NEEDS_CSUM where the transport checksum is partial, and GSO
/// TCPv4 for a super-segment. Nothing here looks at the frame's bytes.
pub fn tx_header(offload: &Offload) -> VnetHdr {
    let mut hdr = VnetHdr::default();
    if let TxCsum::Partial { start, offset } = offload.csum {
        hdr.flags = F_NEEDS_CSUM;
        hdr.csum_start = start;
        hdr.csum_offset = offset;
        // The kernel raises it to csum_start + csum_offset + 2 anyway.
        hdr.hdr_len = start + offset + 2;
    }
    if let Some(gso) = offload.gso {
        hdr.gso_type = GSO_TCPV4;
        hdr.gso_size = gso.size;
        hdr.hdr_len = gso.hdr_len;
    }
    hdr
}

/// Segments a super-segment of `gso.size`-byte payloads becomes.
pub fn segment_count(frame: &[u8], gso: Gso) -> usize {
    let payload = frame.len().saturating_sub(usize::from(gso.hdr_len));
    payload.div_ceil(usize::from(gso.size).max(1)).max(1)
}

/// Cuts a TCP/IPv4 super-segment (IPv4 header without options, as the
/// stack builds them) into the frames a device cuts it into (Linux's
/// inet_gso_segment and tcp_gso_segment): each with the first's headers
/// (`gso.hdr_len` bytes) and `gso.size` payload bytes (the last the
/// rest), its own IPv4 total length, identification (counting up from
/// the first) and header checksum, its sequence number, FIN and PSH on
/// the last only, and its TCP checksum complete (`full_csum`) or the
/// pseudo-header sum a device completes. Each goes to `out` in turn,
/// built in `scratch`. A frame that is not such a super-segment goes to
/// `out` as it is.
pub fn segment(
    frame: &[u8],
    gso: Gso,
    full_csum: bool,
    scratch: &mut Vec<u8>,
    out: &mut dyn FnMut(&mut [u8]),
) {
    let (hl, size) = (usize::from(gso.hdr_len), usize::from(gso.size));
    let whole = frame.len() >= hl
        && hl >= L4 + 20
        && size > 0
        && frame[12..14] == [0x08, 0x00]
        && frame[ETH] == 0x45
        && frame[ETH + 9] == 6;
    if !whole {
        scratch.clear();
        scratch.extend_from_slice(frame);
        out(scratch);
        return;
    }
    let ident = be16(frame, ETH + 4);
    let seq = be32(frame, L4 + 4);
    let src = Ipv4Address::from(be32(frame, ETH + 12));
    let dst = Ipv4Address::from(be32(frame, ETH + 16));
    let chunks = frame[hl..].chunks(size);
    let n = chunks.len();
    for (i, chunk) in chunks.enumerate() {
        scratch.clear();
        scratch.extend_from_slice(&frame[..hl]);
        scratch.extend_from_slice(chunk);
        let s = &mut scratch[..];
        let ip_len = s.len() - ETH;
        s[ETH + 2..ETH + 4].copy_from_slice(&(ip_len as u16).to_be_bytes());
        s[ETH + 4..ETH + 6].copy_from_slice(&ident.wrapping_add(i as u16).to_be_bytes());
        s[ETH + 10..ETH + 12].fill(0);
        let ip_sum = !checksum::data(&s[ETH..L4]);
        s[ETH + 10..ETH + 12].copy_from_slice(&ip_sum.to_be_bytes());
        let seg_seq = seq.wrapping_add((i * size) as u32);
        s[L4 + 4..L4 + 8].copy_from_slice(&seg_seq.to_be_bytes());
        if i + 1 < n {
            s[L4 + 13] &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            s[L4 + 13] &= !TCP_CWR;
        }
        let tcp_len = (s.len() - L4) as u32;
        let pseudo = checksum::pseudo_header_v4(&src, &dst, IpProtocol::Tcp, tcp_len);
        s[L4 + 16..L4 + 18].copy_from_slice(&pseudo.to_be_bytes());
        if full_csum {
            complete_checksum(s, L4, 16);
        }
        out(s);
    }
}

#[cfg(test)]
mod tests;
