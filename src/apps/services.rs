//! The classic small servers (RFC 862 echo, RFC 863 discard, RFC 864
//! chargen), written against the public API as a user would write them.

use std::io::{self, Read, Write};
use std::thread;

use super::workers::Workers;

use crate::api::{Net, TcpListener, TcpStream, UdpSocket};

/// Echo port (RFC 862): every byte received is sent back.
pub const ECHO: u16 = 7;
/// Discard port (RFC 863): everything received is thrown away.
pub const DISCARD: u16 = 9;
/// Character generator port (RFC 864): sends the pattern until closed.
pub const CHARGEN: u16 = 19;

/// The RFC 864 pattern: 72-character lines of the 95 printable ASCII
/// characters, each line starting one character further on.
pub struct Chargen {
    line: usize,
}

impl Chargen {
    /// A generator at the first line of the pattern.
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

/// Most TCP connections served at once; beyond it new ones are closed at
/// once, so a flood of connections cannot exhaust threads.
pub const MAX_TCP_CONNECTIONS: usize = 4096;
fn serve_tcp_connection(mut stream: TcpStream, port: u16, buf: &mut [u8]) -> io::Result<()> {
    match port {
        ECHO => loop {
            let n = stream.read(buf)?;
            if n == 0 {
                return Ok(()); // the client closed; dropping sends our FIN
            }
            stream.write_all(&buf[..n])?;
        },
        DISCARD => loop {
            if stream.read(buf)? == 0 {
                return Ok(());
            }
        },
        _ => {
            // RFC 864: send the pattern until the client closes; whatever it
            // sends is discarded by a second thread so it never blocks us.
            let reader = stream.try_clone()?;
            thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    let mut r = reader;
                    let mut sink = [0u8; 4096];
                    while matches!(r.read(&mut sink), Ok(n) if n > 0) {}
                })?;
            // Nine periods of the pattern (95 lines of 74 bytes) per write:
            // about one 64 KB super-frame, where a 7 KB write cost a TAP
            // write (and the kernel's receive path) per 5 segments.
            let mut chargen = Chargen::new();
            let mut block = Vec::with_capacity(9 * 74 * 95);
            chargen.fill(&mut block, 9 * 74 * 95);
            loop {
                stream.write_all(&block)?;
            }
        }
    }
}

/// Binds echo, discard and chargen on TCP; each connection is served by a
/// worker thread of its own, so a slow client never holds up the others.
pub fn start_tcp(net: &Net) -> io::Result<()> {
    let workers = Workers::new(
        MAX_TCP_CONNECTIONS,
        64 * 1024,
        |(stream, port): (TcpStream, u16), buf: &mut [u8]| {
            if let Err(e) = serve_tcp_connection(stream, port, buf) {
                log::debug!("tcp/{port}: connection ended: {e}");
            }
        },
    );
    for port in [ECHO, DISCARD, CHARGEN] {
        let listener = TcpListener::bind_with_backlog(net, ("0.0.0.0", port), 1024)?;
        let workers = workers.clone();
        thread::Builder::new()
            .name(format!("tcp-{port}"))
            .spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { return }; // stack stopped
                    if let Err(why) = workers.submit((stream, port)) {
                        log::warn!("tcp/{port}: connection closed at once: {why:?}");
                    }
                }
            })?;
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
