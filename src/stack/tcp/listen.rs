//! Listeners (RFC 9293 3.10.7.2) with a real backlog: a bounded SYN queue
//! of SYN-RECEIVED connections and a bounded accept queue, as Linux has.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddrV4;

use super::TcpLayer;
use super::input::RstReply;
use super::options::InSeg;
use super::seq::Seq;
use super::state::TcpState;
use super::tcb::{SockOpts, Tcb};
use crate::stack::ip::IpSink;
use crate::stack::time::Instant;

#[derive(Debug)]
pub struct Listener {
    pub local: SocketAddrV4,
    pub backlog: usize,
    /// Raw handles of children in SYN-RECEIVED.
    pub syn_queue: HashSet<u32>,
    /// Raw handles of established children not yet accepted.
    pub accept_queue: VecDeque<u32>,
    pub opts: SockOpts,
}

impl Listener {
    pub fn new(local: SocketAddrV4, backlog: usize, opts: SockOpts) -> Listener {
        Listener {
            local,
            backlog: backlog.max(1),
            syn_queue: HashSet::new(),
            accept_queue: VecDeque::new(),
            opts,
        }
    }

    pub fn accept_queue_full(&self) -> bool {
        self.accept_queue.len() >= self.backlog
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
        ip: &mut dyn IpSink,
    ) {
        if seg.rst {
            self.counters.inc("tcp.listen_rst_ignored");
            return;
        }
        if let Some(ack) = seg.ack {
            self.counters.inc("tcp.listen_ack_reset");
            self.send_rst(
                now,
                ip,
                local,
                remote,
                RstReply {
                    seq: ack,
                    ack: None,
                },
            );
            return;
        }
        if !seg.syn {
            self.counters.inc("tcp.listen_no_syn");
            return;
        }
        let syn_backlog = self.config.syn_backlog;
        let Some(l) = self.listener(lraw) else { return };
        if l.accept_queue_full() {
            // Linux drops SYNs while the accept queue is full.
            self.counters.inc("tcp.accept_queue_full");
            return;
        }
        if l.syn_queue.len() >= syn_backlog {
            self.counters.inc("tcp.syn_queue_full");
            return;
        }
        let opts = l.opts.clone();
        let iss = self.pick_iss(now, local, remote);
        let mut tcb = self.new_tcb(now, opts, local, remote, iss);
        tcb.state = TcpState::Listen;
        tcb.parent = Some(lraw);
        tcb.set_state(TcpState::SynReceived);
        tcb.irs = seg.seq;
        tcb.rcv_nxt = seg.seq + 1;
        tcb.rcv_adv = tcb.rcv_nxt;
        {
            let env = super::tcb::Env {
                now,
                cfg: &self.config,
                counters: &mut self.counters,
                challenge: &mut self.challenge,
            };
            tcb.negotiate(&env, seg);
        }
        tcb.snd_wnd = usize::from(seg.window);
        tcb.max_snd_wnd = tcb.snd_wnd;
        tcb.snd_wl1 = seg.seq;
        let Some(raw) = self.insert_conn(tcb) else {
            self.counters.inc("tcp.socket_table_full");
            return;
        };
        if let Some(l) = self.listener_mut(lraw) {
            l.syn_queue.insert(raw);
        }
        self.counters.inc("tcp.passive_open");
        self.settle(now, raw, false);
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
        let ts_offset = match self.fixed_isn {
            Some(_) => 0,
            None => self.secret.hash(&(remote, local, 0x7473u16)) as u32,
        };
        Tcb::new(now, &self.config, opts, local, remote, iss, ts_offset)
    }
}
