//! One WebSocket after a valid upgrade request, over the sans-I/O
//! `shiguredo_websocket` server connection: bytes in, echoes and pushes
//! out. The HTTP connection (`http::Conn`, through `service.rs`) moves
//! the bytes; this file only speaks the protocol.
//!
//! permessage-deflate (RFC 7692) is negotiated when the client offers it
//! (`deflate.rs`, which also compresses our messages); what the client
//! sends is inflated by `inbound.rs` before the crate sees it, so the
//! crate itself only ever sees uncompressed frames.
//!
//! A watching session (`/watch`) echoes nothing: what the page sends there
//! is a command (`select ID`), kept for the connection to act on, and what
//! we send is pushes only. The echo is another WebSocket (`/echo`), so
//! nothing a client types can be taken for a push.

use shiguredo_websocket::{
    CloseCode, ConnectionEvent, ConnectionOutput, ConnectionState, Opcode, ServerConnectionOptions,
    ServerHandshakeResponse, WebSocketServerConnection,
};

use super::WsConfig;
use super::deflate::{self, Deflater};
use super::inbound::{Fail, Inbound};

/// Where a session stands after bytes or a push were handled.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Status {
    /// Open (or closing: our close frame sent, the peer's awaited).
    Open,
    /// The close handshake is done, or the connection failed (the close
    /// frame RFC 6455 section 7.1.7 asks for is already in `out`): send
    /// what is queued, then close TCP.
    Done,
}

pub(super) struct Session {
    ws: WebSocketServerConnection,
    status: Status,
    /// Our close frame is queued (we stopped, or the peer broke the
    /// protocol); the peer's reply is awaited until the close linger.
    closing: bool,
    /// Inflates and checks the client's frames before the crate sees them.
    inbound: Inbound,
    /// Compresses our messages once permessage-deflate is agreed.
    deflater: Option<Deflater>,
    /// The 101 answer as amended by `handshake`, not yet in the output.
    pending_head: Option<Vec<u8>>,
    /// `Some` on a watching session: the commands received, not yet taken.
    commands: Option<Vec<String>>,
}

/// Commands kept until taken; a page sends one per click.
const MAX_COMMANDS: usize = 8;
/// Longest command; a longer text message is ignored.
const MAX_COMMAND_BYTES: usize = 64;

impl Session {
    /// Answers the upgrade request `head` (already checked by
    /// `check_upgrade`) with 101 into `out`, then handles `rest`, the bytes
    /// that followed the head.
    /// `watch`: a watching session (commands in, pushes out, no echo).
    pub(super) fn accept(
        head: &[u8],
        rest: &[u8],
        config: &WsConfig,
        watch: bool,
        out: &mut Vec<u8>,
    ) -> Session {
        let options = ServerConnectionOptions::new()
            .max_frame_size(config.max_message_bytes)
            .max_message_size(config.max_message_bytes)
            .max_decompressed_size(config.max_message_bytes);
        let mut s = Session {
            ws: WebSocketServerConnection::new(options),
            status: Status::Open,
            closing: false,
            inbound: Inbound::new(false, config.max_message_bytes),
            deflater: None,
            pending_head: None,
            commands: watch.then(Vec::new),
        };
        if let Err(e) = s.handshake(head, config) {
            // The crate's validator is stricter than `check_upgrade` in
            // some corner: it queued its 400/426 answer.
            log::debug!("ws: handshake refused: {e}");
            s.status = Status::Done;
        }
        s.drain(out);
        if s.status == Status::Open && !rest.is_empty() {
            s.feed(rest, out);
        }
        s
    }

    /// Reads the request head and queues the 101 answer, with the
    /// permessage-deflate agreement if an offer is taken.
    fn handshake(
        &mut self,
        head: &[u8],
        config: &WsConfig,
    ) -> Result<(), shiguredo_websocket::Error> {
        self.ws.feed_recv_buf(head)?;
        let offers = match self.ws.handshake_request() {
            Some(req) if config.compression => req.extensions.clone(),
            _ => Vec::new(),
        };
        self.ws.accept_handshake(ServerHandshakeResponse::new())?;
        if let Some(a) = deflate::negotiate(&offers) {
            // The crate knows nothing of the extension: its 101 gets the
            // agreement added.
            if let Some(ConnectionOutput::SendData(mut bytes)) = self.ws.poll_output()
                && bytes.ends_with(b"\r\n\r\n")
            {
                bytes.truncate(bytes.len() - 2);
                bytes.extend_from_slice(
                    format!("Sec-WebSocket-Extensions: {}\r\n\r\n", a.response).as_bytes(),
                );
                self.pending_head = Some(bytes);
                self.deflater = Some(Deflater::new(&a));
                self.inbound = Inbound::new(true, config.max_message_bytes);
            }
        }
        Ok(())
    }

    /// Handles bytes from the peer: echoes data messages verbatim (the
    /// crate answers pings and close frames itself).
    pub(super) fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> &Status {
        if self.status == Status::Done {
            return &self.status;
        }
        let mut plain = Vec::new();
        let checked = self.inbound.process(data, &mut plain);
        self.feed_crate(&plain, out);
        if let Err(fail) = checked
            && self.status == Status::Open
        {
            let (code, reason) = match fail {
                Fail::CloseCode => (CloseCode::PROTOCOL_ERROR, "invalid close code"),
                Fail::TooBig => (CloseCode::MESSAGE_TOO_BIG, "message too big"),
                Fail::BadData => (CloseCode::INVALID_PAYLOAD, "bad compressed data"),
            };
            // RFC 6455 section 7.1.7: fail the connection.
            let _ = self.ws.close(code, reason);
            self.drain(out);
            self.status = Status::Done;
        }
        &self.status
    }

    fn feed_crate(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if data.is_empty() || self.status == Status::Done {
            return;
        }
        if let Err(e) = self.ws.feed_recv_buf(data) {
            // Failed: the crate queued the close frame with the code RFC
            // 6455 section 7.4.1 gives the violation (1002, 1007, 1009).
            log::debug!("ws: connection failed: {e}");
            self.status = Status::Done;
        }
        while let Some(event) = self.ws.poll_event() {
            match (event, &mut self.commands) {
                (ConnectionEvent::TextMessage(text), Some(commands))
                    if text.len() <= MAX_COMMAND_BYTES && commands.len() < MAX_COMMANDS =>
                {
                    commands.push(text);
                }
                (ConnectionEvent::TextMessage(text), None) => {
                    self.send(Opcode::Text, text.as_bytes(), out)
                }
                (ConnectionEvent::BinaryMessage(data), None) => {
                    self.send(Opcode::Binary, &data, out)
                }
                _ => {}
            }
        }
        self.drain(out);
    }

    /// Sends a data message (compressed if agreed) after what the crate
    /// queued before it (pongs), so the order on the wire is kept.
    fn send(&mut self, opcode: Opcode, payload: &[u8], out: &mut Vec<u8>) {
        self.drain(out);
        if self.ws.state() != ConnectionState::Connected {
            return;
        }
        let sent = match (&mut self.deflater, opcode) {
            (Some(d), _) => {
                out.extend_from_slice(&d.frame(opcode, payload));
                Ok(())
            }
            (None, Opcode::Text) => self.ws.send_text(&String::from_utf8_lossy(payload)),
            (None, _) => self.ws.send_binary(payload),
        };
        if let Err(e) = sent {
            log::debug!("ws: send failed: {e}");
        }
        self.drain(out);
    }

    /// Sends a text message (a stats push) if the session is open.
    pub(super) fn push(&mut self, text: &str, out: &mut Vec<u8>) {
        if self.status == Status::Open && !self.closing {
            self.send(Opcode::Text, text.as_bytes(), out);
        }
    }

    /// Starts the close handshake with 1001 (going away, RFC 6455 section
    /// 7.4.1): the server is stopping.
    pub(super) fn going_away(&mut self, out: &mut Vec<u8>) {
        if self.status == Status::Open && !self.closing {
            let _ = self.ws.close(CloseCode::GOING_AWAY, "server stopping");
            self.closing = true;
            self.drain(out);
        }
    }

    /// The commands a watching page sent since the last call.
    pub(super) fn take_commands(&mut self) -> Vec<String> {
        self.commands
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    pub(super) fn status(&self) -> &Status {
        &self.status
    }

    /// Whether our close frame is out and the peer's is awaited.
    pub(super) fn is_closing(&self) -> bool {
        self.closing
    }

    /// Moves the crate's output into `out`. Its timers are not used: pings
    /// are off, and the close wait is the connection's own close linger.
    fn drain(&mut self, out: &mut Vec<u8>) {
        if let Some(head) = self.pending_head.take() {
            out.extend_from_slice(&head);
        }
        while let Some(output) = self.ws.poll_output() {
            match output {
                ConnectionOutput::SendData(bytes) => out.extend_from_slice(&bytes),
                ConnectionOutput::CloseConnection => self.status = Status::Done,
                ConnectionOutput::SetTimer { id, .. } => {
                    if id == shiguredo_websocket::TimerId::CloseTimeout {
                        self.closing = true;
                    }
                }
                ConnectionOutput::ClearTimer { .. } => {}
            }
        }
    }
}
