//! What the client sends, on its way to the WebSocket crate: compressed
//! messages are inflated here (RFC 7692 section 7.2.2) and handed on as
//! plain frames, and close frames with a code a peer must not send are
//! caught (RFC 6455 section 7.4.2).
//!
//! Why not the crate's own: its inflater (noflate 0.1.2) returned a
//! 131,072-character JSON message 25 characters short (Autobahn 12.4.10),
//! and it accepts reserved close codes by design (Autobahn 7.9.*). This
//! layer follows frame boundaries only; everything else (masking, UTF-8,
//! fragmentation rules, control frames, limits) stays the crate's.

use flate2::{Decompress, FlushDecompress, Status};

/// Codes a peer may send: RFC 6455 section 7.4.1, the IANA-registered
/// 1012-1014, and the ranges for libraries (3000-3999) and applications
/// (4000-4999).
pub(super) fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Why the connection must fail, with the close code RFC 6455 section
/// 7.4.1 gives it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Fail {
    /// A close frame with a forbidden code: 1002.
    CloseCode,
    /// A message larger than the limit once inflated: 1009.
    TooBig,
    /// Compressed data that does not inflate: 1007.
    BadData,
}

/// The frame being read.
struct Frame {
    /// Its first header byte (FIN, RSV, opcode).
    b0: u8,
    mask: [u8; 4],
    len: u64,
    /// Payload bytes seen so far.
    pos: u64,
    /// Inflated here (else passed through as it came).
    compressed: bool,
    /// Unmasked payload of a compressed frame.
    payload: Vec<u8>,
    /// The first two payload bytes of a close frame, unmasked.
    code: Vec<u8>,
    /// Where its bytes start in this call's output: a rejected close frame
    /// is taken back before the crate sees (and answers) it.
    out_start: usize,
}

pub(super) struct Inbound {
    /// Set once permessage-deflate is agreed.
    inflate: Option<Decompress>,
    max_message: usize,
    header: Vec<u8>,
    frame: Option<Frame>,
    /// Inside a compressed message (its first frame had RSV1).
    in_compressed: bool,
    /// Bytes inflated for the current message.
    inflated: usize,
}

impl Inbound {
    pub(super) fn new(deflate: bool, max_message: usize) -> Inbound {
        Inbound {
            inflate: deflate.then(|| Decompress::new(false)),
            max_message,
            header: Vec::with_capacity(14),
            frame: None,
            in_compressed: false,
            inflated: 0,
        }
    }

    /// Appends to `out` the frames the crate is to see for `data`.
    pub(super) fn process(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<(), Fail> {
        if let Some(frame) = &mut self.frame {
            frame.out_start = out.len();
        }
        while !data.is_empty() {
            let Some(frame) = &mut self.frame else {
                self.header.push(data[0]);
                data = &data[1..];
                self.start_frame(out)?;
                continue;
            };
            let n = ((frame.len - frame.pos).min(data.len() as u64)) as usize;
            let chunk = &data[..n];
            data = &data[n..];
            if frame.b0 & 0x0f == 0x8 {
                for (i, b) in chunk.iter().enumerate() {
                    let at = frame.pos as usize + i;
                    if at < 2 {
                        frame.code.push(b ^ frame.mask[at % 4]);
                    }
                }
            }
            if frame.compressed {
                let start = frame.pos as usize;
                frame.payload.extend(
                    chunk
                        .iter()
                        .enumerate()
                        .map(|(i, b)| b ^ frame.mask[(start + i) % 4]),
                );
            } else {
                out.extend_from_slice(chunk);
            }
            frame.pos += n as u64;
            if frame.pos == frame.len {
                self.end_frame(out)?;
            }
        }
        Ok(())
    }

    /// Once the header is complete: decides how the frame is handled.
    fn start_frame(&mut self, out: &mut Vec<u8>) -> Result<(), Fail> {
        let Some((len, mask, header_len)) = parse_header(&self.header) else {
            return Ok(());
        };
        let b0 = self.header[0];
        let opcode = b0 & 0x0f;
        let rsv1 = b0 & 0x40 != 0;
        let data_frame = opcode == 0x1 || opcode == 0x2;
        let out_start = out.len();
        let compressed = self.inflate.is_some()
            && ((data_frame && rsv1 && !self.in_compressed)
                || (opcode == 0x0 && !rsv1 && self.in_compressed));
        if compressed {
            if data_frame {
                self.in_compressed = true;
                self.inflated = 0;
            }
            if len > self.max_message as u64 {
                return Err(Fail::TooBig);
            }
        } else {
            // Passed on as it came: the crate judges it.
            out.extend_from_slice(&self.header[..header_len]);
        }
        self.header.clear();
        self.frame = Some(Frame {
            b0,
            mask,
            len,
            pos: 0,
            compressed,
            payload: Vec::new(),
            code: Vec::new(),
            out_start,
        });
        if len == 0 {
            self.end_frame(out)?;
        }
        Ok(())
    }

    fn end_frame(&mut self, out: &mut Vec<u8>) -> Result<(), Fail> {
        let Some(frame) = self.frame.take() else {
            return Ok(());
        };
        if frame.code.len() == 2
            && !is_valid_close_code(u16::from_be_bytes([frame.code[0], frame.code[1]]))
        {
            out.truncate(frame.out_start);
            return Err(Fail::CloseCode);
        }
        if !frame.compressed {
            return Ok(());
        }
        let fin = frame.b0 & 0x80 != 0;
        let mut plain = Vec::new();
        self.inflate_into(&frame.payload, &mut plain)?;
        if fin {
            // Section 7.2.2: the 4 octets the sender removed.
            self.inflate_into(&TRAILER, &mut plain)?;
            self.in_compressed = false;
        }
        // The same frame without RSV1, masked with a zero key (the crate
        // requires client frames to be masked; a zero key leaves the
        // payload as it is).
        out.push(frame.b0 & !0x40);
        match plain.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xffff => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&plain);
        Ok(())
    }

    /// Inflates `input` onto `out`, never past the message limit.
    fn inflate_into(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), Fail> {
        let Some(z) = &mut self.inflate else {
            return Ok(());
        };
        loop {
            let room = self.max_message + 1 - self.inflated.min(self.max_message);
            out.reserve((input.len() * 4).clamp(1024, 1 << 20).min(room));
            let (before_in, before_out) = (z.total_in(), z.total_out());
            let status = z
                .decompress_vec(input, out, FlushDecompress::Sync)
                .map_err(|_| Fail::BadData)?;
            let used = (z.total_in() - before_in) as usize;
            let made = (z.total_out() - before_out) as usize;
            input = &input[used..];
            self.inflated += made;
            if self.inflated > self.max_message {
                return Err(Fail::TooBig);
            }
            let full = out.len() == out.capacity();
            if status == Status::StreamEnd || (input.is_empty() && !full) {
                return Ok(());
            }
            if used == 0 && made == 0 && !full {
                return Err(Fail::BadData);
            }
        }
    }
}

/// The payload length, mask and header length of a complete header, or
/// `None` while more header bytes are needed.
fn parse_header(h: &[u8]) -> Option<(u64, [u8; 4], usize)> {
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
    Some((len, mask, need))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    fn frame(b0: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut f = vec![b0];
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

    /// Unmasked payloads of the frames in `bytes` (as the crate sees them).
    fn payloads(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut v = Vec::new();
        while !bytes.is_empty() {
            let (len, mask, hl) = parse_header(bytes).unwrap();
            let p: Vec<u8> = bytes[hl..hl + len as usize]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            v.push((bytes[0], p));
            bytes = &bytes[hl + len as usize..];
        }
        v
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
    fn bad_close_code_is_caught_wherever_the_stream_is_cut() {
        let mut stream = frame(0x82, &[1; 300], [9, 8, 7, 6]);
        stream.extend(frame(0x88, &2999u16.to_be_bytes(), [1, 2, 3, 4]));
        for cut in 0..stream.len() {
            let mut g = Inbound::new(false, 1 << 20);
            let mut out = Vec::new();
            let r = g.process(&stream[..cut], &mut out);
            let mut second = Vec::new();
            let r = r.and_then(|()| g.process(&stream[cut..], &mut second));
            assert_eq!(r, Err(Fail::CloseCode), "cut at {cut}");
            // The crate never gets the whole close frame to answer.
            out.extend_from_slice(&second);
            assert!(
                out.len() < stream.len(),
                "cut at {cut}: close frame passed on"
            );
        }
        let mut ok = frame(0x81, b"x", [5; 4]);
        ok.extend(frame(0x88, &1000u16.to_be_bytes(), [5; 4]));
        let mut out = Vec::new();
        assert_eq!(Inbound::new(false, 1 << 20).process(&ok, &mut out), Ok(()));
        assert_eq!(out, ok, "uncompressed frames pass as they came");
    }

    #[test]
    fn compressed_fragmented_messages_are_inflated_with_context() {
        let mut z = Compress::new(Compression::default(), false);
        let mut stream = Vec::new();
        let mut want = Vec::new();
        for m in 0..3u8 {
            let msg: Vec<u8> = (0..200_000u32)
                .map(|i| b"{\"k\": [1, 2, 3]}, "[(i as usize + m as usize) % 18])
                .collect();
            let mut c = Vec::with_capacity(300_000);
            z.compress_vec(&msg, &mut c, FlushCompress::Sync).unwrap();
            c.truncate(c.len() - 4);
            // Three frames: RSV1 text start, continuation, final
            // continuation, with a ping between.
            let (a, rest) = c.split_at(c.len() / 3);
            let (b, d) = rest.split_at(rest.len() / 2);
            stream.extend(frame(0x41, a, [m, 1, 2, 3]));
            stream.extend(frame(0x89, b"p", [4; 4]));
            stream.extend(frame(0x00, b, [7; 4]));
            stream.extend(frame(0x80, d, [0, 0, 9, 9]));
            want.push(msg);
        }
        let mut g = Inbound::new(true, 1 << 20);
        let mut out = Vec::new();
        for chunk in stream.chunks(1000) {
            g.process(chunk, &mut out).unwrap();
        }
        let frames = payloads(&out);
        assert_eq!(frames.len(), 12);
        for (m, msg) in want.iter().enumerate() {
            let f = &frames[m * 4..m * 4 + 4];
            assert_eq!(f[0].0, 0x01, "RSV1 cleared");
            assert_eq!(f[1], (0x89, b"p".to_vec()));
            let whole: Vec<u8> = [&f[0].1[..], &f[2].1, &f[3].1].concat();
            assert!(whole == *msg, "message {m} differs");
        }
    }

    #[test]
    fn inflating_past_the_limit_fails() {
        let mut z = Compress::new(Compression::best(), false);
        let mut c = Vec::with_capacity(1 << 20);
        z.compress_vec(&vec![0u8; 2 << 20], &mut c, FlushCompress::Sync)
            .unwrap();
        let mut g = Inbound::new(true, 1 << 20);
        let mut out = Vec::new();
        assert_eq!(
            g.process(&frame(0xc2, &c, [1; 4]), &mut out),
            Err(Fail::TooBig)
        );
    }
}
