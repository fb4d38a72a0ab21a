//! UDP (RFC 768): demux by connected 4-tuple then by local port, checksums,
//! RFC 6056 ephemeral ports, bounded receive queues, and delivery of ICMP
//! errors to the connected socket they concern (as Linux does).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

use smoltcp::wire::{IpAddress, IpProtocol, UdpPacket};

use super::counters::Counters;
use super::info::{Protocol, SocketInfo};
use super::ip::IpSink;
use super::ip::RxChecksum;
use super::rng::Rng;
use super::socket::{Readiness, SocketId};
use super::time::Instant;

/// Largest UDP payload in one IPv4 datagram: 65,535 - 20 - 8.
pub const MAX_DATAGRAM: usize = 65_507;
const HEADER: usize = 8;
/// Linux's default ip_local_port_range.
pub const EPHEMERAL_PORTS: std::ops::Range<u16> = 32768..61000;

#[derive(Clone, Debug)]
/// Per-socket receive bounds of the UDP layer (`StackConfig::udp`).
pub struct UdpConfig {
    /// Bytes of payload a socket queues before new datagrams are dropped.
    pub rx_queue_bytes: usize,
    /// Datagrams a socket queues before new ones are dropped.
    pub rx_queue_datagrams: usize,
    /// Seed for ephemeral port choice; `None` = entropy.
    pub seed: Option<u64>,
}

impl Default for UdpConfig {
    fn default() -> UdpConfig {
        UdpConfig {
            rx_queue_bytes: 1 << 20,
            rx_queue_datagrams: 1024,
            seed: None,
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
/// A UDP socket in the `UdpLayer` (an index, reused after `close`).
pub struct UdpHandle(pub u32);

#[derive(Debug)]
struct Socket {
    local: SocketAddrV4,
    remote: Option<SocketAddrV4>,
    rx: VecDeque<(SocketAddrV4, Vec<u8>)>,
    rx_bytes: usize,
    error: Option<io::ErrorKind>,
    broadcast: bool,
    /// `SocketInfo::id`.
    id: u64,
}

#[derive(Debug)]
/// The UDP sockets (RFC 768): port table, receive queues, and errors
/// from ICMP.
pub struct UdpLayer {
    config: UdpConfig,
    sockets: Vec<Option<Socket>>,
    free: Vec<u32>,
    by_port: HashMap<u16, Vec<u32>>,
    rng: Rng,
    events: Vec<UdpHandle>,
    /// Buffers of datagrams already read, reused for the next ones so the
    /// receive path does not allocate per datagram.
    spare: Vec<Vec<u8>>,
    /// Counters (`udp.*`).
    pub counters: Counters,
    /// The next `SocketInfo::id` (bit 63 set: apart from TCP's ids).
    next_id: u64,
}

/// How many read datagram buffers are kept for reuse, and the largest kept
/// (bigger ones, rare, are freed).
const SPARE_BUFFERS: usize = 256;
const SPARE_MAX_CAPACITY: usize = 9 * 1024;

fn no_socket() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "no such UDP socket")
}

impl UdpLayer {
    /// A layer with no sockets.
    pub fn new(config: UdpConfig) -> UdpLayer {
        let rng = config.seed.map(Rng::new).unwrap_or_else(Rng::from_entropy);
        UdpLayer {
            config,
            sockets: Vec::new(),
            free: Vec::new(),
            by_port: HashMap::new(),
            rng,
            events: Vec::new(),
            spare: Vec::new(),
            counters: Counters::new(),
            next_id: 1 << 63,
        }
    }

    fn sock(&self, h: UdpHandle) -> io::Result<&Socket> {
        self.sockets
            .get(h.0 as usize)
            .and_then(Option::as_ref)
            .ok_or_else(no_socket)
    }

    fn sock_mut(&mut self, h: UdpHandle) -> io::Result<&mut Socket> {
        self.sockets
            .get_mut(h.0 as usize)
            .and_then(Option::as_mut)
            .ok_or_else(no_socket)
    }

    /// RFC 6056 algorithm 1 (simple random selection), skipping ports in use.
    fn ephemeral_port(&mut self) -> io::Result<u16> {
        let span = (EPHEMERAL_PORTS.end - EPHEMERAL_PORTS.start) as u64;
        let start = self.rng.range(0, span);
        for i in 0..span {
            let port = EPHEMERAL_PORTS.start + ((start + i) % span) as u16;
            if !self.by_port.contains_key(&port) {
                return Ok(port);
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "no free ephemeral UDP port",
        ))
    }

    /// Binds a socket; port 0 picks an ephemeral port. One socket per port
    /// (no SO_REUSEADDR), so a second bind gets `AddrInUse` as std does.
    pub fn bind(&mut self, local: SocketAddrV4) -> io::Result<UdpHandle> {
        let port = match local.port() {
            0 => self.ephemeral_port()?,
            p if self.by_port.contains_key(&p) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("UDP port {p} is already bound"),
                ));
            }
            p => p,
        };
        let socket = Socket {
            local: SocketAddrV4::new(*local.ip(), port),
            remote: None,
            rx: VecDeque::new(),
            rx_bytes: 0,
            error: None,
            broadcast: false,
            id: self.next_id,
        };
        self.next_id += 1;
        let idx = match self.free.pop() {
            Some(i) => {
                self.sockets[i as usize] = Some(socket);
                i
            }
            None => {
                self.sockets.push(Some(socket));
                (self.sockets.len() - 1) as u32
            }
        };
        self.by_port.entry(port).or_default().push(idx);
        Ok(UdpHandle(idx))
    }

    /// Appends a snapshot of every UDP socket to `out`. Reads only.
    pub fn socket_infos(&self, out: &mut Vec<SocketInfo>) {
        for (idx, s) in self.sockets.iter().enumerate() {
            let Some(s) = s else { continue };
            out.push(SocketInfo {
                id: s.id,
                protocol: Protocol::Udp,
                state: if s.remote.is_some() {
                    "ESTAB"
                } else {
                    "UNCONN"
                },
                local: s.local,
                remote: s.remote,
                recv_q: s.rx_bytes,
                send_q: 0,
                pid: None,
                tcp: None,
                listen: None,
                time_wait_left: None,
                handle: Some(SocketId::Udp(idx as u32)),
            });
        }
    }

    /// Closes the socket, freeing its port; queued datagrams are dropped.
    /// A closed handle is ignored.
    pub fn close(&mut self, h: UdpHandle) {
        let Some(s) = self.sockets.get_mut(h.0 as usize).and_then(Option::take) else {
            return;
        };
        if let Some(v) = self.by_port.get_mut(&s.local.port()) {
            v.retain(|&i| i != h.0);
            if v.is_empty() {
                self.by_port.remove(&s.local.port());
            }
        }
        self.free.push(h.0);
    }

    /// Sets the socket's default peer and its receive filter; clears a
    /// pending error.
    pub fn connect(&mut self, h: UdpHandle, remote: SocketAddrV4) -> io::Result<()> {
        let s = self.sock_mut(h)?;
        s.remote = Some(remote);
        s.error = None;
        Ok(())
    }

    /// Allows sending to a broadcast address (`SO_BROADCAST`).
    pub fn set_broadcast(&mut self, h: UdpHandle, on: bool) -> io::Result<()> {
        self.sock_mut(h)?.broadcast = on;
        Ok(())
    }

    /// Whether sending to a broadcast address is allowed.
    pub fn broadcast(&self, h: UdpHandle) -> io::Result<bool> {
        Ok(self.sock(h)?.broadcast)
    }

    /// The socket's local address.
    pub fn local_addr(&self, h: UdpHandle) -> io::Result<SocketAddrV4> {
        Ok(self.sock(h)?.local)
    }

    /// The connected peer (`NotConnected` if none).
    pub fn peer_addr(&self, h: UdpHandle) -> io::Result<SocketAddrV4> {
        self.sock(h)?
            .remote
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "socket is not connected"))
    }

    /// The pending asynchronous error (e.g. ICMP port unreachable), cleared.
    pub fn take_error(&mut self, h: UdpHandle) -> io::Result<Option<io::Error>> {
        Ok(self.sock_mut(h)?.error.take().map(io::Error::from))
    }

    /// Sends one datagram now (UDP has no send buffer: it goes straight to
    /// the interface). `dst` None means the connected peer.
    pub fn send_to(
        &mut self,
        now: Instant,
        h: UdpHandle,
        data: &[u8],
        dst: Option<SocketAddrV4>,
        ip: &mut dyn IpSink,
        is_broadcast: impl Fn(Ipv4Addr) -> bool,
    ) -> io::Result<usize> {
        let s = self.sock_mut(h)?;
        if let Some(kind) = s.error.take() {
            return Err(kind.into());
        }
        let dst = match dst.or(s.remote) {
            Some(d) => d,
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "destination address required",
                ));
            }
        };
        if data.len() > MAX_DATAGRAM {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "message too long for one UDP datagram (max 65507 bytes)",
            ));
        }
        if is_broadcast(*dst.ip()) && !s.broadcast {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "sending to a broadcast address needs set_broadcast(true)",
            ));
        }
        if dst.port() == 0 || dst.ip().is_unspecified() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "invalid destination",
            ));
        }
        let src_port = s.local.port();
        let src_ip = ip.local_addr();
        let ok = ip.send_ip(
            now,
            *dst.ip(),
            IpProtocol::Udp,
            HEADER + data.len(),
            &mut |buf| {
                write_datagram(buf, src_ip, src_port, dst, data);
            },
        );
        if !ok {
            return Err(io::Error::new(
                io::ErrorKind::HostUnreachable,
                "no route to host",
            ));
        }
        self.counters.inc("udp.tx_datagrams");
        Ok(data.len())
    }

    /// Receives one datagram into `buf` (truncating, as recvfrom does).
    pub fn recv_from(
        &mut self,
        h: UdpHandle,
        buf: &mut [u8],
        peek: bool,
    ) -> io::Result<(usize, SocketAddrV4)> {
        let s = self.sock_mut(h)?;
        if let Some(kind) = s.error.take() {
            return Err(kind.into());
        }
        let Some((from, data)) = s.rx.front() else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        let from = *from;
        if !peek {
            let (_, data) = s.rx.pop_front().expect("front exists");
            s.rx_bytes -= data.len();
            if self.spare.len() < SPARE_BUFFERS && data.capacity() <= SPARE_MAX_CAPACITY {
                self.spare.push(data);
            }
        }
        Ok((n, from))
    }

    /// What the socket is ready for (a closed handle reads as hung up).
    pub fn readiness(&self, h: UdpHandle) -> Readiness {
        match self.sock(h) {
            Ok(s) => Readiness {
                readable: !s.rx.is_empty() || s.error.is_some(),
                writable: true,
                hup: false,
                error: s.error.is_some(),
            },
            Err(_) => Readiness {
                readable: true,
                writable: true,
                hup: true,
                error: true,
            },
        }
    }

    /// Moves the handles that had an event since the last call into `out`.
    pub fn take_events(&mut self, out: &mut Vec<UdpHandle>) {
        out.append(&mut self.events);
    }

    fn find(&self, local: SocketAddrV4, remote: SocketAddrV4) -> Option<u32> {
        let candidates = self.by_port.get(&local.port())?;
        let mut unconnected = None;
        for &i in candidates {
            let s = self.sockets[i as usize].as_ref()?;
            if !s.local.ip().is_unspecified() && *s.local.ip() != *local.ip() {
                continue;
            }
            match s.remote {
                Some(r) if r == remote => return Some(i),
                Some(_) => {}
                None => unconnected = Some(i),
            }
        }
        unconnected
    }

    /// One UDP datagram from the IP layer. Returns false if no socket took
    /// it because none is bound (the caller answers port-unreachable).
    pub fn receive(
        &mut self,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        bytes: &[u8],
        csum: RxChecksum,
    ) -> bool {
        let Ok(packet) = UdpPacket::new_checked(bytes) else {
            self.counters.inc("udp.malformed");
            return true;
        };
        // RFC 768: a zero checksum means the sender did not compute one.
        if csum == RxChecksum::Verify
            && packet.checksum() != 0
            && !packet.verify_checksum(&IpAddress::Ipv4(src), &IpAddress::Ipv4(dst))
        {
            self.counters.inc("udp.bad_checksum");
            return true;
        }
        let remote = SocketAddrV4::new(src, packet.src_port());
        let local = SocketAddrV4::new(dst, packet.dst_port());
        if packet.src_port() == 0 {
            self.counters.inc("udp.zero_source_port");
            return true;
        }
        let Some(idx) = self.find(local, remote) else {
            self.counters.inc("udp.no_socket");
            return false;
        };
        let payload = packet.payload();
        let (max_bytes, max_count) = (self.config.rx_queue_bytes, self.config.rx_queue_datagrams);
        let s = self.sockets[idx as usize].as_mut().expect("found socket");
        if s.rx.len() >= max_count || s.rx_bytes + payload.len() > max_bytes {
            self.counters.inc("udp.rx_queue_full");
            return true;
        }
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(payload);
        s.rx.push_back((remote, buf));
        s.rx_bytes += payload.len();
        self.counters.inc("udp.rx_datagrams");
        self.events.push(UdpHandle(idx));
        true
    }

    /// An ICMP error quoting a datagram we sent: delivered to the socket
    /// connected to that destination (Linux reports errors only to
    /// connected UDP sockets by default).
    pub fn icmp_error(&mut self, quoted_dst: Ipv4Addr, quoted_udp: &[u8], kind: io::ErrorKind) {
        if quoted_udp.len() < 4 {
            return;
        }
        let src_port = u16::from_be_bytes([quoted_udp[0], quoted_udp[1]]);
        let dst_port = u16::from_be_bytes([quoted_udp[2], quoted_udp[3]]);
        let remote = SocketAddrV4::new(quoted_dst, dst_port);
        let Some(list) = self.by_port.get(&src_port) else {
            return;
        };
        for &i in list {
            if let Some(s) = self.sockets[i as usize].as_mut()
                && s.remote == Some(remote)
            {
                s.error = Some(kind);
                self.counters.inc("udp.icmp_error_delivered");
                self.events.push(UdpHandle(i));
            }
        }
    }
}

/// Writes header, payload and checksum of one datagram into `buf`.
fn write_datagram(buf: &mut [u8], src: Ipv4Addr, src_port: u16, dst: SocketAddrV4, data: &[u8]) {
    let mut p = UdpPacket::new_unchecked(buf);
    p.set_src_port(src_port);
    p.set_dst_port(dst.port());
    p.set_len((HEADER + data.len()) as u16);
    p.set_checksum(0);
    p.payload_mut()[..data.len()].copy_from_slice(data);
    // smoltcp sends a computed zero as all ones (RFC 768).
    p.fill_checksum(&IpAddress::Ipv4(src), &IpAddress::Ipv4(*dst.ip()));
}
