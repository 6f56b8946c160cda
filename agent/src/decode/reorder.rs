//! Reads held back until their turn. Events arrive in the order their syscalls returned,
//! which is not always the order of the bytes on a connection shared by two threads (one
//! reading while another writes): the parser says when a read came too early
//! ([`Parser::read_too_early`](super::proto::Parser::read_too_early)) and when what is held can
//! be decoded ([`Parser::takes_held`](super::proto::Parser::takes_held)).
use crate::events::{Direction, SockData};

/// Events held back per connection at most; beyond it they are decoded in arrival order.
const MAX_HELD: usize = 8;

#[derive(Debug, Default)]
pub struct Held {
    events: Vec<SockData>,
}

impl Held {
    /// Whether `ev` is to be held: a read while others are held (their order is kept), or
    /// one the parser says came too early.
    pub fn wants(&self, ev: &SockData, too_early: impl FnOnce() -> bool) -> bool {
        ev.direction == Direction::Recv && (!self.events.is_empty() || too_early())
    }

    /// Holds `ev`; gives it back when the buffer is full (too much to be a reordering).
    pub fn hold(&mut self, ev: &SockData) -> Result<(), ()> {
        if self.events.len() >= MAX_HELD {
            return Err(());
        }
        self.events.push(ev.clone());
        Ok(())
    }

    /// Whether `ev` entered its syscall after the first held read returned: the held reads
    /// really came first and go before it. (An event entered before them goes first.)
    pub fn came_first(&self, ev: &SockData) -> bool {
        self.events.first().is_some_and(|held| ev.start_ns >= held.ts_ns)
    }

    pub fn take(&mut self) -> Vec<SockData> {
        std::mem::take(&mut self.events)
    }
}
