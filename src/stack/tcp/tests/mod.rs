//! Segment-script and simulated-link tests.
