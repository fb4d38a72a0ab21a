//! TCP (RFC 9293).

pub mod assembler;
pub mod buffer;
pub mod cc;
pub mod rtt;
pub mod sack;
pub mod seq;
