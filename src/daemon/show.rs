//! How the socket table and the counters are shown: `ss`-style text and
//! JSON, written by the daemon into the descriptor it hands a client (and
//! usable in-process, e.g. by the web page). A small JSON writer: strings
//! escaped per RFC 8259 section 7.

use std::fmt::Write as _;
use std::net::SocketAddrV4;
use std::time::Duration;

use crate::stack::Counters;
use crate::stack::info::{Protocol, SocketInfo, TcpConnInfo, TcpTimers};

/// Which sockets `ss` lists and how (the flags of `tapstack ss`), packed
/// into the request's `a` field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SsOptions {
    /// `-t`: TCP (with neither `-t` nor `-u`: both).
    pub tcp: bool,
    /// `-u`: UDP.
    pub udp: bool,
    /// `-l`: listening sockets only (and unconnected UDP).
    pub listening: bool,
    /// `-a`: every socket, listening ones and TIME-WAIT included.
    pub all: bool,
    /// `-i`: a second line of TCP internals per socket.
    pub info: bool,
    /// `--json`: a JSON document instead of the table.
    pub json: bool,
}

impl SsOptions {
    /// The request field.
    pub fn bits(self) -> u32 {
        [
            self.tcp,
            self.udp,
            self.listening,
            self.all,
            self.info,
            self.json,
        ]
        .iter()
        .enumerate()
        .fold(0, |b, (i, &on)| b | (u32::from(on) << i))
    }

    /// From the request field (unknown bits ignored).
    pub fn from_bits(b: u32) -> SsOptions {
        let on = |i: u32| b & (1 << i) != 0;
        SsOptions {
            tcp: on(0),
            udp: on(1),
            listening: on(2),
            all: on(3),
            info: on(4),
            json: on(5),
        }
    }

    /// Whether `s` is listed: iproute2's default shows connected sockets
    /// only (not LISTEN, TIME-WAIT, SYN-RECEIVED or unconnected UDP).
    pub fn selects(&self, s: &SocketInfo) -> bool {
        let proto_ok = match s.protocol {
            Protocol::Tcp => self.tcp || !self.udp,
            Protocol::Udp => self.udp || !self.tcp,
        };
        let listening = matches!(s.state, "LISTEN" | "UNCONN");
        let state_ok = if self.all {
            true
        } else if self.listening {
            listening
        } else {
            !listening && !matches!(s.state, "TIME-WAIT" | "SYN-RECEIVED")
        };
        proto_ok && state_ok
    }
}

fn addr(a: &SocketAddrV4) -> String {
    a.to_string()
}

fn peer(a: &Option<SocketAddrV4>) -> String {
    match a {
        Some(a) => a.to_string(),
        None => "0.0.0.0:*".into(),
    }
}

/// The process name of `pid` (Linux `/proc/PID/comm`), if it can be read.
fn comm(pid: u32) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(s.trim_end().to_string())
}

/// `ss`'s table: one line per selected socket, `-i` adding a second.
pub fn ss_table(all: &[SocketInfo], o: &SsOptions) -> String {
    let rows: Vec<&SocketInfo> = all.iter().filter(|s| o.selects(s)).collect();
    let width = |f: &dyn Fn(&SocketInfo) -> String, min: usize| {
        rows.iter().map(|s| f(s).len()).max().unwrap_or(0).max(min)
    };
    let lw = width(&|s| addr(&s.local), 20);
    let pw = width(&|s| peer(&s.remote), 20);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<5} {:<12} {:>6} {:>6} {:<lw$} {:<pw$} Process",
        "Netid", "State", "Recv-Q", "Send-Q", "Local Address:Port", "Peer Address:Port"
    );
    for s in rows {
        let users = match s.pid {
            Some(pid) => match comm(pid) {
                Some(name) => format!("users:((\"{name}\",pid={pid}))"),
                None => format!("users:((pid={pid}))"),
            },
            None => String::new(),
        };
        let row = format!(
            "{:<5} {:<12} {:>6} {:>6} {:<lw$} {:<pw$} {users}",
            s.protocol.name(),
            s.state,
            s.recv_q,
            s.send_q,
            addr(&s.local),
            peer(&s.remote)
        );
        let _ = writeln!(out, "{}", row.trim_end());
        if o.info
            && let Some(line) = info_line(s)
        {
            let _ = writeln!(out, "\t {line}");
        }
    }
    out
}

/// Milliseconds with up to three decimals, as `ss` prints RTTs.
fn ms(d: Duration) -> String {
    let v = d.as_secs_f64() * 1000.0;
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A rate as `ss` prints it (`delivery_rate 1.2Gbps`).
fn rate(bytes_per_sec: u64) -> String {
    let bits = bytes_per_sec as f64 * 8.0;
    if bits >= 1e9 {
        format!("{:.1}Gbps", bits / 1e9)
    } else if bits >= 1e6 {
        format!("{:.1}Mbps", bits / 1e6)
    } else if bits >= 1e3 {
        format!("{:.1}Kbps", bits / 1e3)
    } else {
        format!("{bits:.0}bps")
    }
}

fn timers_text(t: &TcpTimers) -> String {
    let all = [
        ("rtx", t.retransmit),
        ("tlp", t.loss_probe),
        ("reorder", t.reorder),
        ("delack", t.delayed_ack),
        ("persist", t.persist),
        ("keepalive", t.keepalive),
        ("fin_wait2", t.fin_wait2),
    ];
    let on: Vec<String> = all
        .iter()
        .filter_map(|(n, d)| d.map(|d| format!("{n},{}ms", d.as_millis())))
        .collect();
    if on.is_empty() {
        String::new()
    } else {
        format!(" timers:({})", on.join(";"))
    }
}

/// The `-i` line: what `ss -ti` prints, in its order, then ours.
pub fn info_line(s: &SocketInfo) -> Option<String> {
    if let Some(l) = &s.listen {
        return Some(format!(
            "syn_queue:{}/{} accept_queue:{}/{}",
            l.syn_queue, l.syn_queue_max, l.accept_queue, l.accept_queue_max
        ));
    }
    if let Some(left) = s.time_wait_left {
        return Some(format!("timer:(timewait,{:.1}s)", left.as_secs_f64()));
    }
    let t: &TcpConnInfo = s.tcp.as_ref()?;
    let mut l = String::new();
    let _ = write!(l, "{}", t.cc);
    if let Some((snd, rcv)) = t.wscale {
        let _ = write!(l, " wscale:{snd},{rcv}");
    }
    if t.sack {
        l.push_str(" sack");
    }
    if t.timestamps {
        l.push_str(" ts");
    }
    let _ = write!(l, " rto:{}", t.rto.as_millis());
    if let (Some(srtt), Some(var)) = (t.srtt, t.rttvar) {
        let _ = write!(l, " rtt:{}/{}", ms(srtt), ms(var));
    }
    let mss = t.mss.max(1);
    let _ = write!(
        l,
        " mss:{} rcvmss:{} cwnd:{}",
        t.mss,
        t.rcv_mss,
        t.cwnd / mss
    );
    if let Some(ss) = t.ssthresh {
        let _ = write!(l, " ssthresh:{}", ss / mss);
    }
    let _ = write!(
        l,
        " bytes_sent:{} bytes_retrans:{} bytes_acked:{} bytes_received:{}",
        t.bytes_sent, t.bytes_retrans, t.bytes_acked, t.bytes_received
    );
    if let Some(d) = t.last_send {
        let _ = write!(l, " lastsnd:{}", d.as_millis());
    }
    let _ = write!(l, " lastrcv:{}", t.last_recv.as_millis());
    if let Some(r) = t.delivery_rate {
        let _ = write!(l, " delivery_rate {}", rate(r));
    }
    let _ = write!(
        l,
        " retrans:{} lost:{} sacked:{} sack_holes:{} unacked:{} snd_wnd:{} rcv_wnd:{}",
        t.retrans_segs, t.lost, t.sacked, t.sack_holes, t.in_flight, t.snd_wnd, t.rcv_wnd
    );
    if let Some(m) = t.min_rtt {
        let _ = write!(l, " minrtt:{}", ms(m));
    }
    let _ = write!(l, " phase:{} ca_state:{}", t.cc_phase, t.ca_state);
    l.push_str(&timers_text(&t.timers));
    Some(l)
}

/// `s` as a JSON string literal (RFC 8259 section 7).
pub fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Writes `"key":` then the value, with a comma before every key but the
/// first of an object.
struct Obj<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Obj<'a> {
    fn new(out: &'a mut String) -> Obj<'a> {
        out.push('{');
        Obj { out, first: true }
    }

    fn key(&mut self, k: &str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        json_str(self.out, k);
        self.out.push(':');
        self.out
    }

    fn num(&mut self, k: &str, v: impl std::fmt::Display) {
        let _ = write!(self.key(k), "{v}");
    }

    fn opt(&mut self, k: &str, v: Option<impl std::fmt::Display>) {
        match v {
            Some(v) => self.num(k, v),
            None => self.key(k).push_str("null"),
        }
    }

    fn str(&mut self, k: &str, v: &str) {
        json_str(self.key(k), v);
    }

    fn bool(&mut self, k: &str, v: bool) {
        self.key(k).push_str(if v { "true" } else { "false" });
    }

    fn end(self) {
        self.out.push('}');
    }
}

fn us(d: Option<Duration>) -> Option<u128> {
    d.map(|d| d.as_micros())
}

fn ms_opt(d: Option<Duration>) -> Option<u128> {
    d.map(|d| d.as_millis())
}

fn tcp_json(out: &mut String, t: &TcpConnInfo) {
    let mut o = Obj::new(out);
    o.str("cc", t.cc);
    o.str("cc_phase", t.cc_phase);
    o.str("ca_state", t.ca_state);
    o.num("cwnd", t.cwnd);
    o.opt("ssthresh", t.ssthresh);
    o.num("in_flight", t.in_flight);
    o.num("snd_wnd", t.snd_wnd);
    o.num("rcv_wnd", t.rcv_wnd);
    o.opt("srtt_us", us(t.srtt));
    o.opt("rttvar_us", us(t.rttvar));
    o.opt("min_rtt_us", us(t.min_rtt));
    o.num("rto_ms", t.rto.as_millis());
    o.num("backoff", t.backoff);
    o.num("mss", t.mss);
    o.num("rcv_mss", t.rcv_mss);
    o.opt("snd_wscale", t.wscale.map(|w| w.0));
    o.opt("rcv_wscale", t.wscale.map(|w| w.1));
    o.bool("sack", t.sack);
    o.bool("ts", t.timestamps);
    o.num("bytes_sent", t.bytes_sent);
    o.num("bytes_retrans", t.bytes_retrans);
    o.num("bytes_acked", t.bytes_acked);
    o.num("bytes_received", t.bytes_received);
    o.num("retrans_segs", t.retrans_segs);
    o.num("lost", t.lost);
    o.num("sacked", t.sacked);
    o.num("sack_holes", t.sack_holes);
    o.opt("delivery_rate", t.delivery_rate);
    o.opt("last_send_ms", ms_opt(t.last_send));
    o.num("last_recv_ms", t.last_recv.as_millis());
    let timers = o.key("timers_ms");
    let mut tm = Obj::new(timers);
    let x = &t.timers;
    tm.opt("retransmit", ms_opt(x.retransmit));
    tm.opt("loss_probe", ms_opt(x.loss_probe));
    tm.opt("reorder", ms_opt(x.reorder));
    tm.opt("delayed_ack", ms_opt(x.delayed_ack));
    tm.opt("persist", ms_opt(x.persist));
    tm.opt("keepalive", ms_opt(x.keepalive));
    tm.opt("fin_wait2", ms_opt(x.fin_wait2));
    tm.end();
    o.num("iss", t.iss);
    o.num("irs", t.irs);
    o.num("snd_una", t.snd_una);
    o.num("snd_nxt", t.snd_nxt);
    o.num("rcv_nxt", t.rcv_nxt);
    o.end();
}

/// One socket as a JSON object (durations in `_us`/`_ms` fields).
pub fn socket_json(out: &mut String, s: &SocketInfo) {
    let mut o = Obj::new(out);
    o.num("id", s.id);
    o.str("proto", s.protocol.name());
    o.str("state", s.state);
    o.str("local", &addr(&s.local));
    match &s.remote {
        Some(r) => o.str("remote", &addr(r)),
        None => o.key("remote").push_str("null"),
    }
    o.num("recv_q", s.recv_q);
    o.num("send_q", s.send_q);
    o.opt("pid", s.pid);
    match &s.tcp {
        Some(t) => tcp_json(o.key("tcp"), t),
        None => o.key("tcp").push_str("null"),
    }
    match &s.listen {
        Some(l) => {
            let mut lo = Obj::new(o.key("listen"));
            lo.num("syn_queue", l.syn_queue);
            lo.num("syn_queue_max", l.syn_queue_max);
            lo.num("accept_queue", l.accept_queue);
            lo.num("accept_queue_max", l.accept_queue_max);
            lo.end();
        }
        None => o.key("listen").push_str("null"),
    }
    o.opt("time_wait_left_ms", ms_opt(s.time_wait_left));
    o.end();
}

/// `{"sockets":[...]}` of the sockets `o` selects.
pub fn sockets_json(all: &[SocketInfo], o: &SsOptions) -> String {
    let mut out = String::from("{\"sockets\":[");
    for (i, s) in all.iter().filter(|s| o.selects(s)).enumerate() {
        if i > 0 {
            out.push(',');
        }
        socket_json(&mut out, s);
    }
    out.push_str("]}\n");
    out
}

/// `{"counters":{"name":value,...}}`.
pub fn counters_json(c: &Counters) -> String {
    let mut out = String::new();
    let mut o = Obj::new(&mut out);
    let inner = o.key("counters");
    let mut co = Obj::new(inner);
    for (k, v) in c.iter() {
        co.num(k, v);
    }
    co.end();
    o.end();
    out.push('\n');
    out
}

/// One `name value` line per counter (what `tapstack stats` parses).
pub fn counters_text(c: &Counters) -> String {
    let mut out = String::new();
    for (k, v) in c.iter() {
        let _ = writeln!(out, "{k} {v}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        let mut s = String::new();
        json_str(&mut s, "a\"b\\c\nd\u{1}é");
        assert_eq!(s, "\"a\\\"b\\\\c\\nd\\u0001é\"");
    }

    #[test]
    fn options_round_trip_and_select_like_iproute2() {
        let o = SsOptions {
            tcp: true,
            all: true,
            json: true,
            ..SsOptions::default()
        };
        assert_eq!(SsOptions::from_bits(o.bits()), o);
        let mut c = Counters::new();
        c.add("tcp.x", 3);
        assert_eq!(counters_json(&c), "{\"counters\":{\"tcp.x\":3}}\n");
        assert_eq!(counters_text(&c), "tcp.x 3\n");
    }
}
