//! Segment construction (RFC 9293 3.8.6): the connection's output pass
//! asks its owners what is due (the sender: SYN, data, retransmissions,
//! probes; the receiver: an ACK) and `Wire` builds and writes each
//! segment: ports, timestamps, the receiver's ACK fields and SACK blocks.

use std::net::SocketAddrV4;

use super::frame;
use super::options::OutHdr;
use super::receiver::Receiver;
use super::seq::Seq;
use super::state::TcpState;
use super::tcb::{Env, TS_OVERHEAD, Tcb};
use super::timer::{Timer, TimerTable};
use crate::stack::ip::IpSink;

impl Tcb {
    /// Emits everything due for this connection.
    pub fn output(&mut self, env: &mut Env, ip: &mut dyn IpSink) {
        let synchronized = match self.state {
            TcpState::Closed | TcpState::Listen | TcpState::TimeWait => return,
            TcpState::SynSent | TcpState::SynReceived if self.snd.syn_due() => {
                return self.send_syn(env, ip);
            }
            TcpState::SynSent | TcpState::SynReceived => false,
            _ => true,
        };
        let tsval = self.snd.tsval(env.now);
        let nodelay = self.nodelay();
        let (snd, mut w) = self.wire(env, ip);
        if synchronized {
            snd.output(&mut w, nodelay);
        }
        if w.rcv.ack_owed() {
            w.bare(snd.snd_max(), tsval);
        }
        if synchronized {
            snd.arm_persist(w.env, w.timers);
        }
    }

    /// SYN (SYN-SENT) or SYN,ACK (SYN-RECEIVED) with our options.
    fn send_syn(&mut self, env: &mut Env, ip: &mut dyn IpSink) {
        let active = self.state == TcpState::SynSent;
        let mut hdr = OutHdr {
            src_port: self.local.port(),
            dst_port: self.remote.port(),
            seq: self.snd.iss(),
            syn: true,
            window: self.rcv.syn_window(!active),
            mss: Some(self.our_mss.min(65535) as u16),
            ..OutHdr::default()
        };
        if !active {
            hdr.ack = Some(self.rcv.nxt());
        }
        if env.cfg.window_scaling && (active || self.ws_ok) {
            hdr.wscale = Some(self.rcv.offered_wscale());
        }
        hdr.sack_perm = env.cfg.sack && (active || self.sack_ok);
        if env.cfg.timestamps && (active || self.snd.timestamps()) {
            hdr.ts = Some((
                self.snd.ts_now(env.now),
                if active { 0 } else { self.rcv.ts_recent() },
            ));
        }
        let (snd, mut w) = self.wire(env, ip);
        w.transmit(&hdr, (&[], &[]));
        snd.on_syn_sent(&mut w);
    }

    /// The sender, and a `Wire` over the rest of the connection that its
    /// segments need (split borrows: the sender writes through the wire).
    fn wire<'a, 'e>(
        &'a mut self,
        env: &'a mut Env<'e>,
        ip: &'a mut dyn IpSink,
    ) -> (&'a mut super::sender::Sender, Wire<'a, 'e>) {
        let w = Wire {
            env,
            timers: &mut self.timers,
            ip,
            rcv: &mut self.rcv,
            local: self.local,
            remote: self.remote,
        };
        (&mut self.snd, w)
    }
}

/// Builds and writes the segments of one connection's output pass: what
/// the sender asks for, with the receiver's ACK fields.
pub struct Wire<'a, 'e> {
    pub(super) env: &'a mut Env<'e>,
    /// The connection's timers: the sender arms its own as it sends, and
    /// any segment carrying an ACK stops the delayed-ACK one.
    pub(super) timers: &'a mut TimerTable,
    ip: &'a mut dyn IpSink,
    rcv: &'a mut Receiver,
    local: SocketAddrV4,
    remote: SocketAddrV4,
}

impl Wire<'_, '_> {
    /// Header fields common to every synchronized-state segment.
    fn header(&mut self, seq: Seq, tsval: Option<u32>) -> OutHdr {
        let mut hdr = OutHdr {
            src_port: self.local.port(),
            dst_port: self.remote.port(),
            seq,
            ..OutHdr::default()
        };
        if let Some(v) = tsval {
            hdr.ts = Some((v, 0));
        }
        self.rcv.fill_ack(&mut hdr, self.env.rmem);
        hdr
    }

    /// A data segment (`payload` in two slices of the ring, then FIN if
    /// `fin`) at `seq`, at most `mss` bytes of payload and options beyond
    /// the timestamp. False if IP could not send it.
    pub fn data(
        &mut self,
        seq: Seq,
        payload: (&[u8], &[u8]),
        fin: bool,
        psh: bool,
        tsval: Option<u32>,
        mss: usize,
    ) -> bool {
        let len = payload.0.len() + payload.1.len();
        // The D-SACK block `header` takes and puts first, if any.
        let dsack = self.rcv.pending_dsack();
        let mut hdr = self.header(seq, tsval);
        // SND.MSS leaves room for the timestamp option only: SACK blocks
        // on a full-sized segment made a 1520-byte packet that IP had to
        // fragment (and a lost fragment loses the segment). Drop the
        // blocks that do not fit; a bare ACK carries them after the data.
        let ts = if tsval.is_some() { TS_OVERHEAD } else { 0 };
        let blocks = hdr.sack.len();
        while !hdr.sack.is_empty() && hdr.header_len() + len > 20 + ts + mss {
            hdr.sack.pop();
        }
        hdr.fin = fin;
        hdr.psh = psh;
        let sent = self.transmit(&hdr, payload);
        if hdr.sack.len() < blocks {
            // RFC 2018 4: "SACK options SHOULD be included in all ACKs
            // which do not ACK the highest sequence number in the data
            // receiver's queue". The data's ACK field does not count: a
            // peer that only ever sees it (this side always has full
            // segments to send, as an echo does) learns of nothing it
            // sent past a lost retransmission and waits for its RTO. (Linux
            // makes the data segment smaller instead.)
            self.rcv.owe_ack();
            if let Some((s, e)) = dsack
                && hdr.sack.is_empty()
            {
                self.rcv.note_duplicate(s, e);
            }
        }
        sent
    }

    /// A segment without data: ACK, window update, or probe (`seq`
    /// SND.UNA-1, RFC 9293 3.8.6.1 / 3.8.4).
    pub fn bare(&mut self, seq: Seq, tsval: Option<u32>) {
        let hdr = self.header(seq, tsval);
        self.transmit(&hdr, (&[], &[]));
    }

    /// Writes one segment through the IP layer. Any segment carrying an
    /// ACK satisfies pending (delayed) ACKs.
    fn transmit(&mut self, hdr: &OutHdr, payload: (&[u8], &[u8])) -> bool {
        if hdr.ack.is_some() {
            self.rcv.on_ack_sent();
            self.timers.stop(Timer::DelayedAck);
        }
        let addrs = (*self.local.ip(), *self.remote.ip());
        let ok = frame::send(self.env.cfg, self.env.now, self.ip, addrs, hdr, payload);
        self.env.counters.inc("tcp.segments_sent");
        if !ok {
            self.env.counters.inc("tcp.ip_send_failed");
        }
        ok
    }
}
