//! TCP segment wire handling: parsing an arriving segment into `InSeg`
//! and writing an outgoing header (`OutHdr`) with options in the order
//! Linux uses on SYNs (MSS, SACK-permitted, timestamps, NOP, window scale;
//! RFC 9293 3.1, RFC 7323, RFC 2018).

use std::net::Ipv4Addr;

use smoltcp::wire::{IpAddress, IpProtocol, TcpPacket, checksum};

use super::TcpConfig;
use super::seq::Seq;
use crate::stack::ip::IpSink;
use crate::stack::ip::RxChecksum;

const FLAG_FIN: u8 = 0x01;
const FLAG_SYN: u8 = 0x02;
const FLAG_RST: u8 = 0x04;
const FLAG_PSH: u8 = 0x08;
const FLAG_ACK: u8 = 0x10;

/// Why a segment could not be parsed (each maps to a counter).
#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    Malformed,
    BadChecksum,
}

/// A parsed, checksum-verified arriving segment.
#[derive(Clone, Debug)]
pub struct InSeg<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: Seq,
    pub ack: Option<Seq>,
    pub syn: bool,
    pub fin: bool,
    pub rst: bool,
    #[allow(dead_code)]
    pub psh: bool,
    pub window: u16,
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub sack_perm: bool,
    pub ts: Option<(u32, u32)>,
    pub sack: [Option<(Seq, Seq)>; 3],
    pub payload: &'a [u8],
}

impl<'a> InSeg<'a> {
    /// A segment; its checksum is verified unless `csum` says the device
    /// vouches for it.
    ///
    /// Parsed here rather than by smoltcp's `TcpRepr`, which rejects a
    /// segment with more than one of SYN, FIN and RST and one whose options
    /// are malformed: TCP owes such segments its own answer (RFC 9293
    /// 3.10.7, RFC 5961 4), and Linux (tcp_parse_options) ignores options
    /// it cannot parse rather than the segment.
    pub fn parse(
        src: Ipv4Addr,
        dst: Ipv4Addr,
        bytes: &'a [u8],
        csum: RxChecksum,
    ) -> Result<InSeg<'a>, ParseError> {
        if bytes.len() < 20 {
            return Err(ParseError::Malformed);
        }
        let hlen = usize::from(bytes[12] >> 4) * 4;
        if hlen < 20 || hlen > bytes.len() {
            return Err(ParseError::Malformed);
        }
        if csum == RxChecksum::Verify {
            let (s, d) = (IpAddress::Ipv4(src), IpAddress::Ipv4(dst));
            if !TcpPacket::new_unchecked(bytes).verify_checksum(&s, &d) {
                return Err(ParseError::BadChecksum);
            }
        }
        let be16 = |i: usize| u16::from_be_bytes([bytes[i], bytes[i + 1]]);
        let be32 =
            |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let (src_port, dst_port) = (be16(0), be16(2));
        if src_port == 0 || dst_port == 0 {
            // Port 0 names no socket (RFC 6335 6); no answer either.
            return Err(ParseError::Malformed);
        }
        let flags = bytes[13];
        let mut seg = InSeg {
            src_port,
            dst_port,
            seq: Seq(be32(4)),
            ack: (flags & FLAG_ACK != 0).then(|| Seq(be32(8))),
            syn: flags & FLAG_SYN != 0,
            fin: flags & FLAG_FIN != 0,
            rst: flags & FLAG_RST != 0,
            psh: flags & FLAG_PSH != 0,
            window: be16(14),
            mss: None,
            wscale: None,
            sack_perm: false,
            ts: None,
            sack: [None; 3],
            payload: &bytes[hlen..],
        };
        seg.parse_options(&bytes[20..hlen]);
        Ok(seg)
    }

    /// TCP options as Linux's tcp_parse_options reads them: EOL ends the
    /// list, a length that is too short or runs past the header ends it
    /// too (the rest is ignored, the segment kept), unknown kinds and known
    /// kinds of the wrong length are skipped; MSS, window scale and
    /// SACK-permitted count only on a SYN (RFC 9293 3.2, RFC 7323 2.2,
    /// RFC 2018 2).
    fn parse_options(&mut self, mut o: &[u8]) {
        let mut blocks = 0;
        while let Some(&kind) = o.first() {
            match kind {
                0 => break,
                1 => {
                    o = &o[1..];
                    continue;
                }
                _ => {}
            }
            let Some(len) = o.get(1).map(|&l| usize::from(l)) else {
                break;
            };
            if len < 2 || len > o.len() {
                break;
            }
            let body = &o[2..len];
            let be32 =
                |i: usize| u32::from_be_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]]);
            match (kind, len) {
                (2, 4) if self.syn => {
                    let mss = u16::from_be_bytes([body[0], body[1]]);
                    self.mss = (mss != 0).then_some(mss);
                }
                (3, 3) if self.syn => self.wscale = Some(body[0]),
                (4, 2) if self.syn => self.sack_perm = true,
                (8, 10) => self.ts = Some((be32(0), be32(4))),
                (5, _) if len > 2 && (len - 2) % 8 == 0 => {
                    for i in (0..len - 2).step_by(8) {
                        if blocks < self.sack.len() {
                            self.sack[blocks] = Some((Seq(be32(i)), Seq(be32(i + 4))));
                            blocks += 1;
                        }
                    }
                }
                _ => {}
            }
            o = &o[len..];
        }
    }

    /// SEG.LEN: payload plus SYN and FIN (RFC 9293 3.4).
    pub fn seg_len(&self) -> usize {
        self.payload.len() + usize::from(self.syn) + usize::from(self.fin)
    }
}

/// Header of a segment we send.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutHdr {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: Seq,
    pub ack: Option<Seq>,
    pub syn: bool,
    pub fin: bool,
    pub rst: bool,
    pub psh: bool,
    pub window: u16,
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub sack_perm: bool,
    pub ts: Option<(u32, u32)>,
    pub sack: Vec<(Seq, Seq)>,
}

impl OutHdr {
    fn options_len(&self) -> usize {
        let mut n = 0;
        if self.mss.is_some() {
            n += 4;
        }
        if self.sack_perm && self.ts.is_some() {
            n += 2; // SACK-permitted folded in front of TS (Linux layout)
        } else if self.sack_perm {
            n += 4; // NOP NOP SACKOK
        }
        if self.ts.is_some() {
            n += if self.sack_perm { 10 } else { 12 };
        }
        if self.wscale.is_some() {
            n += 4;
        }
        if !self.sack.is_empty() {
            n += 4 + 8 * self.sack.len().min(3);
        }
        n
    }

    pub fn header_len(&self) -> usize {
        20 + self.options_len()
    }

    /// Writes header and options into `buf` (which holds `header_len()`
    /// plus the payload). The checksum is filled by `finish`.
    pub fn write(&self, buf: &mut [u8]) {
        let hlen = self.header_len();
        buf[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        buf[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        buf[4..8].copy_from_slice(&self.seq.0.to_be_bytes());
        buf[8..12].copy_from_slice(&self.ack.unwrap_or_default().0.to_be_bytes());
        let mut flags: u8 = 0;
        flags |= u8::from(self.fin);
        flags |= u8::from(self.syn) << 1;
        flags |= u8::from(self.rst) << 2;
        flags |= u8::from(self.psh) << 3;
        flags |= u8::from(self.ack.is_some()) << 4;
        buf[12] = ((hlen / 4) as u8) << 4;
        buf[13] = flags;
        buf[14..16].copy_from_slice(&self.window.to_be_bytes());
        buf[16..20].fill(0);
        let mut o = 20;
        let mut put = |b: &[u8]| {
            buf[o..o + b.len()].copy_from_slice(b);
            o += b.len();
        };
        if let Some(mss) = self.mss {
            let m = mss.to_be_bytes();
            put(&[2, 4, m[0], m[1]]);
        }
        match (self.sack_perm, self.ts) {
            (true, Some(_)) => put(&[4, 2]),
            (true, None) => put(&[1, 1, 4, 2]),
            _ => {}
        }
        if let Some((val, ecr)) = self.ts {
            if !self.sack_perm {
                put(&[1, 1]);
            }
            put(&[8, 10]);
            put(&val.to_be_bytes());
            put(&ecr.to_be_bytes());
        }
        if let Some(ws) = self.wscale {
            put(&[1, 3, 3, ws]);
        }
        if !self.sack.is_empty() {
            let n = self.sack.len().min(3);
            put(&[1, 1, 5, (2 + 8 * n) as u8]);
            for (l, r) in self.sack.iter().take(n) {
                put(&l.0.to_be_bytes());
                put(&r.0.to_be_bytes());
            }
        }
    }
}

/// Whether a segment of `len` bytes leaves with only the pseudo-header
/// sum: checksum offload is on and IP will not fragment it (the kernel
/// cannot complete a fragment's sum).
pub fn sum_left_to_device(cfg: &TcpConfig, len: usize, ip: &dyn IpSink) -> bool {
    cfg.checksum_offload && len <= ip.max_payload_unfragmented()
}

/// Fills the TCP checksum over the pseudo-header (RFC 9293 3.1), or with
/// `offload` only the pseudo-header sum (not inverted) that the device
/// completes (the virtio-net NEEDS_CSUM contract).
pub fn finish(buf: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr, offload: bool) {
    let (s, d) = (IpAddress::Ipv4(src), IpAddress::Ipv4(dst));
    let mut p = TcpPacket::new_unchecked(buf);
    if offload {
        let len = p.as_ref().len() as u32;
        let pseudo = checksum::pseudo_header_v4(&src, &dst, IpProtocol::Tcp, len);
        p.set_checksum(pseudo);
    } else {
        p.fill_checksum(&s, &d);
    }
}
