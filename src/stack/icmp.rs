//! ICMPv4 (RFC 792, RFC 1122 section 3.2.2): echo replies of any size,
//! rate-limited error generation, and parsing of errors that concern our
//! own datagrams so the transports can act on them.

use std::net::Ipv4Addr;

use smoltcp::wire::{Icmpv4Packet, IpProtocol, Ipv4Packet};

use super::counters::Counters;
use super::iface::Interface;
use super::ip::IpSink;
use super::ip::RxChecksum;
use super::time::Instant;

/// ICMP type 0, Echo Reply (RFC 792).
pub const TYPE_ECHO_REPLY: u8 = 0;
/// ICMP type 3, Destination Unreachable (RFC 792).
pub const TYPE_DEST_UNREACHABLE: u8 = 3;
/// ICMP type 8, Echo Request (RFC 792).
pub const TYPE_ECHO_REQUEST: u8 = 8;
/// ICMP type 11, Time Exceeded (RFC 792).
pub const TYPE_TIME_EXCEEDED: u8 = 11;
/// ICMP type 12, Parameter Problem (RFC 792).
pub const TYPE_PARAMETER_PROBLEM: u8 = 12;
/// Destination Unreachable code 2: no handler for the IP protocol.
pub const CODE_PROTOCOL_UNREACHABLE: u8 = 2;
/// Destination Unreachable code 3: no socket on the UDP port.
pub const CODE_PORT_UNREACHABLE: u8 = 3;
/// Destination Unreachable code 4: fragmentation needed and DF set (RFC 1191).
pub const CODE_FRAG_NEEDED: u8 = 4;
/// Time Exceeded code 1: fragment reassembly timed out (RFC 792).
pub const CODE_REASSEMBLY_TIME_EXCEEDED: u8 = 1;

/// RFC 1812 4.3.2.3 / Linux: quote as much of the offending datagram as
/// fits in a 576-byte reply.
const MAX_ERROR_LEN: usize = 576 - 20 - 8;

/// Token bucket for generated errors, like Linux's icmp_msgs_per_sec (1000)
/// and icmp_msgs_burst (50).
#[derive(Debug)]
pub struct RateLimiter {
    tokens: f64,
    per_sec: f64,
    burst: f64,
    last: Instant,
}

impl RateLimiter {
    /// A full bucket of `burst` tokens, refilled at `per_sec` tokens a second.
    pub fn new(per_sec: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            tokens: burst as f64,
            per_sec: per_sec as f64,
            burst: burst as f64,
            last: Instant::ZERO,
        }
    }

    /// Takes a token if one is left at `now` (after refilling for the time
    /// since the last call); false = do not send this error.
    pub fn allow(&mut self, now: Instant) -> bool {
        let elapsed = (now - self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// An ICMP error about a datagram we sent, for the transport it concerns.
#[derive(Debug)]
pub struct IcmpError<'a> {
    /// ICMP type (`TYPE_*`).
    pub icmp_type: u8,
    /// ICMP code (`CODE_*` for the type).
    pub code: u8,
    /// Next-hop MTU for "fragmentation needed" (RFC 1191), else 0.
    pub next_hop_mtu: u16,
    /// Protocol of the quoted datagram.
    pub protocol: IpProtocol,
    /// The quoted IP header and the start of its payload.
    pub quoted: &'a [u8],
    /// The quoted transport bytes (at least 8).
    pub quoted_payload: &'a [u8],
    /// Destination of the quoted datagram (the peer the error is about).
    pub quoted_dst: Ipv4Addr,
}

#[derive(Debug)]
/// Answers echo requests, generates rate-limited errors and parses errors
/// about our own datagrams.
pub struct IcmpLayer {
    limiter: RateLimiter,
    /// Counters (`icmp.*`).
    pub counters: Counters,
}

impl IcmpLayer {
    /// A layer whose generated errors are limited to `per_sec` a second with
    /// bursts of `burst` (Linux: 1000 and 50).
    pub fn new(per_sec: u32, burst: u32) -> IcmpLayer {
        IcmpLayer {
            limiter: RateLimiter::new(per_sec, burst),
            counters: Counters::new(),
        }
    }

    /// Handles one ICMP message addressed to us. Echo requests are answered
    /// here; errors about our datagrams are returned for the transports.
    pub fn receive<'a>(
        &mut self,
        now: Instant,
        iface: &mut Interface,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        bytes: &'a [u8],
        csum: RxChecksum,
    ) -> Option<IcmpError<'a>> {
        let Ok(packet) = Icmpv4Packet::new_checked(bytes) else {
            self.counters.inc("icmp.truncated");
            return None;
        };
        if csum == RxChecksum::Verify && !packet.verify_checksum() {
            self.counters.inc("icmp.bad_checksum");
            return None;
        }
        match packet.msg_type().into() {
            TYPE_ECHO_REQUEST => {
                self.echo_reply(now, iface, src, dst, bytes);
                None
            }
            TYPE_ECHO_REPLY => {
                self.counters.inc("icmp.echo_reply_ignored");
                None
            }
            TYPE_DEST_UNREACHABLE | TYPE_TIME_EXCEEDED | TYPE_PARAMETER_PROBLEM => {
                self.parse_error(iface.addr(), bytes)
            }
            _ => {
                self.counters.inc("icmp.unknown_type");
                None
            }
        }
    }

    fn echo_reply(
        &mut self,
        now: Instant,
        iface: &mut Interface,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        request: &[u8],
    ) {
        // RFC 1122 3.2.2.6: an echo to a broadcast address may be ignored
        // (Linux's icmp_echo_ignore_broadcasts default).
        if dst != iface.addr() {
            self.counters.inc("icmp.echo_broadcast_ignored");
            return;
        }
        self.counters.inc("icmp.echo_replied");
        iface.send_ip(now, src, IpProtocol::Icmp, request.len(), &mut |buf| {
            buf.copy_from_slice(request);
            buf[0] = TYPE_ECHO_REPLY;
            buf[1] = 0;
            Icmpv4Packet::new_unchecked(buf).fill_checksum();
        });
    }

    fn parse_error<'a>(&mut self, us: Ipv4Addr, bytes: &'a [u8]) -> Option<IcmpError<'a>> {
        let quoted = &bytes[8..];
        let ip = match Ipv4Packet::new_checked(quoted) {
            Ok(ip) => ip,
            // The quote is often cut short of its total length: check the
            // header alone.
            Err(_) if quoted.len() >= 20 && (quoted[0] & 0x0f) as usize * 4 >= 20 => {
                Ipv4Packet::new_unchecked(quoted)
            }
            Err(_) => {
                self.counters.inc("icmp.error_bad_quote");
                return None;
            }
        };
        let hl = ip.header_len() as usize;
        if ip.version() != 4 || quoted.len() < hl + 8 || ip.src_addr() != us {
            self.counters.inc("icmp.error_bad_quote");
            return None;
        }
        self.counters.inc("icmp.error_received");
        Some(IcmpError {
            icmp_type: bytes[0],
            code: bytes[1],
            next_hop_mtu: u16::from_be_bytes([bytes[6], bytes[7]]),
            protocol: ip.next_header(),
            quoted_dst: ip.dst_addr(),
            quoted,
            quoted_payload: &quoted[hl..],
        })
    }

    /// Sends an ICMP error about a datagram we received (`header` and
    /// `payload` of the offending datagram), rate-limited. RFC 1122
    /// 3.2.2: never about ICMP errors, broadcasts or non-first fragments
    /// (the caller only passes datagrams addressed to us).
    #[allow(clippy::too_many_arguments)]
    pub fn send_error(
        &mut self,
        now: Instant,
        iface: &mut Interface,
        icmp_type: u8,
        code: u8,
        to: Ipv4Addr,
        header: &[u8],
        payload: &[u8],
    ) {
        if iface.is_broadcast(to) || to.is_multicast() {
            return;
        }
        if header.get(9) == Some(&1) && payload.first().is_some_and(|t| is_error_type(*t)) {
            self.counters.inc("icmp.error_about_error_suppressed");
            return;
        }
        if !self.limiter.allow(now) {
            self.counters.inc("icmp.error_rate_limited");
            return;
        }
        let quote_len = (header.len() + payload.len()).min(MAX_ERROR_LEN);
        let body = quote_len.saturating_sub(header.len());
        self.counters.inc("icmp.error_sent");
        iface.send_ip(now, to, IpProtocol::Icmp, 8 + quote_len, &mut |buf| {
            buf[0] = icmp_type;
            buf[1] = code;
            buf[8..8 + header.len()].copy_from_slice(header);
            buf[8 + header.len()..].copy_from_slice(&payload[..body]);
            Icmpv4Packet::new_unchecked(buf).fill_checksum();
        });
    }
}

fn is_error_type(t: u8) -> bool {
    !matches!(
        t,
        TYPE_ECHO_REPLY | TYPE_ECHO_REQUEST | 13 | 14 | 15 | 16 | 17 | 18
    )
}

impl Default for IcmpLayer {
    fn default() -> IcmpLayer {
        IcmpLayer::new(1000, 50)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rate_limiter_allows_burst_then_rate() {
        let mut r = RateLimiter::new(1000, 50);
        let t = Instant::from_secs(1);
        let allowed = (0..100).filter(|_| r.allow(t)).count();
        assert_eq!(allowed, 50);
        assert!(!r.allow(t));
        assert!(r.allow(t + Duration::from_millis(1)));
    }
}
