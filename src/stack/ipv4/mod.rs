//! IPv4: validation, routing, reassembly, fragmentation.

pub mod fragment;
pub mod reassembly;
