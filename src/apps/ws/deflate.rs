//! permessage-deflate (RFC 7692): choosing an offer, and compressing the
//! messages we send (`inbound.rs` inflates what clients send).
//!
//! `shiguredo_websocket` has its own permessage-deflate, unused: it
//! declines `server_max_window_bits` below 15 (Autobahn 13.3, 13.5, 13.7)
//! and compresses only messages of 64 bytes or more, and its inflater
//! returned a 131,072-character message 25 characters short (Autobahn
//! 12.4.10). The deflate itself is `flate2` (zlib-rs, a Rust port of zlib);
//! this file and `inbound.rs` only frame it as RFC 7692 says. The crate
//! sees plain frames and knows nothing of the extension.

use flate2::{Compress, Compression, FlushCompress, Status};
use shiguredo_websocket::{Extension, Frame, Opcode};

/// What RFC 7692 section 7.2.1 lets us strip from the end of a message.
const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The agreed parameters, from the first acceptable offer.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Agreement {
    /// `Sec-WebSocket-Extensions` of our 101 response.
    pub response: String,
    window_bits: u8,
    no_context_takeover: bool,
}

/// Chooses the first offer of permessage-deflate whose parameters we
/// take (RFC 7692 section 5: offers are in the client's order of
/// preference; one with unknown or repeated parameters, or values out of
/// range, is declined: section 7.1).
pub(super) fn negotiate(offers: &[String]) -> Option<Agreement> {
    offers
        .iter()
        .flat_map(|s| Extension::parse(s))
        .filter(|e| e.name.eq_ignore_ascii_case("permessage-deflate"))
        .find_map(|e| agree(&e))
}

fn agree(offer: &Extension) -> Option<Agreement> {
    let mut window_bits = 15;
    let mut no_context_takeover = false;
    let mut seen: Vec<&str> = Vec::new();
    for p in &offer.params {
        let name = p.name.as_str();
        if seen.contains(&name) {
            return None; // section 7: a repeated parameter
        }
        seen.push(name);
        let bits = || {
            p.value
                .as_deref()
                .map(|v| v.trim_matches('"'))
                .and_then(|v| v.parse::<u8>().ok())
                .filter(|b| (8..=15).contains(b))
        };
        match name {
            "server_no_context_takeover" if p.value.is_none() => no_context_takeover = true,
            "client_no_context_takeover" if p.value.is_none() => {}
            // Section 7.1.2.1. zlib's raw deflate cannot use a 256-byte
            // window: 8 is answered with 9, which a client offering 8
            // must refuse, so an offer of 8 is declined instead.
            "server_max_window_bits" => match bits() {
                Some(b) if b >= 9 => window_bits = b,
                _ => return None,
            },
            // Section 7.1.2.2: the client's window only limits what it
            // sends; our decompressor takes any, so no answer is needed.
            "client_max_window_bits" if p.value.is_none() || bits().is_some() => {}
            _ => return None,
        }
    }
    let mut response = String::from("permessage-deflate");
    if no_context_takeover {
        response.push_str("; server_no_context_takeover");
    }
    if seen.contains(&"server_max_window_bits") {
        response.push_str(&format!("; server_max_window_bits={window_bits}"));
    }
    Some(Agreement {
        response,
        window_bits,
        no_context_takeover,
    })
}

/// Compresses whole messages into single frames with RSV1 set.
pub(super) struct Deflater {
    z: Compress,
    no_context_takeover: bool,
}

impl Deflater {
    pub(super) fn new(agreement: &Agreement) -> Deflater {
        Deflater {
            // Level 1: most of what level 6 saves on text at a fraction
            // of the CPU (level 6 was most of a 128 KiB echo's cost).
            z: Compress::new_with_window_bits(Compression::fast(), false, agreement.window_bits),
            no_context_takeover: agreement.no_context_takeover,
        }
    }

    /// One compressed message as an unmasked frame (server frames are
    /// never masked, RFC 6455 section 5.1).
    pub(super) fn frame(&mut self, opcode: Opcode, payload: &[u8]) -> Vec<u8> {
        let mut frame = Frame::new(opcode, self.compress(payload));
        frame.rsv1 = true;
        frame.encode_unmasked()
    }

    /// Section 7.2.1: deflate with a sync flush, minus the empty stored
    /// block's 4 octets at its end.
    fn compress(&mut self, mut input: &[u8]) -> Vec<u8> {
        if input.is_empty() {
            // Section 7.2.3.6: an empty message is the single octet 0x00
            // (an empty stored block without its trailer). A sync flush
            // with nothing to flush would give no octet at all, which a
            // client's inflater (Python's zlib) then fails on.
            return vec![0x00];
        }
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(1024));
            }
            let before = self.z.total_in();
            let status = self.z.compress_vec(input, &mut out, FlushCompress::Sync);
            let used = (self.z.total_in() - before) as usize;
            input = &input[used..];
            // Done once all input is in and the flush left room to spare
            // (a full buffer may hold back flushed output).
            match status {
                Ok(Status::Ok | Status::BufError)
                    if input.is_empty() && out.len() < out.capacity() =>
                {
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    // Cannot happen with valid parameters; an empty stored
                    // block keeps the stream well-formed.
                    log::warn!("ws: deflate failed: {e}");
                    out.clear();
                    out.extend_from_slice(&[0x00]);
                    break;
                }
            }
        }
        if out.ends_with(&TRAILER) {
            out.truncate(out.len() - TRAILER.len());
        }
        if self.no_context_takeover {
            self.z.reset();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};

    fn offers(s: &str) -> Vec<String> {
        vec![s.to_string()]
    }

    #[test]
    fn chooses_the_first_acceptable_offer() {
        let a = negotiate(&offers("permessage-deflate; client_max_window_bits")).unwrap();
        assert_eq!(a.response, "permessage-deflate");
        let a = negotiate(&offers(
            "permessage-deflate; server_max_window_bits=8, \
             permessage-deflate; server_no_context_takeover; server_max_window_bits=9, \
             permessage-deflate",
        ))
        .unwrap();
        assert_eq!(
            a.response,
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=9"
        );
        assert!(negotiate(&offers("permessage-deflate; foo")).is_none());
        assert!(negotiate(&offers("x-webkit-deflate-frame")).is_none());
        assert!(negotiate(&offers("permessage-deflate; server_max_window_bits=16")).is_none());
    }

    /// What a client does: append the trailer and inflate with its own
    /// context; every message must come back whole, over many messages
    /// (context takeover) and with the smallest window.
    #[test]
    fn many_large_messages_inflate_byte_for_byte() {
        for (offer, bits) in [
            ("permessage-deflate", 15),
            ("permessage-deflate; server_max_window_bits=9", 9),
            ("permessage-deflate; server_no_context_takeover", 15),
        ] {
            let agreement = negotiate(&offers(offer)).unwrap();
            let mut d = Deflater::new(&agreement);
            let mut inflate = Decompress::new_with_window_bits(false, bits);
            let mut x: u32 = 7;
            for len in [
                0usize, 0, 125, 0, 16, 131_072, 131_072, 65_536, 131_072, 300_000,
            ] {
                let msg: Vec<u8> = (0..len)
                    .map(|_| {
                        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                        b"Faust und Gretchen \xc3\xa4\n"[(x >> 16) as usize % 22]
                    })
                    .collect();
                let mut z = d.compress(&msg);
                z.extend_from_slice(&TRAILER);
                let mut out = Vec::with_capacity(len + 1024);
                inflate
                    .decompress_vec(&z, &mut out, FlushDecompress::Sync)
                    .unwrap();
                assert_eq!(out.len(), len, "{offer}");
                assert!(out == msg, "{offer}: {len}-byte message differs");
                if agreement.no_context_takeover {
                    inflate.reset(false);
                }
            }
        }
    }

    /// Python's zlib (the `websockets` client) fails on an empty payload;
    /// RFC 7692 section 7.2.3.6 gives 0x00.
    #[test]
    fn empty_message_is_one_zero_octet() {
        let agreement = negotiate(&offers("permessage-deflate")).unwrap();
        let mut d = Deflater::new(&agreement);
        assert_eq!(d.compress(b""), [0x00]);
        d.compress(b"some text first");
        assert_eq!(d.compress(b""), [0x00]);
    }
}
