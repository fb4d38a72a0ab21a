//! The applications on each endpoint and the seeded byte streams they
//! send and check.

use super::*;

/// Period of the pattern: a prime, so no segment-size or window-size slip
/// maps a byte onto an equal one.
pub(crate) const PATTERN_LEN: usize = 1_048_573;

pub(crate) fn pattern(seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; PATTERN_LEN];
    Rng::new(seed).fill(&mut v);
    v
}

/// One endpoint's application: writes `LEN` bytes of its pattern, shuts
/// down writing, checks every byte it reads against the peer's pattern,
/// and closes after EOF once its own data is acknowledged.
pub(crate) struct App {
    pub(crate) out: Vec<u8>,
    pub(crate) expect: Vec<u8>,
    pub(crate) len: usize,
    pub(crate) sent: usize,
    pub(crate) got: usize,
    /// FNV-1a over everything received, for the report.
    pub(crate) hash: u64,
    pub(crate) shut: bool,
    pub(crate) eof: bool,
    pub(crate) closed: bool,
}

pub(crate) fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

impl App {
    pub(crate) fn new(out_seed: u64, in_seed: u64, len: usize) -> App {
        App {
            out: pattern(out_seed),
            expect: pattern(in_seed),
            len,
            sent: 0,
            got: 0,
            hash: FNV_OFFSET,
            shut: false,
            eof: false,
            closed: false,
        }
    }

    /// The stream hash of `len` bytes of a pattern, as `hash` ends up.
    pub(crate) fn expected_hash(p: &[u8], len: usize) -> u64 {
        let mut h = FNV_OFFSET;
        let mut off = 0;
        while off < len {
            let n = (len - off).min(PATTERN_LEN);
            h = fnv1a(h, &p[..n]);
            off += n;
        }
        h
    }

    pub(crate) fn run(
        &mut self,
        ep: &mut dyn Endpoint,
        buf: &mut [u8],
        who: &str,
    ) -> Result<(), String> {
        if self.closed || !ep.ready() {
            return Ok(());
        }
        while self.sent < self.len {
            let at = self.sent % PATTERN_LEN;
            let n = (self.len - self.sent).min(PATTERN_LEN - at);
            let k = ep.send(&self.out[at..at + n]);
            if k == 0 {
                break;
            }
            self.sent += k;
        }
        if self.sent == self.len && !self.shut {
            ep.shutdown_write();
            self.shut = true;
        }
        while !self.eof {
            match ep.recv(buf) {
                Recv::Eof => self.eof = true,
                Recv::WouldBlock => break,
                Recv::Data(n) => {
                    let data = &buf[..n];
                    if self.got + n > self.len {
                        return Err(format!(
                            "{who} received {} bytes, more than the {} sent",
                            self.got + n,
                            self.len
                        ));
                    }
                    let mut off = 0;
                    while off < n {
                        let at = (self.got + off) % PATTERN_LEN;
                        let k = (n - off).min(PATTERN_LEN - at);
                        if data[off..off + k] != self.expect[at..at + k] {
                            let i = (0..k)
                                .find(|&i| data[off + i] != self.expect[at + i])
                                .unwrap();
                            return Err(format!(
                                "{who}: stream byte {} differs (got {:#04x}, want {:#04x})",
                                self.got + off + i,
                                data[off + i],
                                self.expect[at + i]
                            ));
                        }
                        off += k;
                    }
                    self.hash = fnv1a(self.hash, data);
                    self.got += n;
                }
            }
        }
        if self.eof && self.got != self.len {
            return Err(format!(
                "{who}: EOF after {} of {} bytes",
                self.got, self.len
            ));
        }
        if self.eof && self.shut && ep.all_acked() {
            ep.close();
            self.closed = true;
        }
        Ok(())
    }
}
