//! Connection timers: one typed table of deadlines (`TimerTable`, keyed by
//! `Timer`) and the expiry handlers: retransmission (RFC 6298), tail loss
//! probe and RACK reordering (RFC 8985), delayed ACK (RFC 5681 4.2),
//! persist (RFC 9293 3.8.6.1), keepalive (3.8.4) and the orphaned
//! FIN-WAIT-2 timeout. TIME-WAIT is timed by the layer's compact table
//! (`timewait.rs`): the connection block is gone by then.

use std::io::ErrorKind;

use super::sender::GiveUp;
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
#[derive(Clone, Debug)]
pub struct TimerTable {
    /// `Instant::NEVER` when disarmed: half the size of `Option<Instant>`, in
    /// every connection block. A deadline that saturates at the end of
    /// time is never reached either way.
    at: [Instant; Timer::ALL.len()],
}

impl Default for TimerTable {
    fn default() -> TimerTable {
        TimerTable {
            at: [Instant::NEVER; Timer::ALL.len()],
        }
    }
}

impl TimerTable {
    /// Arms `timer` to fire at `at`, replacing any earlier deadline.
    pub fn set(&mut self, timer: Timer, at: Instant) {
        self.at[timer as usize] = at;
    }

    /// Arms `timer` at `at`, or stops it for `None`.
    pub fn set_opt(&mut self, timer: Timer, at: Option<Instant>) {
        self.at[timer as usize] = at.unwrap_or(Instant::NEVER);
    }

    /// Disarms `timer`.
    pub fn stop(&mut self, timer: Timer) {
        self.at[timer as usize] = Instant::NEVER;
    }

    /// Disarms every timer.
    pub fn stop_all(&mut self) {
        self.at = [Instant::NEVER; Timer::ALL.len()];
    }

    /// `timer`'s deadline, if armed.
    pub fn get(&self, timer: Timer) -> Option<Instant> {
        Some(self.at[timer as usize]).filter(|&t| t != Instant::NEVER)
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
        Some(*self.at.iter().min()?).filter(|&t| t != Instant::NEVER)
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
            Timer::LossProbe => self.snd.on_loss_probe_timer(env),
            Timer::Reorder => {
                if self.state.is_synchronized() {
                    self.snd.on_rack_timer(env, &mut self.timers);
                }
            }
            Timer::DelayedAck => {
                env.counters.inc("tcp.delayed_ack_sent");
                self.rcv.owe_ack();
            }
            Timer::Persist => {
                if self.snd.on_persist_timer(env, self.last_rx).is_err() {
                    self.fail(self.soft_error.unwrap_or(ErrorKind::TimedOut));
                    return false;
                }
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

    /// The retransmission timer: the SYN or the data goes again (RFC
    /// 6298 5.4-5.7), or the connection gives up.
    fn on_rto(&mut self, env: &mut Env) {
        let verdict = match self.state {
            TcpState::SynSent | TcpState::SynReceived => self.snd.on_syn_timeout(env.cfg),
            TcpState::Closed | TcpState::Listen | TcpState::TimeWait => Ok(()),
            _ => self.snd.on_rto(env, &mut self.timers),
        };
        match verdict {
            Ok(()) => {}
            Err(GiveUp::Syn) => {
                env.counters.inc("tcp.syn_timeout");
                if self.parent.is_some() {
                    self.orphaned = true;
                    self.enter_closed();
                } else {
                    self.fail(self.soft_error.unwrap_or(ErrorKind::TimedOut));
                }
            }
            Err(GiveUp::Data) => {
                env.counters.inc("tcp.retransmit_give_up");
                self.fail(self.soft_error.unwrap_or(ErrorKind::TimedOut));
            }
        }
    }

    /// RFC 9293 3.8.4 / RFC 1122 4.2.3.6.
    fn on_keepalive(&mut self, env: &mut Env) {
        let Some((idle, interval, probes)) = self.keepalive() else {
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
        self.snd.probe_peer();
        self.timers.set(Timer::Keepalive, env.now + interval);
    }

    /// Keeps the keepalive deadline armed while it applies.
    pub fn arm_keepalive(&mut self, now: Instant) {
        let applies = matches!(
            self.state,
            TcpState::Established | TcpState::CloseWait | TcpState::FinWait2
        );
        match (self.keepalive(), applies) {
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
