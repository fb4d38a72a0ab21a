//! The classic small servers (RFC 862 echo, RFC 863 discard, RFC 864
//! chargen), written against the public API as a user would write them:
//! one thread and the stack's `Poll` for every socket.

use std::io::{self, Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use super::evloop::{RateLog, Slab};
use crate::api::{Events, Interest, Net, Poll, TcpListener, TcpStream, Token, UdpSocket};

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

/// Limits of the TCP services.
#[derive(Debug, Clone)]
pub struct ServicesConfig {
    /// TCP connections served at once over the three services; more are
    /// refused with RST (and counted in a log line once per second).
    pub max_connections: usize,
    /// Listen backlog of each service.
    pub backlog: usize,
}

impl Default for ServicesConfig {
    fn default() -> ServicesConfig {
        ServicesConfig {
            max_connections: 100_000,
            backlog: 1024,
        }
    }
}

/// Nine periods of the RFC 864 pattern (95 lines of 74 bytes each): about
/// one 64 KB super-frame per write, where a 7 KB write cost a TAP write
/// (and the kernel's receive path) per 5 segments.
fn chargen_block() -> Vec<u8> {
    let mut block = Vec::with_capacity(9 * 74 * 95);
    Chargen::new().fill(&mut block, 9 * 74 * 95);
    block
}

/// Most echo bytes a TCP connection holds back at once: reading stops
/// while the client does not take what it sent.
const ECHO_PENDING_MAX: usize = 64 * 1024;

const PORTS: [u16; 3] = [ECHO, DISCARD, CHARGEN];
/// Tokens 0..3 are the TCP listeners, 3..6 the UDP sockets.
const FIRST_CONN: usize = 6;

struct TcpConn {
    stream: TcpStream,
    port: u16,
    /// Echo: bytes read and not yet sent back. Chargen: unused.
    pending: Vec<u8>,
    /// Chargen: where in the block the next write starts.
    offset: usize,
    /// The client sent its FIN: echo what is pending, then close.
    eof: bool,
    interest: Interest,
}

impl TcpConn {
    fn interest(&self) -> Interest {
        match self.port {
            CHARGEN => Interest::BOTH,
            ECHO if !self.pending.is_empty() => Interest::WRITABLE,
            _ => Interest::READABLE,
        }
    }

    /// Reads, answers and writes what it can; `false` once it is done.
    fn serve(&mut self, scratch: &mut [u8], chargen: &[u8]) -> bool {
        loop {
            if !self.flush(chargen) {
                return false;
            }
            if self.eof {
                // Echo: all sent back; discard or chargen: the client left.
                return !self.pending.is_empty();
            }
            if !self.pending.is_empty() {
                return true; // echo: wait until the client reads
            }
            let want = scratch.len().min(ECHO_PENDING_MAX);
            match self.stream.read(&mut scratch[..want]) {
                Ok(0) => self.eof = true,
                Ok(n) if self.port == ECHO => self.pending.extend_from_slice(&scratch[..n]),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }

    /// Sends pending echo bytes, or chargen's pattern until the socket is
    /// full; `false` if the connection failed.
    fn flush(&mut self, chargen: &[u8]) -> bool {
        loop {
            let buf = match self.port {
                ECHO if !self.pending.is_empty() => &self.pending[..],
                CHARGEN if !self.eof => &chargen[self.offset..],
                _ => return true,
            };
            match self.stream.write(buf) {
                Ok(n) if self.port == ECHO => {
                    self.pending.drain(..n);
                    if self.pending.is_empty() {
                        self.pending = Vec::new(); // give memory back
                    }
                }
                Ok(n) => self.offset = (self.offset + n) % chargen.len(),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }
}

/// Echo, discard and chargen on TCP and UDP, served by one thread over
/// the stack's `Poll`: a connection costs its state (and any echo bytes
/// the client has not read yet), not a thread.
pub struct Services {
    poll: Poll,
    listeners: Vec<TcpListener>,
    udp: Vec<UdpSocket>,
    conns: Slab<TcpConn>,
    config: ServicesConfig,
    refused: RateLog,
    chargen: Vec<u8>,
    udp_chargen: Chargen,
}

impl Services {
    /// Binds the six services.
    pub fn bind(net: &Net, config: ServicesConfig) -> io::Result<Services> {
        let poll = Poll::new(net);
        let mut listeners = Vec::new();
        let mut udp = Vec::new();
        for (i, port) in PORTS.into_iter().enumerate() {
            let l = TcpListener::bind_with_backlog(net, ("0.0.0.0", port), config.backlog)?;
            l.set_nonblocking(true)?;
            poll.register(&l, Token(i), Interest::READABLE)?;
            listeners.push(l);
            let u = UdpSocket::bind(net, ("0.0.0.0", port))?;
            u.set_nonblocking(true)?;
            poll.register(&u, Token(3 + i), Interest::READABLE)?;
            udp.push(u);
        }
        Ok(Services {
            poll,
            listeners,
            udp,
            conns: Slab::new(FIRST_CONN),
            config,
            refused: RateLog::new("tcp services: connections refused (connection limit)"),
            chargen: chargen_block(),
            udp_chargen: Chargen::new(),
        })
    }

    /// TCP connections being served.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Serves until the stack stops.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut scratch = vec![0u8; 64 * 1024];
        loop {
            if let Err(e) = self.poll.poll(&mut events, Some(Duration::from_secs(1))) {
                log::debug!("services: poll ended: {e}");
                return;
            }
            let now = Instant::now();
            for ev in events.iter() {
                match ev.token().0 {
                    i @ 0..3 => self.accept_all(i, now),
                    i @ 3..6 => self.serve_udp(i - 3, &mut scratch),
                    _ => self.serve_tcp(ev.token(), &mut scratch),
                }
            }
            self.refused.tick(now);
        }
    }

    fn accept_all(&mut self, i: usize, now: Instant) {
        loop {
            let stream = match self.listeners[i].accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    log::debug!("services: accept failed: {e}");
                    return;
                }
            };
            if self.conns.len() >= self.config.max_connections {
                // Refused with an answer (RST), as Linux answers a port
                // nobody serves.
                let _ = stream.set_linger(Some(Duration::ZERO));
                self.refused.hit(now);
                continue;
            }
            let _ = stream.set_nonblocking(true);
            let conn = TcpConn {
                stream,
                port: PORTS[i],
                pending: Vec::new(),
                offset: 0,
                eof: false,
                interest: Interest::READABLE,
            };
            let interest = conn.interest();
            let (token, _) = self.conns.insert(conn);
            if let Some(c) = self.conns.get_mut(token) {
                c.interest = interest;
                let _ = self.poll.register(&c.stream, token, interest);
            }
        }
    }

    fn serve_tcp(&mut self, token: Token, scratch: &mut [u8]) {
        let Some(c) = self.conns.get_mut(token) else {
            return;
        };
        if !c.serve(scratch, &self.chargen) {
            let _ = self.poll.deregister(&c.stream);
            self.conns.remove(token); // dropping the stream sends our FIN
            return;
        }
        let interest = c.interest();
        if interest != c.interest {
            c.interest = interest;
            let _ = self.poll.reregister(&c.stream, token, interest);
        }
    }

    fn serve_udp(&mut self, i: usize, buf: &mut [u8]) {
        let sock = &self.udp[i];
        let port = PORTS[i];
        let mut reply = Vec::new();
        loop {
            let (n, from) = match sock.recv_from(buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(_) => return, // WouldBlock, or the stack stopped
            };
            let result = match port {
                ECHO => sock.send_to(&buf[..n], from),
                CHARGEN => {
                    // RFC 864: answer each datagram with 0..512 characters.
                    reply.clear();
                    self.udp_chargen.fill(&mut reply, 512);
                    sock.send_to(&reply, from)
                }
                _ => Ok(0),
            };
            if let Err(e) = result {
                log::debug!("udp/{port}: reply to {from} failed: {e}");
            }
        }
    }
}

/// Binds echo, discard and chargen on TCP and UDP and serves them from
/// one thread until the stack stops.
pub fn start(net: &Net, config: ServicesConfig) -> io::Result<()> {
    let services = Services::bind(net, config)?;
    thread::Builder::new()
        .name("services".into())
        .spawn(move || services.run())?;
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
