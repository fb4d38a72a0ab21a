//! The interface: Ethernet in and out, ARP, and the IPv4 send path that
//! every transport uses through `IpSink` (routing, ARP resolution with a
//! queue, fragmentation above the MTU). Frames to transmit go into a
//! bounded outbox of recycled buffers, drained by the runtime.

use std::collections::VecDeque;
use std::net::Ipv4Addr;

use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, IpProtocol,
    Ipv4Cidr, Ipv4Packet,
};

use super::arp::{ArpCache, ArpConfig, Resolution};
use super::counters::Counters;
use super::ip::{IpSink, JoinFn};
use super::ipv4::fragment::fragment_ranges;
use super::time::Instant;

/// Ethernet II header length: destination, source, EtherType (no VLAN tag).
pub const ETH_HEADER: usize = 14;
/// IPv4 header length without options (RFC 791); we never send options.
pub const IPV4_HEADER: usize = 20;
/// Largest IPv4 datagram (RFC 791 total length field).
pub const IPV4_MAX_TOTAL: usize = 65_535;
const TTL: u8 = 64;

#[derive(Clone, Debug)]
/// The link identity and interface bounds (`StackConfig::iface`).
pub struct IfaceConfig {
    /// Our MAC address, the source of every frame.
    pub mac: EthernetAddress,
    /// Our IPv4 address and the on-link subnet (its prefix decides what is
    /// resolved directly and what goes to the gateway).
    pub cidr: Ipv4Cidr,
    /// Next hop for destinations outside `cidr`; `None` = they are unreachable.
    pub gateway: Option<Ipv4Addr>,
    /// Link MTU: the largest IP datagram in one frame.
    pub mtu: usize,
    /// ARP cache size and timers.
    pub arp: ArpConfig,
    /// Frames the outbox holds before it drops (the runtime drains it after
    /// every batch, so this only fills when the TAP pushes back).
    pub outbox_limit: usize,
}

/// A transport checksum as it leaves in a frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TxCsum {
    /// Complete (or nothing to complete): the bytes are the wire's.
    #[default]
    Full,
    /// The field at `start + offset` holds the pseudo-header sum only: the
    /// device completes it over `start..` (virtio-net NEEDS_CSUM, Linux's
    /// CHECKSUM_PARTIAL). Offsets from the start of the frame.
    Partial {
        /// Where the summed region (the transport header) starts.
        start: u16,
        /// Where the checksum field is, from `start`.
        offset: u16,
    },
}

/// What the device must do with a frame besides sending its bytes. Set
/// where the frame is built; the device layer reads it and writes the
/// virtio-net header, or cuts the frame itself when it cannot offload.
/// Plain data: the fields are public so that the device can read them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offload {
    /// The transport checksum's state.
    pub csum: TxCsum,
    /// Set on a TCP super-segment (TSO): the frame is to be cut into
    /// segments of `gso_size` payload bytes, each with the frame's headers
    /// (`hdr_len` bytes, Ethernet to TCP). A super-segment's checksum is
    /// always `Partial`.
    pub gso: Option<Gso>,
}

/// A super-segment's cut (see [`Offload::gso`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gso {
    /// Payload bytes per segment (the MSS the segments were sized to).
    pub size: u16,
    /// Headers repeated on every segment: Ethernet + IPv4 + TCP.
    pub hdr_len: u16,
}

/// An outgoing frame: the bytes and their offload state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frame {
    bytes: Vec<u8>,
    offload: Offload,
}

impl Frame {
    /// A frame whose bytes are final (nothing for the device to do).
    pub fn plain(bytes: Vec<u8>) -> Frame {
        Frame {
            bytes,
            offload: Offload::default(),
        }
    }

    /// What the device has to do with it.
    pub fn offload(&self) -> Offload {
        self.offload
    }

    /// The bytes, to be given back to the stack's free list (`recycle`).
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Declares that a partial checksum was completed in place (the
    /// frame's bytes are now the wire's, bar any GSO cut).
    pub fn set_csum_full(&mut self) {
        self.offload.csum = TxCsum::Full;
    }
}

impl From<Frame> for Vec<u8> {
    fn from(frame: Frame) -> Vec<u8> {
        frame.bytes
    }
}

impl From<Vec<u8>> for Frame {
    fn from(bytes: Vec<u8>) -> Frame {
        Frame::plain(bytes)
    }
}

impl std::ops::Deref for Frame {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl std::ops::DerefMut for Frame {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }
}

/// Outgoing frames, with a free list so steady-state sending reuses buffers.
#[derive(Debug, Default)]
pub struct Outbox {
    queue: VecDeque<Frame>,
    free: Vec<Vec<u8>>,
    limit: usize,
    /// The datagram queued last may still grow (TSO): it went straight to
    /// the queue's tail, to this destination, carrying this protocol.
    open_tail: Option<(Ipv4Addr, IpProtocol)>,
}

impl Outbox {
    /// A zeroed buffer of `len` bytes, from the free list when one is there.
    pub fn alloc(&mut self, len: usize) -> Vec<u8> {
        let mut buf = self.free.pop().unwrap_or_default();
        buf.clear();
        buf.resize(len, 0);
        buf
    }

    /// Returns a buffer to the free list (at most 256 kept; the rest are freed).
    pub fn recycle(&mut self, buf: Vec<u8>) {
        if self.free.len() < 256 {
            self.free.push(buf);
        }
    }

    /// Queues `frame`; false (counted) when the queue is full.
    fn push(&mut self, frame: Frame, counters: &mut Counters) -> bool {
        self.open_tail = None;
        if self.queue.len() >= self.limit {
            counters.inc("tx.outbox_full");
            self.recycle(frame.bytes);
            return false;
        }
        self.queue.push_back(frame);
        true
    }

    /// The oldest queued frame.
    pub fn pop(&mut self) -> Option<Frame> {
        if self.queue.len() <= 1 {
            self.open_tail = None;
        }
        self.queue.pop_front()
    }

    /// Puts a frame back at the head (the device could not take it yet).
    pub fn unpop(&mut self, frame: Frame) {
        self.queue.push_front(frame);
    }

    /// Number of frames queued.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no frame is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// The per-datagram fields of the IPv4 header we send.
#[derive(Clone, Copy, Debug)]
struct Ipv4Fields {
    dst: Ipv4Addr,
    protocol: IpProtocol,
    ident: u16,
}

/// The link and network layers of the stack, minus the transports.
#[derive(Debug)]
pub struct Interface {
    /// The configuration it was built with.
    pub config: IfaceConfig,
    /// IPv4-to-MAC resolution (RFC 826) and packets waiting for it.
    pub arp: ArpCache,
    /// Frames ready for the device.
    pub outbox: Outbox,
    /// Drop and event counters for every layer (`layer.reason`).
    pub counters: Counters,
    next_ident: u16,
    /// Scratch space for datagrams that must be fragmented.
    scratch: Vec<u8>,
}

/// An IPv4 datagram addressed to us, ready for the transports.
pub struct Datagram<'a> {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination: our address or a broadcast one.
    pub dst: Ipv4Addr,
    /// Transport protocol (IPv4 protocol field).
    pub protocol: IpProtocol,
    /// IP header of the (first fragment of the) datagram, for ICMP errors.
    pub header: &'a [u8],
    /// The transport header and data (reassembled if it was fragmented).
    pub payload: &'a [u8],
}

impl Interface {
    /// An interface for `config`; `seed` seeds the IP identification counter.
    pub fn new(config: IfaceConfig, seed: u64) -> Interface {
        Interface {
            arp: ArpCache::new(config.arp.clone()),
            outbox: Outbox {
                limit: config.outbox_limit,
                ..Outbox::default()
            },
            counters: Counters::new(),
            next_ident: seed as u16,
            scratch: Vec::new(),
            config,
        }
    }

    /// Our IPv4 address.
    pub fn addr(&self) -> Ipv4Addr {
        self.config.cidr.address()
    }

    /// Whether `ip` is the limited (255.255.255.255) or our subnet's broadcast.
    pub fn is_broadcast(&self, ip: Ipv4Addr) -> bool {
        ip == Ipv4Addr::BROADCAST || Some(ip) == self.config.cidr.broadcast()
    }

    /// Next hop for `dst`: on-link, through the gateway, or unreachable.
    pub fn route(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        if self.config.cidr.contains_addr(&dst) || dst == Ipv4Addr::BROADCAST {
            Some(dst)
        } else {
            self.config.gateway
        }
    }

    // ---- Ethernet / ARP input

    /// Validates the Ethernet header and handles ARP. Returns the IPv4
    /// packet bytes for the caller when the frame carries one for us.
    pub fn receive_frame<'a>(&mut self, now: Instant, frame: &'a [u8]) -> Option<&'a [u8]> {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            self.counters.inc("eth.truncated");
            return None;
        };
        let dst = eth.dst_addr();
        if dst != self.config.mac && !dst.is_broadcast() {
            self.counters.inc("eth.not_for_us");
            return None;
        }
        if eth.src_addr() == self.config.mac || !eth.src_addr().is_unicast() {
            self.counters.inc("eth.bad_source");
            return None;
        }
        match eth.ethertype() {
            EthernetProtocol::Ipv4 => Some(&frame[ETH_HEADER..]),
            EthernetProtocol::Arp => {
                self.receive_arp(now, &frame[ETH_HEADER..]);
                None
            }
            _ => {
                self.counters.inc("eth.unknown_ethertype");
                None
            }
        }
    }

    fn receive_arp(&mut self, now: Instant, bytes: &[u8]) {
        let repr = match ArpPacket::new_checked(bytes).and_then(|p| ArpRepr::parse(&p)) {
            Ok(ArpRepr::EthernetIpv4 {
                operation,
                source_hardware_addr,
                source_protocol_addr,
                target_protocol_addr,
                ..
            }) => (
                operation,
                source_hardware_addr,
                source_protocol_addr,
                target_protocol_addr,
            ),
            _ => {
                self.counters.inc("arp.malformed");
                return;
            }
        };
        let (op, sha, spa, tpa) = repr;
        if !sha.is_unicast() || spa.is_unspecified() || spa.is_broadcast() {
            self.counters.inc("arp.bad_sender");
            return;
        }
        let for_us = tpa == self.addr();
        // RFC 826 "merge": update a known sender; add it only if we are the target.
        let waiting = self.arp.learn(now, spa, sha, for_us, &mut self.counters);
        for mut frame in waiting {
            frame[0..6].copy_from_slice(sha.as_bytes());
            self.outbox.push(frame, &mut self.counters);
        }
        match op {
            ArpOperation::Request if for_us => {
                self.counters.inc("arp.request_answered");
                self.send_arp(ArpOperation::Reply, sha, spa);
            }
            ArpOperation::Request => self.counters.inc("arp.request_not_for_us"),
            ArpOperation::Reply => self.counters.inc("arp.reply_received"),
            _ => self.counters.inc("arp.unknown_operation"),
        }
    }

    /// Queues an ARP packet (RFC 826) of operation `op` for `target`; a
    /// request is broadcast, a reply goes to `target_mac`.
    pub fn send_arp(&mut self, op: ArpOperation, target_mac: EthernetAddress, target: Ipv4Addr) {
        let repr = ArpRepr::EthernetIpv4 {
            operation: op,
            source_hardware_addr: self.config.mac,
            source_protocol_addr: self.addr(),
            target_hardware_addr: target_mac,
            target_protocol_addr: target,
        };
        let eth_dst = if op == ArpOperation::Request {
            EthernetAddress::BROADCAST
        } else {
            target_mac
        };
        let mut buf = self.outbox.alloc(ETH_HEADER + repr.buffer_len());
        self.write_eth_header(&mut buf, eth_dst, EthernetProtocol::Arp);
        repr.emit(&mut ArpPacket::new_unchecked(&mut buf[ETH_HEADER..]));
        self.outbox.push(Frame::plain(buf), &mut self.counters);
    }

    /// Broadcasts an ARP request for `target` (counted in `arp.request_sent`).
    pub fn send_arp_request(&mut self, target: Ipv4Addr) {
        self.counters.inc("arp.request_sent");
        self.send_arp(ArpOperation::Request, EthernetAddress([0; 6]), target);
    }

    /// Gratuitous ARP (RFC 5227 announcement): sender = target = our address.
    pub fn announce(&mut self) {
        self.send_arp(ArpOperation::Request, EthernetAddress([0; 6]), self.addr());
    }

    fn write_eth_header(&self, buf: &mut [u8], dst: EthernetAddress, proto: EthernetProtocol) {
        let mut eth = EthernetFrame::new_unchecked(buf);
        eth.set_dst_addr(dst);
        eth.set_src_addr(self.config.mac);
        eth.set_ethertype(proto);
    }

    /// ARP retries and timeouts, and expiry of old entries.
    pub fn poll_arp(&mut self, now: Instant) {
        for ip in self.arp.poll(now, &mut self.counters) {
            self.send_arp_request(ip);
        }
    }

    // ---- IPv4 output

    fn write_ipv4_header(&mut self, buf: &mut [u8], f: Ipv4Fields, frag: (usize, bool)) {
        let total = buf.len();
        let mut ip = Ipv4Packet::new_unchecked(buf);
        ip.set_version(4);
        ip.set_header_len(IPV4_HEADER as u8);
        ip.set_dscp(0);
        ip.set_ecn(0);
        ip.set_total_len(total as u16);
        ip.set_ident(f.ident);
        ip.clear_flags();
        ip.set_more_frags(frag.1);
        ip.set_frag_offset(frag.0 as u16);
        ip.set_hop_limit(TTL);
        ip.set_next_header(f.protocol);
        ip.set_src_addr(self.addr());
        ip.set_dst_addr(f.dst);
        ip.fill_checksum();
    }

    /// Hands a finished frame (destination MAC not yet set) to ARP
    /// resolution: sent at once, or queued until the neighbour answers.
    /// True when it went straight to the outbox.
    fn resolve_and_push(&mut self, now: Instant, next_hop: Ipv4Addr, mut frame: Frame) -> bool {
        if self.is_broadcast(next_hop) {
            frame[0..6].copy_from_slice(EthernetAddress::BROADCAST.as_bytes());
            return self.outbox.push(frame, &mut self.counters);
        }
        match self.arp.lookup(now, next_hop) {
            Resolution::Known { mac, refresh } => {
                frame[0..6].copy_from_slice(mac.as_bytes());
                let queued = self.outbox.push(frame, &mut self.counters);
                if refresh {
                    self.send_arp_request(next_hop);
                    return false;
                }
                queued
            }
            Resolution::Unknown => {
                if self.arp.queue(now, next_hop, frame, &mut self.counters) {
                    self.send_arp_request(next_hop);
                }
                false
            }
        }
    }

    fn send_fragmented(
        &mut self,
        now: Instant,
        next_hop: Ipv4Addr,
        fields: Ipv4Fields,
        payload_len: usize,
        fill: &mut dyn FnMut(&mut [u8]),
    ) {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        scratch.resize(payload_len, 0);
        fill(&mut scratch);
        self.counters.inc("ipv4.fragmented_tx");
        for (range, more) in fragment_ranges(payload_len, self.config.mtu, IPV4_HEADER) {
            let len = range.len();
            let mut frame = self.outbox.alloc(ETH_HEADER + IPV4_HEADER + len);
            self.write_eth_header(&mut frame, EthernetAddress([0; 6]), EthernetProtocol::Ipv4);
            frame[ETH_HEADER + IPV4_HEADER..].copy_from_slice(&scratch[range.clone()]);
            self.write_ipv4_header(&mut frame[ETH_HEADER..], fields, (range.start, more));
            self.resolve_and_push(now, next_hop, Frame::plain(frame));
        }
        self.scratch = scratch;
    }
}

impl IpSink for Interface {
    fn send_datagram(
        &mut self,
        now: Instant,
        dst: Ipv4Addr,
        protocol: IpProtocol,
        payload_len: usize,
        partial_csum: Option<u16>,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> bool {
        let Some(next_hop) = self.route(dst) else {
            self.counters.inc("ipv4.no_route");
            return false;
        };
        if IPV4_HEADER + payload_len > IPV4_MAX_TOTAL {
            self.counters.inc("ipv4.tx_too_big");
            return false;
        }
        let fields = Ipv4Fields {
            dst,
            protocol,
            ident: self.next_ident,
        };
        self.next_ident = self.next_ident.wrapping_add(1);
        if IPV4_HEADER + payload_len > self.config.mtu {
            // No device completes a checksum over fragments: the caller
            // sums its own above the MTU (`max_payload_unfragmented`).
            debug_assert!(partial_csum.is_none(), "partial checksum on a fragment");
            self.send_fragmented(now, next_hop, fields, payload_len, fill);
            return true;
        }
        let mut bytes = self.outbox.alloc(ETH_HEADER + IPV4_HEADER + payload_len);
        self.write_eth_header(&mut bytes, EthernetAddress([0; 6]), EthernetProtocol::Ipv4);
        fill(&mut bytes[ETH_HEADER + IPV4_HEADER..]);
        self.write_ipv4_header(&mut bytes[ETH_HEADER..], fields, (0, false));
        let mut frame = Frame::plain(bytes);
        if let Some(offset) = partial_csum {
            frame.offload.csum = TxCsum::Partial {
                start: (ETH_HEADER + IPV4_HEADER) as u16,
                offset,
            };
        }
        if self.resolve_and_push(now, next_hop, frame) {
            self.outbox.open_tail = Some((dst, protocol));
        }
        true
    }

    fn append_to_last(
        &mut self,
        dst: Ipv4Addr,
        protocol: IpProtocol,
        extra: usize,
        join: &mut JoinFn<'_>,
    ) -> bool {
        if self.outbox.open_tail != Some((dst, protocol)) {
            return false;
        }
        let Some(frame) = self.outbox.queue.back_mut() else {
            return false;
        };
        // A super-segment's checksums are the device's to compute.
        let TxCsum::Partial { .. } = frame.offload.csum else {
            return false;
        };
        let old = frame.bytes.len();
        if old - ETH_HEADER + extra > IPV4_MAX_TOTAL {
            return false;
        }
        frame.bytes.resize(old + extra, 0);
        let size = frame.offload.gso.map(|g| g.size);
        let Some((size, l4_hdr)) = join(&mut frame.bytes[ETH_HEADER + IPV4_HEADER..], size) else {
            frame.bytes.truncate(old);
            return false;
        };
        frame.offload.gso = Some(Gso {
            size,
            hdr_len: (ETH_HEADER + IPV4_HEADER) as u16 + l4_hdr,
        });
        let total = frame.bytes.len() - ETH_HEADER;
        let mut ip = Ipv4Packet::new_unchecked(&mut frame.bytes[ETH_HEADER..]);
        ip.set_total_len(total as u16);
        ip.fill_checksum();
        // The device gives each segment its own identification, counting
        // up from the first (Linux's inet_gso_segment): the ids are used.
        self.next_ident = self.next_ident.wrapping_add(1);
        true
    }

    fn local_addr(&self) -> Ipv4Addr {
        self.addr()
    }

    fn max_payload_unfragmented(&self) -> usize {
        self.config.mtu - IPV4_HEADER
    }
}
