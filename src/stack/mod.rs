//! The sans-I/O core: no syscalls, no threads, no clock.
//!
//! `Stack` glues the layers together; its calling contract is written on
//! the type: `handle_frame`, `handle_timeout`, `poll_transmit`, `poll_at`,
//! `take_events`.

pub mod arp;
pub mod counters;
pub mod icmp;
pub mod iface;
pub mod info;
pub mod ip;
pub mod ipv4;
pub mod rng;
pub mod socket;
pub mod tcp;
pub mod time;
pub mod udp;

use std::io;
use std::net::Ipv4Addr;

use smoltcp::wire::IpProtocol;

pub use counters::Counters;
use icmp::IcmpLayer;
pub use iface::Frame;
use iface::{IfaceConfig, Interface};
pub use ip::RxChecksum;
use ipv4::reassembly::{Reassembler, ReassemblyConfig};
use socket::SocketId;
use tcp::{TcpConfig, TcpHandle, TcpLayer};
pub use time::Instant;
use udp::{UdpConfig, UdpLayer};

/// A whole IPv4 packet for us, as the transports get it.
#[derive(Clone, Copy)]
struct Datagram<'a> {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: IpProtocol,
    header: &'a [u8],
    payload: &'a [u8],
    csum: RxChecksum,
}

/// Everything a stack is configured with. `new` fills in Linux-like
/// defaults; change fields before `Net::start`.
///
/// ```
/// use std::time::Duration;
/// use tapstack::{EthernetAddress, Ipv4Cidr, StackConfig};
///
/// let mut config = StackConfig::new(
///     EthernetAddress([0x02, 0, 0, 0, 0, 1]),
///     Ipv4Cidr::new([192, 168, 7, 2].into(), 24),
/// );
/// config.iface.gateway = Some([192, 168, 7, 1].into());
/// config.iface.mtu = 9000;
/// config.tcp.time_wait = Duration::from_secs(1);
/// config.seed = Some(42); // reproducible ports, ISNs and IP ids
/// assert_eq!(config.iface.cidr.prefix_len(), 24);
/// ```
#[derive(Clone, Debug)]
pub struct StackConfig {
    /// Link identity and interface bounds: MAC, address/prefix, gateway, MTU,
    /// ARP cache and the outgoing frame queue.
    pub iface: IfaceConfig,
    /// UDP bounds (sockets, queued datagrams per socket).
    pub udp: UdpConfig,
    /// TCP behaviour and bounds (buffers, timers, congestion control).
    pub tcp: TcpConfig,
    /// Bounds on IPv4 fragment reassembly (RFC 791 / RFC 815), against
    /// memory exhaustion by fragments that never complete.
    pub reassembly: ReassemblyConfig,
    /// ICMP errors per second and burst (Linux: 1000 and 50).
    pub icmp_rate: (u32, u32),
    /// Seed for every random choice (ports, ISNs, IP ids); None = entropy.
    pub seed: Option<u64>,
}

impl StackConfig {
    /// Defaults for everything but the link identity: MTU 1500, default
    /// UDP/TCP/reassembly bounds, Linux's ICMP rate, random seed.
    /// `EthernetAddress` and `Ipv4Cidr` are re-exported at the crate root.
    pub fn new(mac: smoltcp::wire::EthernetAddress, cidr: smoltcp::wire::Ipv4Cidr) -> StackConfig {
        StackConfig {
            iface: IfaceConfig {
                mac,
                cidr,
                gateway: None,
                mtu: 1500,
                arp: Default::default(),
                outbox_limit: 8192,
            },
            udp: UdpConfig::default(),
            tcp: TcpConfig::default(),
            reassembly: ReassemblyConfig::default(),
            icmp_rate: (1000, 50),
            seed: None,
        }
    }
}

/// The sans-I/O protocol core. It never reads a clock or touches a device:
/// the caller passes `now` (a monotonic [`Instant`]) into every entry
/// point and moves frames between the core and the device.
///
/// # Calling contract (in the manner of quinn-proto)
///
/// A driver loops over these, in this order:
///
/// 1. [`handle_frame`](Stack::handle_frame) for each frame from the link.
///    It updates state and may queue output (ARP replies, ICMP echo
///    replies and errors, and on the TCP side: ACKs, resets, TIME-WAIT
///    ACKs, SYN,ACKs); it sends nothing itself, except what the IP layer
///    answers at once (ARP, ICMP). Socket calls on `tcp` / `udp` (`send`,
///    `recv`, `connect`, `close`...) are inputs too, and queue the same way.
/// 2. [`handle_timeout`](Stack::handle_timeout) once the inputs are in
///    (after a batch of frames or a socket call) and whenever
///    [`poll_at`](Stack::poll_at) has passed. It runs every timer due at
///    `now` (ARP retries, reassembly timeouts, TCP retransmission, probes,
///    delayed ACKs, keepalive, FIN-WAIT-2 and TIME-WAIT), then turns what
///    is queued into frames, in the order it was queued. Calling it early
///    or twice at one `now` is harmless.
/// 3. [`poll_transmit`](Stack::poll_transmit) until it returns `None`,
///    writing each frame to the device and giving its buffer back with
///    [`recycle`](Stack::recycle). Frames come out in the order produced.
/// 4. [`take_events`](Stack::take_events): the sockets whose readiness may
///    have changed (readable, writable, accepted, closed, error) since the
///    last call; wake their waiters.
/// 5. Sleep until a frame arrives, a socket call is made, or
///    [`poll_at`](Stack::poll_at): the earliest deadline, `None` for none,
///    or a time at or before `now` when output is queued (call
///    `handle_timeout` again before sleeping).
///
/// Nothing is sent between calls; no call blocks; every queue the core
/// keeps between calls is bounded (past a bound: a counter and a drop).
pub struct Stack {
    /// Ethernet, ARP and IPv4 in and out: routing, next-hop resolution, the
    /// outgoing frame queue.
    pub iface: Interface,
    /// Reassembles fragmented IPv4 datagrams before they reach a transport.
    pub reassembler: Reassembler,
    /// ICMP: echo replies and rate-limited error messages (RFC 792, RFC 1122 3.2.2).
    pub icmp: IcmpLayer,
    /// UDP sockets (RFC 768).
    pub udp: UdpLayer,
    /// TCP sockets and connections (RFC 9293).
    pub tcp: TcpLayer,
    events: Vec<SocketId>,
    /// Reused while collecting each layer's events (no allocation per frame).
    udp_scratch: Vec<crate::stack::udp::UdpHandle>,
    tcp_scratch: Vec<TcpHandle>,
}

impl Stack {
    /// Creates the stack and queues a gratuitous ARP announcement.
    pub fn new(mut config: StackConfig) -> Stack {
        let seed = config
            .seed
            .unwrap_or_else(|| rng::Rng::from_entropy().next_u64());
        config.udp.seed = Some(seed ^ 0x5544_5000);
        // Unseeded, TCP draws its ISN/port secret from the OS itself.
        config.tcp.seed = config.tcp.seed.or(config.seed.map(|s| s ^ 0x5443_5000));
        // RFC 9293 3.7.1: MSS = MTU - IP header - TCP header.
        config.tcp.mss = config.iface.mtu - 40;
        let tcp = TcpLayer::new(config.tcp, config.iface.cidr.address());
        let mut iface = Interface::new(config.iface, seed);
        iface.announce();
        Stack {
            iface,
            reassembler: Reassembler::new(config.reassembly),
            icmp: IcmpLayer::new(config.icmp_rate.0, config.icmp_rate.1),
            udp: UdpLayer::new(config.udp),
            tcp,
            events: Vec::new(),
            udp_scratch: Vec::new(),
            tcp_scratch: Vec::new(),
        }
    }

    /// The interface's IPv4 address.
    pub fn addr(&self) -> Ipv4Addr {
        self.iface.addr()
    }

    /// What the device takes: partial TCP checksums
    /// ([`TcpConfig::checksum_offload`]) and TCP super-segments
    /// ([`TcpConfig::segmentation_offload`], only with the former).
    pub fn set_tx_offloads(&mut self, csum: bool, tso: bool) {
        self.tcp.set_checksum_offload(csum);
        self.tcp.set_segmentation_offload(csum && tso);
    }

    /// One frame from the link, with what the device knows of its
    /// transport checksum (IPv4 header checksums are always checked);
    /// `RxChecksum::Verify` when it knows nothing. Contract step 1.
    pub fn handle_frame(&mut self, now: Instant, frame: &[u8], csum: RxChecksum) {
        let Some(ip_bytes) = self.iface.receive_frame(now, frame) else {
            return;
        };
        let our = self.iface.addr();
        let cidr = self.iface.config.cidr;
        let is_bcast = |ip: Ipv4Addr| ip == Ipv4Addr::BROADCAST || Some(ip) == cidr.broadcast();
        let Some(input) = ipv4::parse(ip_bytes, our, is_bcast, &mut self.iface.counters) else {
            return;
        };
        match input.fragment {
            None => self.deliver(
                now,
                &Datagram {
                    src: input.src,
                    dst: input.dst,
                    protocol: input.protocol,
                    header: input.header,
                    payload: input.payload,
                    csum,
                },
            ),
            Some((key, offset, more)) => {
                let counters = &mut self.iface.counters;
                if let Some(whole) = self.reassembler.insert(
                    now,
                    key,
                    offset,
                    more,
                    input.header,
                    input.payload,
                    counters,
                ) {
                    counters.inc("ipv4.reassembled");
                    // A device vouches for whole packets only.
                    self.deliver(
                        now,
                        &Datagram {
                            src: whole.key.src,
                            dst: whole.key.dst,
                            protocol: IpProtocol::from(whole.key.protocol),
                            header: &whole.header,
                            payload: &whole.payload,
                            csum: RxChecksum::Verify,
                        },
                    );
                }
            }
        }
    }

    fn deliver(&mut self, now: Instant, d: &Datagram) {
        let Datagram {
            src,
            dst,
            protocol,
            header,
            payload,
            csum,
        } = *d;
        match protocol {
            IpProtocol::Icmp => {
                let icmp = &mut self.icmp;
                if let Some(err) = icmp.receive(now, &mut self.iface, src, dst, payload, csum) {
                    self.icmp_error_to_transport(now, &err);
                }
            }
            IpProtocol::Tcp => {
                if dst == self.iface.addr() {
                    self.tcp.receive(now, src, dst, payload, csum);
                } else {
                    self.iface.counters.inc("tcp.to_broadcast");
                }
            }
            IpProtocol::Udp => {
                if !self.udp.receive(src, dst, payload, csum) && dst == self.iface.addr() {
                    self.icmp.send_error(
                        now,
                        &mut self.iface,
                        icmp::TYPE_DEST_UNREACHABLE,
                        icmp::CODE_PORT_UNREACHABLE,
                        src,
                        header,
                        payload,
                    );
                }
                self.collect_udp_events();
            }
            _ => {
                self.iface.counters.inc("ipv4.unknown_protocol");
                if dst == self.iface.addr() {
                    self.icmp.send_error(
                        now,
                        &mut self.iface,
                        icmp::TYPE_DEST_UNREACHABLE,
                        icmp::CODE_PROTOCOL_UNREACHABLE,
                        src,
                        header,
                        payload,
                    );
                }
            }
        }
    }

    fn icmp_error_to_transport(&mut self, now: Instant, err: &icmp::IcmpError) {
        if err.protocol == IpProtocol::Tcp {
            self.tcp
                .icmp_error(now, err.icmp_type, err.code, err.next_hop_mtu, err.quoted);
            return;
        }
        if err.protocol == IpProtocol::Udp {
            let kind = match (err.icmp_type, err.code) {
                (icmp::TYPE_DEST_UNREACHABLE, icmp::CODE_PORT_UNREACHABLE)
                | (icmp::TYPE_DEST_UNREACHABLE, icmp::CODE_PROTOCOL_UNREACHABLE) => {
                    io::ErrorKind::ConnectionRefused
                }
                (icmp::TYPE_DEST_UNREACHABLE, 0 | 6 | 9 | 10) => io::ErrorKind::NetworkUnreachable,
                (icmp::TYPE_DEST_UNREACHABLE, _) => io::ErrorKind::HostUnreachable,
                _ => return,
            };
            self.udp
                .icmp_error(err.quoted_dst, err.quoted_payload, kind);
            self.collect_udp_events();
        }
    }

    fn collect_udp_events(&mut self) {
        self.udp.take_events(&mut self.udp_scratch);
        self.events
            .extend(self.udp_scratch.drain(..).map(|h| SocketId::Udp(h.0)));
    }

    /// Runs every timer due at `now`, then produces the frames for what
    /// is queued (contract step 2).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.ip_timers(now);
        self.tcp.dispatch(now, &mut self.iface);
    }

    /// ARP retries and reassembly timeouts.
    fn ip_timers(&mut self, now: Instant) {
        self.iface.poll_arp(now);
        for expired in self.reassembler.expire(now, &mut self.iface.counters) {
            // RFC 792: time exceeded (reassembly) if we had the first fragment.
            let (src, header, payload) = (expired.key.src, expired.header, expired.payload);
            self.icmp.send_error(
                now,
                &mut self.iface,
                icmp::TYPE_TIME_EXCEEDED,
                icmp::CODE_REASSEMBLY_TIME_EXCEEDED,
                src,
                &header,
                &payload,
            );
        }
    }

    /// Next frame to send, if any, with what the device must do with it
    /// ([`Frame::offload`]: checksum state, TSO cut) (contract step 3).
    /// Give the buffer back with `recycle`.
    pub fn poll_transmit(&mut self) -> Option<Frame> {
        self.iface.outbox.pop()
    }

    /// Gives a sent frame's buffer back, so that later frames reuse it
    /// instead of allocating.
    pub fn recycle(&mut self, frame: impl Into<Vec<u8>>) {
        self.iface.outbox.recycle(frame.into());
    }

    /// The earliest time `handle_timeout` has work to do (contract step
    /// 5); at or before any `now` while output is queued.
    pub fn poll_at(&self) -> Option<Instant> {
        let ip = time::earliest(self.iface.arp.poll_at(), self.reassembler.poll_at());
        time::earliest(ip, self.tcp.poll_at())
    }

    /// Sockets whose readiness may have changed since the last call
    /// (contract step 4).
    pub fn take_events(&mut self, out: &mut Vec<SocketId>) {
        out.append(&mut self.events);
        self.tcp.take_events(&mut self.tcp_scratch);
        out.extend(self.tcp_scratch.drain(..).map(|h| SocketId::Tcp(h.0)));
    }

    /// A snapshot of every TCP and UDP socket at `now`, ordered by id.
    /// Reads only.
    pub fn sockets(&self, now: Instant) -> Vec<info::SocketInfo> {
        let mut out = Vec::new();
        self.tcp.socket_infos(now, &mut out);
        self.udp.socket_infos(&mut out);
        out.sort_by_key(|s| s.id);
        out
    }

    /// Every counter of every layer, for the exit report and the log.
    pub fn counters(&self) -> Counters {
        let mut all = self.iface.counters.clone();
        all.merge(&self.icmp.counters);
        all.merge(&self.udp.counters);
        all.merge(&self.tcp.counters);
        all
    }
}
