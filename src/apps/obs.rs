//! `tapstack ss`, `stats`, `trace` and `pcap`: clients of a running
//! daemon's observation requests. Each asks once and copies the socket the
//! daemon hands back to stdout (or a file).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::cli::{Cli, Command};
use crate::client::Api;
use crate::daemon::proto::{Msg, op};
use crate::daemon::show::SsOptions;
use crate::daemon::watch::FrameFilter;

/// Runs an observation subcommand; `None` when `cli` asks for another.
pub fn main(cli: &Cli) -> Option<i32> {
    let result = match &cli.command {
        Command::Ss {
            tcp,
            udp,
            listening,
            all,
            info,
            numeric: _,
            json,
        } => {
            let o = SsOptions {
                tcp: *tcp,
                udp: *udp,
                listening: *listening,
                all: *all,
                info: *info,
                json: *json,
            };
            connect(cli).and_then(|api| ss(&api, o))
        }
        Command::Stats { watch, json } => connect(cli).and_then(|api| stats(&api, *watch, *json)),
        Command::Trace { filter } => FrameFilter::parse(filter)
            .and_then(|f| connect(cli).and_then(|api| stream(&api, f.to_msg(op::TRACE), None))),
        Command::Pcap { write, filter } => FrameFilter::parse(filter).and_then(|f| {
            connect(cli).and_then(|api| stream(&api, f.to_msg(op::PCAP), Some(write)))
        }),
        _ => return None,
    };
    Some(match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("tapstack: {e}");
            1
        }
    })
}

fn connect(cli: &Cli) -> Result<Api, String> {
    let path = super::run::api_path(cli);
    Api::connect(&path).map_err(|e| {
        format!(
            "no tapstack daemon at {} ({e}; start one with `tapstack up`, or give --api PATH)",
            path.display()
        )
    })
}

/// One observation request; the descriptor the reply carries.
fn ask(api: &Api, m: Msg) -> Result<OwnedFd, String> {
    match api.call(m, None) {
        Ok((_, Some(fd))) => Ok(fd),
        Ok((_, None)) => Err("the daemon sent no descriptor".into()),
        Err(e) => Err(match e.raw_os_error() {
            Some(nix::libc::EINVAL) => {
                "the daemon does not know this request (an older tapstack?)".into()
            }
            Some(nix::libc::EACCES) => {
                "live capture needs root or the user the daemon runs as".into()
            }
            Some(nix::libc::EAGAIN) => "the daemon serves too many observers; try again".into(),
            _ => format!("the daemon refused: {e}"),
        }),
    }
}

/// Copies `from` to `to` as it arrives, flushing each piece (a reader
/// such as `tcpdump -r -` sees every frame at once). Ends at end-of-file
/// or when `to` is closed (`| head`).
fn copy(from: OwnedFd, to: &mut dyn Write) -> Result<(), String> {
    let mut from = File::from(from);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("reading from the daemon: {e}")),
        };
        match to.write_all(&buf[..n]).and_then(|_| to.flush()) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(format!("writing: {e}")),
        }
    }
}

fn ss(api: &Api, o: SsOptions) -> Result<(), String> {
    let fd = ask(
        api,
        Msg {
            a: o.bits(),
            ..Msg::request(op::SOCKETS)
        },
    )?;
    copy(fd, &mut io::stdout().lock())
}

fn read_all(fd: OwnedFd) -> Result<String, String> {
    let mut s = String::new();
    File::from(fd)
        .read_to_string(&mut s)
        .map_err(|e| format!("reading from the daemon: {e}"))?;
    Ok(s)
}

fn counters(api: &Api) -> Result<BTreeMap<String, u64>, String> {
    let text = read_all(ask(api, Msg::request(op::COUNTERS))?)?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect())
}

fn stats(api: &Api, watch: Option<f64>, json: bool) -> Result<(), String> {
    let Some(secs) = watch else {
        let fd = ask(
            api,
            Msg {
                a: u32::from(json),
                ..Msg::request(op::COUNTERS)
            },
        )?;
        return copy(fd, &mut io::stdout().lock());
    };
    if !secs.is_finite() || !(0.1..=86_400.0).contains(&secs) {
        return Err("--watch takes seconds between 0.1 and 86400".into());
    }
    let period = Duration::from_secs_f64(secs);
    let mut prev = counters(api)?;
    let mut at = Instant::now();
    loop {
        std::thread::sleep(period.saturating_sub(at.elapsed()));
        let now = counters(api)?;
        let dt = at.elapsed().as_secs_f64();
        at = Instant::now();
        let rate =
            |k: &str, v: u64| v.saturating_sub(prev.get(k).copied().unwrap_or(0)) as f64 / dt;
        let mut out = String::new();
        if json {
            out.push_str("{\"counters\":{");
            for (i, (k, v)) in now.iter().enumerate() {
                let sep = if i > 0 { "," } else { "" };
                out.push_str(&format!("{sep}{}:{v}", quoted(k)));
            }
            out.push_str("},\"rates\":{");
            for (i, (k, v)) in now.iter().enumerate() {
                let sep = if i > 0 { "," } else { "" };
                out.push_str(&format!("{sep}{}:{:.1}", quoted(k), rate(k, *v)));
            }
            out.push_str("}}\n");
        } else {
            out.push_str(&format!(
                "{:<40} {:>14} {:>12}\n",
                "counter", "value", "per second"
            ));
            for (k, v) in &now {
                out.push_str(&format!("{k:<40} {v:>14} {:>12.1}\n", rate(k, *v)));
            }
            out.push('\n');
        }
        let mut stdout = io::stdout().lock();
        match stdout
            .write_all(out.as_bytes())
            .and_then(|_| stdout.flush())
        {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(format!("writing: {e}")),
        }
        prev = now;
    }
}

fn quoted(s: &str) -> String {
    let mut out = String::new();
    crate::daemon::show::json_str(&mut out, s);
    out
}

/// A live stream to stdout, or to `write` (`-` = stdout).
fn stream(api: &Api, m: Msg, write: Option<&PathBuf>) -> Result<(), String> {
    let mut file;
    let mut stdout;
    let to: &mut dyn Write = match write {
        Some(p) if p != Path::new("-") => {
            file = File::create(p).map_err(|e| format!("cannot create {}: {e}", p.display()))?;
            &mut file
        }
        _ => {
            stdout = io::stdout().lock();
            &mut stdout
        }
    };
    let fd = ask(api, m)?;
    copy(fd, to)
}
