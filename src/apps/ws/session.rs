//! One WebSocket after a valid upgrade request, over the sans-I/O
//! `shiguredo_websocket` server connection: bytes in, echoes and pushes
//! out. The connection (`conn`) moves the bytes; this file only speaks the
//! protocol.
//!
//! permessage-deflate (RFC 7692) is negotiated when the client offers it
//! (every parameter of section 7; `server_max_window_bits` below 15 is
//! declined, as the crate's compressor uses a 32 KiB window, and the
//! client falls back to another offer or to no compression, section 5).

use shiguredo_websocket::{
    CloseCode, ConnectionEvent, ConnectionOutput, PerMessageDeflateConfig, ServerConnectionOptions,
    WebSocketServerConnection,
};

use super::WsConfig;
use super::close_guard::CloseGuard;

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
    guard: CloseGuard,
}

impl Session {
    /// Answers the upgrade request `head` (already checked by
    /// `check_upgrade`) with 101 into `out`, then handles `rest`, the bytes
    /// that followed the head.
    pub(super) fn accept(
        head: &[u8],
        rest: &[u8],
        config: &WsConfig,
        out: &mut Vec<u8>,
    ) -> Session {
        let mut options = ServerConnectionOptions::new()
            .max_frame_size(config.max_message_bytes)
            .max_message_size(config.max_message_bytes)
            .max_decompressed_size(config.max_message_bytes);
        if config.compression {
            options = options.deflate(PerMessageDeflateConfig::new());
        }
        let mut s = Session {
            ws: WebSocketServerConnection::new(options),
            status: Status::Open,
            closing: false,
            guard: CloseGuard::default(),
        };
        let accepted =
            s.ws.feed_recv_buf(head)
                .and_then(|()| s.ws.accept_handshake_auto());
        if let Err(e) = accepted {
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

    /// Handles bytes from the peer: echoes data messages verbatim (the
    /// crate answers pings and close frames itself).
    pub(super) fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> &Status {
        if self.status == Status::Done {
            return &self.status;
        }
        if let Some(at) = self.guard.scan(data) {
            self.feed_crate(&data[..at], out);
            if self.status == Status::Open {
                // RFC 6455 section 7.4.1: 1002 for a protocol error.
                let _ = self
                    .ws
                    .close(CloseCode::PROTOCOL_ERROR, "invalid close code");
                self.drain(out);
                self.status = Status::Done;
            }
            return &self.status;
        }
        self.feed_crate(data, out);
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
            let sent = match event {
                ConnectionEvent::TextMessage(text) => self.ws.send_text(&text),
                ConnectionEvent::BinaryMessage(data) => self.ws.send_binary(&data),
                _ => Ok(()),
            };
            if let Err(e) = sent {
                log::debug!("ws: echo failed: {e}");
            }
        }
        self.drain(out);
    }

    /// Sends a text message (a stats push) if the session is open.
    pub(super) fn push(&mut self, text: &str, out: &mut Vec<u8>) {
        if self.status == Status::Open && !self.closing && self.ws.send_text(text).is_ok() {
            self.drain(out);
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
