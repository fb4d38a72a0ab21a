//! Seed sweeps: ours against ours and against smoltcp, clean and lossy.

use super::*;

// ---- ours <-> ours

#[test]
fn ours_ours_clean_50_seeds() {
    let out = sweep("ours_ours_clean", SEEDS, |s| {
        Run::new(s, loss(0.0), Peer::Ours)
    });
    for o in &out {
        assert_eq!(o.rtx, (0, 0), "no retransmissions on a clean link");
    }
}

#[test]
fn ours_ours_loss_1pct_dup_reorder_50_seeds() {
    sweep("ours_ours_1pct", SEEDS, |s| {
        Run::new(s, loss(0.01), Peer::Ours)
    });
}

#[test]
fn ours_ours_loss_5pct_dup_reorder_50_seeds() {
    sweep("ours_ours_5pct", SEEDS, |s| {
        Run::new(s, loss(0.05), Peer::Ours)
    });
}

#[test]
fn ours_ours_loss_10pct_reorder() {
    sweep("ours_ours_10pct", HEAVY_SEEDS, |s| {
        Run::new(s, LinkConfig::faults(0.10, 0.01, 0.05), Peer::Ours)
    });
}

#[test]
fn ours_ours_loss_20pct_reorder() {
    sweep("ours_ours_20pct", HEAVY_SEEDS, |s| {
        Run::new(s, LinkConfig::faults(0.20, 0.01, 0.05), Peer::Ours)
    });
}

// ---- ours <-> smoltcp

#[test]
fn ours_smoltcp_clean_50_seeds() {
    sweep("ours_smoltcp_clean", SEEDS, |s| {
        Run::new(s, loss(0.0), Peer::Smoltcp)
    });
}

#[test]
fn ours_smoltcp_loss_1pct_dup_reorder_50_seeds() {
    sweep("ours_smoltcp_1pct", SEEDS, |s| {
        Run::new(s, loss(0.01), Peer::Smoltcp)
    });
}

#[test]
fn ours_smoltcp_loss_5pct_dup_reorder_50_seeds() {
    sweep("ours_smoltcp_5pct", SEEDS, |s| {
        Run::new(s, loss(0.05), Peer::Smoltcp)
    });
}

#[test]
fn ours_smoltcp_loss_10pct_reorder() {
    sweep("ours_smoltcp_10pct", HEAVY_SEEDS, |s| {
        Run::new(s, LinkConfig::faults(0.10, 0.01, 0.05), Peer::Smoltcp)
    });
}

#[test]
fn ours_smoltcp_loss_20pct_reorder() {
    // smoltcp as a sender at 20% loss (1 s minimum RTO, no SACK) moves
    // ~1 KB/s of virtual time: 10 MiB would need hours. 256 KiB each way
    // still checks our side byte for byte against an independent TCP.
    sweep("ours_smoltcp_20pct", HEAVY_SEEDS, |s| {
        let mut r = Run::new(s, LinkConfig::faults(0.20, 0.01, 0.05), Peer::Smoltcp);
        r.len = MIB / 4;
        r
    });
}
