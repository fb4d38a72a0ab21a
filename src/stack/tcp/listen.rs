//! Listeners (RFC 9293 3.10.7.2) with a real backlog: a bounded SYN queue
//! of SYN-RECEIVED connections and a bounded accept queue, as Linux has.

use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::time::Duration;

use super::input::RstReply;
use super::options::{InSeg, OutHdr};
use super::receiver::Receiver;
use super::seq::Seq;
use super::state::TcpState;
use super::syncookie;
use super::tcb::{SockOpts, Tcb};
use super::{Emit, TcpLayer};
use crate::stack::time::Instant;

#[derive(Debug)]
pub struct Listener {
    pub local: SocketAddrV4,
    pub backlog: usize,
    /// Raw handles of children in SYN-RECEIVED, oldest first.
    syn_queue: VecDeque<u32>,
    /// Raw handles of established children not yet accepted.
    pub accept_queue: VecDeque<u32>,
    pub opts: SockOpts,
    /// When the SYN queue last overflowed: cookies are only accepted for
    /// two minutes after (Linux tcp_synq_no_recent_overflow), so ACKs are
    /// not checked against cookies while no flood is on.
    last_overflow: Option<Instant>,
}

/// How long after the last SYN queue overflow cookie ACKs are accepted
/// (Linux TCP_SYNCOOKIE_VALID).
const COOKIE_VALID: Duration = Duration::from_secs(120);

impl Listener {
    pub fn new(local: SocketAddrV4, backlog: usize, opts: SockOpts) -> Listener {
        Listener {
            local,
            backlog: backlog.max(1),
            syn_queue: VecDeque::new(),
            accept_queue: VecDeque::new(),
            opts,
            last_overflow: None,
        }
    }

    /// Children in SYN-RECEIVED now.
    pub fn syn_queue_len(&self) -> usize {
        self.syn_queue.len()
    }

    pub fn accept_queue_full(&self) -> bool {
        self.accept_queue.len() >= self.backlog
    }

    /// Forgets a child (bounded by the SYN backlog, so a scan is fine).
    pub fn syn_queue_remove(&mut self, raw: u32) -> bool {
        match self.syn_queue.iter().position(|&r| r == raw) {
            Some(i) => {
                self.syn_queue.remove(i);
                true
            }
            None => false,
        }
    }

    /// Every child, SYN queue and accept queue, emptying both.
    pub fn drain_children(&mut self) -> Vec<u32> {
        self.syn_queue
            .drain(..)
            .chain(self.accept_queue.drain(..))
            .collect()
    }
}

impl TcpLayer {
    /// A segment for a listening socket (RFC 9293 3.10.7.2).
    pub(super) fn listen_input(
        &mut self,
        now: Instant,
        lraw: u32,
        seg: &InSeg,
        local: SocketAddrV4,
        remote: SocketAddrV4,
    ) {
        if seg.rst {
            self.counters.inc("tcp.listen_rst_ignored");
            return;
        }
        if let Some(ack) = seg.ack {
            if !seg.syn && self.cookie_ack(now, lraw, seg, local, remote) {
                return;
            }
            self.counters.inc("tcp.listen_ack_reset");
            let rst = RstReply {
                seq: ack,
                ack: None,
            };
            return self.queue_rst(local, remote, rst);
        }
        if !seg.syn {
            self.counters.inc("tcp.listen_no_syn");
            return;
        }
        if seg.fin {
            // RFC 9293 3.10.7.2 would keep the FIN for SYN-RECEIVED; Linux
            // (tcp_rcv_state_process) drops SYN+FIN here: no client sends
            // it, scanners do, and it must not buy a SYN queue entry.
            self.counters.inc("tcp.listen_syn_fin");
            return;
        }
        let syn_backlog = self.config.syn_backlog;
        let Some(l) = self.listener(lraw) else { return };
        if l.accept_queue_full() {
            // Linux drops SYNs while the accept queue is full.
            self.counters.inc("tcp.accept_queue_full");
            return;
        }
        let opts = l.opts.clone();
        if l.syn_queue.len() >= syn_backlog && !self.evict_unanswered(lraw) {
            self.counters.inc("tcp.syn_queue_full");
            if self.config.syncookies {
                self.send_cookie(now, lraw, seg, local, remote);
            }
            return;
        }
        let iss = self.pick_iss(now, local, remote);
        let mut tcb = self.new_tcb(now, opts, local, remote, iss);
        tcb.open_passive(lraw);
        tcb.rcv.synchronize(seg.seq);
        self.negotiate(now, &mut tcb, seg);
        tcb.snd.on_syn(seg.seq, seg.window);
        let Some(raw) = self.insert_conn(tcb) else {
            self.counters.inc("tcp.socket_table_full");
            return;
        };
        if let Some(l) = self.listener_mut(lraw) {
            l.syn_queue.push_back(raw);
        }
        self.counters.inc("tcp.passive_open");
        self.settle(now, raw, false);
    }

    fn negotiate(&mut self, now: Instant, tcb: &mut Tcb, syn: &InSeg) {
        let env = super::tcb::Env {
            now,
            cfg: &self.config,
            counters: &mut self.counters,
            challenge: &mut self.challenge,
            pool: &mut self.pool,
            rmem: &mut self.rmem,
        };
        tcb.negotiate(&env, syn);
    }

    /// With the SYN queue full, the oldest half-open entry goes if its
    /// SYN,ACK and the retransmission after it both timed out unanswered
    /// (a spoofed SYN most likely), making room for a SYN that gets real
    /// state. True if one was evicted. Only the oldest is looked at:
    /// entries share one initial RTO, so it is the first to time out.
    ///
    /// Not after the first timeout: a client whose ACK was lost has its
    /// connection open and answers the retransmitted SYN,ACK; evicting the
    /// entry before that answer arrives would reset a live connection.
    fn evict_unanswered(&mut self, lraw: u32) -> bool {
        let Some(&oldest) = self.listener(lraw).and_then(|l| l.syn_queue.front()) else {
            return false;
        };
        let stale = self
            .tcb(oldest)
            .is_none_or(|t| t.state == TcpState::SynReceived && t.snd.retries() >= 2);
        if !stale {
            return false;
        }
        self.counters.inc("tcp.syn_queue_evicted");
        if let Some(l) = self.listener_mut(lraw) {
            l.syn_queue.pop_front();
        }
        // Silently, as Linux drops a request sock: no RST to a spoofed source.
        self.free_conn(oldest);
        true
    }

    /// The SYN queue is full: a SYN,ACK whose sequence number is a cookie
    /// (RFC 4987 3.6), no state kept. Options as Linux sends them: MSS
    /// always; window scale and SACK-permitted only with timestamps, whose
    /// TSval carries them back.
    fn send_cookie(
        &mut self,
        now: Instant,
        lraw: u32,
        seg: &InSeg,
        local: SocketAddrV4,
        remote: SocketAddrV4,
    ) {
        let Some(l) = self.listener_mut(lraw) else {
            return;
        };
        l.last_overflow = Some(now);
        let rx_buffer = l.opts.rx_buffer;
        let cfg = &self.config;
        let ts = seg.ts.filter(|_| cfg.timestamps);
        let peer_ws = seg
            .wscale
            .filter(|_| ts.is_some() && cfg.window_scaling)
            .map(|w| w.min(14));
        let sack = ts.is_some() && cfg.sack && seg.sack_perm;
        let idx = syncookie::mss_index(seg.mss);
        let cookie = syncookie::make(&self.secret, now, local, remote, seg.seq.0, idx);
        let ts_now = (now.total_millis() as u32).wrapping_add(self.ts_offset(local, remote));
        let hdr = OutHdr {
            src_port: local.port(),
            dst_port: remote.port(),
            seq: Seq(cookie),
            ack: Some(seg.seq + 1),
            syn: true,
            window: rx_buffer.min(65535) as u16,
            mss: Some(cfg.mss.clamp(64, 65535) as u16),
            wscale: peer_ws.map(|_| Receiver::wscale_for_growing(rx_buffer)),
            sack_perm: sack,
            ts: ts.map(|(val, _)| (syncookie::ts_encode(ts_now, peer_ws, sack), val)),
            ..OutHdr::default()
        };
        self.counters.inc("tcp.syncookies_sent");
        self.queue_control(Emit::Cookie(local, remote, hdr));
    }

    /// An ACK for a listener: if the SYN queue overflowed lately and the
    /// ACK carries a valid cookie, the connection is made from it (and
    /// the segment processed as the handshake's last). True if handled.
    fn cookie_ack(
        &mut self,
        now: Instant,
        lraw: u32,
        seg: &InSeg,
        local: SocketAddrV4,
        remote: SocketAddrV4,
    ) -> bool {
        let Some(l) = self.listener(lraw) else {
            return false;
        };
        if l.last_overflow.is_none_or(|t| now - t >= COOKIE_VALID) {
            return false;
        }
        let (opts, accept_full) = (l.opts.clone(), l.accept_queue_full());
        let (Some(ack), peer_isn) = (seg.ack, seg.seq - 1) else {
            return false;
        };
        let cookie = ack - 1;
        let checked = syncookie::check(&self.secret, now, local, remote, peer_isn.0, cookie.0);
        let ts = seg.ts.filter(|_| self.config.timestamps);
        let (wscale, sack_perm) = match ts {
            Some((_, ecr)) => syncookie::ts_decode(ecr),
            None => (None, false),
        };
        let Some(mss) = checked else {
            self.counters.inc("tcp.syncookies_failed");
            return false;
        };
        if accept_full {
            // As for a normal handshake: dropped, the peer retransmits.
            self.counters.inc("tcp.accept_queue_full");
            return true;
        }
        self.counters.inc("tcp.syncookies_validated");
        let mut tcb = self.new_tcb(now, opts, local, remote, cookie);
        tcb.open_passive(lraw);
        tcb.rcv.synchronize(peer_isn);
        let syn = InSeg {
            seq: peer_isn,
            ack: None,
            syn: true,
            fin: false,
            rst: false,
            mss: Some(mss),
            wscale,
            sack_perm,
            ts,
            sack: [None; 3],
            payload: &[],
            ..seg.clone()
        };
        self.negotiate(now, &mut tcb, &syn);
        // What the cookie SYN,ACK said and did: SYN sent, window offered.
        tcb.snd.syn_sent_as_cookie(peer_isn);
        tcb.rcv.syn_window(true);
        // It acknowledged the SYN: Last.ACK.sent (RFC 7323 4.3), without
        // which TS.Recent would not follow the segments after this one.
        tcb.rcv.on_ack_sent();
        let Some(raw) = self.insert_conn(tcb) else {
            self.counters.inc("tcp.socket_table_full");
            return true;
        };
        if let Some(l) = self.listener_mut(lraw) {
            l.syn_queue.push_back(raw);
        }
        self.counters.inc("tcp.passive_open");
        // TSecr echoes a TSval whose low bits are options, not a time: no
        // RTT sample from it (Linux takes none from a cookie ACK either).
        let seg = InSeg {
            ts: ts.map(|(val, _)| (val, 0)),
            ..seg.clone()
        };
        self.conn_input(now, raw, &seg);
        true
    }

    /// ISN for a new connection (RFC 6528), or the test hook's fixed one.
    pub(super) fn pick_iss(&self, now: Instant, local: SocketAddrV4, remote: SocketAddrV4) -> Seq {
        match self.fixed_isn {
            Some(isn) => Seq(isn),
            None => Seq(self.secret.isn(now, local, remote)),
        }
    }

    pub(super) fn new_tcb(
        &self,
        now: Instant,
        opts: SockOpts,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        iss: Seq,
    ) -> Tcb {
        let ts_offset = self.ts_offset(local, remote);
        Tcb::new(now, &self.config, opts, local, remote, iss, ts_offset)
    }

    /// A connection's TSval offset (RFC 7323 5.4: per connection, so
    /// TSvals reveal no uptime); recomputable, as a cookie ACK needs.
    fn ts_offset(&self, local: SocketAddrV4, remote: SocketAddrV4) -> u32 {
        match self.fixed_isn {
            Some(_) => 0,
            None => self.secret.hash(&(remote, local, 0x7473u16)) as u32,
        }
    }
}
