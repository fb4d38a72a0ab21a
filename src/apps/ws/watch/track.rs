//! Segments as the web page's ladder shows them: each TCP frame the tap
//! copied is parsed (never trusting its bytes), given to the connection it
//! belongs to, and annotated with what a learner looks for: sequence and
//! acknowledgment numbers relative to each side's ISN, the scaled window,
//! SACK blocks, retransmissions, duplicate ACKs, and the state each side
//! enters (RFC 9293 3.3.2, as seen on the wire from the stack's side).
//!
//! The states are inferred from the segments, for the drawing; the stack's
//! own state of its side is the table's (from the socket snapshot).

use std::collections::VecDeque;
use std::net::SocketAddrV4;

use smoltcp::wire::{EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, TcpPacket};

/// Segments kept per connection: the first `HEAD_SEGMENTS` (the
/// handshake and what follows it) and the latest
/// `MAX_SEGMENTS - HEAD_SEGMENTS` (the close); those between are counted
/// only.
pub(crate) const MAX_SEGMENTS: usize = 1000;
pub(crate) const HEAD_SEGMENTS: usize = 40;

/// TCP header flag bits (RFC 9293 3.1).
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;
const URG: u8 = 0x20;
const ECE: u8 = 0x40;
const CWR: u8 = 0x80;

/// One TCP segment of a frame the tap copied (fields public: a value
/// record copied out of the frame, with no invariant).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Wire {
    /// Source and destination.
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    /// The window field as sent (unscaled).
    pub win: u16,
    /// Payload bytes (a GSO frame from the stack counts whole).
    pub len: u32,
    /// Window scale option (SYN only, RFC 7323 2.2).
    pub wscale: Option<u8>,
    /// SACK blocks (RFC 2018 3), left and right edges.
    pub sack: Vec<(u32, u32)>,
}

/// The TCP segment in an Ethernet frame, if it holds one whole (not a
/// fragment) and well-formed.
pub(crate) fn parse(frame: &[u8]) -> Option<Wire> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.version() != 4
        || ip.next_header() != IpProtocol::Tcp
        || ip.more_frags()
        || ip.frag_offset() != 0
    {
        return None;
    }
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    let options = tcp.options_summary().ok();
    let raw = ip.payload();
    let header_len = usize::from(tcp.header_len());
    Some(Wire {
        src: SocketAddrV4::new(ip.src_addr(), tcp.src_port()),
        dst: SocketAddrV4::new(ip.dst_addr(), tcp.dst_port()),
        // Byte 13 of the TCP header holds CWR..FIN.
        flags: raw[13],
        seq: tcp.seq_number().0 as u32,
        ack: tcp.ack_number().0 as u32,
        win: tcp.window_len(),
        len: (raw.len() - header_len) as u32,
        wscale: options.and_then(|o| o.window_scale),
        sack: options
            .map(|o| o.sack_ranges.iter().flatten().copied().collect())
            .unwrap_or_default(),
    })
}

/// Flag names in header order, as the ladder labels them (`SYN,ACK`).
pub(crate) fn flag_names(flags: u8) -> String {
    let names = [
        (SYN, "SYN"),
        (FIN, "FIN"),
        (RST, "RST"),
        (PSH, "PSH"),
        (URG, "URG"),
        (ECE, "ECE"),
        (CWR, "CWR"),
        (ACK, "ACK"),
    ];
    let v: Vec<&str> = names
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, n)| *n)
        .collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(",")
    }
}

/// A segment as drawn: the wire fields and the marks (fields public: a
/// value record the JSON writer reads).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Seg {
    /// Wall-clock time the tap saw it, microseconds since the Unix epoch.
    pub t_us: u64,
    /// Sent by this stack (else received).
    pub out: bool,
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    /// Sequence number relative to the sender's ISN, and acknowledgment
    /// relative to the receiver's, when the ISNs are known.
    pub rseq: Option<u32>,
    pub rack: Option<u32>,
    pub len: u32,
    /// Window in bytes: scaled once both SYNs agreed on scaling (never in
    /// a SYN itself, RFC 7323 2.2).
    pub win: u32,
    pub sack: Vec<(u32, u32)>,
    /// Sequence space sent before (RFC 9293 3.8.1 retransmission; also a
    /// reordered segment or a keep-alive probe).
    pub retx: bool,
    /// The n-th duplicate ACK (RFC 5681 2: no data, no SYN/FIN, same ACK
    /// and window, data outstanding); 0 for none.
    pub dup: u32,
    /// The state the sender and the receiver enter with this segment.
    pub sender_state: Option<&'static str>,
    pub receiver_state: Option<&'static str>,
}

/// One side of a connection as seen on the wire.
#[derive(Clone, Debug)]
struct Side {
    isn: Option<u32>,
    /// Window scale its SYN offered.
    wscale: Option<u8>,
    /// Highest sequence number sent plus one (SND.MAX).
    snd_max: Option<u32>,
    /// Sequence number of its FIN.
    fin: Option<u32>,
    last_ack: Option<(u32, u16)>,
    dups: u32,
    state: &'static str,
}

impl Side {
    fn new() -> Side {
        Side {
            isn: None,
            wscale: None,
            snd_max: None,
            fin: None,
            last_ack: None,
            dups: 0,
            state: "CLOSED",
        }
    }
}

/// `a < b` in sequence space (RFC 9293 3.4).
fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// What the page knows of one connection: its ends, its segments (bounded)
/// and the inferred state of each side.
pub(crate) struct Track {
    /// The stack's end and the peer's.
    stack: SocketAddrV4,
    peer: SocketAddrV4,
    /// Which end sent the first SYN, once seen.
    stack_opened: Option<bool>,
    /// [stack, peer].
    sides: [Side; 2],
    /// Scaled windows once both SYNs were seen with the option.
    scaling: Option<(u8, u8)>,
    head: Vec<Seg>,
    tail: VecDeque<Seg>,
    /// Segments ever added.
    total: u64,
    retransmissions: u64,
}

impl Track {
    pub(crate) fn new(stack: SocketAddrV4, peer: SocketAddrV4) -> Track {
        Track {
            stack,
            peer,
            stack_opened: None,
            sides: [Side::new(), Side::new()],
            scaling: None,
            head: Vec::new(),
            tail: VecDeque::new(),
            total: 0,
            retransmissions: 0,
        }
    }

    /// ISNs and window scales from the stack's snapshot, for a connection
    /// whose SYNs were not seen (it opened before anyone watched).
    pub(crate) fn learn(&mut self, iss: u32, irs: u32, wscale: Option<(u8, u8)>) {
        if self.sides[0].isn.is_none() {
            self.sides[0].isn = Some(iss);
        }
        if self.sides[1].isn.is_none() {
            self.sides[1].isn = Some(irs);
        }
        if self.scaling.is_none()
            && let Some((peer, ours)) = wscale
        {
            self.scaling = Some((ours, peer));
        }
    }

    /// Whether a SYN from the peer starts a new connection on this pair of
    /// addresses (the old one closed, or this SYN is not its first).
    pub(crate) fn is_reused_by(&self, w: &Wire, out: bool) -> bool {
        if w.flags & (SYN | ACK) != SYN {
            return false;
        }
        let side = &self.sides[usize::from(!out)];
        let closed = |s: &Side| matches!(s.state, "CLOSED" | "TIME-WAIT");
        side.isn.is_some_and(|isn| isn != w.seq) && (closed(&self.sides[0]) || closed(side))
    }

    /// The stack's end and the peer's.
    pub(crate) fn ends(&self) -> (SocketAddrV4, SocketAddrV4) {
        (self.stack, self.peer)
    }

    /// Whether the stack sent the first SYN (`None` before one is seen).
    pub(crate) fn stack_opened(&self) -> Option<bool> {
        self.stack_opened
    }

    /// Segments marked as retransmissions.
    pub(crate) fn retransmissions(&self) -> u64 {
        self.retransmissions
    }

    /// The inferred state of the stack's side.
    pub(crate) fn stack_state(&self) -> &'static str {
        self.sides[0].state
    }

    /// Adds a segment seen at `t_us`; `out` = sent by the stack.
    pub(crate) fn add(&mut self, w: &Wire, out: bool, t_us: u64) {
        let (s, r) = if out { (0, 1) } else { (1, 0) };
        let syn = w.flags & SYN != 0;
        if syn {
            if self.stack_opened.is_none() && w.flags & ACK == 0 {
                self.stack_opened = Some(out);
            }
            let side = &mut self.sides[s];
            if side.isn.is_none() || side.state == "CLOSED" {
                side.isn = Some(w.seq);
                side.wscale = w.wscale;
            }
            if let (Some(a), Some(b)) = (self.sides[0].wscale, self.sides[1].wscale) {
                // Once both SYNs carried it (RFC 7323 2.2); each side's
                // windows are scaled by its own shift.
                self.scaling = Some((a, b));
            }
        }
        let win = match self.scaling {
            Some(shifts) if !syn => {
                let shift = if out { shifts.0 } else { shifts.1 };
                u32::from(w.win) << shift.min(14)
            }
            _ => u32::from(w.win),
        };
        let seg_len = w.len + u32::from(syn) + u32::from(w.flags & FIN != 0);
        let (retx, dup) = self.marks(w, s, r, seg_len);
        let (sender_state, receiver_state) = self.states(w, s, r);
        let rel = |isn: Option<u32>, v: u32| isn.map(|i| v.wrapping_sub(i));
        let seg = Seg {
            t_us,
            out,
            flags: w.flags,
            seq: w.seq,
            ack: w.ack,
            rseq: rel(self.sides[s].isn, w.seq),
            rack: (w.flags & ACK != 0)
                .then(|| rel(self.sides[r].isn, w.ack))
                .flatten(),
            len: w.len,
            win,
            sack: w.sack.clone(),
            retx,
            dup,
            sender_state,
            receiver_state,
        };
        self.retransmissions += u64::from(retx);
        self.push(seg);
    }

    /// Retransmission and duplicate-ACK marks, updating what the sender
    /// has sent and acknowledged.
    fn marks(&mut self, w: &Wire, s: usize, r: usize, seg_len: u32) -> (bool, u32) {
        let end = w.seq.wrapping_add(seg_len);
        let side = &mut self.sides[s];
        let retx = seg_len > 0 && side.snd_max.is_some_and(|m| seq_lt(w.seq, m));
        if side.snd_max.is_none_or(|m| seq_lt(m, end)) && (seg_len > 0 || side.snd_max.is_none()) {
            side.snd_max = Some(end);
        }
        if w.flags & (SYN | FIN | RST | ACK) != ACK {
            side.dups = 0;
            return (retx, 0);
        }
        let outstanding = self.sides[r].snd_max.is_some_and(|m| seq_lt(w.ack, m));
        let side = &mut self.sides[s];
        let dup = w.len == 0 && outstanding && side.last_ack == Some((w.ack, w.win));
        side.dups = if dup { side.dups + 1 } else { 0 };
        side.last_ack = Some((w.ack, w.win));
        (retx, side.dups)
    }

    /// The states the sender and the receiver enter (RFC 9293 3.3.2 and
    /// figure 5), for the labels of the handshake and the close.
    fn states(
        &mut self,
        w: &Wire,
        s: usize,
        r: usize,
    ) -> (Option<&'static str>, Option<&'static str>) {
        let (before_s, before_r) = (self.sides[s].state, self.sides[r].state);
        let syn = w.flags & SYN != 0;
        let ack = w.flags & ACK != 0;
        if w.flags & RST != 0 {
            self.sides[s].state = "CLOSED";
            self.sides[r].state = "CLOSED";
        } else {
            if syn && !ack && matches!(before_s, "CLOSED" | "LISTEN") {
                self.sides[s].state = "SYN-SENT";
            }
            if syn && matches!(before_r, "CLOSED" | "LISTEN" | "SYN-SENT") && !ack {
                self.sides[r].state = "SYN-RECEIVED";
            }
            if syn && ack && before_s == "CLOSED" {
                self.sides[s].state = "SYN-RECEIVED";
            }
            let r_isn = self.sides[r].isn;
            if ack && r_isn.is_some_and(|i| w.ack == i.wrapping_add(1)) {
                match before_r {
                    // Our SYN acknowledged: the SYN-SENT side answers
                    // with an ACK; the SYN-RECEIVED side is done.
                    "SYN-SENT" if syn => self.sides[r].state = "ESTABLISHED",
                    "SYN-RECEIVED" => self.sides[r].state = "ESTABLISHED",
                    _ => {}
                }
            }
            // The ACK of the receiver's FIN (figure 5's right column).
            let r_fin = self.sides[r].fin;
            if ack && r_fin.is_some_and(|f| w.ack == f.wrapping_add(1)) {
                let side = &mut self.sides[r];
                side.state = match side.state {
                    "FIN-WAIT-1" => "FIN-WAIT-2",
                    "CLOSING" => "TIME-WAIT",
                    "LAST-ACK" => "CLOSED",
                    other => other,
                };
            }
            if w.flags & FIN != 0 {
                self.fin(w, s, r);
            }
        }
        let changed = |before: &'static str, now: &'static str| (before != now).then_some(now);
        (
            changed(before_s, self.sides[s].state),
            changed(before_r, self.sides[r].state),
        )
    }

    /// A FIN: the sender starts closing, the receiver learns of it.
    fn fin(&mut self, w: &Wire, s: usize, r: usize) {
        let fin_seq = w.seq.wrapping_add(w.len);
        let side = &mut self.sides[s];
        if side.fin.is_none() {
            side.fin = Some(fin_seq);
        }
        side.state = match side.state {
            "ESTABLISHED" | "SYN-RECEIVED" => "FIN-WAIT-1",
            "CLOSE-WAIT" => "LAST-ACK",
            other => other,
        };
        let receiver = &mut self.sides[r];
        receiver.state = match receiver.state {
            "ESTABLISHED" => "CLOSE-WAIT",
            "FIN-WAIT-1" => "CLOSING",
            "FIN-WAIT-2" => "TIME-WAIT",
            other => other,
        };
    }

    fn push(&mut self, seg: Seg) {
        self.total += 1;
        if self.head.len() < HEAD_SEGMENTS {
            self.head.push(seg);
            return;
        }
        if self.tail.len() >= MAX_SEGMENTS - HEAD_SEGMENTS {
            self.tail.pop_front();
        }
        self.tail.push_back(seg);
    }

    /// Segments ever added (the index the next one gets).
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// Segments from index `from` on, in order, at most `max`, with their
    /// indices: a jump in them is the middle of a long connection, which
    /// is not kept.
    pub(crate) fn segments_from(&self, from: u64, max: usize) -> Vec<(u64, &Seg)> {
        let head = self.head.len() as u64;
        let tail_start = self.total - self.tail.len() as u64;
        let from_head = (from..head).map(|i| (i, &self.head[i as usize]));
        let from_tail =
            (from.max(tail_start)..self.total).map(|i| (i, &self.tail[(i - tail_start) as usize]));
        from_head.chain(from_tail).take(max).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    fn wire(from_peer: bool, flags: u8, seq: u32, ack: u32, len: u32) -> Wire {
        let (p, k) = (a("10.0.0.1:40000"), a("10.0.0.2:7"));
        Wire {
            src: if from_peer { p } else { k },
            dst: if from_peer { k } else { p },
            flags,
            seq,
            ack,
            win: 100,
            len,
            wscale: (flags & SYN != 0).then_some(7),
            sack: Vec::new(),
        }
    }

    /// The seed's story: SYN, SYN+ACK, ACK; data; FIN, ACK, FIN, ACK with
    /// the states of figure 5 and numbers relative to each ISN.
    #[test]
    fn handshake_and_four_way_close_are_labelled() {
        let mut t = Track::new(a("10.0.0.2:7"), a("10.0.0.1:40000"));
        let (c, k) = (1000u32, 5000u32);
        let steps = [
            (true, SYN, c, 0, 0),
            (false, SYN | ACK, k, c + 1, 0),
            (true, ACK, c + 1, k + 1, 0),
            (true, PSH | ACK, c + 1, k + 1, 5),
            (false, PSH | ACK, k + 1, c + 6, 5),
            (true, FIN | ACK, c + 6, k + 6, 0),
            (false, ACK, k + 6, c + 7, 0),
            (false, FIN | ACK, k + 6, c + 7, 0),
            (true, ACK, c + 7, k + 7, 0),
        ];
        for (i, (peer, f, seq, ack, len)) in steps.into_iter().enumerate() {
            t.add(&wire(peer, f, seq, ack, len), !peer, i as u64);
        }
        let segs = t.segments_from(0, 100);
        let got: Vec<_> = segs
            .iter()
            .map(|(_, s)| {
                (
                    flag_names(s.flags),
                    s.rseq,
                    s.rack,
                    s.sender_state,
                    s.receiver_state,
                )
            })
            .collect();
        let want = vec![
            (
                "SYN".into(),
                Some(0),
                None,
                Some("SYN-SENT"),
                Some("SYN-RECEIVED"),
            ),
            (
                "SYN,ACK".into(),
                Some(0),
                Some(1),
                None,
                Some("ESTABLISHED"),
            ),
            ("ACK".into(), Some(1), Some(1), None, Some("ESTABLISHED")),
            ("PSH,ACK".into(), Some(1), Some(1), None, None),
            ("PSH,ACK".into(), Some(1), Some(6), None, None),
            (
                "FIN,ACK".into(),
                Some(6),
                Some(6),
                Some("FIN-WAIT-1"),
                Some("CLOSE-WAIT"),
            ),
            ("ACK".into(), Some(6), Some(7), None, Some("FIN-WAIT-2")),
            (
                "FIN,ACK".into(),
                Some(6),
                Some(7),
                Some("LAST-ACK"),
                Some("TIME-WAIT"),
            ),
            ("ACK".into(), Some(7), Some(7), None, Some("CLOSED")),
        ];
        assert_eq!(got, want);
        assert_eq!(t.stack_opened, Some(false));
        // The SYN's window is not scaled; later ones are (shift 7).
        assert_eq!(segs[0].1.win, 100);
        assert_eq!(segs[2].1.win, 100 << 7);
    }

    #[test]
    fn retransmission_and_duplicate_acks_are_marked() {
        let mut t = Track::new(a("10.0.0.2:7"), a("10.0.0.1:40000"));
        t.add(&wire(true, SYN, 0, 0, 0), false, 0);
        t.add(&wire(false, SYN | ACK, 0, 1, 0), true, 1);
        t.add(&wire(true, ACK, 1, 1, 0), false, 2);
        // The stack sends three segments; the first is lost.
        for i in 0..3 {
            t.add(&wire(false, ACK, 1 + i * 100, 1, 100), true, 3);
        }
        let mut dup = wire(true, ACK, 1, 1, 0);
        dup.sack = vec![(101, 201)];
        t.add(&dup, false, 4);
        t.add(&dup, false, 5);
        t.add(&wire(false, ACK, 1, 1, 100), true, 6);
        let segs = t.segments_from(0, 100);
        let marks: Vec<_> = segs[3..].iter().map(|(_, s)| (s.retx, s.dup)).collect();
        // The handshake's ACK of 1 came first: each later ACK of 1 with
        // the same window while data is outstanding is a duplicate.
        assert_eq!(
            marks,
            [
                (false, 0),
                (false, 0),
                (false, 0),
                (false, 1),
                (false, 2),
                (true, 0)
            ]
        );
        assert_eq!(segs[6].1.sack, vec![(101, 201)]);
        assert_eq!(t.retransmissions(), 1);
    }

    #[test]
    fn history_keeps_head_and_tail_and_counts_the_gap() {
        let mut t = Track::new(a("10.0.0.2:7"), a("10.0.0.1:40000"));
        let n = (MAX_SEGMENTS + 500) as u32;
        for i in 0..n {
            t.add(&wire(true, ACK, i * 10, 0, 10), false, u64::from(i));
        }
        assert_eq!(t.total(), u64::from(n));
        let segs = t.segments_from(0, usize::MAX);
        assert_eq!(segs.len(), MAX_SEGMENTS);
        assert_eq!(segs[HEAD_SEGMENTS - 1].0, HEAD_SEGMENTS as u64 - 1);
        assert_eq!(segs[HEAD_SEGMENTS].0, 500 + HEAD_SEGMENTS as u64);
        let segs = t.segments_from(HEAD_SEGMENTS as u64, 5);
        assert_eq!(segs[0].0, 500 + HEAD_SEGMENTS as u64);
        assert_eq!(segs.len(), 5);
    }

    #[test]
    fn garbage_frames_are_not_segments() {
        assert_eq!(parse(&[]), None);
        assert_eq!(parse(&[0xff; 13]), None);
        let mut f = vec![0u8; 14 + 20 + 20];
        f[12] = 0x08; // IPv4
        f[14] = 0x45;
        f[14 + 2..14 + 4].copy_from_slice(&40u16.to_be_bytes());
        f[14 + 9] = 6;
        f[14 + 20 + 12] = 0x50;
        f[14 + 20 + 13] = SYN;
        let w = parse(&f).expect("a minimal SYN parses");
        assert_eq!((w.flags, w.len), (SYN, 0));
        f[14 + 20 + 12] = 0xf0; // header longer than the packet
        assert_eq!(parse(&f), None);
        for cut in 0..f.len() {
            let _ = parse(&f[..cut]);
        }
    }
}
