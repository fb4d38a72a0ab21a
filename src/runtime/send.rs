//! The transmit path: each frame the stack makes is written the way the
//! device's offloads allow (whole with a virtio-net header, or cut and
//! summed here), and what the wire carries is shown to captures.

use std::io::{self, IoSlice};

use super::Core;
use crate::device::vnet;
use crate::stack::Instant;
use crate::stack::iface::{Frame, Offload, TxCsum};

/// What the device does for outgoing frames: learnt at start, lowered
/// for good when it refuses (EINVAL).
pub(super) struct TxOffloads {
    /// It takes virtio-net headers (a TAP with IFF_VNET_HDR, no fault
    /// injector in the way).
    vnet: bool,
    /// It completes partial TCP checksums.
    csum: bool,
    /// It cuts TCP super-segments.
    gso: bool,
    /// Where super-segments are cut and checksums completed for a capture.
    scratch: Vec<u8>,
}

impl TxOffloads {
    /// All offloads if the device takes virtio-net headers, else none.
    pub(super) fn new(vnet: bool) -> TxOffloads {
        TxOffloads {
            vnet,
            csum: vnet,
            gso: vnet,
            scratch: Vec::new(),
        }
    }
}

impl Core {
    /// Writes one frame the way its offload state asks: whole with a
    /// virtio-net header when the device does what it needs, otherwise
    /// with that work done here (a super-segment cut into segments, a
    /// partial checksum completed).
    pub(super) fn send_frame(&mut self, now: Instant, frame: &mut Frame) {
        let off = frame.offload();
        let Some(gso) = off.gso else {
            return self.send_single(now, frame, off.csum);
        };
        if self.tx.gso {
            self.observe_wire(frame, off);
            match self.send_vnet(frame, off) {
                Ok(()) => {
                    let counters = &mut self.stack.iface.counters;
                    counters.inc("tx.gso_frames");
                    counters.add("tx.gso_segments", vnet::segment_count(frame, gso) as u64);
                    return;
                }
                Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => {
                    // A kernel that takes the virtio-net header but not our
                    // GSO frames (virtio_net_hdr_to_skb said no): this one
                    // and any still queued are cut here, and TCP builds no
                    // more.
                    self.stack.iface.counters.inc("tx.gso_refused");
                    log::debug!(
                        "device refused a GSO super-frame ({e}): single frames from now on"
                    );
                    self.tx.gso = false;
                    self.stack.set_tx_offloads(self.tx.csum, false);
                }
                Err(_) => return,
            }
        }
        // The segments keep partial sums where the device completes them.
        let full = !self.tx.csum;
        let csum = if full { TxCsum::Full } else { off.csum };
        let mut scratch = std::mem::take(&mut self.tx.scratch);
        vnet::segment(frame, gso, full, &mut scratch, &mut |seg| {
            self.send_single(now, seg, csum)
        });
        self.tx.scratch = scratch;
    }

    /// Writes one frame (not a super-segment): with a virtio-net header
    /// where the device takes them, through the link (fault injection,
    /// capture) otherwise; a partial checksum the device will not
    /// complete is completed here.
    fn send_single(&mut self, now: Instant, frame: &mut [u8], csum: TxCsum) {
        if self.tx.vnet {
            let off = Offload { csum, gso: None };
            if csum == TxCsum::Full || self.tx.csum {
                self.observe_wire(frame, off);
                match self.send_vnet(frame, off) {
                    Err(e)
                        if csum != TxCsum::Full && e.raw_os_error() == Some(nix::libc::EINVAL) =>
                    {
                        // Not even a partial checksum: the stack sums its own
                        // from now on, and frames it already made with
                        // partial sums get theirs completed here.
                        self.stack.iface.counters.inc("tx.csum_offload_refused");
                        log::debug!(
                            "device refused a partial checksum ({e}): no offloads from now on"
                        );
                        self.tx.csum = false;
                        self.tx.gso = false;
                        self.stack.set_tx_offloads(false, false);
                    }
                    _ => return,
                }
            }
            if let TxCsum::Partial { start, offset } = csum {
                vnet::complete_checksum(frame, start.into(), offset.into());
            }
            self.observe_wire(frame, Offload::default());
            let _ = self.send_vnet(frame, Offload::default());
            return;
        }
        if let TxCsum::Partial { start, offset } = csum {
            vnet::complete_checksum(frame, start.into(), offset.into());
        }
        let device = self.device.clone();
        let mut blocked = false;
        self.link.outbound(now, frame, &mut |f| {
            if let Err(e) = device.send(f) {
                if e.kind() == io::ErrorKind::WouldBlock {
                    blocked = true;
                } else {
                    log::debug!("device send failed: {e}");
                }
            }
        });
        if blocked {
            // The frame is lost to this attempt; TCP will retransmit, so
            // treat push-back as a drop but stop writing for now.
            self.stack.iface.counters.inc("tx.device_busy");
            self.tx_blocked = true;
        }
    }

    /// One TAP write: the header the offload state makes, then the frame.
    /// Push-back is counted and stops writing until POLLOUT (the frame is
    /// lost to this attempt, like a drop; TCP retransmits); EINVAL is for
    /// the caller to judge.
    fn send_vnet(&mut self, frame: &[u8], off: Offload) -> io::Result<()> {
        let hdr = vnet::tx_header(&off).to_bytes();
        match self
            .device
            .send_vnet(&[IoSlice::new(&hdr), IoSlice::new(frame)])
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.stack.iface.counters.inc("tx.device_busy");
                self.tx_blocked = true;
                Err(e)
            }
            Err(e) => {
                if e.raw_os_error() != Some(nix::libc::EINVAL) {
                    log::debug!("device send failed: {e}");
                }
                Err(e)
            }
        }
    }

    /// Capture and trace see the frames the wire carries: a super-segment
    /// as the segments the kernel cuts it into, each with its complete
    /// checksum (as tcpdump on the peer's side of the link shows them).
    fn observe_wire(&mut self, frame: &[u8], off: Offload) {
        if !self.link.captures() {
            return;
        }
        let link = &mut self.link;
        match (off.gso, off.csum) {
            (Some(gso), _) => vnet::segment(frame, gso, true, &mut self.tx.scratch, &mut |s| {
                link.observe_outbound(s)
            }),
            (None, TxCsum::Partial { start, offset }) => {
                let copy = &mut self.tx.scratch;
                copy.clear();
                copy.extend_from_slice(frame);
                vnet::complete_checksum(copy, start.into(), offset.into());
                link.observe_outbound(copy);
            }
            (None, TxCsum::Full) => link.observe_outbound(frame),
        }
    }
}
