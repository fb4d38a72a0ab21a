//! The endpoints behind one trait: our `Stack`, and smoltcp's
//! `Interface` + `tcp::Socket` on a queue device.

use super::*;

pub(crate) enum Recv {
    Data(usize),
    WouldBlock,
    Eof,
}

/// One side of the single connection of a run, plus its whole stack.
pub(crate) trait Endpoint {
    fn name(&self) -> &'static str;
    fn receive(&mut self, now: Instant, frame: &[u8]);
    /// Timers and output: every frame the endpoint wants to send now.
    fn pump(&mut self, now: Instant, out: &mut dyn FnMut(&[u8]));
    fn poll_at(&mut self, now: Instant) -> Option<Instant>;
    /// Passive open on `PORT`.
    fn listen(&mut self, now: Instant);
    /// Active open to the other side's `PORT`.
    fn connect(&mut self, now: Instant, remote: Ipv4Addr, local_port: u16);
    /// True once the connection exists (accepted or connecting).
    fn ready(&mut self) -> bool;
    fn send(&mut self, data: &[u8]) -> usize;
    fn recv(&mut self, buf: &mut [u8]) -> Recv;
    fn shutdown_write(&mut self);
    /// Whether our FIN and all our data are acknowledged (nothing left
    /// that could be retransmitted).
    fn all_acked(&mut self) -> bool;
    fn close(&mut self);
    /// True when the connection is gone or in TIME-WAIT on this side.
    fn finished(&mut self) -> bool;
    fn state(&mut self) -> String;
    fn retransmitted_bytes(&self) -> u64;
}

pub(crate) struct Ours {
    pub(crate) stack: Stack,
    pub(crate) listener: Option<TcpHandle>,
    pub(crate) conn: Option<TcpHandle>,
    pub(crate) closed: bool,
    pub(crate) rtx_bytes: u64,
}

impl Ours {
    pub(crate) fn new(ip: Ipv4Addr, mac: EthernetAddress, seed: u64, tcp: TcpConfig) -> Ours {
        let mut c = StackConfig::new(mac, Ipv4Cidr::new(ip, 24));
        c.seed = Some(seed);
        c.tcp = tcp;
        Ours {
            stack: Stack::new(c),
            listener: None,
            conn: None,
            closed: false,
            rtx_bytes: 0,
        }
    }

    pub(crate) fn record_info(&mut self) {
        if let Some(h) = self.conn
            && let Ok(info) = self.stack.tcp.info(h)
        {
            self.rtx_bytes = self.rtx_bytes.max(info.retransmitted_bytes);
        }
    }
}

impl Endpoint for Ours {
    fn name(&self) -> &'static str {
        "tapstack"
    }

    fn receive(&mut self, now: Instant, frame: &[u8]) {
        self.stack.handle_frame(now, frame, RxChecksum::Verify);
    }

    fn pump(&mut self, now: Instant, out: &mut dyn FnMut(&[u8])) {
        self.stack.handle_timeout(now);
        while let Some(f) = self.stack.poll_transmit() {
            out(&f);
            self.stack.recycle(f);
        }
    }

    fn poll_at(&mut self, _now: Instant) -> Option<Instant> {
        self.stack.poll_at()
    }

    fn listen(&mut self, _now: Instant) {
        let local = SocketAddrV4::new(self.stack.addr(), PORT);
        self.listener = Some(self.stack.tcp.listen(local, 8).unwrap());
    }

    fn connect(&mut self, now: Instant, remote: Ipv4Addr, local_port: u16) {
        let local = SocketAddrV4::new(self.stack.addr(), local_port);
        let h = self
            .stack
            .tcp
            .connect(now, Some(local), SocketAddrV4::new(remote, PORT))
            .unwrap();
        self.conn = Some(h);
    }

    fn ready(&mut self) -> bool {
        if self.conn.is_none()
            && let Some(l) = self.listener
            && let Ok((h, _)) = self.stack.tcp.accept(l)
        {
            self.conn = Some(h);
        }
        self.conn.is_some()
    }

    fn send(&mut self, data: &[u8]) -> usize {
        let n = self.stack.tcp.send(self.conn.unwrap(), data).unwrap_or(0);
        self.record_info();
        n
    }

    fn recv(&mut self, buf: &mut [u8]) -> Recv {
        match self.stack.tcp.recv(self.conn.unwrap(), buf) {
            Ok(0) => Recv::Eof,
            Ok(n) => Recv::Data(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Recv::WouldBlock,
            Err(e) => panic!("tapstack recv failed: {e}"),
        }
    }

    fn shutdown_write(&mut self) {
        self.stack
            .tcp
            .shutdown(self.conn.unwrap(), Shutdown::Write)
            .unwrap();
    }

    fn all_acked(&mut self) -> bool {
        self.record_info();
        match self.stack.tcp.info(self.conn.unwrap()) {
            Ok(i) => i.snd_una == i.snd_nxt,
            Err(_) => true,
        }
    }

    fn close(&mut self) {
        self.record_info();
        if let Some(h) = self.conn {
            self.stack.tcp.close(h);
        }
        self.closed = true;
    }

    fn finished(&mut self) -> bool {
        self.closed && self.stack.tcp.active_connections() == 0
    }

    fn state(&mut self) -> String {
        match self.conn {
            Some(h) => format!("{:?}", self.stack.tcp.info(h).ok()),
            None => "not accepted".into(),
        }
    }

    fn retransmitted_bytes(&self) -> u64 {
        self.rtx_bytes
    }
}

/// An in-memory Ethernet device for smoltcp.
pub(crate) struct QueueDevice {
    pub(crate) rx: VecDeque<Vec<u8>>,
    pub(crate) tx: VecDeque<Vec<u8>>,
}

pub(crate) struct RxTok(Vec<u8>);
pub(crate) struct TxTok<'a>(&'a mut VecDeque<Vec<u8>>);

impl phy::RxToken for RxTok {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxTok<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.0.push_back(buf);
        r
    }
}

impl Device for QueueDevice {
    type RxToken<'a> = RxTok;
    type TxToken<'a> = TxTok<'a>;

    fn receive(
        &mut self,
        _t: smoltcp::time::Instant,
    ) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let f = self.rx.pop_front()?;
        Some((RxTok(f), TxTok(&mut self.tx)))
    }

    fn transmit(&mut self, _t: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        Some(TxTok(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

pub(crate) struct Smol {
    pub(crate) iface: Interface,
    pub(crate) dev: QueueDevice,
    pub(crate) sockets: SocketSet<'static>,
    pub(crate) h: SocketHandle,
    pub(crate) ip: Ipv4Addr,
    pub(crate) established: bool,
    pub(crate) closed: bool,
}

pub(crate) fn smol_time(t: Instant) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros(t.total_micros() as i64)
}

impl Smol {
    pub(crate) fn new(ip: Ipv4Addr, mac: EthernetAddress, seed: u64) -> Smol {
        let mut dev = QueueDevice {
            rx: VecDeque::new(),
            tx: VecDeque::new(),
        };
        let mut config = IfaceConfig::new(HardwareAddress::Ethernet(mac));
        config.random_seed = seed;
        let mut iface = Interface::new(config, &mut dev, smol_time(Instant::ZERO));
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::new(IpAddress::Ipv4(ip), 24)).unwrap();
        });
        let sock = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0u8; 256 * 1024]),
            tcp::SocketBuffer::new(vec![0u8; 256 * 1024]),
        );
        let mut sockets = SocketSet::new(Vec::new());
        let h = sockets.add(sock);
        Smol {
            iface,
            dev,
            sockets,
            h,
            ip,
            established: false,
            closed: false,
        }
    }

    pub(crate) fn sock(&mut self) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(self.h)
    }
}

impl Endpoint for Smol {
    fn name(&self) -> &'static str {
        "smoltcp"
    }

    fn receive(&mut self, _now: Instant, frame: &[u8]) {
        self.dev.rx.push_back(frame.to_vec());
    }

    fn pump(&mut self, now: Instant, out: &mut dyn FnMut(&[u8])) {
        self.iface
            .poll(smol_time(now), &mut self.dev, &mut self.sockets);
        while let Some(f) = self.dev.tx.pop_front() {
            out(&f);
        }
    }

    fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        if !self.dev.rx.is_empty() {
            return Some(now);
        }
        self.iface
            .poll_at(smol_time(now), &self.sockets)
            .map(|t| Instant::from_micros(t.total_micros().max(0) as u64))
    }

    fn listen(&mut self, _now: Instant) {
        self.sock().listen(PORT).unwrap();
    }

    fn connect(&mut self, _now: Instant, remote: Ipv4Addr, local_port: u16) {
        let cx = self.iface.context();
        self.sockets
            .get_mut::<tcp::Socket>(self.h)
            .connect(cx, (IpAddress::Ipv4(remote), PORT), local_port)
            .unwrap();
    }

    fn ready(&mut self) -> bool {
        // Once open, stays usable for the app (TIME-WAIT and CLOSED are
        // not "active" but may still hold received data and the EOF).
        if self.sock().is_active() {
            self.established = true;
        }
        self.established
    }

    fn send(&mut self, data: &[u8]) -> usize {
        if !self.sock().can_send() {
            return 0;
        }
        self.sock().send_slice(data).unwrap_or(0)
    }

    fn recv(&mut self, buf: &mut [u8]) -> Recv {
        match self.sock().recv_slice(buf) {
            Ok(0) => Recv::WouldBlock,
            Ok(n) => Recv::Data(n),
            Err(tcp::RecvError::Finished) => Recv::Eof,
            Err(tcp::RecvError::InvalidState) => {
                let state = self.sock().state();
                assert!(
                    matches!(
                        state,
                        tcp::State::SynSent | tcp::State::SynReceived | tcp::State::Listen
                    ),
                    "smoltcp recv in state {state}: connection lost without EOF"
                );
                Recv::WouldBlock
            }
        }
    }

    fn shutdown_write(&mut self) {
        // smoltcp's close() is a half-close: FIN now, still receives.
        self.sock().close();
    }

    fn all_acked(&mut self) -> bool {
        self.sock().send_queue() == 0
    }

    fn close(&mut self) {
        self.closed = true;
    }

    fn finished(&mut self) -> bool {
        self.closed
            && matches!(
                self.sock().state(),
                tcp::State::Closed | tcp::State::TimeWait
            )
    }

    fn state(&mut self) -> String {
        let s = self.sock();
        format!(
            "{} send_queue={} recv_queue={} ({})",
            s.state(),
            s.send_queue(),
            s.recv_queue(),
            self.ip
        )
    }

    fn retransmitted_bytes(&self) -> u64 {
        0
    }
}
