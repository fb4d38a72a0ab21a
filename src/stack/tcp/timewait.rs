//! TIME-WAIT (RFC 9293 3.3.2, 3.10.7.4) in a compact table: a closed
//! connection keeps only what it needs to re-acknowledge a retransmitted
//! FIN, not its buffers. RFC 6191 / Linux: a new SYN with a higher
//! sequence number or a newer timestamp may reuse the pair.

use std::collections::HashMap;
use std::net::SocketAddrV4;

use super::options::{InSeg, OutHdr};
use super::seq::Seq;
use super::tcb::Tcb;
use crate::stack::time::Instant;

/// Bound of the table (Linux tcp_max_tw_buckets is larger; past the bound
/// connections skip TIME-WAIT and a counter goes up).
pub const MAX_TIME_WAIT: usize = 65536;

#[derive(Clone, Debug)]
pub struct TwEntry {
    pub snd_nxt: Seq,
    pub rcv_nxt: Seq,
    pub window: u16,
    /// (TS.Recent, our TSval offset) when timestamps were negotiated.
    pub ts: Option<(u32, u32)>,
    pub expires: Instant,
    /// Raw handle of a socket the application still holds.
    pub owner: Option<u32>,
}

impl TwEntry {
    pub fn from_tcb(tcb: &Tcb, expires: Instant, owner: Option<u32>) -> TwEntry {
        TwEntry {
            snd_nxt: tcb.snd_max,
            rcv_nxt: tcb.rcv.nxt(),
            window: tcb.rcv.last_window_field(),
            ts: tcb.ts_ok.then_some((tcb.rcv.ts_recent(), tcb.ts_offset)),
            expires,
            owner,
        }
    }

    pub fn ack_header(&self, now: Instant, local: SocketAddrV4, remote: SocketAddrV4) -> OutHdr {
        OutHdr {
            src_port: local.port(),
            dst_port: remote.port(),
            seq: self.snd_nxt,
            ack: Some(self.rcv_nxt),
            window: self.window,
            ts: self
                .ts
                .map(|(recent, off)| ((now.total_millis() as u32).wrapping_add(off), recent)),
            ..OutHdr::default()
        }
    }
}

/// What to do with a segment for a TIME-WAIT pair.
#[derive(Debug, PartialEq, Eq)]
pub enum TwVerdict {
    /// Dropped silently.
    Drop,
    /// Answer with an ACK (and maybe restart the timer).
    Ack,
    /// A RST closed it.
    Closed,
    /// A new SYN may reuse the pair: entry removed, hand it to the listener.
    Reuse,
}

pub type TwKey = (SocketAddrV4, SocketAddrV4);

#[derive(Default, Debug)]
pub struct TimeWaitTable {
    pub map: HashMap<TwKey, TwEntry>,
}

impl TimeWaitTable {
    /// RFC 9293 3.10.7.4 in TIME-WAIT.
    pub fn input(
        &mut self,
        key: &TwKey,
        seg: &InSeg,
        now: Instant,
        time_wait: std::time::Duration,
    ) -> TwVerdict {
        let Some(e) = self.map.get_mut(key) else {
            return TwVerdict::Drop;
        };
        if seg.rst {
            if seg.seq == e.rcv_nxt {
                self.map.remove(key);
                return TwVerdict::Closed;
            }
            return TwVerdict::Drop;
        }
        if seg.syn && seg.ack.is_none() {
            // RFC 6191 2: with timestamps on both sides the SYN's TSval
            // decides; one older than TS.Recent is rejected by PAWS (RFC
            // 7323 5.3 R1: ACK and drop), whatever its sequence number, as
            // Linux (tcp_timewait_state_process: paws_reject).
            let ts_age = match (e.ts, seg.ts) {
                (Some((recent, _)), Some((tsval, _))) => tsval.wrapping_sub(recent) as i32,
                _ => 0,
            };
            if ts_age < 0 {
                return TwVerdict::Ack;
            }
            if seg.seq.gt(e.rcv_nxt) || ts_age > 0 {
                self.map.remove(key);
                return TwVerdict::Reuse;
            }
            return TwVerdict::Ack;
        }
        if let (Some((recent, _)), Some((tsval, _))) = (e.ts, seg.ts)
            && (tsval.wrapping_sub(recent) as i32) < 0
        {
            return TwVerdict::Ack; // PAWS (RFC 7323 5.3)
        }
        if !seg.fin && seg.payload.is_empty() && seg.seq == e.rcv_nxt {
            return TwVerdict::Drop; // an in-window pure ACK needs no answer
        }
        if seg.fin {
            // A retransmitted FIN: ACK it and restart the 2 MSL timeout.
            e.expires = now + time_wait;
        }
        TwVerdict::Ack
    }
}
