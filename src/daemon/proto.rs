//! The daemon's control protocol, shared word for word by the daemon, the
//! Rust client library and the LD_PRELOAD shim (which includes this file
//! with `#[path]`, so it uses `std` only).
//!
//! Transport: an `AF_UNIX` `SOCK_SEQPACKET` connection, so each message is
//! one packet and a message can never be half-read. Every message is
//! exactly `MSG_LEN` bytes: a header (magic, version, op, length: the
//! length must equal the packet's) and fixed fields. A request about an
//! existing socket carries that socket's descriptor with `SCM_RIGHTS`:
//! holding the descriptor is the permission to act on it, so a client can
//! touch only the sockets whose descriptors it holds (its own, or ones it
//! inherited across fork). A reply that hands over a new socket carries
//! it the same way.
//!
//! Integers are little-endian; IPv4 addresses and ports are in network
//! order, as in `sockaddr_in`.

use std::net::{Ipv4Addr, SocketAddrV4};

/// First two bytes of every message: rejects a stray peer speaking another protocol.
pub const MAGIC: [u8; 2] = *b"TS";
/// Protocol version in byte 2; a mismatched client and daemon refuse each other.
pub const VERSION: u8 = 1;
/// Every request and reply is this long.
pub const MSG_LEN: usize = 24;

/// Request operations (`op` in the header; a reply echoes it).
pub mod op {
    /// No socket: the reply gives the stack's address (`addr`), prefix
    /// length (`a`) and gateway (`b`, 0 = none) so the shim can refuse an
    /// unroutable destination at once.
    pub const HELLO: u8 = 1;
    /// `a` = `TCP` or `UDP`; the reply carries the new socket's fd.
    pub const SOCKET: u8 = 2;
    /// Bind the socket to `addr` (port 0 = an ephemeral port).
    pub const BIND: u8 = 3;
    /// `a` = backlog; the reply carries the listening fd that replaces the
    /// socket's (the client `dup2`s it over the old number).
    pub const LISTEN: u8 = 4;
    /// `a` = 1 for a non-blocking connect (reply `EINPROGRESS` at once).
    /// `addr` all zero on UDP: dissolve the association (AF_UNSPEC).
    pub const CONNECT: u8 = 5;
    /// The reply's `addr` is the socket's local address.
    pub const GETSOCKNAME: u8 = 6;
    /// The reply's `addr` is the connected peer's address (`ENOTCONN` if none).
    pub const GETPEERNAME: u8 = 7;
    /// `a` = option (`opt::*`), `b` = value.
    pub const SETOPT: u8 = 8;
    /// `a` = option; the reply's `a` is the value.
    pub const GETOPT: u8 = 9;
    /// SO_ERROR: the pending error, once. While a connect is in progress
    /// the reply waits for its outcome.
    pub const SO_ERROR: u8 = 10;
    /// The client read end-of-file: the reply's errno is the reason the
    /// connection ended if it was an error (ECONNRESET, ETIMEDOUT), once.
    pub const EOF_CHECK: u8 = 11;
    /// No socket. `a` = `show::SsOptions` bits; the reply carries one
    /// end of a stream socketpair into which the daemon writes the socket table
    /// (`ss` text or JSON) and then closes it.
    pub const SOCKETS: u8 = 12;
    /// No socket. `a` = 1 for JSON, 0 for `name value` lines; the reply
    /// carries a socketpair with every counter, as `SOCKETS`.
    pub const COUNTERS: u8 = 13;
    /// No socket. A live trace (one line per frame) in a socketpair, filtered by
    /// `a` (protocol bits, 0 = any) and `addr` (host and port, zero = any):
    /// `watch::FrameFilter`. It ends when the reader closes it. Root or the
    /// daemon's own user only (EACCES): it shows every client's traffic.
    pub const TRACE: u8 = 14;
    /// No socket. As `TRACE`, a live pcap stream (header, then records).
    pub const PCAP: u8 = 15;
}

/// `op::SOCKET` kind: a TCP stream socket.
pub const TCP: u32 = 1;
/// `op::SOCKET` kind: a UDP datagram socket.
pub const UDP: u32 = 2;

/// Options for `op::SETOPT` / `op::GETOPT`.
pub mod opt {
    /// value: 0 = Nagle on (RFC 896), else off.
    pub const TCP_NODELAY: u32 = 1;
    /// value: 0 off, else on.
    pub const SO_KEEPALIVE: u32 = 2;
    /// value: 0 = off, 1 = on with a zero timeout (abort on close).
    pub const SO_LINGER_ABORT: u32 = 3;
    /// value: idle seconds before the first keepalive probe (RFC 1122 4.2.3.6).
    pub const TCP_KEEPIDLE: u32 = 4;
    /// value: seconds between keepalive probes.
    pub const TCP_KEEPINTVL: u32 = 5;
    /// value: probes unanswered before the connection is dropped.
    pub const TCP_KEEPCNT: u32 = 6;
    /// GETOPT only: the TCP state (Linux numbering, TCP_ESTABLISHED = 1).
    pub const TCP_STATE: u32 = 7;
}

/// One message (request or reply). Replies use `errno` (0 = success).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Msg {
    /// Operation, one of `op::*`; a reply carries its request's.
    pub op: u8,
    /// Reply only: 0 = success, else a Linux errno value.
    pub errno: i32,
    /// First operation-specific argument (see each `op::*`).
    pub a: u32,
    /// Second operation-specific argument (see each `op::*`).
    pub b: u32,
    /// Address argument or result; `None` is sent as all zero (0.0.0.0:0).
    pub addr: Option<SocketAddrV4>,
}

/// Why a packet is not a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadMsg {
    /// The packet is not `MSG_LEN` long or its length field disagrees.
    Length,
    /// The first two bytes are not `MAGIC`.
    Magic,
    /// The version byte is not `VERSION`.
    Version,
}

impl Msg {
    /// A request for `op` with every other field zero.
    pub fn request(op: u8) -> Msg {
        Msg {
            op,
            ..Msg::default()
        }
    }

    /// The `MSG_LEN`-byte wire form of this message.
    pub fn encode(&self) -> [u8; MSG_LEN] {
        let mut b = [0u8; MSG_LEN];
        b[0..2].copy_from_slice(&MAGIC);
        b[2] = VERSION;
        b[3] = self.op;
        b[4..6].copy_from_slice(&(MSG_LEN as u16).to_le_bytes());
        b[6..10].copy_from_slice(&self.errno.to_le_bytes());
        b[10..14].copy_from_slice(&self.a.to_le_bytes());
        b[14..18].copy_from_slice(&self.b.to_le_bytes());
        if let Some(addr) = self.addr {
            b[18..22].copy_from_slice(&addr.ip().octets());
            b[22..24].copy_from_slice(&addr.port().to_be_bytes());
        }
        b
    }

    /// Checks length, magic and version; any other content is the
    /// receiver's to judge.
    pub fn decode(p: &[u8]) -> Result<Msg, BadMsg> {
        if p.len() != MSG_LEN || u16::from_le_bytes([p[4], p[5]]) as usize != MSG_LEN {
            return Err(BadMsg::Length);
        }
        if p[0..2] != MAGIC {
            return Err(BadMsg::Magic);
        }
        if p[2] != VERSION {
            return Err(BadMsg::Version);
        }
        let le = |i: usize| u32::from_le_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
        let ip = Ipv4Addr::new(p[18], p[19], p[20], p[21]);
        let port = u16::from_be_bytes([p[22], p[23]]);
        Ok(Msg {
            op: p[3],
            errno: le(6) as i32,
            a: le(10),
            b: le(14),
            addr: (!ip.is_unspecified() || port != 0).then(|| SocketAddrV4::new(ip, port)),
        })
    }
}

/// A UDP datagram on its socketpair starts with this header: the peer
/// address (destination client->daemon, all zero = the connected peer;
/// source daemon->client) and an errno (daemon->client only: a non-zero
/// errno is an asynchronous error such as ECONNREFUSED, with no payload).
pub const UDP_HDR: usize = 8;

/// The header for a datagram to or from `addr` (`None` = the connected peer)
/// with asynchronous error `errno` (0 = none).
pub fn udp_header(addr: Option<SocketAddrV4>, errno: u16) -> [u8; UDP_HDR] {
    let mut h = [0u8; UDP_HDR];
    if let Some(a) = addr {
        h[0..4].copy_from_slice(&a.ip().octets());
        h[4..6].copy_from_slice(&a.port().to_be_bytes());
    }
    h[6..8].copy_from_slice(&errno.to_le_bytes());
    h
}

/// Splits a UDP header into its address (`None` if all zero) and errno.
pub fn parse_udp_header(h: &[u8; UDP_HDR]) -> (Option<SocketAddrV4>, u16) {
    let ip = Ipv4Addr::new(h[0], h[1], h[2], h[3]);
    let port = u16::from_be_bytes([h[4], h[5]]);
    let addr = (!ip.is_unspecified() || port != 0).then(|| SocketAddrV4::new(ip, port));
    (addr, u16::from_le_bytes([h[6], h[7]]))
}

/// A connection handed over on a listening socket's descriptor: peer
/// address then local address, with the connection's fd as SCM_RIGHTS.
/// The accepting side answers each with one byte (`ACCEPT_ACK`) so the
/// daemon knows how many wait unaccepted (the backlog).
pub const ACCEPT_REC: usize = 12;
/// The byte the accepting side sends back for each `ACCEPT_REC` it takes.
pub const ACCEPT_ACK: u8 = 0xAC;

/// The record announcing an accepted connection from `peer` to `local`.
pub fn accept_record(peer: SocketAddrV4, local: SocketAddrV4) -> [u8; ACCEPT_REC] {
    let mut r = [0u8; ACCEPT_REC];
    r[0..4].copy_from_slice(&peer.ip().octets());
    r[4..6].copy_from_slice(&peer.port().to_be_bytes());
    r[6..10].copy_from_slice(&local.ip().octets());
    r[10..12].copy_from_slice(&local.port().to_be_bytes());
    r
}

/// Splits an accept record into (peer, local).
pub fn parse_accept_record(r: &[u8; ACCEPT_REC]) -> (SocketAddrV4, SocketAddrV4) {
    let peer = SocketAddrV4::new(
        Ipv4Addr::new(r[0], r[1], r[2], r[3]),
        u16::from_be_bytes([r[4], r[5]]),
    );
    let local = SocketAddrV4::new(
        Ipv4Addr::new(r[6], r[7], r[8], r[9]),
        u16::from_be_bytes([r[10], r[11]]),
    );
    (peer, local)
}

/// The control socket's path: `--api`, else `TAPSTACK_API`, else
/// `/run/tapstack/<TAP>.sock`.
pub fn default_path(tap: &str) -> String {
    format!("/run/tapstack/{tap}.sock")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let m = Msg {
            op: op::CONNECT,
            errno: -3,
            a: 7,
            b: u32::MAX,
            addr: Some("10.0.0.1:80".parse().unwrap()),
        };
        assert_eq!(Msg::decode(&m.encode()), Ok(m));
    }

    #[test]
    fn rejects_bad_packets() {
        let good = Msg::request(op::HELLO).encode();
        assert_eq!(Msg::decode(&good[..10]), Err(BadMsg::Length));
        let mut long = good.to_vec();
        long.push(0);
        assert_eq!(Msg::decode(&long), Err(BadMsg::Length));
        let mut bad = good;
        bad[0] = b'X';
        assert_eq!(Msg::decode(&bad), Err(BadMsg::Magic));
        let mut bad = good;
        bad[2] = 9;
        assert_eq!(Msg::decode(&bad), Err(BadMsg::Version));
        let mut bad = good;
        bad[4] = 200;
        assert_eq!(Msg::decode(&bad), Err(BadMsg::Length));
    }
}
