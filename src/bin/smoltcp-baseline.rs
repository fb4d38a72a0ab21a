//! The benchmark baseline: smoltcp 0.14's own interface and TCP sockets on a
//! TAP, serving discard (9), chargen (19) and echo (7) (plus UDP echo on 7;
//! smoltcp itself answers ICMP echo) the way a careful
//! smoltcp user would write it. CUBIC, 1 MiB receive and send buffers, every
//! receive buffer drained on every pass, `phy::wait` on the TAP fd with
//! `Interface::poll_delay`. A pool of listening sockets per port, re-armed
//! when a connection ends, so many connections can be served at once and a
//! connections-per-second test works.
//!
//! This program exists only to be measured against; nothing in tapstack's
//! own stack uses smoltcp's `iface` or `socket` modules.
//!
//!   smoltcp-baseline --tap tb1 --addr 10.0.0.2/24 --host-addr 10.0.0.1/24

use std::os::fd::AsRawFd;

use clap::Parser;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Medium, TunTapInterface, wait as phy_wait};
use smoltcp::socket::tcp::{self, CongestionControl, State};
use smoltcp::socket::udp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, IpCidr, Ipv4Cidr};
use tapstack::apps::config::{DEFAULT_MAC, parse_cidr, parse_mac};
use tapstack::apps::services::{CHARGEN, Chargen, DISCARD, ECHO};
use tapstack::device::hostcfg;

const BUFFER: usize = 1 << 20;
/// Longest sleep in one wait, so a SIGTERM that lands just before `select`
/// is still noticed promptly (and smoltcp's `wait` mishandles timeouts of a
/// second or more: it puts the whole delay in `tv_usec`).
const MAX_WAIT: Duration = Duration::from_millis(100);

#[derive(Parser, Debug)]
#[command(
    name = "smoltcp-baseline",
    about = "smoltcp 0.14 TCP discard/chargen/echo server on a TAP (benchmark baseline)"
)]
struct Cli {
    /// TAP interface to create/attach
    #[arg(long, default_value = "tap0", value_name = "NAME")]
    tap: String,
    /// The server's own address
    #[arg(long, default_value = "10.0.0.2/24", value_name = "CIDR", value_parser = parse_cidr)]
    addr: Ipv4Cidr,
    /// Address given to the kernel side of the TAP
    #[arg(long, default_value = "10.0.0.1/24", value_name = "CIDR", value_parser = parse_cidr)]
    host_addr: Ipv4Cidr,
    /// Leave the kernel side of the TAP alone
    #[arg(long)]
    no_host_config: bool,
    /// The server's MAC address
    #[arg(long, default_value = DEFAULT_MAC, value_name = "MAC", value_parser = parse_mac)]
    mac: EthernetAddress,
    /// Listening sockets per port (the most connections per port at once)
    #[arg(long, default_value_t = 64, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=4096))]
    pool: u16,
}

/// SIGINT and SIGTERM, blocked and left pending, then read from a
/// non-blocking signalfd once per loop (the loop never sleeps longer than
/// MAX_WAIT), so no signal handler is needed.
fn stop_signals() -> Result<SignalFd, String> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.thread_block()
        .map_err(|e| format!("cannot block signals: {e}"))?;
    SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| format!("cannot create signalfd: {e}"))
}

/// One server slot: a socket listening on `port`, or serving a connection.
struct Slot {
    port: u16,
    handle: SocketHandle,
    /// Where chargen goes on in the pattern.
    chargen_at: usize,
}

fn new_socket<'a>() -> tcp::Socket<'a> {
    let rx = tcp::SocketBuffer::new(vec![0u8; BUFFER]);
    let tx = tcp::SocketBuffer::new(vec![0u8; BUFFER]);
    let mut s = tcp::Socket::new(rx, tx);
    s.set_congestion_control(CongestionControl::Cubic);
    s
}

/// Serves one slot after a poll: moves data, closes after the peer did,
/// re-arms a finished socket. Returns true if it moved any data.
fn serve(slot: &mut Slot, sockets: &mut SocketSet, pattern: &[u8], scratch: &mut [u8]) -> bool {
    let s = sockets.get_mut::<tcp::Socket>(slot.handle);
    let mut moved = false;
    match s.state() {
        State::Closed => {
            slot.chargen_at = 0;
            // A fresh listen; this cannot fail for a closed socket and port != 0.
            let _ = s.listen(slot.port);
            return false;
        }
        State::Listen | State::SynReceived | State::TimeWait => return false,
        _ => {}
    }
    match slot.port {
        ECHO => {
            // Move as much as the send buffer takes; what does not fit
            // stays in the receive buffer (and closes the window) until the
            // peer acknowledges what we sent.
            while s.can_recv() && s.can_send() {
                let room = (s.send_capacity() - s.send_queue()).min(scratch.len());
                let n = match s.recv_slice(&mut scratch[..room]) {
                    Ok(n) if n > 0 => n,
                    _ => break,
                };
                let _ = s.send_slice(&scratch[..n]);
                moved = true;
            }
        }
        CHARGEN => {
            // Keep the send buffer full; discard anything the client sends.
            while s.can_recv() {
                if !matches!(s.recv(|b| (b.len(), b.len())), Ok(n) if n > 0) {
                    break;
                }
            }
            while s.can_send() {
                let at = slot.chargen_at;
                let sent = s.send(|b| {
                    let n = b.len().min(pattern.len() - at);
                    b[..n].copy_from_slice(&pattern[at..at + n]);
                    (n, n)
                });
                match sent {
                    Ok(n) if n > 0 => {
                        slot.chargen_at = (at + n) % pattern.len();
                        moved = true;
                    }
                    _ => break,
                }
            }
        }
        _ => {
            // Discard: drain the receive buffer completely (it is a ring,
            // so this can take two calls).
            while s.can_recv() {
                match s.recv(|b| (b.len(), b.len())) {
                    Ok(n) if n > 0 => moved = true,
                    _ => break,
                }
            }
        }
    }
    // The peer closed its side: close ours once everything it sent is read
    // (smoltcp sends our FIN after the queued data).
    if s.state() == State::CloseWait && !s.can_recv() {
        s.close();
    }
    moved
}

/// UDP echo (RFC 862): sends every waiting datagram back to its sender.
/// Returns true if it echoed any.
fn serve_udp_echo(handle: SocketHandle, sockets: &mut SocketSet, scratch: &mut [u8]) -> bool {
    let s = sockets.get_mut::<udp::Socket>(handle);
    let mut moved = false;
    while s.can_recv() && s.can_send() {
        let Ok((n, meta)) = s.recv_slice(scratch) else {
            break;
        };
        let _ = s.send_slice(&scratch[..n], meta.endpoint);
        moved = true;
    }
    moved
}

fn one_line_panics() {
    // smoltcp's TunTapInterface panics on a read error other than EAGAIN
    // (e.g. the TAP was deleted): make that one line and a clean exit code.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "internal error".into());
        eprintln!("smoltcp-baseline: fatal: {msg}");
        std::process::exit(1);
    }));
}

fn run(cli: &Cli) -> Result<(), String> {
    let signals = stop_signals()?;
    one_line_panics();
    let mut device = TunTapInterface::new(&cli.tap, Medium::Ethernet)
        .map_err(|e| format!("cannot open TAP {:?}: {e}", cli.tap))?;
    let fd = device.as_raw_fd();
    if !cli.no_host_config {
        hostcfg::configure(&cli.tap, &cli.host_addr.to_string(), 1500)?;
    }

    let mut config = Config::new(cli.mac.into());
    config.random_seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let mut iface = Interface::new(config, &mut device, Instant::now());
    iface.update_ip_addrs(|addrs| {
        let _ = addrs.push(IpCidr::Ipv4(cli.addr));
    });

    let mut sockets = SocketSet::new(Vec::new());
    let mut slots = Vec::new();
    for port in [DISCARD, CHARGEN, ECHO] {
        for _ in 0..cli.pool {
            let mut s = new_socket();
            s.listen(port)
                .map_err(|e| format!("listen on {port}: {e}"))?;
            slots.push(Slot {
                port,
                handle: sockets.add(s),
                chargen_at: 0,
            });
        }
    }
    let udp_echo = {
        let rx = udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 256], vec![0u8; BUFFER]);
        let tx = udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 256], vec![0u8; BUFFER]);
        let mut s = udp::Socket::new(rx, tx);
        s.bind(ECHO).map_err(|e| format!("bind UDP {ECHO}: {e}"))?;
        sockets.add(s)
    };
    let mut pattern = Vec::new();
    Chargen::new().fill(&mut pattern, 74 * 95); // one whole cycle of lines
    let mut scratch = vec![0u8; 64 * 1024];

    eprintln!(
        "smoltcp-baseline: TCP discard (9), chargen (19), echo (7), UDP echo (7), ICMP echo on {} at {} ({} sockets per port, CUBIC, {} KiB buffers)",
        cli.tap,
        cli.addr.address(),
        cli.pool,
        BUFFER / 1024
    );
    while !matches!(signals.read_signal(), Ok(Some(_))) {
        iface.poll(Instant::now(), &mut device, &mut sockets);
        let mut moved = false;
        for slot in &mut slots {
            moved |= serve(slot, &mut sockets, &pattern, &mut scratch);
        }
        moved |= serve_udp_echo(udp_echo, &mut sockets, &mut scratch);
        if moved {
            // Data was queued or a window opened: transmit before waiting.
            iface.poll(Instant::now(), &mut device, &mut sockets);
        }
        let delay = iface
            .poll_delay(Instant::now(), &sockets)
            .map_or(MAX_WAIT, |d| d.min(MAX_WAIT));
        match phy_wait(fd, Some(delay)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("waiting on the TAP: {e}")),
        }
    }
    eprintln!("smoltcp-baseline: stopped");
    Ok(())
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                e.exit();
            }
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad arguments");
            eprintln!(
                "smoltcp-baseline: {} (see --help)",
                first.trim_start_matches("error: ")
            );
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&cli) {
        eprintln!("smoltcp-baseline: {e}");
        std::process::exit(1);
    }
}
