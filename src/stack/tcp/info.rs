//! Socket snapshots for `ss`, the daemon and the web page. Every read of
//! a connection block's internals for them is in this file (the read
//! accessors of `Tcb`, `Sender` and `Receiver`), so a change of the
//! TCB's layout changes one place. Nothing here writes.

use std::time::Duration;

use super::listen::Listener;
use super::seq::Seq;
use super::state::TcpState;
use super::tcb::Tcb;
use super::timer::Timer;
use super::timewait::TwEntry;
use super::{Sock, TcpLayer};
use crate::stack::info::{ListenInfo, Protocol, SocketInfo, TcpConnInfo, TcpTimers};
use crate::stack::socket::SocketId;
use crate::stack::time::Instant;

/// Bytes from `start` to `end` in sequence space, modulo 2^32.
fn span(start: Seq, end: Seq) -> u64 {
    u64::from(end.0.wrapping_sub(start.0))
}

fn left(at: Option<Instant>, now: Instant) -> Option<Duration> {
    at.map(|t| t.saturating_since(now))
}

impl Tcb {
    /// Bytes received and not yet read.
    fn recv_q(&self) -> usize {
        self.rcv.readable_len()
    }

    /// Bytes queued and not yet acknowledged.
    fn send_q(&self) -> usize {
        self.snd.queued()
    }

    /// Payload bytes sent (retransmissions not counted), acknowledged and
    /// received, from the sequence numbers: SYN and FIN take one number
    /// each and carry no byte.
    fn byte_counts(&self) -> (u64, u64, u64) {
        let (iss, una, max) = (self.snd.iss(), self.snd.snd_una(), self.snd.snd_max());
        let data_start = iss + 1;
        let syn_sent = max != iss;
        let data_end = self.snd.data_end();
        let clip = |s: Seq| if s.gt(data_end) { data_end } else { s };
        let sent = if syn_sent {
            span(data_start, clip(max))
        } else {
            0
        };
        let acked = if una.gt(iss) {
            span(data_start, clip(una))
        } else {
            0
        };
        let irs_known = self.state.is_synchronized() || self.state == TcpState::SynReceived;
        let received = if irs_known {
            span(self.rcv.irs() + 1, self.rcv.nxt())
                .saturating_sub(u64::from(self.rcv.fin_received()))
        } else {
            0
        };
        (sent, acked, received)
    }

    fn timers(&self, now: Instant) -> TcpTimers {
        TcpTimers {
            retransmit: left(self.timers.get(Timer::Retransmit), now),
            loss_probe: left(self.timers.get(Timer::LossProbe), now),
            reorder: left(self.timers.get(Timer::Reorder), now),
            delayed_ack: left(self.timers.get(Timer::DelayedAck), now),
            persist: left(self.timers.get(Timer::Persist), now),
            keepalive: left(self.timers.get(Timer::Keepalive), now),
            fin_wait2: left(self.timers.get(Timer::FinWait2), now),
        }
    }

    /// What `ss -ti` shows of this connection.
    fn conn_info(&self, now: Instant) -> TcpConnInfo {
        let (sent, acked, received) = self.byte_counts();
        let snd = &self.snd;
        let (cc, rtt) = (snd.cc(), snd.rtt());
        let ssthresh = cc.ssthresh();
        let sacked = snd.loss().sacked_bytes();
        TcpConnInfo {
            cc: cc.name(),
            cc_phase: cc.phase(),
            ca_state: snd.ca_state(),
            cwnd: cc.cwnd(),
            ssthresh: (ssthresh != usize::MAX).then_some(ssthresh),
            in_flight: snd.bytes_in_flight(),
            snd_wnd: snd.snd_wnd(),
            rcv_wnd: self.rcv.wnd(),
            srtt: rtt.srtt(),
            rttvar: rtt.rttvar(),
            min_rtt: rtt.min_rtt(),
            rto: snd.rto(),
            backoff: rtt.backoff_count(),
            mss: snd.mss(),
            rcv_mss: self.our_mss,
            wscale: self.ws_ok.then_some((snd.snd_wscale(), self.rcv.wscale())),
            sack: self.sack_ok,
            timestamps: snd.timestamps(),
            bytes_sent: sent + snd.retransmitted_bytes(),
            bytes_retrans: snd.retransmitted_bytes(),
            bytes_acked: acked,
            bytes_received: received,
            retrans_segs: snd.retransmitted_segments(),
            lost: snd.rack().lost_segs() as u64,
            sacked,
            sack_holes: snd.loss().scoreboard().map_or(0, |sb| sb.ranges()),
            delivery_rate: snd.rack().last_rate(),
            last_send: snd.rack().last_send().map(|t| now.saturating_since(t)),
            last_recv: now.saturating_since(self.last_rx),
            timers: self.timers(now),
            iss: snd.iss().0,
            irs: self.rcv.irs().0,
            snd_una: snd.snd_una().0,
            snd_nxt: snd.snd_nxt().0,
            rcv_nxt: self.rcv.nxt().0,
        }
    }

    /// The whole snapshot of a connection.
    fn socket_info(&self, now: Instant, id: u64, raw: u32) -> SocketInfo {
        SocketInfo {
            id,
            protocol: Protocol::Tcp,
            state: self.state.name(),
            local: self.local,
            remote: Some(self.remote),
            recv_q: self.recv_q(),
            send_q: self.send_q(),
            pid: None,
            tcp: Some(self.conn_info(now)),
            listen: None,
            time_wait_left: None,
            handle: Some(SocketId::Tcp(raw)),
        }
    }

    /// Listed from the slot table, unless the TIME-WAIT table lists it or
    /// it is over (CLOSED sockets are not shown, as Linux's `ss`).
    fn listed(&self) -> bool {
        !matches!(self.state, TcpState::Closed | TcpState::TimeWait)
    }
}

fn listener_info(l: &Listener, syn_backlog: usize, id: u64, raw: u32) -> SocketInfo {
    let accept = l.accept_queue.len();
    SocketInfo {
        id,
        protocol: Protocol::Tcp,
        state: TcpState::Listen.name(),
        local: l.local,
        remote: None,
        // As Linux's ss: accept queue use and its limit.
        recv_q: accept,
        send_q: l.backlog,
        pid: None,
        tcp: None,
        listen: Some(ListenInfo {
            syn_queue: l.syn_queue_len(),
            syn_queue_max: syn_backlog,
            accept_queue: accept,
            accept_queue_max: l.backlog,
        }),
        time_wait_left: None,
        handle: Some(SocketId::Tcp(raw)),
    }
}

fn time_wait_info(e: &TwEntry, key: &super::timewait::TwKey, now: Instant) -> SocketInfo {
    SocketInfo {
        id: e.id,
        protocol: Protocol::Tcp,
        state: TcpState::TimeWait.name(),
        local: key.0,
        remote: Some(key.1),
        recv_q: 0,
        send_q: 0,
        pid: None,
        tcp: None,
        listen: None,
        time_wait_left: Some(e.expires.saturating_since(now)),
        handle: e.owner.map(SocketId::Tcp),
    }
}

impl TcpLayer {
    /// Appends a snapshot of every TCP socket (listeners, connections,
    /// TIME-WAIT entries) to `out`. Reads only.
    pub fn socket_infos(&self, now: Instant, out: &mut Vec<SocketInfo>) {
        for (idx, slot) in self.slots.iter().enumerate() {
            let raw = self.raw_of(idx);
            match &slot.sock {
                Some(Sock::Listener(l)) => {
                    out.push(listener_info(l, self.config.syn_backlog, slot.id, raw))
                }
                Some(Sock::Conn(t)) if t.listed() => out.push(t.socket_info(now, slot.id, raw)),
                _ => {}
            }
        }
        for (key, e) in self.time_wait.iter() {
            out.push(time_wait_info(e, key, now));
        }
    }

    /// The snapshot of the one TCP connection from `local` to `remote`
    /// (TIME-WAIT included), as `socket_infos` lists it, found by its
    /// 4-tuple in O(1). Reads only.
    pub fn connection_info(
        &self,
        now: Instant,
        local: std::net::SocketAddrV4,
        remote: std::net::SocketAddrV4,
    ) -> Option<SocketInfo> {
        if let Some(&raw) = self.conns.get(&(local, remote)) {
            let idx = self.slot_of(raw)?;
            let Some(Sock::Conn(t)) = &self.slots[idx].sock else {
                return None;
            };
            return Some(t.socket_info(now, self.slots[idx].id, raw));
        }
        let key = (local, remote);
        self.time_wait
            .get(&key)
            .map(|e| time_wait_info(e, &key, now))
    }
}
