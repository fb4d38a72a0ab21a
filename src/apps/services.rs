//! The classic small servers (RFC 862 echo, RFC 863 discard, RFC 864
//! chargen), written against the public API as a user would write them.

use std::io;
use std::thread;

use crate::api::{Net, UdpSocket};

pub const ECHO: u16 = 7;
pub const DISCARD: u16 = 9;
pub const CHARGEN: u16 = 19;

/// The RFC 864 pattern: 72-character lines of the 95 printable ASCII
/// characters, each line starting one character further on.
pub struct Chargen {
    line: usize,
}

impl Chargen {
    pub fn new() -> Chargen {
        Chargen { line: 0 }
    }

    /// Fills `out` with the continuing pattern (lines end in CRLF).
    pub fn fill(&mut self, out: &mut Vec<u8>, len: usize) {
        while out.len() < len {
            for i in 0..72 {
                out.push(b' ' + ((self.line + i) % 95) as u8);
            }
            out.extend_from_slice(b"\r\n");
            self.line = (self.line + 1) % 95;
        }
        out.truncate(len);
    }
}

impl Default for Chargen {
    fn default() -> Chargen {
        Chargen::new()
    }
}

/// Serves one UDP service until the stack stops.
fn serve_udp(sock: UdpSocket, port: u16) {
    let mut buf = vec![0u8; 65_536];
    let mut chargen = Chargen::new();
    let mut reply = Vec::with_capacity(512);
    loop {
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
            Err(_) => return, // the stack stopped
        };
        let result = match port {
            ECHO => sock.send_to(&buf[..n], from),
            CHARGEN => {
                // RFC 864: answer each datagram with 0..512 characters.
                reply.clear();
                chargen.fill(&mut reply, 512);
                sock.send_to(&reply, from)
            }
            _ => Ok(0),
        };
        if let Err(e) = result {
            log::debug!("udp/{port}: reply to {from} failed: {e}");
        }
    }
}

/// Binds echo, discard and chargen on UDP and serves each in a thread.
pub fn start_udp(net: &Net) -> io::Result<()> {
    for port in [ECHO, DISCARD, CHARGEN] {
        let sock = UdpSocket::bind(net, ("0.0.0.0", port))?;
        thread::Builder::new()
            .name(format!("udp-{port}"))
            .spawn(move || serve_udp(sock, port))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chargen_lines_rotate() {
        let mut c = Chargen::new();
        let mut out = Vec::new();
        c.fill(&mut out, 148);
        assert_eq!(&out[..3], b" !\"");
        assert_eq!(&out[72..74], b"\r\n");
        assert_eq!(out[74], b'!');
        assert_eq!(out.len(), 148);
    }
}
