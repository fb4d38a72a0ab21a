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

/// Sets the MTU, the kernel-side address (replacing any old one) and
/// brings the link up.
pub fn configure(tap: &str, host_cidr: &str, mtu: usize) -> Result<(), String> {
    ip(&["link", "set", "dev", tap, "mtu", &mtu.to_string()])?;
    ip(&["addr", "replace", host_cidr, "dev", tap])?;
    ip(&["link", "set", "dev", tap, "up"])
}
