//! The one timer model of the SIP core: every timed thing (a server
//! transaction, a client transaction, a dialog) has at most one current
//! deadline, kept in a [`Deadlines`] queue under its key.
//!
//! Deadlines move all the time (a 2xx retransmitted, a session timer
//! refreshed, a dialog gone), so the queue uses lazy deletion: setting a
//! new deadline pushes a new heap entry and leaves the old one, which is
//! recognised as stale (it no longer matches the key's current deadline)
//! and dropped once it reaches the top. Every operation is O(log n) and
//! [`Deadlines::next`] is exact and O(1): no scan over everything that is
//! timed on each wake-up.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::Hash;
use std::time::Instant;

/// Keys with their current deadline, earliest first.
#[derive(Debug)]
pub struct Deadlines<K> {
    /// Deadlines pushed, earliest on top; stale entries included.
    heap: BinaryHeap<Reverse<Due<K>>>,
    /// The current deadline of each key that has one.
    current: HashMap<K, Instant>,
}

/// A deadline in the heap, ordered by time only.
#[derive(Debug, Clone)]
struct Due<K> {
    at: Instant,
    key: K,
}

impl<K> PartialEq for Due<K> {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl<K> Eq for Due<K> {}
impl<K> PartialOrd for Due<K> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<K> Ord for Due<K> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.at.cmp(&other.at)
    }
}

impl<K> Default for Deadlines<K> {
    fn default() -> Self {
        Deadlines {
            heap: BinaryHeap::new(),
            current: HashMap::new(),
        }
    }
}

impl<K: Clone + Eq + Hash> Deadlines<K> {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `at` the deadline of `key`; `None` clears it (the key has no
    /// timer running, or is gone).
    pub fn set(&mut self, key: K, at: Option<Instant>) {
        match at {
            Some(at) => {
                if self.current.insert(key.clone(), at) != Some(at) {
                    self.heap.push(Reverse(Due { at, key }));
                }
            }
            None => {
                self.current.remove(&key);
            }
        }
        self.prune();
    }

    /// The current deadline of `key`.
    pub fn get(&self, key: &K) -> Option<Instant> {
        self.current.get(key).copied()
    }

    /// The earliest deadline of all keys.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(d)| d.at)
    }

    /// The key with the earliest deadline, if that is at or before `now`.
    /// Its deadline is cleared: the caller handles it, then sets the next.
    pub fn pop_due(&mut self, now: Instant) -> Option<K> {
        if self.next()? > now {
            return None;
        }
        let Reverse(due) = self.heap.pop()?;
        self.current.remove(&due.key);
        self.prune();
        Some(due.key)
    }

    /// Every key due at `now`, earliest first, their deadlines cleared.
    pub fn drain_due(&mut self, now: Instant) -> Vec<K> {
        std::iter::from_fn(|| self.pop_due(now)).collect()
    }

    /// Number of keys with a deadline.
    pub fn len(&self) -> usize {
        self.current.len()
    }

    /// Whether no key has a deadline.
    pub fn is_empty(&self) -> bool {
        self.current.is_empty()
    }

    /// Drops stale entries from the top of the heap, so that
    /// [`Deadlines::next`] is exact.
    fn prune(&mut self) {
        while let Some(Reverse(d)) = self.heap.peek() {
            if self.current.get(&d.key) == Some(&d.at) {
                break;
            }
            self.heap.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    #[test]
    fn earliest_first_with_moved_and_cleared_deadlines() {
        let t0 = Instant::now();
        let mut q = Deadlines::new();
        q.set("a", Some(ms(t0, 30)));
        q.set("b", Some(ms(t0, 10)));
        q.set("c", Some(ms(t0, 20)));
        assert_eq!(q.next(), Some(ms(t0, 10)));
        // b moves later: the next deadline is c's, exactly.
        q.set("b", Some(ms(t0, 40)));
        assert_eq!(q.next(), Some(ms(t0, 20)));
        // c is cleared: a's.
        q.set("c", None);
        assert_eq!(q.next(), Some(ms(t0, 30)));
        // a moves earlier.
        q.set("a", Some(ms(t0, 5)));
        assert_eq!(q.next(), Some(ms(t0, 5)));
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop_due(ms(t0, 4)), None);
        assert_eq!(q.drain_due(ms(t0, 100)), ["a", "b"]);
        assert_eq!(q.next(), None);
        assert!(q.is_empty());
    }

    #[test]
    fn a_key_is_due_once_however_often_it_was_set() {
        let t0 = Instant::now();
        let mut q = Deadlines::new();
        // The same deadline set again, and set back after moving away.
        for at in [10, 10, 20, 10] {
            q.set(1u64, Some(ms(t0, at)));
        }
        assert_eq!(q.get(&1), Some(ms(t0, 10)));
        assert_eq!(q.drain_due(ms(t0, 50)), [1]);
        assert_eq!((q.next(), q.get(&1)), (None, None));
        // Handled and set again: due again at its new time only.
        q.set(1, Some(ms(t0, 60)));
        assert_eq!(q.drain_due(ms(t0, 59)), Vec::<u64>::new());
        assert_eq!(q.drain_due(ms(t0, 60)), [1]);
    }
}
