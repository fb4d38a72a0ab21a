//! What sits between the stack and the device on every frame: the pcap
//! capture, the `--trace` line, and the seeded fault injectors (one per
//! direction).

use std::path::Path;
use std::time::SystemTime;

use super::tap::{Direction, FrameTap, Taps};
use crate::device::fault::{FaultConfig, FaultInjector};
use crate::device::pcap::PcapWriter;
use crate::stack::{Counters, Instant};
use crate::trace::describe_frame;

#[derive(Clone, Debug, Default)]
/// What the link does to every frame besides passing it on.
pub struct LinkOptions {
    /// Write every frame, both directions, to this pcap file.
    pub pcap: Option<std::path::PathBuf>,
    /// Log a one-line decode of every frame (target `TRACE_TARGET`).
    pub trace: bool,
    /// Applied to frames in both directions, with independent streams.
    pub fault: FaultConfig,
    /// `--busy-poll USECS`: a blocked call that runs the stack checks the
    /// device for this long before it sleeps (like SO_BUSY_POLL); off
    /// (`None`) by default. It is here because it is per device, like
    /// the rest of these options.
    pub busy_poll: Option<std::time::Duration>,
}

/// The per-frame taps and faults between the stack and the device.
pub struct Link {
    pcap: Option<PcapWriter>,
    trace: bool,
    fault_rx: Option<FaultInjector>,
    fault_tx: Option<FaultInjector>,
    /// Live subscribers (`Net::frame_tap`).
    taps: Taps,
}

/// `log` target of the `--trace` lines, so they can be filtered apart.
pub const TRACE_TARGET: &str = "tapstack::trace";

impl Link {
    /// Opens the pcap file (if any) and seeds the fault injectors; errors are
    /// one-line messages.
    pub fn new(opts: &LinkOptions) -> Result<Link, String> {
        let pcap = match &opts.pcap {
            Some(path) => Some(open_pcap(path)?),
            None => None,
        };
        let (fault_rx, fault_tx) = if opts.fault.is_active() {
            let mut tx = opts.fault;
            tx.seed = tx.seed.wrapping_add(0x9e37_79b9);
            (
                Some(FaultInjector::new(opts.fault)),
                Some(FaultInjector::new(tx)),
            )
        } else {
            (None, None)
        };
        Ok(Link {
            pcap,
            trace: opts.trace,
            fault_rx,
            fault_tx,
            taps: Taps::default(),
        })
    }

    /// A new live subscriber to every frame (see `FrameTap`).
    pub fn subscribe(&mut self, capacity: usize) -> FrameTap {
        self.taps.subscribe(capacity)
    }

    /// Ends every subscription (the stack stopped).
    pub fn close_taps(&mut self) {
        self.taps.close();
    }

    /// The link's own counters (`tap.dropped`).
    pub fn counters(&self) -> &Counters {
        self.taps.counters()
    }

    fn observe(&mut self, dir: &str, frame: &[u8]) {
        if self.taps.active() {
            // Received checksums were completed by the stack thread
            // (`captures`); the copy is as the device gave it.
            self.taps.publish(Direction::In, frame, |_| {});
        }
        if let Some(p) = &mut self.pcap
            && let Err(e) = p.write_frame(SystemTime::now(), frame)
        {
            log::error!("pcap write failed, capture stopped: {e}");
            self.pcap = None;
        }
        if self.trace {
            log::info!(target: TRACE_TARGET, "{dir} {}", describe_frame(frame));
        }
    }

    /// A received frame: captured, traced, then passed through the rx
    /// fault injector to `deliver` (0, 1 or 2 times).
    pub fn inbound(&mut self, now: Instant, frame: &[u8], deliver: &mut dyn FnMut(&[u8])) {
        self.observe("<", frame);
        match &mut self.fault_rx {
            Some(f) => f.process(now, frame, deliver),
            None => deliver(frame),
        }
    }

    /// A frame to send: through the tx fault injector, then captured and
    /// traced as it goes to the wire (so the capture shows what the peer
    /// really received).
    pub fn outbound(&mut self, now: Instant, frame: &[u8], send: &mut dyn FnMut(&[u8])) {
        let (pcap, trace, taps) = (&mut self.pcap, self.trace, &mut self.taps);
        let mut observed = |f: &[u8]| wire_out(pcap, trace, taps, f, send);
        match &mut self.fault_tx {
            Some(f) => f.process(now, frame, &mut observed),
            None => observed(frame),
        }
    }

    /// True when frames are captured or traced: they must then carry
    /// their real checksums (no partial ones left to the kernel).
    pub fn captures(&self) -> bool {
        self.pcap.is_some() || self.trace || self.taps.active()
    }

    /// True when a fault injector runs: it must see every frame on its
    /// own, so segments are not merged into super-frames.
    pub fn faults_active(&self) -> bool {
        self.fault_rx.is_some() || self.fault_tx.is_some()
    }

    /// A frame the stack sends that the runtime will merge with others
    /// into a super-frame: captured and traced as the stack made it (each
    /// segment, with its own checksums), as the peer sees it after the
    /// kernel cuts the super-frame back. Only without fault injection.
    pub fn observe_outbound(&mut self, frame: &[u8]) {
        let mut none = |_: &[u8]| {};
        let (pcap, trace, taps) = (&mut self.pcap, self.trace, &mut self.taps);
        wire_out(pcap, trace, taps, frame, &mut none);
    }

    /// Releases frames held for reordering whose time has come.
    pub fn flush_due(
        &mut self,
        now: Instant,
        deliver: &mut dyn FnMut(&[u8]),
        send: &mut dyn FnMut(&[u8]),
    ) {
        if let Some(f) = &mut self.fault_rx {
            f.flush_due(now, deliver);
        }
        let (pcap, trace, taps) = (&mut self.pcap, self.trace, &mut self.taps);
        if let Some(f) = &mut self.fault_tx {
            f.flush_due(now, &mut |frame| wire_out(pcap, trace, taps, frame, send));
        }
    }

    /// When a frame held back by a fault injector (delay) is due, if any.
    pub fn poll_at(&self) -> Option<Instant> {
        let rx = self.fault_rx.as_ref().and_then(FaultInjector::poll_at);
        let tx = self.fault_tx.as_ref().and_then(FaultInjector::poll_at);
        crate::stack::time::earliest(rx, tx)
    }

    /// Flushes the pcap file so that a reader sees every frame so far.
    pub fn flush_capture(&mut self) {
        if let Some(p) = &mut self.pcap {
            let _ = p.flush();
        }
    }
}

/// Captures, traces and publishes a frame on its way to the wire, with
/// the checksums the wire carries (a fault injector's corruption stays
/// visible).
fn wire_out(
    pcap: &mut Option<PcapWriter>,
    trace: bool,
    taps: &mut Taps,
    frame: &[u8],
    send: &mut dyn FnMut(&[u8]),
) {
    if taps.active() {
        // The runtime completes partial checksums before frames get here
        // (`Core::observe_wire`, `send_single`).
        taps.publish(Direction::Out, frame, |_| {});
    }
    if let Some(p) = pcap.as_mut() {
        let _ = p.write_frame(SystemTime::now(), frame);
    }
    if trace {
        log::info!(target: TRACE_TARGET, "> {}", describe_frame(frame));
    }
    send(frame);
}

fn open_pcap(path: &Path) -> Result<PcapWriter, String> {
    PcapWriter::create(path).map_err(|e| format!("cannot create pcap file {}: {e}", path.display()))
}
