//! The `tapstack` command line: options shared by every subcommand, the
//! TAP and kernel-side setup, and clean shutdown on SIGINT/SIGTERM.

use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use nix::sys::signal::{SigSet, Signal};
use smoltcp::wire::{EthernetAddress, Ipv4Cidr};

use super::config::{self, DEFAULT_MAC};
use crate::api::Net;
use crate::device::fault::FaultConfig;
use crate::device::{Device, hostcfg, tap::TapDevice};
use crate::runtime::link::LinkOptions;
use crate::stack::StackConfig;
use crate::stack::iface::IfaceConfig;
use crate::stack::tcp::{CcAlgorithm, TcpConfig, TcpMem};

/// Said by every help page: what running the stack does to the machine.
const AFTER_HELP: &str = "\
Needs root (CAP_NET_ADMIN): it creates the TAP and sets up its kernel side
in the CURRENT network namespace (an interface, an address and a route
appear there). To leave the host untouched, run it in its own namespace:
  sudo ip netns add demo
  sudo ip netns exec demo tapstack echo
  sudo ip netns exec demo ping 10.0.0.2        # from another terminal
  sudo ip netns del demo                       # afterwards
Without root: an administrator makes a TAP for you and sets up its kernel
side once, then you run the stack on it with --no-host-config:
  sudo ip tuntap add dev tap0 mode tap user $USER
  sudo ip addr add 10.0.0.1/24 dev tap0 && sudo ip link set tap0 up
  tapstack --tap tap0 --no-host-config echo";

#[derive(Parser, Debug)]
#[command(
    name = "tapstack",
    version,
    about = "A userspace TCP/IP stack on a Linux TAP device",
    after_help = AFTER_HELP
)]
/// The parsed command line: options shared by every subcommand, then the
/// subcommand.
pub struct Cli {
    /// TAP interface to use (created if missing, removed on exit if we created it)
    #[arg(
        long,
        global = true,
        help_heading = "Interface",
        default_value = "tap0",
        value_name = "NAME"
    )]
    pub tap: String,
    /// The stack's own address
    #[arg(long, global = true, help_heading = "Interface", default_value = "10.0.0.2/24", value_name = "CIDR", value_parser = config::parse_cidr)]
    pub addr: Ipv4Cidr,
    /// Address given to the kernel side of the TAP
    #[arg(long, global = true, help_heading = "Interface", default_value = "10.0.0.1/24", value_name = "CIDR", value_parser = config::parse_cidr)]
    pub host_addr: Ipv4Cidr,
    /// Leave the kernel side of the TAP alone (no address, MTU or link up)
    #[arg(long, global = true, help_heading = "Interface")]
    pub no_host_config: bool,
    /// Default gateway for destinations off the subnet
    #[arg(long, global = true, help_heading = "Interface", value_name = "IP")]
    pub gateway: Option<std::net::Ipv4Addr>,
    /// The stack's MAC address
    #[arg(long, global = true, help_heading = "Interface", default_value = DEFAULT_MAC, value_name = "MAC", value_parser = config::parse_mac)]
    pub mac: EthernetAddress,
    /// Link MTU (the kernel side is set to the same)
    #[arg(long, global = true, help_heading = "Interface", default_value_t = 1500, value_name = "N", value_parser = clap::value_parser!(u16).range(576..))]
    pub mtu: u16,
    /// Write every frame in and out to FILE (pcap, for tcpdump/Wireshark)
    #[arg(long, global = true, help_heading = "Capture", value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// Print one line per frame and every TCP state change
    #[arg(long, global = true, help_heading = "Capture")]
    pub trace: bool,
    /// Plain frames on the TAP: no checksum/TSO offloads, no GSO super-frames
    #[arg(long, global = true, help_heading = "Interface")]
    pub no_offload: bool,
    /// A blocked call that runs the stack checks the TAP for USECS before
    /// it sleeps (like SO_BUSY_POLL: lower latency for CPU); off by default
    #[arg(long, global = true, help_heading = "Interface", value_name = "USECS", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub busy_poll: Option<u64>,
    /// Drop each frame (both directions) with probability P (0.01 or 1%)
    #[arg(long, global = true, help_heading = "Faults", default_value = "0", value_name = "P", value_parser = config::parse_probability)]
    pub loss: f64,
    /// Duplicate each frame with probability P
    #[arg(long, global = true, help_heading = "Faults", default_value = "0", value_name = "P", value_parser = config::parse_probability)]
    pub dup: f64,
    /// Hold each frame back behind the next with probability P
    #[arg(long, global = true, help_heading = "Faults", default_value = "0", value_name = "P", value_parser = config::parse_probability)]
    pub reorder: f64,
    /// Change one byte of each frame with probability P
    #[arg(long, global = true, help_heading = "Faults", default_value = "0", value_name = "P", value_parser = config::parse_probability)]
    pub corrupt: f64,
    /// Seed for the fault injector and the stack's random choices
    #[arg(long, global = true, help_heading = "Faults", value_name = "N")]
    pub seed: Option<u64>,
    /// TCP congestion control: cubic, reno or bbr
    #[arg(
        long,
        global = true,
        help_heading = "TCP",
        default_value = "cubic",
        value_name = "ALG"
    )]
    pub cc: CcAlgorithm,
    /// TCP TIME-WAIT duration in seconds (2*MSL)
    #[arg(
        long,
        global = true,
        help_heading = "TCP",
        default_value_t = 60.0,
        value_name = "SECS"
    )]
    pub time_wait: f64,
    /// TCP receive memory of all connections, like Linux's net.ipv4.tcp_mem
    /// but in bytes (K, M, G suffixes): above PRESSURE receive buffers stop
    /// growing (until below LOW); data needing storage beyond HIGH is
    /// dropped (tcp.rcvq_drop, tcp.ofo_drop)
    #[arg(long, global = true, help_heading = "TCP", default_value_t = TcpMem::default(), value_name = "LOW,PRESSURE,HIGH", value_parser = TcpMem::parse)]
    pub tcp_mem: TcpMem,
    /// TCP SYN retransmissions before a connect fails with ETIMEDOUT
    #[arg(long, global = true, default_value_t = 6, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=20))]
    pub syn_retries: u32,
    /// The daemon's control socket [default: $TAPSTACK_API, else /run/tapstack/<TAP>.sock]
    #[arg(long, global = true, value_name = "PATH")]
    pub api: Option<PathBuf>,
    /// Permission bits of the control socket, octal (0660 lets --api-group in)
    #[arg(long, global = true, default_value = "0600", value_name = "MODE", value_parser = super::run::parse_mode)]
    pub api_mode: u32,
    /// Group (name or number) given the control socket, allowed to use the stack
    #[arg(long, global = true, value_name = "GROUP", value_parser = super::run::parse_group)]
    pub api_group: Option<nix::unistd::Gid>,
    // Not a `///` comment: clap would print it in the help text.
    #[cfg_attr(doc, doc = "What to run on the stack.")]
    #[cfg_attr(not(doc), allow(missing_docs))]
    #[command(subcommand)]
    pub command: Command,
}

// Not a `///` comment: clap would print it as the program's `about`.
#[cfg_attr(doc, doc = "What to run: the stack alone, its services, or a client.")]
#[cfg_attr(not(doc), allow(missing_docs))]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the stack only: it answers ARP and ping
    #[command(after_help = AFTER_HELP)]
    Up,
    /// Run the stack with echo (7), discard (9) and chargen (19) on TCP and
    /// UDP, and a web page with a WebSocket echo
    #[command(after_help = AFTER_HELP)]
    Echo(EchoArgs),
    /// A netcat-like client over the stack: stdin to IPV4:PORT, replies to stdout
    #[command(after_help = AFTER_HELP)]
    Connect {
        /// Use UDP instead of TCP
        #[arg(short = 'u', long)]
        udp: bool,
        /// After stdin ends, wait this many seconds of quiet for replies (UDP)
        #[arg(short = 'q', long, default_value_t = 1.0, value_name = "SECS")]
        quit_after: f64,
        /// Where to connect: IPV4:PORT, e.g. 10.0.0.1:9000
        #[arg(value_parser = config::parse_target)]
        target: SocketAddrV4,
    },
    /// Run PROGRAM with its AF_INET sockets on a running tapstack (LD_PRELOAD shim)
    Run {
        /// The program and its arguments (after --)
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "PROGRAM"
        )]
        program: Vec<std::ffi::OsString>,
    },
    /// List a running stack's sockets, like iproute2's `ss -tuan`
    Ss {
        /// TCP sockets (neither -t nor -u: both)
        #[arg(short = 't', long = "tcp")]
        tcp: bool,
        /// UDP sockets
        #[arg(short = 'u', long = "udp")]
        udp: bool,
        /// Listening sockets only (and unconnected UDP)
        #[arg(short = 'l', long = "listening")]
        listening: bool,
        /// Every socket: listening, TIME-WAIT and SYN-RECEIVED too
        #[arg(short = 'a', long = "all")]
        all: bool,
        /// A second line per socket with TCP internals (like `ss -ti`)
        #[arg(short = 'i', long = "info")]
        info: bool,
        /// Numeric addresses and ports (always the case; accepted as ss does)
        #[arg(short = 'n', long = "numeric")]
        numeric: bool,
        /// JSON instead of the table
        #[arg(long)]
        json: bool,
    },
    /// Print a running stack's counters
    Stats {
        /// Print them every SECS seconds, with the rate per second
        #[arg(long, value_name = "SECS")]
        watch: Option<f64>,
        /// JSON instead of `name value` lines
        #[arg(long)]
        json: bool,
    },
    /// Stream one line per frame from a running stack (FILTER: tcp, udp,
    /// icmp, arp, host A.B.C.D, port N, joined by `and`)
    Trace {
        /// e.g. `tcp and port 7`
        #[arg(trailing_var_arg = true, value_name = "FILTER")]
        filter: Vec<String>,
    },
    /// Stream a pcap of a running stack's frames (`-w - | tcpdump -n -r -`)
    Pcap {
        /// Where to write: a file, or - for stdout
        #[arg(short = 'w', value_name = "FILE|-", required = true)]
        write: PathBuf,
        /// As for `trace`, e.g. `tcp and host 10.0.0.1`
        #[arg(trailing_var_arg = true, value_name = "FILTER")]
        filter: Vec<String>,
    },
}

/// `echo`'s flags.
#[derive(Args, Debug)]
pub struct EchoArgs {
    /// Port of the HTTP page and WebSocket echo (0 turns it off)
    #[arg(long, default_value_t = 8080, value_name = "PORT")]
    ws_port: u16,
    /// Port of a TCP echo served through the daemon's API (0 turns it off)
    #[arg(long, default_value_t = 2007, value_name = "PORT")]
    api_echo_port: u16,
    /// TCP connections the echo/discard/chargen services serve at once
    /// (more are refused with RST)
    #[arg(long, default_value_t = 100_000, value_name = "N", value_parser = config::parse_count)]
    max_connections: usize,
    /// Connections the web page serves at once (more get 503)
    #[arg(long, default_value_t = 1024, value_name = "N", value_parser = config::parse_count)]
    ws_max_connections: usize,
}

/// Parses the command line of program `prog` (the `tapstack` CLI, the
/// benchmark tools); help and version exit as clap does, and any error
/// prints one line `prog: ...` and exits with 2.
pub fn parse_or_exit<C: Parser>(prog: &str) -> C {
    match C::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                e.exit();
            }
            eprintln!("{prog}: {}", one_line(&e.render().to_string()));
            std::process::exit(2);
        }
    }
}

/// clap's whole message on one line: what is wrong (with its `<ARG>`
/// names and "a similar subcommand exists" tips), then the usage line as
/// the hint. Its "For more information" line becomes the `--help` pointer.
fn one_line(clap_message: &str) -> String {
    let mut what = String::new();
    let mut usage = None;
    for line in clap_message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        if let Some(u) = line.strip_prefix("Usage: ") {
            usage = Some(u);
        } else if !line.starts_with("For more information") {
            let sep = if line.starts_with("tip:") { "; " } else { " " };
            if !what.is_empty() {
                what.push_str(sep);
            }
            what.push_str(line.trim_start_matches("error: "));
        }
    }
    match usage {
        Some(u) => {
            // "tapstack connect <TARGET>" -> help of "tapstack connect".
            let cmd: Vec<&str> = u
                .split_whitespace()
                .take_while(|w| !w.starts_with(['[', '<', '-']))
                .collect();
            format!("{what} (usage: {u}; see {} --help)", cmd.join(" "))
        }
        None => format!("{what} (see tapstack --help)"),
    }
}

fn init_logging(trace: bool) {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"));
    if trace {
        builder.filter_module(crate::runtime::link::TRACE_TARGET, log::LevelFilter::Debug);
    }
    builder.format_timestamp_micros().init();
}

impl Cli {
    fn stack_config(&self) -> StackConfig {
        StackConfig {
            iface: IfaceConfig {
                mac: self.mac,
                cidr: self.addr,
                gateway: self.gateway,
                mtu: self.mtu as usize,
                arp: Default::default(),
                outbox_limit: 8192,
            },
            udp: Default::default(),
            tcp: TcpConfig {
                cc: self.cc,
                time_wait: Duration::from_secs_f64(self.time_wait.clamp(0.0, 240.0)),
                syn_retries: self.syn_retries,
                tcp_mem: self.tcp_mem,
                ..TcpConfig::default()
            },
            reassembly: Default::default(),
            icmp_rate: (1000, 50),
            seed: self.seed,
        }
    }

    fn link_options(&self) -> LinkOptions {
        LinkOptions {
            pcap: self.pcap.clone(),
            trace: self.trace,
            fault: FaultConfig {
                loss: self.loss,
                dup: self.dup,
                reorder: self.reorder,
                corrupt: self.corrupt,
                seed: self.seed.unwrap_or(1),
            },
            busy_poll: self.busy_poll.map(std::time::Duration::from_micros),
        }
    }
}

/// Blocks SIGINT and SIGTERM in this thread and every thread started after,
/// so they can be waited for synchronously.
fn block_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    let _ = set.thread_block();
    set
}

/// Opens and configures the TAP, starts the stack. Errors are one line.
fn bring_up(cli: &Cli) -> Result<(Net, Arc<TapDevice>), String> {
    let host = (!cli.no_host_config).then_some(cli.host_addr);
    config::check_addresses(cli.addr, host, cli.gateway)?;
    let link = cli.link_options();
    // The fault injector acts on single frames: a 64 KB super-frame would
    // be dropped, duplicated or corrupted as one, so faults turn offloads
    // off.
    let offload = !cli.no_offload && !link.fault.is_active();
    if !cli.no_offload && !offload {
        log::debug!("fault injection on: TAP offloads off");
    }
    let tap = Arc::new(TapDevice::open(&cli.tap, offload)?);
    if !cli.no_host_config {
        hostcfg::configure(tap.name(), &cli.host_addr.to_string(), cli.mtu as usize)?;
    }
    let device: Arc<dyn Device> = tap.clone();
    let net = Net::start(device, cli.stack_config(), &link)?;
    log::info!(
        "tapstack up on {} (offloads {}) as {} ({}), kernel side {}",
        tap.name(),
        if tap.offload() { "on" } else { "off" },
        cli.addr,
        cli.mac,
        if cli.no_host_config {
            "untouched".to_string()
        } else {
            cli.host_addr.to_string()
        }
    );
    Ok((net, tap))
}

/// The counters a server prints at exit: only those that moved.
fn report(net: &Net) {
    eprintln!("tapstack: counters");
    for (name, value) in net.counters().iter().filter(|&(_, v)| v != 0) {
        eprintln!("  {name:<40} {value}");
    }
}

/// Entry point of the binary; returns the process exit code.
pub fn main() -> i32 {
    let cli: Cli = parse_or_exit("tapstack");
    init_logging(cli.trace);
    if let Command::Run { program } = &cli.command {
        return super::run::main(&super::run::api_path(&cli), program);
    }
    if let Some(code) = super::obs::main(&cli) {
        return code;
    }
    let signals = block_signals();
    let (net, tap) = match bring_up(&cli) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("tapstack: {e}");
            return 1;
        }
    };
    let daemon = match &cli.command {
        Command::Up | Command::Echo(_) => match start_daemon(&cli, &net) {
            Ok(d) => Some(d),
            // The default path is per TAP name, not per network namespace:
            // another stack may hold it. Only an asked-for path must work.
            Err(e) if cli.api.is_none() && std::env::var_os("TAPSTACK_API").is_none() => {
                log::warn!("daemon API off: {e}");
                None
            }
            Err(e) => {
                eprintln!("tapstack: {e}");
                net.shutdown();
                return 1;
            }
        },
        _ => None,
    };
    let api = daemon.as_ref().map(|d| d.path().to_path_buf());
    let result = run(&cli, &net, &signals, api.as_deref());
    // Clients' descriptors close first: programs see an error, not a hang.
    drop(daemon);
    net.shutdown();
    if !matches!(cli.command, Command::Connect { .. }) {
        report(&net);
    }
    if tap.created {
        log::info!("removing TAP {}", tap.name());
    }
    drop(tap); // closing a TAP we created removes it (it is not persistent)
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("tapstack: {e}");
            1
        }
    }
}

fn start_daemon(cli: &Cli, net: &Net) -> Result<crate::daemon::Daemon, String> {
    let opts = crate::daemon::ApiOptions {
        path: super::run::api_path(cli),
        mode: cli.api_mode,
        group: cli.api_group,
    };
    crate::daemon::Daemon::start(net, &opts)
}

fn wait_for_signal(signals: &SigSet) {
    match signals.wait() {
        Ok(sig) => log::info!("{sig} received, shutting down"),
        Err(e) => log::error!("waiting for signals failed: {e}"),
    }
}

fn run(
    cli: &Cli,
    net: &Net,
    signals: &SigSet,
    api: Option<&std::path::Path>,
) -> Result<(), String> {
    match &cli.command {
        Command::Up => {
            eprintln!(
                "tapstack: up on {} as {}; Ctrl-C to stop",
                cli.tap,
                cli.addr.address()
            );
            wait_for_signal(signals);
            Ok(())
        }
        Command::Echo(a) => run_echo(cli, net, signals, api, a),
        Command::Run { .. }
        | Command::Ss { .. }
        | Command::Stats { .. }
        | Command::Trace { .. }
        | Command::Pcap { .. } => Ok(()),
        Command::Connect {
            udp,
            quit_after,
            target,
        } => {
            if !quit_after.is_finite() || *quit_after < 0.0 {
                return Err("-q must be a number of seconds >= 0".into());
            }
            let linger = Duration::from_secs_f64(*quit_after);
            // stdin may never end: let a signal end the process (closing
            // the TAP we created removes it).
            let (sig, stopper) = (*signals, net.clone());
            std::thread::spawn(move || {
                wait_for_signal(&sig);
                stopper.shutdown();
                std::process::exit(130);
            });
            let target = target.to_string();
            if *udp {
                super::connect::udp(net, &target, linger)
            } else {
                super::connect::tcp(net, &target)
            }
        }
    }
}

/// `echo`: the services, the web page and the echo through the daemon's
/// API, until a signal.
fn run_echo(
    cli: &Cli,
    net: &Net,
    signals: &SigSet,
    api: Option<&std::path::Path>,
    a: &EchoArgs,
) -> Result<(), String> {
    if let (Some(api), true) = (api, a.api_echo_port != 0) {
        super::api_echo::start(api, a.api_echo_port).map_err(|e| {
            format!(
                "starting the echo through the daemon on port {}: {e}",
                a.api_echo_port
            )
        })?;
    }
    let services = super::services::ServicesConfig {
        max_connections: a.max_connections,
        ..Default::default()
    };
    super::services::start(net, services).map_err(|e| format!("starting services: {e}"))?;
    let web = if a.ws_port != 0 {
        let config = super::ws::WsConfig {
            max_connections: a.ws_max_connections,
            ..Default::default()
        };
        let server = super::ws::start(net, a.ws_port, config)
            .map_err(|e| format!("starting the web page on port {}: {e}", a.ws_port))?;
        Some(server)
    } else {
        None
    };
    eprintln!(
        "tapstack: echo (7), discard (9), chargen (19) on TCP and UDP at {}{}; Ctrl-C to stop",
        cli.addr.address(),
        if a.ws_port != 0 {
            format!(
                ", web page and WebSocket echo at http://{}:{}/",
                cli.addr.address(),
                a.ws_port
            )
        } else {
            String::new()
        }
    );
    wait_for_signal(signals);
    // Close 1001 (going away) to every WebSocket client while the
    // stack still runs.
    if let Some(web) = web {
        web.stop();
    }
    Ok(())
}
