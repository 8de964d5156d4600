//! The low-disk guard, without IO: the drop's free bytes in, whether new
//! sessions are refused (503 Low Disk Space) out, with each episode
//! reported once, when it starts and when it ends.
//!
//! Space is low below `storage.min_free_mb`; it is back only above that
//! plus a fifth (the margin), so a disk hovering at the threshold does not
//! flap between refusing and accepting. When an episode starts, the IO
//! layer also ends the running recordings (they are published, not lost).

/// What changed with the last reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpaceEpisode {
    /// Free space fell below the threshold: refuse new sessions, end the
    /// running ones.
    Low { free: u64 },
    /// Free space is back above the threshold and its margin.
    Back { free: u64 },
}

/// Whether the drop is low on space (see the module doc).
#[derive(Debug, Clone)]
pub struct DiskGuard {
    min_free: u64,
    low: bool,
}

impl DiskGuard {
    /// A guard for `min_free` bytes (`storage.min_free_mb`, in bytes).
    pub fn new(min_free: u64) -> DiskGuard {
        DiskGuard {
            min_free,
            low: false,
        }
    }

    /// Takes a reading of the free bytes.
    pub fn observe(&mut self, free: u64) -> Option<SpaceEpisode> {
        if !self.low && free < self.min_free {
            self.low = true;
            Some(SpaceEpisode::Low { free })
        } else if self.low && free > self.back_above() {
            self.low = false;
            Some(SpaceEpisode::Back { free })
        } else {
            None
        }
    }

    /// Whether new sessions are refused now.
    pub fn is_low(&self) -> bool {
        self.low
    }

    /// The threshold plus its margin (a fifth).
    fn back_above(&self) -> u64 {
        self.min_free + self.min_free / 5
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    #[test]
    fn low_below_the_threshold_and_back_only_past_the_margin() {
        let mut g = DiskGuard::new(100 * MB);
        assert_eq!(g.observe(500 * MB), None);
        assert_eq!(g.observe(100 * MB), None, "at the threshold is enough");
        assert_eq!(
            g.observe(100 * MB - 1),
            Some(SpaceEpisode::Low { free: 100 * MB - 1 })
        );
        assert!(g.is_low());
        assert_eq!(g.observe(50 * MB), None, "one episode, told once");
        assert_eq!(g.observe(110 * MB), None, "inside the margin: still low");
        assert_eq!(g.observe(120 * MB), None, "the margin is a fifth");
        assert_eq!(
            g.observe(120 * MB + 1),
            Some(SpaceEpisode::Back { free: 120 * MB + 1 })
        );
        assert!(!g.is_low());
        assert_eq!(g.observe(101 * MB), None);
    }

    #[test]
    fn no_threshold_never_refuses() {
        let mut g = DiskGuard::new(0);
        assert_eq!(g.observe(0), None);
        assert!(!g.is_low());
    }
}
