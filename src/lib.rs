//! tapstack: a userspace Ethernet/ARP/IPv4/ICMP/UDP/TCP stack on a Linux
//! TAP device. See `README.md` and `shared/design.md` for the architecture:
//! a sans-I/O core (`stack`), the device layer (`device`), the single stack
//! thread (`runtime`), the std::net-shaped API (`api`) and demo services
//! (`apps`).

pub mod api;
pub mod apps;
pub mod client;
pub mod daemon;
pub mod device;
pub mod runtime;
pub mod stack;
pub mod trace;
