//! The sans-I/O core: no syscalls, no threads, no clock.

pub mod counters;
pub mod ip;
pub mod ipv4;
pub mod rng;
pub mod socket;
pub mod tcp;
pub mod time;

pub use counters::Counters;
pub use time::Instant;
