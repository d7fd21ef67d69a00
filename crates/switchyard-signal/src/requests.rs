//! Request-id cache of one session: makes a retried request run at most once and gives the
//! retry the first reply again.
//!
//! Keeps the last [`RequestCache::capacity`] request ids. A retry of an id that has already
//! left the cache runs again, so clients should retry within a few hundred requests.

use std::collections::{HashMap, VecDeque};

use switchyard_proto::ServerMessage;

/// Default number of request ids remembered per session.
pub(crate) const DEFAULT_REQUEST_CACHE: usize = 256;

/// What to do with a request, given its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// First time this id is seen: run the request.
    New,
    /// The request is still running. Its one reply is sent when it finishes.
    Running,
    /// The request finished with this reply: send it again, and run nothing.
    Done(ServerMessage),
}

#[derive(Debug)]
enum State {
    Running,
    Done(ServerMessage),
}

/// Replies by request id, oldest evicted first.
#[derive(Debug)]
pub(crate) struct RequestCache {
    capacity: usize,
    states: HashMap<String, State>,
    order: VecDeque<String>,
}

impl RequestCache {
    pub(crate) fn new(capacity: usize) -> Self {
        RequestCache {
            capacity: capacity.max(1),
            states: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Looks up `id` and, when it is new, records it as running.
    pub(crate) fn begin(&mut self, id: &str) -> Lookup {
        match self.states.get(id) {
            Some(State::Running) => return Lookup::Running,
            Some(State::Done(reply)) => return Lookup::Done(reply.clone()),
            None => {}
        }
        if self.order.len() >= self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.states.remove(&oldest);
            }
        }
        self.states.insert(id.to_owned(), State::Running);
        self.order.push_back(id.to_owned());
        Lookup::New
    }

    /// Records the reply of a running request. Ids that were evicted meanwhile are ignored.
    pub(crate) fn complete(&mut self, id: &str, reply: &ServerMessage) {
        if let Some(state) = self.states.get_mut(id) {
            *state = State::Done(reply.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_proto::ErrorCode;

    #[test]
    fn first_sight_runs_and_retry_waits() {
        let mut cache = RequestCache::new(4);
        assert_eq!(cache.begin("a"), Lookup::New);
        assert_eq!(cache.begin("a"), Lookup::Running);
    }

    #[test]
    fn retry_after_completion_gets_the_same_reply() {
        let mut cache = RequestCache::new(4);
        cache.begin("a");
        let reply = ServerMessage::error(ErrorCode::InvalidSdp, "bad");
        cache.complete("a", &reply);
        assert_eq!(cache.begin("a"), Lookup::Done(reply.clone()));
        assert_eq!(cache.begin("a"), Lookup::Done(reply));
    }

    #[test]
    fn oldest_id_is_evicted_at_capacity() {
        let mut cache = RequestCache::new(2);
        cache.begin("a");
        cache.complete("a", &ServerMessage::Ok);
        cache.begin("b");
        cache.begin("c");
        assert_eq!(cache.begin("a"), Lookup::New);
        assert_eq!(cache.begin("c"), Lookup::Running);
    }

    #[test]
    fn completing_an_unknown_id_is_ignored() {
        let mut cache = RequestCache::new(2);
        cache.complete("x", &ServerMessage::Ok);
        assert_eq!(cache.begin("x"), Lookup::New);
    }
}
