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

#[test]
fn tmp_sizes() {
    use std::mem::size_of;
    eprintln!("Tcb {}", size_of::<super::tcb::Tcb>());
    eprintln!("Sender {}", size_of::<super::sender::Sender>());
    eprintln!("Receiver {}", size_of::<super::receiver::Receiver>());
    eprintln!("Rack {}", size_of::<super::rack::Rack>());
    eprintln!("Bbr {}", size_of::<super::cc::bbr::Bbr>());
    eprintln!("Cubic {}", size_of::<super::cc::cubic::Cubic>());
    eprintln!("Rtt {}", size_of::<super::rtt::RttEstimator>());
    eprintln!("Ring {}", size_of::<super::buffer::RingBuffer>());
    eprintln!("Asm {}", size_of::<super::assembler::Assembler>());
    eprintln!("TimerTable {}", size_of::<super::timer::TimerTable>());
    eprintln!("SockOpts {}", size_of::<super::tcb::SockOpts>());
    eprintln!(
        "LossRecovery {}",
        size_of::<super::loss_recovery::LossRecovery>()
    );
}
