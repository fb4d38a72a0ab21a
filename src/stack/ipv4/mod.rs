//! IPv4: validation, routing, reassembly, fragmentation.
