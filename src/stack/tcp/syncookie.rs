//! SYN cookies (RFC 4987 3.6) in Linux's format (net/ipv4/syncookies.c):
//! when a listener's SYN queue is full, the SYN,ACK's sequence number
//! carries what the connection needs, so the SYN leaves no state behind.
//!
//! ISN = H(4-tuple) + peer ISN + (minute << 24) + ((H(4-tuple, minute,
//! peer ISN) + MSS index) mod 2^24). The 8 high bits are a minute counter
//! (a cookie is valid for two minutes); the 24 low bits a keyed hash plus
//! the index of the peer's MSS in a 4-entry table.
//!
//! Unlike Linux, the second hash covers the peer ISN too. Linux only adds
//! it, so any later segment of the connection whose SEQ and ACK moved by
//! the same amount (an echo: every byte and the FIN answered by as many)
//! checks as a cookie: a late ACK arriving after the connection closed
//! (for a retransmitted FIN, say) would open a connection the peer does
//! not have. With timestamps the low 6 bits of
//! our TSval carry window scale (4 bits, 15 = none) and SACK-permitted,
//! which the peer echoes in TSecr.

use std::net::SocketAddrV4;

use super::isn::Secret;
use crate::stack::time::Instant;

const COOKIE_BITS: u32 = 24;
const COOKIE_MASK: u32 = (1 << COOKIE_BITS) - 1;
/// Minutes a cookie stays valid (Linux MAX_SYNCOOKIE_AGE).
const MAX_AGE: u32 = 2;
/// Linux msstab: the MSS values a cookie can say.
const MSS_TABLE: [u16; 4] = [536, 1300, 1440, 1460];
/// Low TSval bits that carry options (Linux TSBITS).
const TS_BITS: u32 = 6;
const TS_MASK: u32 = (1 << TS_BITS) - 1;
const TS_WSCALE_NONE: u32 = 0xf;
const TS_SACK: u32 = 1 << 4;

fn minute(now: Instant) -> u32 {
    (now.total_millis() / 60_000) as u32
}

/// H(4-tuple), the cookie's offset.
fn hash(secret: &Secret, l: SocketAddrV4, r: SocketAddrV4) -> u32 {
    secret.hash(&(l, r, 0u32, 0u8, 0x636bu16)) as u32
}

/// H(4-tuple, minute, peer ISN), the bits that check a cookie.
fn check_hash(secret: &Secret, l: SocketAddrV4, r: SocketAddrV4, count: u32, peer_isn: u32) -> u32 {
    secret.hash(&(l, r, count, peer_isn, 0x636cu16)) as u32
}

/// The largest table MSS not above the peer's (536 when it sent none).
pub fn mss_index(peer_mss: Option<u16>) -> u32 {
    let mss = peer_mss.unwrap_or(536);
    MSS_TABLE.iter().rposition(|&m| m <= mss).unwrap_or(0) as u32
}

/// Our ISN for a cookie SYN,ACK to a SYN with sequence number `peer_isn`.
pub fn make(
    secret: &Secret,
    now: Instant,
    local: SocketAddrV4,
    remote: SocketAddrV4,
    peer_isn: u32,
    mss_idx: u32,
) -> u32 {
    let count = minute(now);
    hash(secret, local, remote)
        .wrapping_add(peer_isn)
        .wrapping_add(count << COOKIE_BITS)
        .wrapping_add(
            check_hash(secret, local, remote, count, peer_isn).wrapping_add(mss_idx) & COOKIE_MASK,
        )
}

/// The MSS a cookie (ACK - 1 of the handshake's last segment, whose
/// sequence number is `peer_isn + 1`) encodes, or None if it is forged or
/// older than two minutes.
pub fn check(
    secret: &Secret,
    now: Instant,
    local: SocketAddrV4,
    remote: SocketAddrV4,
    peer_isn: u32,
    cookie: u32,
) -> Option<u16> {
    let count = minute(now);
    let c = cookie.wrapping_sub(hash(secret, local, remote).wrapping_add(peer_isn));
    let diff = count.wrapping_sub(c >> COOKIE_BITS) & (u32::MAX >> COOKIE_BITS);
    if diff >= MAX_AGE {
        return None;
    }
    let h = check_hash(secret, local, remote, count.wrapping_sub(diff), peer_isn);
    let idx = c.wrapping_sub(h) & COOKIE_MASK;
    MSS_TABLE.get(idx as usize).copied()
}

/// Our TSval for a cookie SYN,ACK (Linux cookie_init_timestamp): `ts_now`
/// with its low bits replaced by the options, never ahead of `ts_now`.
pub fn ts_encode(ts_now: u32, wscale: Option<u8>, sack_perm: bool) -> u32 {
    let mut opts = wscale.map_or(TS_WSCALE_NONE, |w| u32::from(w.min(14)));
    if sack_perm {
        opts |= TS_SACK;
    }
    let ts = (ts_now & !TS_MASK) | opts;
    if ts.wrapping_sub(ts_now) as i32 > 0 {
        ts.wrapping_sub(TS_MASK + 1)
    } else {
        ts
    }
}

/// The options echoed back in TSecr (Linux cookie_timestamp_decode):
/// window scale (None for 15) and SACK-permitted.
pub fn ts_decode(tsecr: u32) -> (Option<u8>, bool) {
    let wscale = match tsecr & TS_WSCALE_NONE {
        TS_WSCALE_NONE => None,
        w => Some(w as u8),
    };
    (wscale, tsecr & TS_SACK != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::rng::Rng;
    use std::net::Ipv4Addr;

    fn addrs() -> (SocketAddrV4, SocketAddrV4) {
        (
            SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 7),
            SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 40000),
        )
    }

    #[test]
    fn cookie_round_trip_and_age() {
        let s = Secret::new(&mut Rng::new(7));
        let (l, r) = addrs();
        let t0 = Instant::from_secs(3600);
        for (idx, mss) in MSS_TABLE.iter().enumerate() {
            let c = make(&s, t0, l, r, 1234, idx as u32);
            assert_eq!(check(&s, t0, l, r, 1234, c), Some(*mss));
            // Valid into the next minute, not two minutes on.
            assert_eq!(
                check(&s, t0 + std::time::Duration::from_secs(119), l, r, 1234, c),
                Some(*mss)
            );
            assert_eq!(
                check(&s, t0 + std::time::Duration::from_secs(120), l, r, 1234, c),
                None
            );
        }
    }

    #[test]
    fn forged_cookies_fail() {
        let s = Secret::new(&mut Rng::new(7));
        let other = Secret::new(&mut Rng::new(8));
        let (l, r) = addrs();
        let now = Instant::from_secs(100);
        let c = make(&s, now, l, r, 99, 3);
        assert_eq!(check(&s, now, l, r, 99 + 1, c), None, "other peer ISN");
        assert_eq!(check(&other, now, l, r, 99, c), None, "other secret");
        let r2 = SocketAddrV4::new(*r.ip(), r.port() + 1);
        assert_eq!(check(&s, now, l, r2, 99, c), None, "other port");
        // Random guesses pass about 4 in 2^24 * 2^8 / 2 (index < 4 in one of
        // two minutes): none of 100,000.
        let mut rng = Rng::new(3);
        let hits = (0..100_000)
            .filter(|_| check(&s, now, l, r, 99, rng.next_u32()).is_some())
            .count();
        assert_eq!(hits, 0);
    }

    #[test]
    fn later_segments_of_the_connection_are_not_cookies() {
        let s = Secret::new(&mut Rng::new(7));
        let (l, r) = addrs();
        let now = Instant::from_secs(100);
        let c = make(&s, now, l, r, 99, 3);
        // SEQ and ACK moved alike, as in an echo: with the peer ISN only
        // added (Linux), each of these checked as the cookie.
        for d in [1u32, 2, 6, 1000, 1 << 20] {
            let later = check(&s, now, l, r, 99u32.wrapping_add(d), c.wrapping_add(d));
            assert_eq!(later, None, "moved by {d}");
        }
        assert_eq!(check(&s, now, l, r, 99, c), Some(1460));
    }

    #[test]
    fn mss_index_picks_largest_not_above() {
        assert_eq!(mss_index(None), 0);
        assert_eq!(mss_index(Some(100)), 0);
        assert_eq!(mss_index(Some(1299)), 0);
        assert_eq!(mss_index(Some(1300)), 1);
        assert_eq!(mss_index(Some(1459)), 2);
        assert_eq!(mss_index(Some(9000)), 3);
    }

    #[test]
    fn timestamp_options_round_trip() {
        for ts_now in [0u32, 5, 63, 64, 1_000_000, u32::MAX] {
            for ws in [None, Some(0), Some(7), Some(14)] {
                for sack in [false, true] {
                    let ts = ts_encode(ts_now, ws, sack);
                    assert!(ts_now.wrapping_sub(ts) < 64, "{ts_now} {ts}");
                    assert_eq!(ts_decode(ts), (ws, sack));
                }
            }
        }
    }
}
