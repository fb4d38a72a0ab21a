//! Loss recovery and congestion control against their alternatives:
//! SACK against NewReno, BBR against CUBIC.

use super::*;

// ---- SACK against NewReno

#[test]
fn sack_retransmits_less_than_newreno() {
    let seeds = 100..106;
    let sack = sweep("sack", seeds.clone(), |s| {
        Run::new(s, LinkConfig::faults(0.05, 0.0, 0.0), Peer::Ours)
    });
    let newreno = sweep("newreno", seeds, |s| {
        let mut r = Run::new(s, LinkConfig::faults(0.05, 0.0, 0.0), Peer::Ours);
        r.tcp.sack = false;
        r
    });
    let total = |v: &[Outcome]| v.iter().map(|o| o.rtx.0 + o.rtx.1).sum::<u64>();
    let (s, n) = (total(&sack), total(&newreno));
    eprintln!("retransmitted bytes: SACK {s}, NewReno {n}");
    assert!(s > 0, "5% loss must cause retransmissions");
    assert!(s < n, "SACK retransmitted {s} bytes, NewReno {n}");
}

// ---- BBR

fn bbr(mut r: Run) -> Run {
    r.tcp.cc = CcAlgorithm::Bbr;
    r
}

#[test]
fn bbr_ours_ours_loss_5pct_dup_reorder() {
    sweep("bbr_ours_ours_5pct", HEAVY_SEEDS, |s| {
        bbr(Run::new(s, loss(0.05), Peer::Ours))
    });
}

#[test]
fn bbr_ours_smoltcp_loss_1pct_dup_reorder() {
    sweep("bbr_ours_smoltcp_1pct", HEAVY_SEEDS, |s| {
        bbr(Run::new(s, loss(0.01), Peer::Smoltcp))
    });
}

/// 100 Mbit/s bottleneck, 2 ms RTT, 5% random loss both ways: BBR keeps
/// its model's window through losses where CUBIC cuts it by 30% each
/// recovery, so the same seeded transfers finish sooner.
#[test]
fn bbr_outpaces_cubic_at_5pct_loss_on_a_bottleneck() {
    let seeds = 300..304;
    let link = LinkConfig::faults(0.05, 0.0, 0.0);
    let elapsed = |v: &[Outcome]| v.iter().map(|o| o.elapsed).sum::<Duration>();
    let b = elapsed(&sweep("bbr_bottleneck", seeds.clone(), |s| {
        bbr(Run::new(s, link, Peer::Ours))
    }));
    let c = elapsed(&sweep("cubic_bottleneck", seeds, |s| {
        Run::new(s, link, Peer::Ours)
    }));
    eprintln!("10 MiB each way x 4 at 5% loss: BBR {b:?}, CUBIC {c:?}");
    assert!(b * 3 < c * 2, "BBR {b:?}, CUBIC {c:?}");
}
