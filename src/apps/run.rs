//! `tapstack run -- PROGRAM ARGS...`: runs a program with the LD_PRELOAD
//! shim (`libtapstack_preload.so`, built next to the `tapstack` binary)
//! so its AF_INET sockets live on a running tapstack daemon.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use super::cli::Cli;
use crate::daemon::proto;

/// File name of the LD_PRELOAD shim, looked for next to the `tapstack` binary.
pub const SHIM: &str = "libtapstack_preload.so";

/// `--api`, else `TAPSTACK_API`, else `/run/tapstack/<TAP>.sock`.
pub fn api_path(cli: &Cli) -> PathBuf {
    cli.api
        .clone()
        .or_else(|| std::env::var_os("TAPSTACK_API").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(proto::default_path(&cli.tap)))
}

/// Parses `--api-mode`: octal permission bits, at most 0777, with or
/// without `0o`.
pub fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("{s:?} is not a file mode: write it in octal like 0660"))
}

/// Parses `--api-group`: a group number, or a name looked up in the group
/// database.
pub fn parse_group(s: &str) -> Result<nix::unistd::Gid, String> {
    if let Ok(n) = s.parse::<u32>() {
        return Ok(nix::unistd::Gid::from_raw(n));
    }
    match nix::unistd::Group::from_name(s) {
        Ok(Some(g)) => Ok(g.gid),
        _ => Err(format!("no group named {s:?}")),
    }
}

/// The shim beside the running binary (target/release/ after
/// `cargo build --release`, or wherever both were installed).
fn shim_path() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find tapstack itself: {e}"))?;
    let dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    // `cargo test` runs binaries from target/*/deps; the shim is one up.
    for d in [dir.clone(), dir.join("..")] {
        let p = d.join(SHIM);
        if p.exists() {
            return Ok(p);
        }
    }
    Err(format!(
        "{SHIM} is not next to {} (build it: cargo build --release)",
        exe.display()
    ))
}

/// Execs the program; returns only on error (the exit code).
pub fn main(api: &std::path::Path, program: &[OsString]) -> i32 {
    let fail = |msg: String| {
        eprintln!("tapstack: {msg}");
        1
    };
    let shim = match shim_path() {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    if !api.exists() {
        return fail(format!(
            "no tapstack daemon at {} (start one with `tapstack up`, or give --api PATH)",
            api.display()
        ));
    }
    let Some((prog, args)) = program.split_first() else {
        return fail("run needs a program: tapstack run -- PROGRAM ARGS...".into());
    };
    let mut preload = OsString::from(&shim);
    if let Some(old) = std::env::var_os("LD_PRELOAD")
        && !old.is_empty()
    {
        preload.push(":");
        preload.push(old);
    }
    let e = std::process::Command::new(prog)
        .args(args)
        .env("LD_PRELOAD", preload)
        .env("TAPSTACK_API", api)
        .exec();
    fail(format!("cannot run {}: {e}", prog.to_string_lossy()))
}
