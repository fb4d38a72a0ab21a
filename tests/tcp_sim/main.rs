//! Full-stack TCP simulations on a virtual clock: Ethernet, ARP, IPv4 and
//! TCP of two endpoints joined by a simulated link with latency, bandwidth,
//! and seeded loss, duplication and reordering. Endpoint A is always our
//! `Stack`; endpoint B is our `Stack` again or smoltcp's `Interface` +
//! `tcp::Socket` (an independent implementation).
//!
//! The loop is quinn-proto style: deliver what the link has due, let the
//! endpoints and their applications react, then jump the clock to the
//! earliest deadline of either endpoint or the link. Every run is bounded in
//! virtual time and in iterations and fails with its seed and progress.
//!
//! Each run moves `LEN` bytes each way over one connection (both sides
//! write at once, shut down writing, read to EOF), and every received byte
//! is compared against the sender's seeded pattern as it arrives.
//!
//! The harness: `link` (the simulated link), `endpoints` (our stack and
//! smoltcp behind one trait), `app` (the applications and their seeded
//! streams), `run` (the loop, sweeps, stall detection). The tests by
//! theme: `sweeps` (seed sweeps against ourselves and smoltcp), `cc`
//! (SACK and BBR against their alternatives), `regressions` (replay,
//! reductions of found bugs, the issue-13 fault mix). The harness's items
//! and fields are `pub(crate)` so that the test modules beside it use them.

mod app;
mod cc;
mod endpoints;
mod link;
mod regressions;
mod run;
mod sweeps;

use app::*;
use endpoints::*;
use link::*;
use run::*;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Cidr};
use tapstack::device::fault::{FaultConfig, FaultModel};
use tapstack::stack::rng::Rng;
use tapstack::stack::tcp::{CcAlgorithm, TcpConfig, TcpHandle};
use tapstack::stack::{Instant, RxChecksum, Stack, StackConfig};
use tapstack::trace::describe_frame;

const A_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const A_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);
const B_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x02]);
const PORT: u16 = 5000;

const MIB: usize = 1024 * 1024;
/// Bytes each way per run.
const LEN: usize = 10 * MIB;
/// Give up after this much virtual time (smoltcp, with its 1 s minimum
/// RTO and no SACK recovery, needs 1000-1800 s to send 10 MiB at 10%
/// loss; the bound is against livelock, not a speed test)...
const TIME_LIMIT: Duration = Duration::from_secs(60 * 60);
/// ... or this many loop iterations (each handles at least one event).
const ITER_LIMIT: u64 = 20_000_000;
/// Frames of history kept per run for the failure report.
const HISTORY: usize = 24;
