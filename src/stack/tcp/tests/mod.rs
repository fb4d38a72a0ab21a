//! Segment-script tests (`script`, `script_data`) and the two-endpoint
//! simulated link (`sim`).

mod harness;
mod script;
mod script_data;
mod sim;
