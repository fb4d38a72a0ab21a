//! What the IP layer tells the transports of a received datagram (its
//! checksum state) and the interface they use to send IPv4 datagrams.
//! The IPv4 layer implements it: it routes, resolves the next hop through
//! ARP (queueing while it waits), fragments above the MTU and writes the
//! frame; the transport only writes its own header and payload in place.

use smoltcp::wire::{IpProtocol, Ipv4Address};

use super::time::Instant;

/// Whether a received frame's transport checksum (TCP, UDP, ICMP) still
/// has to be checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxChecksum {
    /// Check it: the frame may have crossed a wire.
    Verify,
    /// The device vouches for it: the kernel verified it (or merged
    /// segments it had verified), or built the packet itself and left the
    /// sum to a device (CHECKSUM_PARTIAL). Summing it again would only cost.
    Trusted,
}

/// How a transport joins its data to the datagram sent last (see
/// [`IpSink::append_to_last`]): given the transport part grown by the new
/// bytes and the segment size so far, the segment size and transport
/// header length to record, or None.
pub type JoinFn<'a> = dyn FnMut(&mut [u8], Option<u16>) -> Option<(u16, u16)> + 'a;

/// Where a transport sends its datagrams: the IPv4 layer in the stack,
/// `RecordingSink` in unit tests.
pub trait IpSink {
    /// Sends one datagram from our address to `dst`. `fill` is called once
    /// with a zeroed buffer of exactly `payload_len` bytes to write the
    /// transport header and data into. Returns false if the datagram was
    /// dropped (no route, queue full, too large); the drop is counted by
    /// the IP layer.
    fn send_ip(
        &mut self,
        now: Instant,
        dst: Ipv4Address,
        protocol: IpProtocol,
        payload_len: usize,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> bool {
        self.send_datagram(now, dst, protocol, payload_len, None, fill)
    }

    /// [`IpSink::send_ip`], saying how the transport left its checksum:
    /// with `partial_csum` = Some(offset of the checksum field in the
    /// transport header), `fill` wrote the pseudo-header sum only and the
    /// device completes it (only for a datagram within the MTU).
    fn send_datagram(
        &mut self,
        now: Instant,
        dst: Ipv4Address,
        protocol: IpProtocol,
        payload_len: usize,
        partial_csum: Option<u16>,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> bool;

    /// TSO: grows the datagram sent last by `extra` bytes, if it is still
    /// queued whole (not sent, not waiting for ARP), went to `dst` with
    /// `protocol` and a partial checksum, and stays within 65,535 bytes.
    /// `join` gets its transport part (the old bytes, then `extra` zeroed
    /// ones) and the segment size recorded so far, and returns the
    /// segment size and transport header length to record, or None to
    /// leave the datagram as it was. The IP header is updated here.
    /// Returns whether the datagram grew; a sink that cannot offload
    /// segmentation says no.
    fn append_to_last(
        &mut self,
        _dst: Ipv4Address,
        _protocol: IpProtocol,
        _extra: usize,
        _join: &mut JoinFn<'_>,
    ) -> bool {
        false
    }

    /// Our IPv4 address (the source of every datagram we send).
    fn local_addr(&self) -> Ipv4Address;

    /// Largest IP payload that fits in one unfragmented datagram
    /// (link MTU - 20).
    fn max_payload_unfragmented(&self) -> usize;
}

/// An `IpSink` that records what it is given, for unit tests of transports.
pub struct RecordingSink {
    /// Our address (the source of every datagram).
    pub local: Ipv4Address,
    /// Link MTU: `max_payload_unfragmented` is this minus 20.
    pub mtu: usize,
    /// Every datagram sent: (destination, protocol, payload).
    pub sent: Vec<(Ipv4Address, IpProtocol, Vec<u8>)>,
}

impl RecordingSink {
    /// A sink with address `local` on a link of MTU `mtu`, nothing sent yet.
    pub fn new(local: Ipv4Address, mtu: usize) -> RecordingSink {
        RecordingSink {
            local,
            mtu,
            sent: Vec::new(),
        }
    }
}

impl IpSink for RecordingSink {
    fn send_datagram(
        &mut self,
        _now: Instant,
        dst: Ipv4Address,
        protocol: IpProtocol,
        payload_len: usize,
        _partial_csum: Option<u16>,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> bool {
        let mut buf = vec![0u8; payload_len];
        fill(&mut buf);
        self.sent.push((dst, protocol, buf));
        true
    }

    fn local_addr(&self) -> Ipv4Address {
        self.local
    }

    fn max_payload_unfragmented(&self) -> usize {
        self.mtu - 20
    }
}
