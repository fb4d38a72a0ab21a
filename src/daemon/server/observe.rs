//! The observation requests: the socket table, the counters, and live
//! trace and pcap streams, each answered with one end of a stream socketpair
//! (`watch`), so replies of any size never block the daemon thread.

use super::{Reply, Server, err};
use crate::api::bsd::Errno as E;
use crate::daemon::proto::{Msg, op};
use crate::daemon::show::{self, SsOptions};
use crate::daemon::watch::{FrameFilter, StreamKind, TAP_CAPACITY};

impl Server {
    pub(super) fn observe(&mut self, cid: u64, m: Msg) -> Reply {
        let Some(client) = self.clients.get(&cid) else {
            return Reply::Close;
        };
        let fd = match m.op {
            op::SOCKETS => {
                let o = SsOptions::from_bits(m.a);
                let mut all = self.net.sockets();
                // The owning client's pid for the sockets the daemon made.
                for s in &mut all {
                    let owner = s.handle.and_then(|h| self.by_stack.get(&h));
                    s.pid = owner
                        .and_then(|id| self.socks.get(id))
                        .and_then(|s| u32::try_from(s.pid).ok())
                        .filter(|&p| p != 0);
                }
                let text = if o.json {
                    show::sockets_json(&all, &o)
                } else {
                    show::ss_table(&all, &o)
                };
                self.watchers.reply_text(text)
            }
            op::COUNTERS => {
                let c = self.net.counters();
                self.watchers.reply_text(if m.a == 1 {
                    show::counters_json(&c)
                } else {
                    show::counters_text(&c)
                })
            }
            _ => {
                // Every client's traffic: as tcpdump, for root (or the
                // user the daemon runs as) only.
                let me = nix::unistd::geteuid().as_raw();
                if client.uid != 0 && client.uid != me {
                    return err(m.op, E::EACCES.code());
                }
                let kind = if m.op == op::TRACE {
                    StreamKind::Trace
                } else {
                    StreamKind::Pcap
                };
                let tap = self.net.frame_tap(TAP_CAPACITY);
                self.watchers.stream(tap, kind, FrameFilter::from_msg(&m))
            }
        };
        match fd {
            Ok(fd) => Reply::Now(Msg::request(m.op), Some(fd)),
            Err(e) => err(m.op, e),
        }
    }
}
