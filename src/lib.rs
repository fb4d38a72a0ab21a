//! tapstack: a userspace Ethernet/ARP/IPv4/ICMP/UDP/TCP stack on a Linux
//! TAP device. See `README.md` and `shared/design.md` for the architecture:
//! a sans-I/O core (`stack`), the device layer (`device`), the single stack
//! thread (`runtime`), the std::net-shaped API (`api`) and demo services
//! (`apps`, with the `cli` feature, on by default).
//!
//! A library user needs only this crate: the address types `StackConfig`
//! takes are re-exported here.

#![deny(missing_docs)]

pub mod api;
#[cfg(feature = "cli")]
pub mod apps;
pub mod client;
pub mod daemon;
pub mod device;
pub mod runtime;
pub mod stack;
pub mod trace;

pub use api::{Net, TcpListener, TcpStream, UdpSocket};
/// The link-layer and subnet types `StackConfig` takes (smoltcp's,
/// re-exported so that a user need not depend on smoltcp).
pub use smoltcp::wire::{EthernetAddress, Ipv4Cidr};
pub use stack::StackConfig;
