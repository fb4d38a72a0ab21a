//! A scripted peer: feeds segments to one `TcpLayer` on a virtual clock and
//! returns exactly what it sends (in the spirit of smoltcp's send!/recv!).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use super::super::options::{InSeg, OutHdr, finish};
use super::super::seq::Seq;
use super::super::{TcpConfig, TcpHandle, TcpLayer, TcpState};
use crate::stack::ip::RecordingSink;
use crate::stack::ip::RxChecksum;
use crate::stack::time::Instant;

pub const LOCAL: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
pub const REMOTE: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const LPORT: u16 = 7;
pub const RPORT: u16 = 40000;
/// Our fixed ISN in scripts.
pub const ISS: u32 = 10_000;
/// The scripted peer's ISN.
pub const IRS: u32 = 50_000;

/// An owned segment, compared field by field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seg {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: Option<u32>,
    pub syn: bool,
    pub fin: bool,
    pub rst: bool,
    pub window: u16,
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub sack_perm: bool,
    pub ts: Option<(u32, u32)>,
    pub sack: Vec<(u32, u32)>,
    pub payload: Vec<u8>,
    /// Raw flag bits ORed into the header as sent (URG, ECE, CWR, or
    /// any combination the fields above cannot say).
    pub extra_flags: u8,
    /// Raw option bytes after the ones above (padded with EOL).
    pub extra_options: Vec<u8>,
}

impl Seg {
    /// From the peer (RPORT) to us (LPORT).
    pub fn peer(seq: u32, ack: Option<u32>) -> Seg {
        Seg {
            src_port: RPORT,
            dst_port: LPORT,
            seq,
            ack,
            window: 65535,
            ..Seg::default()
        }
    }
    /// From us to the peer.
    pub fn ours(seq: u32, ack: Option<u32>, window: u16) -> Seg {
        Seg {
            src_port: LPORT,
            dst_port: RPORT,
            seq,
            ack,
            window,
            ..Seg::default()
        }
    }
    pub fn syn(mut self) -> Seg {
        self.syn = true;
        self
    }
    pub fn fin(mut self) -> Seg {
        self.fin = true;
        self
    }
    pub fn rst(mut self) -> Seg {
        self.rst = true;
        self
    }
    pub fn data(mut self, d: &[u8]) -> Seg {
        self.payload = d.to_vec();
        self
    }
    pub fn win(mut self, w: u16) -> Seg {
        self.window = w;
        self
    }
    /// Sets the raw flag byte: SYN, FIN, RST, ACK from it, the rest raw.
    /// ACK uses `ack` (or 0 when the segment had none).
    pub fn flags(mut self, f: u8) -> Seg {
        self.fin = f & 0x01 != 0;
        self.syn = f & 0x02 != 0;
        self.rst = f & 0x04 != 0;
        self.ack = (f & 0x10 != 0).then(|| self.ack.unwrap_or(0));
        self.extra_flags = f & !0x17;
        self
    }
    pub fn ts(mut self, val: u32, ecr: u32) -> Seg {
        self.ts = Some((val, ecr));
        self
    }

    /// Wire bytes, peer to us.
    pub fn bytes_for_test(&self) -> Vec<u8> {
        self.bytes(REMOTE, LOCAL)
    }

    fn bytes(&self, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
        let hdr = OutHdr {
            src_port: self.src_port,
            dst_port: self.dst_port,
            seq: Seq(self.seq),
            ack: self.ack.map(Seq),
            syn: self.syn,
            fin: self.fin,
            rst: self.rst,
            psh: false,
            window: self.window,
            mss: self.mss,
            wscale: self.wscale,
            sack_perm: self.sack_perm,
            ts: self.ts,
            sack: self.sack.iter().map(|&(l, r)| (Seq(l), Seq(r))).collect(),
        };
        let std_len = hdr.header_len();
        let hl = (std_len + self.extra_options.len()).div_ceil(4) * 4;
        let mut buf = vec![0u8; hl + self.payload.len()];
        hdr.write(&mut buf);
        buf[std_len..std_len + self.extra_options.len()].copy_from_slice(&self.extra_options);
        buf[12] = ((hl / 4) as u8) << 4;
        buf[13] |= self.extra_flags;
        buf[hl..].copy_from_slice(&self.payload);
        finish(&mut buf, src, dst, false);
        buf
    }

    fn parse(src: Ipv4Addr, dst: Ipv4Addr, bytes: &[u8]) -> Seg {
        let s = InSeg::parse(src, dst, bytes, RxChecksum::Verify)
            .expect("we emitted an invalid segment");
        Seg {
            src_port: s.src_port,
            dst_port: s.dst_port,
            seq: s.seq.0,
            ack: s.ack.map(|a| a.0),
            syn: s.syn,
            fin: s.fin,
            rst: s.rst,
            window: s.window,
            mss: s.mss,
            wscale: s.wscale,
            sack_perm: s.sack_perm,
            ts: s.ts,
            sack: s.sack.iter().flatten().map(|(l, r)| (l.0, r.0)).collect(),
            payload: s.payload.to_vec(),
            extra_flags: 0,
            extra_options: Vec::new(),
        }
    }
}

/// Scripts use plain segments unless a test turns options on.
pub fn plain_config() -> TcpConfig {
    TcpConfig {
        sack: false,
        timestamps: false,
        window_scaling: false,
        rx_buffer: 65535,
        tx_buffer: 65535,
        time_wait: Duration::from_secs(2),
        seed: Some(1),
        ..TcpConfig::default()
    }
}

pub struct Harness {
    pub layer: TcpLayer,
    pub now: Instant,
    pub sink: RecordingSink,
}

impl Harness {
    pub fn new(cfg: TcpConfig) -> Harness {
        let mut layer = TcpLayer::new(cfg, LOCAL);
        layer.set_fixed_isn(Some(ISS));
        Harness {
            layer,
            now: Instant::from_secs(1000),
            sink: RecordingSink::new(LOCAL, 1500),
        }
    }

    /// Feeds one segment from the peer and runs dispatch.
    pub fn send(&mut self, seg: Seg) {
        let bytes = seg.bytes(REMOTE, LOCAL);
        self.layer
            .receive(self.now, REMOTE, LOCAL, &bytes, RxChecksum::Verify);
        self.layer.dispatch(self.now, &mut self.sink);
    }

    pub fn dispatch(&mut self) {
        self.layer.dispatch(self.now, &mut self.sink);
    }

    /// Everything sent so far (and forgets it).
    pub fn sent(&mut self) -> Vec<Seg> {
        self.sink
            .sent
            .drain(..)
            .map(|(dst, _, b)| Seg::parse(LOCAL, dst, &b))
            .collect()
    }

    /// Exactly one segment was sent; returns it.
    pub fn one(&mut self) -> Seg {
        let mut v = self.sent();
        assert_eq!(v.len(), 1, "expected one segment, got {v:#?}");
        v.remove(0)
    }

    pub fn nothing(&mut self) {
        let v = self.sent();
        assert!(v.is_empty(), "expected silence, got {v:#?}");
    }

    /// Advances the clock by `d`, running dispatch at every deadline.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        for _ in 0..10_000 {
            match self.layer.poll_at() {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.dispatch();
                }
                _ => break,
            }
        }
        self.now = end;
        self.dispatch();
    }

    /// Advances to the next deadline only; returns the time waited.
    pub fn next_deadline(&mut self) -> Duration {
        let t = self.layer.poll_at().expect("no deadline");
        let waited = t - self.now;
        self.now = self.now.max(t);
        self.dispatch();
        waited
    }

    /// Active open from LPORT to the peer; returns the connection after
    /// its first SYN left.
    pub fn connect(&mut self) -> TcpHandle {
        let c = self
            .layer
            .connect(
                self.now,
                Some(SocketAddrV4::new(LOCAL, LPORT)),
                SocketAddrV4::new(REMOTE, RPORT),
            )
            .unwrap();
        self.dispatch();
        assert!(self.one().syn);
        c
    }

    /// Passive open on LPORT with a plain SYN; returns (listener, conn).
    pub fn establish(&mut self) -> (TcpHandle, TcpHandle) {
        let l = self
            .layer
            .listen(SocketAddrV4::new(LOCAL, LPORT), 16)
            .unwrap();
        let mut syn = Seg::peer(IRS, None).syn();
        syn.mss = Some(1460);
        self.send(syn);
        let synack = self.one();
        assert!(synack.syn && synack.ack == Some(IRS + 1));
        self.send(Seg::peer(IRS + 1, Some(ISS + 1)));
        let (c, _) = self.layer.accept(l).unwrap();
        assert_eq!(self.layer.state(c), TcpState::Established);
        self.nothing();
        (l, c)
    }
}
