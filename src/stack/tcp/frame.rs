//! Where a TCP segment becomes a datagram: the checksum state it leaves
//! with (complete, or only the pseudo-header sum for the device to
//! complete: [`TcpConfig::checksum_offload`]) and segmentation offload
//! ([`TcpConfig::segmentation_offload`]): a segment that continues the
//! full-sized segments this connection queued last joins them in one
//! super-segment, whose segment size the IP layer records on the frame.
//! The device cuts it back into exactly the segments TCP decided on
//! (Linux's tcp_gso_segment: the headers of the first, sequence numbers
//! counting up, FIN and PSH on the last segment only).

use std::net::Ipv4Addr;

use smoltcp::wire::IpProtocol;

use super::config::TcpConfig;
use super::options::{OutHdr, finish, sum_left_to_device};
use crate::stack::ip::IpSink;
use crate::stack::time::Instant;

/// The TCP checksum field's offset in the header (RFC 9293 3.1).
const CSUM_FIELD: u16 = 16;
/// Header flag bits (RFC 9293 3.1).
const FIN: u8 = 0x01;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;
/// Longest TCP header (data offset 15).
const MAX_HEADER: usize = 60;

/// Sends one segment from `addrs.0` to `addrs.1`: the header `hdr`, then
/// the payload given in two parts (the send ring's two slices). Returns
/// false when the IP layer dropped it (counted there).
pub(super) fn send(
    cfg: &TcpConfig,
    now: Instant,
    ip: &mut dyn IpSink,
    addrs: (Ipv4Addr, Ipv4Addr),
    hdr: &OutHdr,
    payload: (&[u8], &[u8]),
) -> bool {
    let (src, dst) = addrs;
    let (a, b) = payload;
    let hlen = hdr.header_len();
    let seg_len = hlen + a.len() + b.len();
    let partial = sum_left_to_device(cfg, seg_len, ip);
    if partial && cfg.segmentation_offload && seg_len > hlen && join_last(ip, addrs, hdr, payload) {
        return true;
    }
    let csum = partial.then_some(CSUM_FIELD);
    ip.send_datagram(now, dst, IpProtocol::Tcp, seg_len, csum, &mut |buf| {
        hdr.write(buf);
        buf[hlen..hlen + a.len()].copy_from_slice(a);
        buf[hlen + a.len()..].copy_from_slice(b);
        finish(buf, src, dst, partial);
    })
}

/// Appends the segment to the one queued last, when the device can cut
/// the result back into both: the queued one carries data in whole
/// segments of one size, only ACK set (FIN or PSH would end up in the
/// middle), and this one starts where it ends, is no larger than that
/// size, and has the same header but for sequence number and flags
/// (ports, ACK number, window, options: the device copies the first
/// segment's to every one). The new flags (PSH, FIN) go on the whole: the
/// device keeps them for the last segment only.
fn join_last(
    ip: &mut dyn IpSink,
    addrs: (Ipv4Addr, Ipv4Addr),
    hdr: &OutHdr,
    payload: (&[u8], &[u8]),
) -> bool {
    let hlen = hdr.header_len();
    if hdr.syn || hdr.rst || hdr.ack.is_none() || hlen > MAX_HEADER {
        return false;
    }
    let mut mine = [0u8; MAX_HEADER];
    hdr.write(&mut mine[..hlen]);
    let mine = &mine[..hlen];
    let (a, b) = payload;
    let len = a.len() + b.len();
    let (src, dst) = addrs;
    ip.append_to_last(dst, IpProtocol::Tcp, len, &mut |seg, size| {
        let old = seg.len() - len;
        if old <= hlen {
            return None;
        }
        let queued = old - hlen;
        let size = size.map_or(queued, usize::from);
        let seq = u32::from_be_bytes([seg[4], seg[5], seg[6], seg[7]]);
        let fits = seg[13] == ACK
            && mine[13] & !(PSH | FIN) == ACK
            && queued.is_multiple_of(size)
            && len <= size
            && hdr.seq.0 == seq.wrapping_add(queued as u32)
            && seg[..4] == mine[..4]
            && seg[8..13] == mine[8..13]
            && seg[14..16] == mine[14..16]
            && seg[18..hlen] == mine[18..];
        if !fits {
            return None;
        }
        seg[old..old + a.len()].copy_from_slice(a);
        seg[old + a.len()..].copy_from_slice(b);
        seg[13] = mine[13];
        // The pseudo-header sum of the whole, as the device expects.
        finish(seg, src, dst, true);
        Some((size as u16, hlen as u16))
    })
}
