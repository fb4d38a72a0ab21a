//! Connection timers: one typed table of deadlines (`TimerTable`, keyed by
//! `Timer`) and the expiry handlers: retransmission (RFC 6298), tail loss
//! probe and RACK reordering (RFC 8985), delayed ACK (RFC 5681 4.2),
//! persist (RFC 9293 3.8.6.1), keepalive (3.8.4) and the orphaned
//! FIN-WAIT-2 timeout. TIME-WAIT is timed by the layer's compact table
//! (`timewait.rs`): the connection block is gone by then.

use std::io::ErrorKind;

use super::output::Owed;
use super::state::TcpState;
use super::tcb::{Env, Tcb};
use crate::stack::time::Instant;

/// The timers of one connection.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Timer {
    /// RFC 6298 retransmission timeout.
    Retransmit,
    /// RFC 8985 7.2 probe timeout (tail loss probe).
    LossProbe,
    /// RFC 8985 6.3 RACK reordering timer.
    Reorder,
    /// RFC 5681 4.2 / RFC 9293 3.8.6.3 delayed ACK.
    DelayedAck,
    /// RFC 9293 3.8.6.1 zero-window probe, or the 3.8.6.2.1 SWS override.
    Persist,
    /// RFC 9293 3.8.4 / RFC 1122 4.2.3.6 keepalive.
    Keepalive,
    /// Orphaned FIN-WAIT-2 timeout (Linux tcp_fin_timeout).
    FinWait2,
}

impl Timer {
    /// Every timer, in the order expiries are handled at one instant.
    pub const ALL: [Timer; 7] = [
        Timer::Retransmit,
        Timer::LossProbe,
        Timer::Reorder,
        Timer::DelayedAck,
        Timer::Persist,
        Timer::Keepalive,
        Timer::FinWait2,
    ];
}

/// One deadline per `Timer` (as quinn-proto's `TimerTable`).
#[derive(Clone, Debug, Default)]
pub struct TimerTable {
    at: [Option<Instant>; Timer::ALL.len()],
}

impl TimerTable {
    /// Arms `timer` to fire at `at`, replacing any earlier deadline.
    pub fn set(&mut self, timer: Timer, at: Instant) {
        self.at[timer as usize] = Some(at);
    }

    /// Arms `timer` at `at`, or stops it for `None`.
    pub fn set_opt(&mut self, timer: Timer, at: Option<Instant>) {
        self.at[timer as usize] = at;
    }

    /// Disarms `timer`.
    pub fn stop(&mut self, timer: Timer) {
        self.at[timer as usize] = None;
    }

    /// Disarms every timer.
    pub fn stop_all(&mut self) {
        self.at = Default::default();
    }

    /// `timer`'s deadline, if armed.
    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.at[timer as usize]
    }

    /// Whether `timer` is armed.
    pub fn is_armed(&self, timer: Timer) -> bool {
        self.get(timer).is_some()
    }

    /// Disarms `timer` and says whether it had expired at `now`.
    fn take_expired(&mut self, timer: Timer, now: Instant) -> bool {
        let due = self.get(timer).is_some_and(|t| t <= now);
        if due {
            self.stop(timer);
        }
        due
    }

    /// The earliest armed deadline.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.at.iter().flatten().min().copied()
    }
}

impl Tcb {
    /// Runs every timer that has expired at `env.now`, in `Timer::ALL`
    /// order; a connection that fails stops there.
    pub fn on_timers(&mut self, env: &mut Env) {
        for timer in Timer::ALL {
            if self.timers.take_expired(timer, env.now) && !self.on_timer(env, timer) {
                return;
            }
        }
        self.arm_keepalive(env.now);
    }

    /// One expired timer. False when the connection failed and the
    /// timers after it must not run.
    fn on_timer(&mut self, env: &mut Env, timer: Timer) -> bool {
        match timer {
            Timer::Retransmit => self.on_rto(env),
            Timer::LossProbe => {
                let allowed = self.recovery.is_none() || self.loss.is_rack();
                if allowed && self.snd_max != self.snd_una && !self.tlp_used {
                    env.counters.inc("tcp.tlp_probe");
                    self.tlp_used = true;
                    self.owe(Owed::LossProbe);
                }
            }
            Timer::Reorder => {
                if self.loss.is_rack() && self.state.is_synchronized() {
                    self.on_rack_timer(env);
                }
            }
            Timer::DelayedAck => {
                env.counters.inc("tcp.delayed_ack_sent");
                self.owe(Owed::Ack);
            }
            Timer::Persist => {
                if self.snd_wnd == 0 {
                    self.persist_backoff += 1;
                    return self.zero_window_probe(env);
                }
                // SWS override timeout (3.8.6.2.1): send what fits.
                self.owe(Owed::SwsOverride);
            }
            Timer::Keepalive => self.on_keepalive(env),
            Timer::FinWait2 => {
                if self.state == TcpState::FinWait2 {
                    env.counters.inc("tcp.fin_wait2_timeout");
                    self.enter_closed();
                }
            }
        }
        true
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
        self.owe(Owed::WindowProbe);
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
        self.owe(Owed::WindowProbe);
        self.timers.set(Timer::Keepalive, env.now + interval);
    }

    /// Keeps the keepalive deadline armed while it applies.
    pub fn arm_keepalive(&mut self, now: Instant) {
        let applies = matches!(
            self.state,
            TcpState::Established | TcpState::CloseWait | TcpState::FinWait2
        );
        match (self.opts.keepalive, applies) {
            (Some((idle, _, _)), true) => {
                if !self.timers.is_armed(Timer::Keepalive) || self.ka_probes == 0 {
                    let at = self.last_rx + idle;
                    self.timers.set(Timer::Keepalive, at.max(now));
                }
            }
            _ => self.timers.stop(Timer::Keepalive),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    #[test]
    fn table_keeps_one_deadline_per_timer() {
        let mut t = TimerTable::default();
        assert_eq!(t.next_expiry(), None);
        t.set(Timer::Keepalive, at(50));
        t.set(Timer::Retransmit, at(30));
        t.set(Timer::DelayedAck, at(40));
        assert_eq!(t.next_expiry(), Some(at(30)));
        // Setting again replaces, even with a later deadline.
        t.set(Timer::Retransmit, at(60));
        assert_eq!(t.get(Timer::Retransmit), Some(at(60)));
        assert_eq!(t.next_expiry(), Some(at(40)));
        t.stop(Timer::DelayedAck);
        assert!(!t.is_armed(Timer::DelayedAck));
        assert_eq!(t.next_expiry(), Some(at(50)));
        t.set_opt(Timer::Reorder, Some(at(10)));
        assert_eq!(t.next_expiry(), Some(at(10)));
        t.set_opt(Timer::Reorder, None);
        assert_eq!(t.next_expiry(), Some(at(50)));
        // Each key is its own slot.
        for (i, k) in Timer::ALL.into_iter().enumerate() {
            t.set(k, at(100 + i as u64));
        }
        for (i, k) in Timer::ALL.into_iter().enumerate() {
            assert_eq!(t.get(k), Some(at(100 + i as u64)), "{k:?}");
        }
        t.stop_all();
        assert_eq!(t.next_expiry(), None);
    }

    #[test]
    fn take_expired_fires_once_and_only_when_due() {
        let mut t = TimerTable::default();
        t.set(Timer::Persist, at(20));
        assert!(!t.take_expired(Timer::Persist, at(19)));
        assert!(t.is_armed(Timer::Persist));
        assert!(t.take_expired(Timer::Persist, at(20)));
        assert!(!t.is_armed(Timer::Persist));
        assert!(!t.take_expired(Timer::Persist, at(30)));
        assert!(!t.take_expired(Timer::FinWait2, at(30)));
    }
}
