//! Observation replies of variable size (`ss`, `stats`, `trace`, `pcap`):
//! the daemon hands the client one end of a stream socketpair and a writer thread
//! of its own fills the write end, so neither the daemon thread nor the
//! stack thread ever waits for a reader. Frames reach a stream through a
//! bounded `FrameTap`: a slow reader loses frames (counted in
//! `tap.dropped`), a closed reader ends the stream.

use std::io::{self, BufWriter, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant, UNIX_EPOCH};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::SockType;

use super::fdio;
use super::proto::Msg;
use crate::api::bsd::Errno as E;
use crate::device::pcap::PcapWriter;
use crate::runtime::tap::{Direction, FrameTap, TapFrame};
use crate::trace::describe_frame;

/// Writer threads at once (each holds a pipe and, for a stream, a tap).
const MAX_WATCHERS: usize = 32;
/// Frames a stream's tap holds while its reader is slow.
pub const TAP_CAPACITY: usize = 4096;
/// How long a one-shot reply (table, counters) waits for its reader.
const REPLY_DEADLINE: Duration = Duration::from_secs(30);
/// How often an idle stream checks that its reader is still there.
const IDLE_CHECK: Duration = Duration::from_millis(250);

/// Protocols a `FrameFilter` may ask for (bits of the request's `a`).
const P_TCP: u32 = 1;
const P_UDP: u32 = 2;
const P_ICMP: u32 = 4;
const P_ARP: u32 = 8;

/// A tcpdump-like frame filter: `tcp`, `udp`, `icmp`, `arp`, `host
/// A.B.C.D`, `port N`, joined by `and`. Every term must hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameFilter {
    protocol: u32,
    host: Option<Ipv4Addr>,
    port: Option<u16>,
}

impl FrameFilter {
    /// Parses the words of a filter; the error is one line.
    pub fn parse(words: &[String]) -> Result<FrameFilter, String> {
        let mut f = FrameFilter::default();
        let mut it = words.iter().map(String::as_str).peekable();
        let mut expect_term = true;
        while let Some(w) = it.next() {
            if !expect_term {
                if w != "and" {
                    return Err(format!("filter: expected `and` before {w:?}"));
                }
                expect_term = true;
                continue;
            }
            let proto = match w {
                "tcp" => Some(P_TCP),
                "udp" => Some(P_UDP),
                "icmp" => Some(P_ICMP),
                "arp" => Some(P_ARP),
                _ => None,
            };
            if let Some(p) = proto {
                if f.protocol != 0 && f.protocol != p {
                    return Err(format!("filter: {w} and another protocol never match"));
                }
                f.protocol = p;
            } else if w == "host" {
                let v = it.next().ok_or("filter: `host` needs an IPv4 address")?;
                let ip: Ipv4Addr = v
                    .parse()
                    .map_err(|_| format!("filter: {v:?} is not an IPv4 address"))?;
                if ip.is_unspecified() {
                    return Err("filter: host 0.0.0.0 matches nothing".into());
                }
                f.host = Some(ip);
            } else if w == "port" {
                let v = it.next().ok_or("filter: `port` needs a number")?;
                let p: u16 = v
                    .parse()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| format!("filter: {v:?} is not a port (1-65535)"))?;
                f.port = Some(p);
            } else {
                return Err(format!(
                    "filter: unknown term {w:?} (use tcp, udp, icmp, arp, host A.B.C.D, port N, joined by `and`)"
                ));
            }
            expect_term = false;
        }
        if expect_term && !words.is_empty() {
            return Err("filter: it ends with `and`".into());
        }
        Ok(f)
    }

    /// Into a request for `op`.
    pub fn to_msg(self, op: u8) -> Msg {
        let ip = self.host.unwrap_or(Ipv4Addr::UNSPECIFIED);
        Msg {
            op,
            a: self.protocol,
            addr: Some(SocketAddrV4::new(ip, self.port.unwrap_or(0))),
            ..Msg::default()
        }
    }

    /// From a request (unknown protocol bits match nothing).
    pub fn from_msg(m: &Msg) -> FrameFilter {
        let (host, port) = match m.addr {
            Some(a) => (
                (!a.ip().is_unspecified()).then_some(*a.ip()),
                (a.port() != 0).then_some(a.port()),
            ),
            None => (None, None),
        };
        FrameFilter {
            protocol: m.a,
            host,
            port,
        }
    }

    /// Whether an Ethernet frame passes.
    pub fn matches(&self, frame: &[u8]) -> bool {
        let Some(ethertype) = frame.get(12..14) else {
            return false;
        };
        match ethertype {
            [0x08, 0x06] => self.matches_arp(&frame[14..]),
            [0x08, 0x00] => self.matches_ipv4(&frame[14..]),
            _ => self.protocol == 0 && self.host.is_none() && self.port.is_none(),
        }
    }

    fn matches_arp(&self, arp: &[u8]) -> bool {
        if self.protocol & !P_ARP != 0 || self.port.is_some() {
            return false;
        }
        match self.host {
            None => true,
            // Sender and target protocol addresses (RFC 826).
            Some(h) => [14usize, 24]
                .iter()
                .any(|&i| arp.get(i..i + 4) == Some(&h.octets()[..])),
        }
    }

    fn matches_ipv4(&self, ip: &[u8]) -> bool {
        if ip.len() < 20 {
            return false;
        }
        let proto = ip[9];
        let bit = match proto {
            6 => P_TCP,
            17 => P_UDP,
            1 => P_ICMP,
            _ => 0,
        };
        if self.protocol != 0 && self.protocol != bit {
            return false;
        }
        if let Some(h) = self.host
            && ip[12..16] != h.octets()
            && ip[16..20] != h.octets()
        {
            return false;
        }
        let Some(port) = self.port else {
            return true;
        };
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        // Ports only in a first fragment of TCP or UDP.
        let first = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff == 0;
        if !matches!(proto, 6 | 17) || !first {
            return false;
        }
        match ip.get(ihl..ihl + 4) {
            Some(p) => {
                let (s, d) = (
                    u16::from_be_bytes([p[0], p[1]]),
                    u16::from_be_bytes([p[2], p[3]]),
                );
                s == port || d == port
            }
            None => false,
        }
    }
}

/// What a stream writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamKind {
    /// One `--trace` line per frame, with the time of day (UTC).
    Trace,
    /// A pcap file: header, then one record per frame.
    Pcap,
}

/// The writer threads of one daemon: a bound on their number and a stop
/// signal for all.
#[derive(Default)]
pub struct Watchers {
    active: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

/// The daemon's end of a reply socketpair, non-blocking; writes wait in poll
/// (checking the stop signal) and fail once the reader has gone.
struct PipeOut {
    fd: OwnedFd,
    stop: Arc<AtomicBool>,
    deadline: Option<Instant>,
}

impl Write for PipeOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(io::ErrorKind::TimedOut.into());
            }
            match fdio::write(self.fd.as_fd(), buf) {
                Ok(n) => return Ok(n),
                Err(Errno::EAGAIN) => {
                    let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLOUT)];
                    let _ = poll(&mut fds, PollTimeout::from(250u16));
                }
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl PipeOut {
    /// The reader closed its end (ours then polls POLLHUP).
    fn reader_gone(&self) -> bool {
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::empty())];
        matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
            && fds[0]
                .revents()
                .is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP))
    }
}

/// Frees a writer slot when its thread ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Watchers {
    /// Ends every writer (the daemon stops).
    pub fn stop_all(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// A socketpair for a reply: (the client's end, writer) and a slot,
    /// or an errno (EAGAIN when too many writers run, EMFILE without
    /// descriptors).
    fn open(&self, deadline: Option<Duration>) -> Result<(OwnedFd, PipeOut, Slot), i32> {
        if self.active.fetch_add(1, Ordering::AcqRel) >= MAX_WATCHERS {
            self.active.fetch_sub(1, Ordering::AcqRel);
            return Err(E::EAGAIN.code());
        }
        let slot = Slot(self.active.clone());
        // A stream socketpair rather than a pipe: writes can say
        // MSG_NOSIGNAL, so a reader that goes away is an EPIPE, not a
        // SIGPIPE.
        let (w, r) = fdio::pair(SockType::Stream).map_err(|e| match e {
            Errno::EMFILE | Errno::ENFILE => E::EMFILE.code(),
            _ => E::ENOMEM.code(),
        })?;
        let out = PipeOut {
            fd: w,
            stop: self.stop.clone(),
            deadline: deadline.map(|d| Instant::now() + d),
        };
        Ok((r, out, slot))
    }

    /// `text` written into a socketpair whose other end is returned.
    pub fn reply_text(&self, text: String) -> Result<OwnedFd, i32> {
        let (r, mut out, slot) = self.open(Some(REPLY_DEADLINE))?;
        std::thread::Builder::new()
            .name("tapstack-reply".into())
            .spawn(move || {
                let _slot = slot;
                let _ = out.write_all(text.as_bytes());
            })
            .map_err(|_| E::EAGAIN.code())?;
        Ok(r)
    }

    /// A live stream of the frames `tap` gets that pass `filter`.
    pub fn stream(
        &self,
        tap: FrameTap,
        kind: StreamKind,
        filter: FrameFilter,
    ) -> Result<OwnedFd, i32> {
        let (r, out, slot) = self.open(None)?;
        std::thread::Builder::new()
            .name("tapstack-stream".into())
            .spawn(move || {
                let _slot = slot;
                run_stream(&tap, out, filter, kind);
                log::info!(
                    "daemon: {kind:?} stream ended ({} frames dropped for a slow reader)",
                    tap.dropped()
                );
            })
            .map_err(|_| E::EAGAIN.code())?;
        Ok(r)
    }
}

/// Where a stream's frames go: trace lines or pcap records.
enum Sink {
    Trace(BufWriter<PipeOut>),
    Pcap(PcapWriter<BufWriter<PipeOut>>),
}

impl Sink {
    /// For pcap, the file header goes out at once: a reader (tcpdump)
    /// waits for it before any frame.
    fn new(kind: StreamKind, out: PipeOut) -> io::Result<Sink> {
        let w = BufWriter::with_capacity(64 * 1024, out);
        Ok(match kind {
            StreamKind::Trace => Sink::Trace(w),
            StreamKind::Pcap => {
                let mut p = PcapWriter::new(w)?;
                p.flush()?;
                Sink::Pcap(p)
            }
        })
    }

    fn pipe(&self) -> &PipeOut {
        match self {
            Sink::Trace(w) => w.get_ref(),
            Sink::Pcap(p) => p.get_ref().get_ref(),
        }
    }

    fn frame(&mut self, f: &TapFrame) -> io::Result<()> {
        match self {
            Sink::Trace(w) => {
                let since = f.at.duration_since(UNIX_EPOCH).unwrap_or_default();
                let day = since.as_secs() % 86_400;
                let dir = match f.dir {
                    Direction::In => '<',
                    Direction::Out => '>',
                };
                writeln!(
                    w,
                    "{:02}:{:02}:{:02}.{:06} {dir} {}",
                    day / 3600,
                    day / 60 % 60,
                    day % 60,
                    since.subsec_micros(),
                    describe_frame(&f.frame)
                )
            }
            Sink::Pcap(p) => p.write_frame(f.at, &f.frame),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Trace(w) => w.flush(),
            Sink::Pcap(p) => p.flush(),
        }
    }
}

/// Copies frames until the reader goes, the stack stops or the daemon
/// stops.
fn run_stream(tap: &FrameTap, out: PipeOut, filter: FrameFilter, kind: StreamKind) {
    let Ok(mut sink) = Sink::new(kind, out) else {
        return;
    };
    loop {
        let first = match tap.recv_timeout(IDLE_CHECK) {
            Ok(f) => f,
            Err(RecvTimeoutError::Timeout) => {
                let pipe = sink.pipe();
                if pipe.reader_gone() || pipe.stop.load(Ordering::Relaxed) {
                    return;
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut next = Some(first);
        // Drain what is queued (bounded by the tap's capacity), then
        // flush once.
        for _ in 0..TAP_CAPACITY {
            let Some(f) = next.take() else { break };
            if filter.matches(&f.frame) && sink.frame(&f).is_err() {
                return;
            }
            next = tap.try_recv().ok();
        }
        if sink.flush().is_err() {
            return;
        }
    }
    let _ = sink.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    /// An Ethernet + IPv4 + TCP/UDP header prefix.
    fn ipv4(proto: u8, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 8];
        f[12..14].copy_from_slice(&[8, 0]);
        f[14] = 0x45;
        f[14 + 9] = proto;
        f[26..30].copy_from_slice(&src);
        f[30..34].copy_from_slice(&dst);
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f[36..38].copy_from_slice(&dport.to_be_bytes());
        f
    }

    #[test]
    fn filter_terms_combine_with_and() {
        let f = FrameFilter::parse(&words("tcp and host 10.0.0.1 and port 80")).unwrap();
        let f = FrameFilter::from_msg(&f.to_msg(14));
        assert!(f.matches(&ipv4(6, [10, 0, 0, 1], [10, 0, 0, 2], 4000, 80)));
        assert!(f.matches(&ipv4(6, [10, 0, 0, 2], [10, 0, 0, 1], 80, 4000)));
        assert!(!f.matches(&ipv4(17, [10, 0, 0, 1], [10, 0, 0, 2], 4000, 80)));
        assert!(!f.matches(&ipv4(6, [10, 0, 0, 3], [10, 0, 0, 2], 4000, 80)));
        assert!(!f.matches(&ipv4(6, [10, 0, 0, 1], [10, 0, 0, 2], 4000, 81)));
        let any = FrameFilter::parse(&[]).unwrap();
        assert!(any.matches(&ipv4(1, [1, 1, 1, 1], [2, 2, 2, 2], 0, 0)));
        let mut arp = vec![0u8; 14 + 28];
        arp[12..14].copy_from_slice(&[8, 6]);
        arp[14 + 24..14 + 28].copy_from_slice(&[10, 0, 0, 1]);
        assert!(
            FrameFilter::parse(&words("arp and host 10.0.0.1"))
                .unwrap()
                .matches(&arp)
        );
        assert!(!FrameFilter::parse(&words("tcp")).unwrap().matches(&arp));
        for bad in [
            "tcp and",
            "port x",
            "host",
            "tcp udp",
            "tcp and udp",
            "bogus",
        ] {
            assert!(FrameFilter::parse(&words(bad)).is_err(), "{bad}");
        }
    }
}
