//! SIP overload detection, sans-IO: fed the depth of the input queue at
//! each wake-up and the time, it says whether new sessions must be
//! refused (`503 Overloaded`) and when an episode starts and ends.
//!
//! The server is behind its input when every wake-up for [`BEHIND_FOR`]
//! finds at least [`BEHIND`] messages queued: not a hiccup it catches up
//! from, but a rate above capacity. It stays so until a wake-up finds fewer
//! than [`CAUGHT_UP`]. Refusing a new session is cheap, so the queue drains
//! and the sessions already accepted get their ACK, BYE and retransmissions
//! answered long before the clients' timers (T1 = 500 ms) fire. Without
//! it, a rate above capacity grows the queue until the socket drops
//! messages at random; answered sessions lose their ACK and hold their
//! ports for 32 s, and the server collapses (measured: 1,100 sessions/s
//! offered, 20,461 of 33,000 calls failed; see `docs/performance.md`).

use std::time::{Duration, Instant};

/// Queue depth (messages) that counts as deep.
pub const BEHIND: usize = 64;
/// How long every wake-up must find a deep queue.
pub const BEHIND_FOR: Duration = Duration::from_millis(200);
/// Queue depth under which the server has caught up.
pub const CAUGHT_UP: usize = 16;
/// An episode ends after this long without refusing.
pub const EPISODE_GAP: Duration = Duration::from_secs(1);

/// What [`Overload::observe`] reports besides the verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Episode {
    /// New sessions are being refused from now on (queue depth).
    Started { queued: usize },
    /// None refused for [`EPISODE_GAP`]: the deepest queue and how long.
    Ended { deepest: usize, lasted: Duration },
}

#[derive(Debug, Default)]
pub struct Overload {
    deep_since: Option<Instant>,
    /// start, last refusing wake-up, deepest queue.
    episode: Option<(Instant, Instant, usize)>,
}

impl Overload {
    /// One wake-up that found `queued` messages waiting. Returns whether
    /// new sessions must be refused now, and an episode start or end.
    pub fn observe(&mut self, now: Instant, queued: usize) -> (bool, Option<Episode>) {
        if queued >= BEHIND {
            self.deep_since.get_or_insert(now);
        } else if queued < CAUGHT_UP {
            self.deep_since = None;
        }
        let behind = self
            .deep_since
            .is_some_and(|t| now.saturating_duration_since(t) >= BEHIND_FOR);
        let event = match (&mut self.episode, behind) {
            (None, true) => {
                self.episode = Some((now, now, queued));
                Some(Episode::Started { queued })
            }
            (Some((_, last, deepest)), true) => {
                *last = now;
                *deepest = (*deepest).max(queued);
                None
            }
            (Some((start, last, deepest)), false) => {
                if now.saturating_duration_since(*last) >= EPISODE_GAP {
                    let e = Episode::Ended {
                        deepest: *deepest,
                        lasted: now.saturating_duration_since(*start),
                    };
                    self.episode = None;
                    Some(e)
                } else {
                    None
                }
            }
            (None, false) => None,
        };
        (behind, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    #[test]
    fn a_hiccup_is_not_overload() {
        let t0 = Instant::now();
        let mut o = Overload::default();
        // One deep wake-up (a 60 ms stall), then caught up: nobody refused.
        assert_eq!(o.observe(t0, 188), (false, None));
        assert_eq!(o.observe(ms(t0, 30), 90), (false, None));
        assert_eq!(o.observe(ms(t0, 60), 10), (false, None));
        // Deep again later: the 200 ms start from scratch.
        assert_eq!(o.observe(ms(t0, 300), 100), (false, None));
        assert_eq!(o.observe(ms(t0, 450), 100), (false, None));
    }

    #[test]
    fn a_queue_that_stays_deep_refuses_until_caught_up() {
        let t0 = Instant::now();
        let mut o = Overload::default();
        let mut t = 0;
        while t < 200 {
            assert_eq!(o.observe(ms(t0, t), 70), (false, None), "at {t} ms");
            t += 20;
        }
        assert_eq!(
            o.observe(ms(t0, 200), 120),
            (true, Some(Episode::Started { queued: 120 }))
        );
        // Between CAUGHT_UP and BEHIND: still refusing (hysteresis).
        assert_eq!(o.observe(ms(t0, 220), 300), (true, None));
        assert_eq!(o.observe(ms(t0, 240), 30), (true, None));
        // Caught up: accepting again; the episode ends a second later.
        assert_eq!(o.observe(ms(t0, 260), 5), (false, None));
        assert_eq!(o.observe(ms(t0, 900), 5), (false, None));
        assert_eq!(
            o.observe(ms(t0, 1240), 0),
            (
                false,
                Some(Episode::Ended {
                    deepest: 300,
                    lasted: Duration::from_millis(1040)
                })
            )
        );
        assert_eq!(o.observe(ms(t0, 1300), 0), (false, None));
    }
}
