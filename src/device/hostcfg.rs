//! Configures the kernel side of the TAP with the `ip` command (link up,
//! MTU, address), so that `ping` and `nc` work as soon as the stack runs.

use std::process::Command;

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            "the `ip` command was not found: install iproute2, or pass --no-host-config and configure the TAP yourself".to_string()
        } else {
            format!("cannot run `ip`: {e}")
        }
    })?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    Err(format!(
        "`ip {}` failed: {}",
        args.join(" "),
        err.lines().next().unwrap_or("(no message)").trim()
    ))
}

/// Frames the kernel may queue on the TAP for the stack to read
/// (txqueuelen; 1000 by default). The stack reads from one thread, which a
/// loaded machine can keep off the CPU for tens of milliseconds; a full
/// queue then drops every frame after it, whole flights of a kernel
/// sender that only its RTO recovers (the 5 s stalls of the issue-13
/// faults soak: 155-509 frames dropped per round at 1000, none at 10,000).
/// Queued frames are charged to the senders' socket buffers, so the longer
/// queue holds no more memory than those allow.
const TX_QUEUE_LEN: usize = 10_000;

/// Sets the MTU and queue length, the kernel-side address (replacing any
/// old one) and brings the link up.
pub fn configure(tap: &str, host_cidr: &str, mtu: usize) -> Result<(), String> {
    let (mtu, qlen) = (mtu.to_string(), TX_QUEUE_LEN.to_string());
    ip(&["link", "set", "dev", tap, "mtu", &mtu, "txqueuelen", &qlen])?;
    ip(&["addr", "replace", host_cidr, "dev", tap])?;
    ip(&["link", "set", "dev", tap, "up"])
}
