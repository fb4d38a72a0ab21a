//! Finds close frames whose status code a peer must not send.
//!
//! RFC 6455 section 7.4.2 leaves 1004 and 1016-2999 reserved (and 0-999,
//! 1005, 1006, 1015 unusable); a close frame carrying one is a protocol
//! error, answered with 1002 (Autobahn cases 7.9.*). The WebSocket crate
//! accepts reserved codes on receipt by design, so this guard follows the
//! frame boundaries of the client's byte stream (headers only; payloads
//! are skipped) and reports such a frame before the bytes reach the crate.

/// Codes a peer may send: RFC 6455 section 7.4.1, the IANA-registered
/// 1012-1014, and the ranges for libraries (3000-3999) and applications
/// (4000-4999).
pub(super) fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[derive(Default)]
pub(super) struct CloseGuard {
    /// The header being collected (at most 14 bytes).
    header: Vec<u8>,
    /// Payload bytes of the current frame still to pass.
    skip: u64,
    /// In a close frame: its mask and the status bytes seen so far.
    close: Option<([u8; 4], Vec<u8>)>,
}

impl CloseGuard {
    /// Follows `data`; if a close frame with a forbidden code ends in it,
    /// returns where that frame's header starts in `data` (0 if it started
    /// in an earlier chunk).
    pub(super) fn scan(&mut self, data: &[u8]) -> Option<usize> {
        let mut i = 0;
        let mut frame_start = if self.header.is_empty() && self.skip == 0 {
            0
        } else {
            usize::MAX // began before this chunk
        };
        while i < data.len() {
            if self.skip > 0 {
                let n = (self.skip.min((data.len() - i) as u64)) as usize;
                if let Some((mask, code)) = &mut self.close {
                    for &b in &data[i..i + n] {
                        if code.len() < 2 {
                            code.push(b ^ mask[code.len()]);
                        }
                    }
                    if code.len() == 2 {
                        let c = u16::from_be_bytes([code[0], code[1]]);
                        self.close = None;
                        if !is_valid_close_code(c) {
                            return Some(if frame_start == usize::MAX {
                                0
                            } else {
                                frame_start
                            });
                        }
                    }
                }
                self.skip -= n as u64;
                i += n;
                continue;
            }
            if self.header.is_empty() {
                frame_start = i;
            }
            self.header.push(data[i]);
            i += 1;
            if let Some((len, mask)) = parse_header(&self.header) {
                let opcode = self.header[0] & 0x0f;
                self.header.clear();
                self.skip = len;
                self.close = (opcode == 0x8 && len >= 2).then(|| (mask, Vec::with_capacity(2)));
            }
        }
        None
    }
}

/// The payload length and mask of a complete frame header, or `None`
/// while more header bytes are needed.
fn parse_header(h: &[u8]) -> Option<(u64, [u8; 4])> {
    if h.len() < 2 {
        return None;
    }
    let masked = h[1] & 0x80 != 0;
    let (len_bytes, len7) = match h[1] & 0x7f {
        126 => (2, None),
        127 => (8, None),
        n => (0, Some(u64::from(n))),
    };
    let need = 2 + len_bytes + if masked { 4 } else { 0 };
    if h.len() < need {
        return None;
    }
    let len = len7.unwrap_or_else(|| {
        h[2..2 + len_bytes]
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
    });
    let mut mask = [0u8; 4];
    if masked {
        mask.copy_from_slice(&h[2 + len_bytes..need]);
    }
    Some((len, mask))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n < 65536 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    fn close(code: u16) -> Vec<u8> {
        frame(0x8, &code.to_be_bytes(), [1, 2, 3, 4])
    }

    #[test]
    fn codes() {
        for ok in [1000, 1001, 1003, 1007, 1011, 1014, 3000, 4999] {
            assert!(is_valid_close_code(ok), "{ok}");
        }
        for bad in [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000] {
            assert!(!is_valid_close_code(bad), "{bad}");
        }
    }

    #[test]
    fn finds_a_bad_close_after_data_frames() {
        let mut stream = frame(0x2, &[7; 70_000], [9, 8, 7, 6]);
        stream.extend(frame(0x1, b"hello", [0; 4]));
        let at = stream.len();
        stream.extend(close(2999));
        assert_eq!(CloseGuard::default().scan(&stream), Some(at));
        let mut ok = frame(0x1, b"x", [5; 4]);
        ok.extend(close(1000));
        assert_eq!(CloseGuard::default().scan(&ok), None);
    }

    #[test]
    fn follows_frames_split_anywhere() {
        let mut stream = frame(0x2, &[1; 300], [9, 8, 7, 6]);
        stream.extend(close(1004));
        for cut in 0..stream.len() {
            let mut g = CloseGuard::default();
            let first = g.scan(&stream[..cut]);
            let second = g.scan(&stream[cut..]);
            assert!(first.is_some() || second.is_some(), "cut at {cut}");
        }
    }
}
