//! One WebSocket connection after a valid upgrade request: the 101
//! response, then echo and periodic push on a single thread, then the
//! close.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tungstenite::{Error, Message, WebSocket};

use super::{Conn, Ctx, WsConfig};
use crate::apps::http;

/// Read timeout while pushes are disabled: the loop has nothing else to
/// do, but waking now and then costs nothing and bounds any surprise.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// How a session ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// Close handshake done (either side), or the peer closed after it.
    Closed,
    /// The peer broke the protocol: fail the connection with this code.
    Failed(CloseCode, &'static str),
    /// The connection is unusable (reset, or a write timed out).
    Gone,
}

/// Completes the handshake and serves the WebSocket until it ends.
/// `rest` holds bytes the client sent after its request head.
pub(super) fn run<C: Conn>(mut conn: C, accept_key: &str, rest: Vec<u8>, ctx: &Ctx) {
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Accept: {accept_key}\r\n\r\n"
    );
    if conn
        .write_all(response.as_bytes())
        .and_then(|()| conn.flush())
        .is_err()
    {
        return;
    }
    let peer = conn.peer();
    let config = Some(ws_config(&ctx.config));
    let mut ws = WebSocket::from_partially_read(conn, rest, Role::Server, config);
    let end = echo_loop(&mut ws, ctx);
    log::debug!("ws: {peer}: session ended: {end:?}");
    if let End::Failed(code, reason) = end {
        // RFC 6455 section 7.1.7: send a close frame, then close the TCP
        // connection without reading more frames (after a size error the
        // rest of the stream is not frames we can afford to parse).
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = ws.close(Some(frame));
    }
    http::linger_close(ws.into_inner(), ctx.config.close_linger);
}

fn ws_config(config: &WsConfig) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(config.max_message_bytes))
        .max_frame_size(Some(config.max_message_bytes))
}

/// Reads and answers frames, and pushes stats when due, until the session
/// ends. Only read timeouts are retried: a write that times out means the
/// client has stopped reading, and ends the session.
fn echo_loop<C: Conn>(ws: &mut WebSocket<C>, ctx: &Ctx) -> End {
    let mut pusher = Pusher::new(ctx.config.push_interval, Instant::now());
    loop {
        if ws
            .get_ref()
            .set_read_timeout(Some(pusher.wait(Instant::now())))
            .is_err()
        {
            return End::Gone;
        }
        match ws.read() {
            Ok(message) => {
                if let Err(e) = answer(ws, message) {
                    return classify(e);
                }
            }
            Err(Error::Io(e)) if http::is_retryable(&e) => {}
            Err(e) => return classify(e),
        }
        if pusher.due(Instant::now())
            && ws.can_write()
            && let Err(e) = ws.send(Message::text(push_message(ctx)))
        {
            return classify(e);
        }
    }
}

/// Echoes data messages verbatim and sends what tungstenite queued in
/// reply to control frames (the pong for a ping, the close reply).
fn answer<C: Conn>(ws: &mut WebSocket<C>, message: Message) -> tungstenite::Result<()> {
    match message {
        Message::Text(_) | Message::Binary(_) => ws.send(message),
        // After a close frame this writes the reply and then reports
        // `ConnectionClosed`: the session is over.
        Message::Ping(_) | Message::Close(_) => ws.flush(),
        Message::Pong(_) | Message::Frame(_) => Ok(()),
    }
}

/// Maps how tungstenite stopped to the way the session ends, with the
/// close code RFC 6455 section 7.4.1 gives each violation.
fn classify(e: Error) -> End {
    match e {
        Error::ConnectionClosed | Error::AlreadyClosed => End::Closed,
        Error::Capacity(_) => End::Failed(CloseCode::Size, "message too big"),
        Error::Utf8(_) => End::Failed(CloseCode::Invalid, "invalid UTF-8 in text"),
        Error::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake) => {
            End::Gone
        }
        Error::Protocol(_) => End::Failed(CloseCode::Protocol, "protocol error"),
        _ => End::Gone,
    }
}

/// `{"type":"stats","connections":N,"data":<stats callback>}`.
fn push_message(ctx: &Ctx) -> String {
    let data = (ctx.stats)();
    let data = if data.trim().is_empty() {
        "null".to_string()
    } else {
        data
    };
    let connections = ctx.active.load(Ordering::Acquire);
    format!(r#"{{"type":"stats","connections":{connections},"data":{data}}}"#)
}

/// When the next push is due.
struct Pusher {
    interval: Duration,
    next: Option<Instant>,
}

impl Pusher {
    fn new(interval: Duration, now: Instant) -> Pusher {
        let next = (!interval.is_zero()).then(|| now + interval);
        Pusher { interval, next }
    }

    /// How long a read may wait before a push is due (at least 1 ms, as a
    /// zero read timeout is invalid).
    fn wait(&self, now: Instant) -> Duration {
        match self.next {
            None => IDLE_TICK,
            Some(next) => next
                .saturating_duration_since(now)
                .max(Duration::from_millis(1)),
        }
    }

    /// Whether a push is due now; if so, schedules the next one. After a
    /// stall it does not try to catch up with a burst.
    fn due(&mut self, now: Instant) -> bool {
        match self.next {
            Some(next) if now >= next => {
                let following = next + self.interval;
                self.next = Some(if following > now {
                    following
                } else {
                    now + self.interval
                });
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pusher_schedules_without_bursts() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut p = Pusher::new(ms(200), t0);
        assert_eq!(p.wait(t0), ms(200));
        assert!(!p.due(t0 + ms(199)));
        assert!(p.due(t0 + ms(200)));
        assert_eq!(p.wait(t0 + ms(250)), ms(150));
        // A stall of several intervals yields one push, not a burst.
        assert!(p.due(t0 + ms(2000)));
        assert!(!p.due(t0 + ms(2001)));
        assert_eq!(p.wait(t0 + ms(2000)), ms(200));
        assert_eq!(p.wait(t0 + ms(5000)), ms(1));
    }

    #[test]
    fn zero_interval_disables_pushes() {
        let t0 = Instant::now();
        let mut p = Pusher::new(Duration::ZERO, t0);
        assert_eq!(p.wait(t0), IDLE_TICK);
        assert!(!p.due(t0 + Duration::from_secs(3600)));
    }

    #[test]
    fn close_codes() {
        use tungstenite::error::{CapacityError, ProtocolError};
        let too_long = CapacityError::MessageTooLong {
            size: 2,
            max_size: 1,
        };
        assert_eq!(
            classify(Error::Capacity(too_long)),
            End::Failed(CloseCode::Size, "message too big")
        );
        assert!(matches!(
            classify(Error::Utf8(String::new())),
            End::Failed(CloseCode::Invalid, _)
        ));
        let unmasked = Error::Protocol(ProtocolError::UnmaskedFrameFromClient);
        assert!(matches!(
            classify(unmasked),
            End::Failed(CloseCode::Protocol, _)
        ));
        assert_eq!(classify(Error::ConnectionClosed), End::Closed);
        assert_eq!(
            classify(Error::Io(std::io::ErrorKind::BrokenPipe.into())),
            End::Gone
        );
    }
}
