//! Initial sequence numbers (RFC 6528) and ephemeral ports (RFC 6056).

use std::hash::{Hash, Hasher};
use std::net::SocketAddrV4;

use crate::stack::rng::Rng;
use crate::stack::time::Instant;

/// Keyed hash of a 4-tuple. `DefaultHasher` is SipHash-1-3; keying it by
/// hashing the secret first gives a PRF adequate for RFC 6528's F().
#[derive(Clone, Debug)]
pub struct Secret {
    key: [u64; 2],
}

impl Secret {
    pub fn new(rng: &mut Rng) -> Secret {
        Secret {
            key: [rng.next_u64(), rng.next_u64()],
        }
    }

    pub fn hash<T: Hash>(&self, value: &T) -> u64 {
        #[allow(deprecated)]
        let mut h = std::hash::SipHasher::new_with_keys(self.key[0], self.key[1]);
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
