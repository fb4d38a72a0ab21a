//! Segment-script tests (`script`, `script_data`, `script_rack`) and the two-endpoint
//! simulated link (`sim`).

mod harness;
mod ports;
mod script;
mod script_api;
mod script_cookie;
mod script_data;
mod script_hostile;
mod script_linux;
mod script_pkt;
mod script_rack;
mod script_route;
mod script_timers;
mod sim;
mod sim_short;
