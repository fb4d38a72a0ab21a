//! Connection timers: retransmission (RFC 6298), delayed ACK (RFC 5681
//! 4.2), persist (RFC 9293 3.8.6.1), keepalive (3.8.4) and the orphaned
//! FIN-WAIT-2 timeout.

use std::io::ErrorKind;

use super::state::TcpState;
use super::tcb::{Env, Tcb};
use crate::stack::time::Instant;

fn due(t: Option<Instant>, now: Instant) -> bool {
    t.is_some_and(|t| t <= now)
}

impl Tcb {
    /// Runs every timer that has expired at `env.now`.
    pub fn on_timers(&mut self, env: &mut Env) {
        let now = env.now;
        if due(self.rtx_at, now) {
            self.rtx_at = None;
            self.on_rto(env);
        }
        if due(self.tlp_at, now) {
            self.tlp_at = None;
            let allowed = self.recovery.is_none() || self.rack_ok;
            if allowed && self.snd_max != self.snd_una && !self.tlp_used {
                env.counters.inc("tcp.tlp_probe");
                self.tlp_used = true;
                self.tlp_now = true;
            }
        }
        if due(self.rack.timer, now) {
            self.rack.timer = None;
            if self.rack_ok && self.state.is_synchronized() {
                self.on_rack_timer(env);
            }
        }
        if due(self.delack_at, now) {
            self.delack_at = None;
            env.counters.inc("tcp.delayed_ack_sent");
            self.ack_now = true;
        }
        if due(self.persist_at, now) {
            self.persist_at = None;
            if self.snd_wnd == 0 {
                self.persist_backoff += 1;
                if !self.zero_window_probe(env) {
                    return;
                }
            } else {
                // SWS override timeout (3.8.6.2.1): send what fits.
                self.force_send = true;
            }
        }
        if due(self.ka_at, now) {
            self.ka_at = None;
            self.on_keepalive(env);
        }
        if due(self.linger_at, now) {
            self.linger_at = None;
            if self.state == TcpState::FinWait2 {
                env.counters.inc("tcp.fin_wait2_timeout");
                self.enter_closed();
            }
        }
        self.arm_keepalive(now);
    }

    fn on_rto(&mut self, env: &mut Env) {
        match self.state {
            TcpState::SynSent | TcpState::SynReceived => {
                self.retries += 1;
                if self.retries > env.cfg.syn_retries {
                    env.counters.inc("tcp.syn_timeout");
                    if self.parent.is_some() {
                        self.orphaned = true;
                        self.enter_closed();
                    } else {
                        self.fail(self.soft_error.unwrap_or(ErrorKind::TimedOut));
                    }
                    return;
                }
                self.rtt.backoff();
                self.timed = None;
                self.snd_nxt = self.iss;
            }
            TcpState::Closed | TcpState::Listen | TcpState::TimeWait => {}
            _ => {
                if self.snd_max == self.snd_una {
                    return;
                }
                self.retries += 1;
                if self.retries > env.cfg.max_retries {
                    env.counters.inc("tcp.retransmit_give_up");
                    self.fail(self.soft_error.unwrap_or(ErrorKind::TimedOut));
                    return;
                }
                self.on_rto_data(env);
            }
        }
    }

    /// A zero-window probe is due. RFC 1122 4.2.2.17: probing goes on as
    /// long as the peer answers, however long its window stays shut. A
    /// peer that has gone silent would hold the connection forever, so as
    /// Linux does (tcp_probe_timer) it fails after `max_retries` probes in
    /// a row got no segment back. False when the connection failed.
    fn zero_window_probe(&mut self, env: &mut Env) -> bool {
        let answered = self.probe_sent_at.is_none_or(|t| self.last_rx >= t);
        self.probes_unanswered = if answered {
            0
        } else {
            self.probes_unanswered + 1
        };
        if self.probes_unanswered >= env.cfg.max_retries {
            env.counters.inc("tcp.persist_give_up");
            self.fail(self.soft_error.unwrap_or(ErrorKind::TimedOut));
            return false;
        }
        self.probe_sent_at = Some(env.now);
        self.probe_now = true;
        true
    }

    /// RFC 9293 3.8.4 / RFC 1122 4.2.3.6.
    fn on_keepalive(&mut self, env: &mut Env) {
        let Some((idle, interval, probes)) = self.opts.keepalive else {
            return;
        };
        if env.now - self.last_rx < idle {
            return;
        }
        if self.ka_probes >= probes {
            env.counters.inc("tcp.keepalive_timeout");
            self.fail(ErrorKind::TimedOut);
            return;
        }
        self.ka_probes += 1;
        env.counters.inc("tcp.keepalive_probe");
        self.probe_now = true;
        self.ka_at = Some(env.now + interval);
    }

    /// Keeps the keepalive deadline armed while it applies.
    pub fn arm_keepalive(&mut self, now: Instant) {
        let applies = matches!(
            self.state,
            TcpState::Established | TcpState::CloseWait | TcpState::FinWait2
        );
        match (self.opts.keepalive, applies) {
            (Some((idle, _, _)), true) => {
                if self.ka_at.is_none() || self.ka_probes == 0 {
                    let at = self.last_rx + idle;
                    self.ka_at = Some(if at > now { at } else { now });
                }
            }
            _ => self.ka_at = None,
        }
    }
}
