//! The receiving half of a connection (RFC 9293 3.3.1 receive sequence
//! space): RCV.NXT and the window we advertise, the receive ring and the
//! out-of-order assembler, the peer's FIN, TS.Recent (RFC 7323 4.3),
//! the D-SACK and SACK blocks we report (RFC 2883, RFC 2018) and the
//! delayed-ACK count (RFC 5681 4.2). The delayed-ACK deadline itself is
//! in the connection's timer table: `Receiver` says when an ACK is due.

use std::time::Duration;

use super::assembler::Assembler;
use super::buffer::{BufferPool, RingBuffer};
use super::options::OutHdr;
use super::rmem::RcvMem;
use super::sack::DsackReport;
use super::seq::Seq;
use crate::stack::time::Instant;

/// Largest receive ring `grow_if_limited` makes: Linux's default
/// tcp_rmem maximum (6 MiB). The window scale we offer is the one this
/// needs (shift 7), as Linux picks it from tcp_rmem[2], so that the ring
/// can grow after the handshake.
pub const MAX_RX_BUFFER: usize = 6 << 20;

/// Unit in which receive storage is charged to the layer's account
/// (Linux's SK_MEM_QUANTUM: a page).
const MEM_QUANTUM: usize = 4096;

/// Bound of out-of-order ranges kept per connection.
pub const MAX_OOO_RANGES: usize = 32;

/// RFC 7323 5.5: a TS.Recent idle this long is no longer trusted.
const TS_RECENT_MAX_IDLE: Duration = Duration::from_secs(24 * 86400);

/// RFC 5961 7 ACK throttling per connection: at most one challenge ACK or
/// out-of-window duplicate ACK this often (Linux's
/// net.ipv4.tcp_invalid_ratelimit default, HZ/2).
const INVALID_RATELIMIT: Duration = Duration::from_millis(500);

/// When the ACK for what just arrived is to be sent.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum AckDue {
    /// At once (out-of-order data, a filled hole, a second full segment,
    /// a FIN, a full buffer).
    Now,
    /// Within the delayed-ACK timeout (RFC 5681 4.2).
    Delayed,
}

/// What in-window data did.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    /// When to acknowledge it.
    pub ack: AckDue,
    /// RCV.NXT moved: the application has more to read.
    pub readable: bool,
    /// A FIN held beyond a hole is now in order, at this sequence number.
    pub fin_in_order: Option<Seq>,
    /// Part of it did not fit in the buffer.
    pub buffer_full: bool,
    /// It was out of order.
    pub out_of_order: bool,
    /// The assembler's range bound dropped it.
    pub too_many_holes: bool,
}

/// What a FIN at a given sequence number did (3.10.7.4 eighth check).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum FinArrival {
    /// Beyond a hole: held until RCV.NXT reaches it (or a duplicate below).
    NotInOrder,
    /// Already received once.
    Duplicate,
    /// The stream's end: RCV.NXT advanced past it.
    Accepted,
}

/// The receive side of one connection.
#[derive(Debug)]
pub struct Receiver {
    irs: Seq,
    nxt: Seq,
    /// Right edge of the window we last advertised (never moves left).
    adv: Seq,
    ring: RingBuffer,
    ooo: Assembler,
    /// D-SACK to report (RFC 2883), from duplicates seen on arrival.
    dsack: DsackReport,
    fin_received: bool,
    /// A FIN seen beyond a hole, applied when RCV.NXT reaches it.
    ooo_fin: Option<Seq>,
    /// shutdown(Read): later data is acknowledged and discarded.
    read_closed: bool,
    /// Our window shift (RFC 7323 2.2); 0 unless negotiated.
    wscale: u8,
    /// SACK-permitted was exchanged: we report blocks (RFC 2018).
    sack: bool,
    /// Our MSS, the unit of receiver SWS avoidance and ACK counting.
    mss: usize,
    ts_recent: u32,
    ts_recent_at: Instant,
    /// Last.ACK.sent (RFC 7323 4.3).
    last_ack_sent: Seq,
    /// Full-sized segments received since the last ACK we sent.
    unacked_segs: u32,
    /// An ACK is to go on the next output pass (any segment carrying one
    /// pays it): out-of-order or duplicate data, a FIN, the delayed-ACK
    /// timer, a window update, an unacceptable segment.
    ack_owed: bool,
    /// When the last throttled ACK (challenge or out-of-window) was let out.
    last_oow_ack: Option<Instant>,
    /// The peer's data came within a quarter of the window of the right
    /// edge we offered: our window held it back (`grow_if_limited`).
    window_limited: bool,
    /// The ring may grow (the application did not set its size).
    autotune: bool,
    /// The window (bytes) our last ACK offered; 0 before the first.
    offered: usize,
}

impl Receiver {
    /// A receiver with a `capacity`-byte ring, before the peer's SYN.
    pub fn new(capacity: usize, mss: usize, now: Instant) -> Receiver {
        Receiver {
            irs: Seq(0),
            nxt: Seq(0),
            adv: Seq(0),
            ring: RingBuffer::new(capacity),
            ooo: Assembler::new(MAX_OOO_RANGES),
            dsack: DsackReport::default(),
            fin_received: false,
            ooo_fin: None,
            read_closed: false,
            wscale: 0,
            sack: false,
            mss,
            ts_recent: 0,
            ts_recent_at: now,
            last_ack_sent: Seq(0),
            unacked_segs: 0,
            ack_owed: false,
            last_oow_ack: None,
            window_limited: false,
            autotune: true,
            offered: 0,
        }
    }

    /// RFC 7323 2.3: the shift that makes a receive buffer of
    /// `capacity` bytes fit in the 16-bit window field.
    fn wscale_for(capacity: usize) -> u8 {
        let mut shift = 0u8;
        while shift < 14 && (capacity >> shift) > 65535 {
            shift += 1;
        }
        shift
    }

    /// The shift our SYN offers for a ring of `capacity` bytes that may
    /// grow (`grow_if_limited`): the one for the most it may grow to, as
    /// Linux picks it from tcp_rmem[2] (RFC 7323 2.3).
    pub fn wscale_for_growing(capacity: usize) -> u8 {
        Receiver::wscale_for(capacity.max(MAX_RX_BUFFER))
    }

    /// The shift our SYN offers (see `wscale_for_growing`). A ring the
    /// application sized keeps the shift for its own size.
    pub fn offered_wscale(&self) -> u8 {
        if self.autotune {
            Receiver::wscale_for_growing(self.ring.capacity())
        } else {
            Receiver::wscale_for(self.ring.capacity())
        }
    }

    // ---- negotiation

    /// The peer's SYN carried sequence number `irs`.
    pub fn synchronize(&mut self, irs: Seq) {
        self.irs = irs;
        self.nxt = irs + 1;
        self.adv = self.nxt;
    }

    /// Options from the peer's SYN: window scaling (our shift, if both
    /// sides scale), SACK, and the SYN's TSval as TS.Recent.
    pub fn negotiate(&mut self, scale: bool, sack: bool, tsval: Option<u32>, now: Instant) {
        self.wscale = if scale { self.offered_wscale() } else { 0 };
        self.sack = sack;
        if let Some(v) = tsval {
            self.ts_recent = v;
            self.ts_recent_at = now;
        }
    }

    /// The peer's initial sequence number.
    pub fn irs(&self) -> Seq {
        self.irs
    }

    /// RCV.NXT.
    pub fn nxt(&self) -> Seq {
        self.nxt
    }

    /// Our window shift.
    pub fn wscale(&self) -> u8 {
        self.wscale
    }

    /// TS.Recent (RFC 7323 4.3).
    pub fn ts_recent(&self) -> u32 {
        self.ts_recent
    }

    // ---- the application's side

    /// Bytes the application may read.
    pub fn readable_len(&self) -> usize {
        self.ring.len()
    }

    /// Ring capacity.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.ring.capacity()
    }

    /// Takes ring storage from `pool` unless the ring has some (before
    /// data is stored: idle connections hold none). Storage is charged to
    /// the layer's account as data fills it (`charged`), not here.
    pub fn provide(&mut self, pool: &mut BufferPool) {
        self.ring.provide(pool);
    }

    /// Gives the ring's storage back to `pool` if it holds no byte (not
    /// even a parked out-of-order one).
    /// (An empty ring is charged nothing, so the account does not move.)
    pub fn release_if_idle(&mut self, pool: &mut BufferPool) {
        self.ring.release_if_idle(pool);
    }

    /// Gives the ring's storage back to `pool` (the connection is going away).
    pub fn release(&mut self, pool: &mut BufferPool, mem: &mut RcvMem) {
        self.charging(mem, |r| r.ring.release(pool));
    }

    /// Bytes of storage the ring and the out-of-order ranges hold now.
    pub fn storage_bytes(&self) -> usize {
        self.ring.storage_bytes() + self.ooo.storage_bytes()
    }

    /// What the ring is charged in the layer's account: the extent of the
    /// data it holds (in order, and out of order up to the furthest parked
    /// byte: the holes' storage is set aside too), in whole pages as
    /// Linux charges socket memory (SK_MEM_QUANTUM), at most the ring.
    pub fn charged(&self) -> usize {
        Self::charge_for(self.ring.extent(), self.ring.capacity())
    }

    fn charge_for(extent: usize, capacity: usize) -> usize {
        extent
            .div_ceil(MEM_QUANTUM)
            .saturating_mul(MEM_QUANTUM)
            .min(capacity)
    }

    /// Runs `op`, then brings `mem` by the change in `charged`: every
    /// operation that changes what the ring holds goes through here.
    fn charging<R>(&mut self, mem: &mut RcvMem, op: impl FnOnce(&mut Self) -> R) -> R {
        let before = self.charged();
        let r = op(self);
        let now = self.charged();
        if now > before {
            mem.add(now - before);
        } else {
            mem.uncharge(before - now);
        }
        r
    }

    /// Whether `len` bytes at `seq` would be stored within the layer's
    /// hard limit: in pages this ring is already charged, or in new ones
    /// `mem` admits (Linux's tcp_try_rmem_schedule). Bytes the ring has
    /// no room for need nothing.
    pub fn admits(&self, seq: Seq, len: usize, mem: &RcvMem) -> bool {
        let offset = seq.distance_from(self.nxt);
        if offset >= self.ring.free() {
            return true;
        }
        // In-order data onto an empty queue is always taken (Linux's
        // tcp_data_queue, sk_forced_mem_schedule): an application waiting
        // on this connection must progress whatever other connections
        // hold. The account passes `high` by at most that segment per
        // connection whose application has read everything.
        if offset == 0 && self.ring.is_empty() {
            return true;
        }
        let cap = self.ring.capacity();
        let end = (self.ring.len() + offset).saturating_add(len);
        let need = Self::charge_for(self.ring.extent().max(end), cap) - self.charged();
        need == 0 || mem.admits(need)
    }

    /// Bytes past RCV.NXT that `admits` would take: the pages the ring is
    /// charged for and the whole pages `mem` has left; at least a page
    /// while the queue is empty, whose next segment is taken anyway, so a
    /// window closed at the hard limit reopens once the application has
    /// read everything.
    fn admissible(&self, mem: &RcvMem) -> usize {
        let reach = self.charged() + mem.headroom() / MEM_QUANTUM * MEM_QUANTUM;
        let reach = reach.saturating_sub(self.ring.len());
        if self.ring.is_empty() {
            reach.max(MEM_QUANTUM)
        } else {
            reach
        }
    }

    /// Resizes the empty ring (before the handshake, so it holds no
    /// storage and the account is untouched). A size the
    /// application chose is kept (no `grow_if_limited`), as Linux stops
    /// tuning a buffer set with SO_RCVBUF.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.ring.set_capacity(capacity);
        self.autotune = false;
    }

    /// Receive-buffer tuning, in the spirit of Linux's
    /// tcp_rcv_space_adjust (which doubles the buffer when the
    /// application reads more per RTT than it holds): when the peer was
    /// held at our window's right edge and the application has read
    /// everything, the ring doubles, up to the largest window our
    /// scale can offer (RFC 7323 2.3). An empty ring holds no storage
    /// (it was just given back), so nothing is copied. A bulk sender
    /// over the TAP otherwise sits at 256 KiB minus one unread
    /// super-frame in flight. Not under memory pressure (Linux's
    /// tcp_rcv_space_adjust stops there too). Returns whether it grew.
    pub fn grow_if_limited(&mut self, mem: &RcvMem) -> bool {
        let max = (65535usize << self.wscale).min(MAX_RX_BUFFER);
        let cap = self.ring.capacity();
        if !self.autotune || !self.window_limited || self.ring.storage_bytes() != 0 {
            return false;
        }
        if mem.under_pressure() {
            // Still limited: it grows once the pressure ends.
            return false;
        }
        self.window_limited = false;
        if cap >= max {
            return false;
        }
        self.ring.set_capacity(cap.saturating_mul(2).min(max));
        true
    }

    /// Data received and not read, in order or not.
    pub fn has_unread(&self) -> bool {
        !self.ring.is_empty() || !self.ooo.is_empty()
    }

    /// RECEIVE: moves data to `buf`; the pages it emptied go back to `mem`.
    pub fn read(&mut self, buf: &mut [u8], mem: &mut RcvMem) -> usize {
        self.charging(mem, |r| r.ring.dequeue(buf))
    }

    /// Copies data to `buf` without consuming it.
    pub fn peek(&self, buf: &mut [u8]) -> usize {
        self.ring.peek(0, buf)
    }

    /// shutdown(Read): out-of-order data beyond RCV.NXT is dropped; once
    /// a hole fills, what follows is acknowledged and discarded.
    pub fn shutdown_read(&mut self) {
        self.read_closed = true;
        self.ooo.clear();
    }

    /// Whether the application shut reading down.
    pub fn read_closed(&self) -> bool {
        self.read_closed
    }

    /// Whether the peer's FIN arrived (in order).
    pub fn fin_received(&self) -> bool {
        self.fin_received
    }

    // ---- the window

    /// What we have told the peer it may send beyond RCV.NXT.
    pub fn wnd(&self) -> usize {
        self.adv.distance_from(self.nxt)
    }

    /// The window field of a SYN,ACK (never scaled, RFC 7323 2.2); the
    /// right edge it offers is remembered.
    pub fn syn_window(&mut self, ack: bool) -> u16 {
        let window = self.ring.capacity().min(65535);
        if ack {
            self.adv = self.adv.max(self.nxt + window);
            self.offered = window;
        }
        window as u16
    }

    /// The window the next segment would offer (before scaling): the free
    /// space once it has grown by enough past what we offer now (receiver
    /// SWS avoidance, RFC 9293 3.8.6.2.2), else what we offer now. A
    /// window never offers storage the layer's account would refuse
    /// (`admissible`): at the hard limit the right edge stops (RFC 9293
    /// 3.8.6: it never moves left), as Linux clamps the window under
    /// memory pressure, so a well-behaved peer does not send what would
    /// be dropped.
    fn window_now(&self, mem: &RcvMem) -> usize {
        let cur = self.wnd();
        // What the scaled field can say without offering more than the
        // ring holds: a window below a segment once scaled would only
        // send the peer into persist (RFC 7323 2.3).
        let unit = 1usize << self.wscale;
        let space = self
            .ring
            .free()
            .min(self.admissible(mem))
            .min(65535usize << self.wscale)
            / unit
            * unit;
        let threshold = (self.ring.capacity() / 2).min(self.mss).max(1);
        if space > cur && space - cur >= threshold {
            space
        } else {
            cur
        }
    }

    /// The window field for the next segment, applying receiver SWS
    /// avoidance (RFC 9293 3.8.6.2.2) and never moving the right edge
    /// left by a unit of the field or more (3.8.6, RFC 7323 2.4). Updates
    /// RCV.ADV.
    pub fn advertise_window(&mut self, mem: &RcvMem) -> u16 {
        let ws = self.wscale;
        let cur = self.wnd();
        let wnd = self.window_now(mem);
        // The current window rounded up to the field's unit keeps its
        // right edge from moving left (RFC 9293 3.8.6); but where that
        // would offer bytes the ring cannot hold, it is rounded down, a
        // retraction of less than one unit that RFC 7323 2.4 (Appendix F)
        // allows. (Rounding up every time let a stream of small segments
        // creep the edge up to a unit per ACK past the ring's end.)
        let up = cur.div_ceil(1 << ws);
        let keep = if up << ws <= self.ring.free() {
            up
        } else {
            cur >> ws
        };
        let field = (wnd >> ws).max(keep).min(65535);
        let edge = self.nxt + (field << ws);
        self.adv = self.adv.max(edge);
        self.offered = field << ws;
        field as u16
    }

    /// The window field a TIME-WAIT ACK repeats: rounded up, so the right
    /// edge never moves left (RFC 9293 3.8.6, RFC 7323 2.4). (The live
    /// path rounds down where the ring could not hold the rounding; a
    /// TIME-WAIT ACK takes no data.)
    pub fn last_window_field(&self) -> u16 {
        self.wnd().div_ceil(1 << self.wscale).min(65535) as u16
    }

    /// Whether the application's read is the moment to send an ACK, as
    /// Linux's tcp_cleanup_rbuf decides: a delayed ACK for more than a
    /// full segment is pending, or the window had fallen to half the
    /// buffer or less and would now at least double (receiver SWS
    /// avoidance, RFC 9293 3.8.6.2.2, decides whether it may grow at
    /// all). Announcing every two segments' worth of freed space instead
    /// cost a second ACK per 64 KB super-frame in a bulk receive: the
    /// ACK sent on its arrival already offers all but that frame.
    pub fn ack_on_read(&self, mem: &RcvMem) -> bool {
        if self.nxt.distance_from(self.last_ack_sent) > self.mss {
            return true;
        }
        let cur = self.wnd();
        let clamp = self.ring.capacity().min(65535usize << self.wscale);
        if 2 * cur > clamp {
            return false;
        }
        let new = self.window_now(mem);
        new > cur && new >= 2 * cur
    }

    // ---- timestamps (RFC 7323)

    /// RFC 7323 5.3 R1: PAWS rejects a segment whose TSval is older than
    /// TS.Recent, unless TS.Recent is over 24 days old (5.5).
    pub fn paws_rejects(&self, tsval: u32, now: Instant) -> bool {
        (tsval.wrapping_sub(self.ts_recent) as i32) < 0
            && now - self.ts_recent_at <= TS_RECENT_MAX_IDLE
    }

    /// RFC 7323 4.3 (3): a segment covering Last.ACK.sent (`seq` at or
    /// below it) updates TS.Recent to its TSval.
    pub fn update_ts_recent(&mut self, seq: Seq, tsval: u32, at: Instant) {
        if seq.le(self.last_ack_sent) && (tsval.wrapping_sub(self.ts_recent) as i32) >= 0 {
            self.ts_recent = tsval;
            self.ts_recent_at = at;
        }
    }

    /// Whether a challenge ACK or an ACK for an out-of-window segment
    /// without data may go now (then it counts as sent): one per
    /// `INVALID_RATELIMIT` per connection, so that a peer (or an
    /// off-path attacker) cannot make us ACK at its rate, and no
    /// connection's limit shows in another's answers (Linux
    /// __tcp_oow_rate_limited).
    pub fn throttled_ack_allowed(&mut self, now: Instant) -> bool {
        if self
            .last_oow_ack
            .is_some_and(|t| now - t < INVALID_RATELIMIT)
        {
            return false;
        }
        self.last_oow_ack = Some(now);
        true
    }

    // ---- arrival

    /// RFC 2883: with SACK, a duplicate segment is reported in the next
    /// ACK's first SACK block (Linux tcp_dsack_set).
    pub fn note_duplicate(&mut self, start: Seq, end: Seq) {
        if self.sack {
            self.dsack.note(start, end);
        }
    }

    /// The D-SACK block the next ACK will carry first, if any.
    pub fn pending_dsack(&self) -> Option<(Seq, Seq)> {
        self.dsack.peek()
    }

    /// Stores in-window data at `seq` (in order or not), charging `mem`
    /// for the pages it fills (`admits` said whether it may).
    pub fn receive_data(&mut self, seq: Seq, data: &[u8], mem: &mut RcvMem) -> Delivered {
        self.charging(mem, |r| r.store(seq, data))
    }

    /// Data up to `end` arrived: if less than a quarter of the window our
    /// last ACK offered (or a segment) is left beyond it, the sender had
    /// used up most of it, and the window may grow. (Linux's sender stops
    /// short of the edge: whole segments only, and TSO deferral waits for
    /// room for a larger super-frame.)
    fn note_window_use(&mut self, end: Seq) {
        let left = if end.lt(self.adv) {
            self.adv.distance_from(end)
        } else {
            0
        };
        if self.offered > 0 && left < (self.offered / 4).max(self.mss) {
            self.window_limited = true;
        }
    }

    fn store(&mut self, seq: Seq, data: &[u8]) -> Delivered {
        let mut d = Delivered {
            ack: AckDue::Now,
            readable: false,
            fin_in_order: None,
            buffer_full: false,
            out_of_order: false,
            too_many_holes: false,
        };
        let offset = seq.distance_from(self.nxt);
        let had_holes = !self.ooo.is_empty();
        if self.read_closed {
            // shutdown(Read): acknowledge and discard in-order data.
            if offset == 0 && self.ooo.is_empty() {
                self.nxt += data.len();
                d.ack = self.count_segment();
            }
            return d;
        }
        let written = self.ring.write_at(offset, data);
        d.buffer_full = written < data.len();
        if written == 0 {
            return d;
        }
        self.note_window_use(seq + written);
        let held = self
            .ooo
            .iter()
            .map(|(s, e)| (s.max(offset), e.min(offset + written)))
            .find(|(s, e)| s < e);
        if let Some((s, e)) = held {
            // RFC 2883 4.1.3: out-of-order data we already hold.
            self.note_duplicate(self.nxt + s, self.nxt + e);
        }
        // In order with no hole held: the assembler is not involved (its
        // storage is allocated only while out-of-order data is held).
        let advanced = if offset == 0 && self.ooo.is_empty() {
            written
        } else {
            if self.ooo.add(offset, written).is_err() {
                d.too_many_holes = true;
                return d;
            }
            self.ooo.remove_front()
        };
        if advanced > 0 {
            self.ring.commit(advanced);
            self.nxt += advanced;
            d.readable = true;
        }
        if offset > 0 {
            // RFC 5681 4.2: out-of-order data → immediate duplicate ACK.
            d.out_of_order = true;
        } else if !had_holes {
            // RFC 1122 4.2.3.2 / RFC 5681 4.2: an ACK at least every second
            // full-sized segment. A TSO super-segment (TAP offload) counts
            // as the segments it carries, so one of 2+ MSS is ACKed at once.
            // (A segment that filled (part of) a hole is ACKed at once.)
            let carried = data.len().div_ceil(self.mss.max(1));
            self.unacked_segs += carried.saturating_sub(1).min(2) as u32;
            d.ack = self.count_segment();
        }
        if self.ooo_fin == Some(self.nxt) {
            self.ooo_fin = None;
            d.fin_in_order = Some(self.nxt);
        }
        d
    }

    /// RFC 5681 4.2 / RFC 9293 3.8.6.3: ACK every second segment, else
    /// within the delayed-ACK timeout.
    fn count_segment(&mut self) -> AckDue {
        self.unacked_segs += 1;
        if self.unacked_segs >= 2 {
            AckDue::Now
        } else {
            AckDue::Delayed
        }
    }

    /// The FIN bit at sequence number `at` (an ACK is due in every case).
    pub fn receive_fin(&mut self, at: Seq) -> FinArrival {
        if at != self.nxt {
            if at.gt(self.nxt) {
                self.ooo_fin = Some(at);
            }
            return FinArrival::NotInOrder;
        }
        if self.fin_received {
            return FinArrival::Duplicate;
        }
        self.fin_received = true;
        self.nxt += 1;
        FinArrival::Accepted
    }

    // ---- departure

    /// The acknowledgment fields of an outgoing segment: ACK, window,
    /// TSecr, and with SACK the D-SACK block then the most recent blocks.
    pub fn fill_ack(&mut self, hdr: &mut OutHdr, mem: &RcvMem) {
        hdr.ack = Some(self.nxt);
        hdr.window = self.advertise_window(mem);
        if let Some((val, _)) = hdr.ts {
            hdr.ts = Some((val, self.ts_recent));
        }
        if !self.sack {
            return;
        }
        // RFC 2883 4: a D-SACK block first; RFC 2018 4: then the most
        // recent block first; 3 fit beside timestamps.
        let dsack = self.dsack.take();
        hdr.sack.extend(dsack);
        let max = 3 - usize::from(dsack.is_some());
        for (s, e) in self.ooo.sack_blocks(max) {
            // A block is sequence space (RFC 2018 3): it covers a FIN held
            // after its data, as Linux's, so the sender learns the FIN
            // arrived.
            let mut end = self.nxt + e;
            if self.ooo_fin == Some(end) {
                end += 1;
            }
            hdr.sack.push((self.nxt + s, end));
        }
    }

    /// An ACK is to go on the next output pass.
    pub fn owe_ack(&mut self) {
        self.ack_owed = true;
    }

    /// Whether an ACK is owed.
    pub fn ack_owed(&self) -> bool {
        self.ack_owed
    }

    /// The connection closed: no ACK is owed any more.
    pub fn forget_ack(&mut self) {
        self.ack_owed = false;
    }

    /// A segment carrying an ACK left: pending (delayed) ACKs are paid.
    pub fn on_ack_sent(&mut self) {
        self.last_ack_sent = self.nxt;
        self.unacked_segs = 0;
        self.ack_owed = false;
    }
}

#[cfg(test)]
mod tests;
