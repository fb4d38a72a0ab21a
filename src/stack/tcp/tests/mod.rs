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
mod script_rmem;
mod script_route;
mod script_timers;
mod sim;
mod sim_rmem;
mod sim_short;

/// Issue 15: every idle connection holds one control block and one
/// congestion controller; a field added to either costs 100,000 times.
/// Raise these deliberately (and look at scripts/bench_idle.py's row).
#[test]
fn connection_state_stays_within_its_budget() {
    use std::mem::size_of;
    let tcb = size_of::<super::tcb::Tcb>();
    let bbr = size_of::<super::cc::bbr::Bbr>();
    eprintln!("Tcb {tcb} B, Bbr {bbr} B");
    assert!(tcb <= TCB_BUDGET, "Tcb is {tcb} bytes, budget {TCB_BUDGET}");
    assert!(bbr <= BBR_BUDGET, "Bbr is {bbr} bytes, budget {BBR_BUDGET}");
}

const TCB_BUDGET: usize = 984;
const BBR_BUDGET: usize = 264;
