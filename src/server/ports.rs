//! The RTP port pool: which even/odd port pairs of `media.rtp_ports` are
//! free, handed out at random.

use std::net::{IpAddr, UdpSocket};

use crate::config::PortRange;

/// Even/odd RTP/RTCP port pairs from the configured range, handed out at
/// random among the free ones: ports handed out in order are easy to guess
/// for whoever wants to spray the next stream's port before its media
/// starts. A random index into the free list and `swap_remove`: O(1) per
/// allocation, whatever the range.
#[derive(Debug)]
pub struct PortPool {
    lo: u16,
    /// Even ports of the free pairs, in no particular order.
    free: Vec<u16>,
    /// Per pair ((port - lo) / 2): handed out and not released yet.
    used: Vec<bool>,
}

impl PortPool {
    pub fn new(r: PortRange) -> Self {
        let lo = u32::from(r.lo) + u32::from(r.lo % 2);
        // An even port whose odd neighbour is in the range too.
        let free: Vec<u16> = (lo..u32::from(r.hi)).step_by(2).map(|p| p as u16).collect();
        PortPool {
            lo: lo.min(u32::from(u16::MAX)) as u16,
            used: vec![false; free.len()],
            free,
        }
    }

    /// Binds an RTP socket on an even port and RTCP on the next one.
    pub fn bind_pair(&mut self, ip: IpAddr) -> Option<(UdpSocket, UdpSocket, u16)> {
        self.take(|port| {
            let rtp = UdpSocket::bind((ip, port)).ok()?;
            let rtcp = UdpSocket::bind((ip, port + 1)).ok()?;
            rtp.set_nonblocking(true).ok()?;
            rtcp.set_nonblocking(true).ok()?;
            Some((rtp, rtcp, port))
        })
    }

    /// Hands out a random free pair for which `bind` succeeds. A pair that
    /// cannot be bound (another process holds a port now) stays free.
    pub fn take<T>(&mut self, mut bind: impl FnMut(u16) -> Option<T>) -> Option<T> {
        use rand::Rng;
        let mut rng = rand::rng();
        // free[..untried] are the pairs not tried yet by this call.
        let mut untried = self.free.len();
        while untried > 0 {
            let i = rng.random_range(0..untried);
            let port = self.free[i];
            if let Some(t) = bind(port) {
                self.free.swap_remove(i);
                self.used[usize::from(port - self.lo) / 2] = true;
                return Some(t);
            }
            untried -= 1;
            self.free.swap(i, untried);
        }
        None
    }

    pub fn release(&mut self, port: u16) {
        let Some(i) = port.checked_sub(self.lo).map(|d| usize::from(d) / 2) else {
            return;
        };
        if self.used.get(i).copied() == Some(true) {
            self.used[i] = false;
            self.free.push(port);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PortPool;
    use crate::config::PortRange;

    #[test]
    fn rtp_ports_are_handed_out_at_random_and_every_pair_eventually() {
        // The default range: 10,000 pairs.
        let mut pool = PortPool::new(PortRange {
            lo: 10000,
            hi: 29999,
        });
        let t = std::time::Instant::now();
        let got: Vec<u16> = std::iter::from_fn(|| pool.take(Some)).collect();
        assert!(t.elapsed() < std::time::Duration::from_secs(1), "O(1) each");
        let mut sorted = got.clone();
        sorted.sort_unstable();
        let all: Vec<u16> = (10000..29999).step_by(2).collect();
        assert_eq!(sorted, all, "every pair once, RTCP inside the range");
        let in_order = got.windows(2).filter(|w| w[1] == w[0] + 2).count();
        assert!(
            in_order < 50,
            "{in_order} of 9,999 steps were to the next pair"
        );
        assert_ne!(&got[..10], &all[..10]);
        // Released pairs come back (once, even if released twice).
        pool.release(got[7]);
        pool.release(got[7]);
        pool.release(9000); // not ours
        assert_eq!(pool.take(Some), Some(got[7]));
        assert_eq!(pool.take(Some), None);
    }

    #[test]
    fn a_pair_that_cannot_be_bound_stays_free() {
        let mut pool = PortPool::new(PortRange {
            lo: 20001,
            hi: 20008,
        });
        // 20002, 20004, 20006 (20008's RTCP would be outside).
        assert_eq!(pool.free.len(), 3);
        assert_eq!(pool.take(|p| (p == 20004).then_some(p)), Some(20004));
        assert_eq!(pool.take(|_| None::<u16>), None);
        let mut rest: Vec<u16> = std::iter::from_fn(|| pool.take(Some)).collect();
        rest.sort_unstable();
        assert_eq!(rest, [20002, 20006]);
    }
}
