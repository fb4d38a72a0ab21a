//! Initial sequence numbers (RFC 6528) and ephemeral ports (RFC 6056).

use std::hash::{Hash, Hasher};
use std::net::SocketAddrV4;

use crate::stack::rng::{Rng, os_random_u64};
use crate::stack::time::Instant;

/// Keyed hash of a 4-tuple: SipHash-2-4 under a 128-bit secret, the PRF
/// Linux uses for RFC 6528's F() (secure_tcp_seq) and RFC 6056's ports.
#[derive(Clone, Debug)]
pub struct Secret {
    key: [u64; 2],
}

impl Secret {
    /// A secret drawn from `rng` (seeded stacks: reproducible).
    pub fn new(rng: &mut Rng) -> Secret {
        Secret {
            key: [rng.next_u64(), rng.next_u64()],
        }
    }

    /// A secret straight from the OS's random source (getrandom(2)): all
    /// 128 bits unpredictable, as RFC 6528 section 3 asks.
    pub fn from_os() -> Secret {
        Secret {
            key: [os_random_u64(), os_random_u64()],
        }
    }

    pub fn hash<T: Hash>(&self, value: &T) -> u64 {
        let mut h = siphasher::sip::SipHasher24::new_with_keys(self.key[0], self.key[1]);
        value.hash(&mut h);
        h.finish()
    }

    /// RFC 6528 section 3: ISN = M + F(localip, localport, remoteip,
    /// remoteport, secretkey), M a 4 µs timer.
    pub fn isn(&self, now: Instant, local: SocketAddrV4, remote: SocketAddrV4) -> u32 {
        let m = (now.total_micros() / 4) as u32;
        m.wrapping_add(self.hash(&(local, remote)) as u32)
    }
}

/// Linux's default ephemeral range (net.ipv4.ip_local_port_range).
pub const EPHEMERAL_LO: u16 = 32768;
pub const EPHEMERAL_HI: u16 = 60999;

/// RFC 6056 section 3.3.3 (Algorithm 3, simple hash-based selection):
/// port = min + (F(local, remote, secret) + counter + i) % num. `free`
/// tells whether a candidate is usable.
pub fn pick_ephemeral(
    secret: &Secret,
    counter: &mut u32,
    key: &impl Hash,
    mut free: impl FnMut(u16) -> bool,
) -> Option<u16> {
    let num = u32::from(EPHEMERAL_HI - EPHEMERAL_LO) + 1;
    let offset = secret.hash(key) as u32;
    for i in 0..num {
        let port = EPHEMERAL_LO as u32 + (offset.wrapping_add(*counter).wrapping_add(i)) % num;
        if free(port as u16) {
            *counter = counter.wrapping_add(i + 1);
            return Some(port as u16);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple() -> (SocketAddrV4, SocketAddrV4) {
        (
            "10.0.0.2:40000".parse().unwrap(),
            "10.0.0.1:80".parse().unwrap(),
        )
    }

    /// Unseeded secrets come from the OS: two never agree (2^-128), so
    /// neither do their ISNs for the same 4-tuple at the same instant.
    #[test]
    fn os_secrets_differ_and_key_the_isn() {
        let (a, b) = (Secret::from_os(), Secret::from_os());
        assert_ne!(a.key, b.key);
        assert_ne!(a.key, [0, 0]);
        let (l, r) = tuple();
        let now = Instant::ZERO;
        assert_ne!(a.isn(now, l, r), b.isn(now, l, r));
        // The same secret gives the same F(): only M moves the ISN.
        assert_eq!(a.isn(now, l, r), a.isn(now, l, r));
    }

    /// Seeded secrets are reproducible (tests replay a seed).
    #[test]
    fn seeded_secrets_repeat() {
        let (a, b) = (Secret::new(&mut Rng::new(9)), Secret::new(&mut Rng::new(9)));
        let (l, r) = tuple();
        assert_eq!(a.hash(&(l, r)), b.hash(&(l, r)));
    }
}
