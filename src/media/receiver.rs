//! Receiving datagrams in batches into pooled buffers (`recvmmsg(2)`):
//! one system call drains up to [`BATCH`] queued packets, into buffers
//! allocated once per stream, so the packet path allocates nothing.

use std::io;
use std::os::fd::RawFd;

/// Datagrams taken per `recvmmsg` call.
pub const BATCH: usize = 16;
/// Size of each pooled buffer (larger than any RTP packet we accept).
pub const BUF: usize = 2048;

/// A pool of receive buffers, with the `recvmmsg` headers that point into
/// them built once.
pub struct BatchReceiver {
    bufs: Box<[[u8; BUF]; BATCH]>,
    /// Pointed to by `hdr`; kept alive, never read directly.
    _iov: Box<[libc::iovec; BATCH]>,
    hdr: Box<[libc::mmsghdr; BATCH]>,
    names: Box<[libc::sockaddr_storage; BATCH]>,
    lens: [usize; BATCH],
    count: usize,
}

// SAFETY: the raw pointers in `_iov`/`hdr`/`names` point only into this struct's own
// heap allocations (`bufs`, `_iov`, `names`), which move with it; nothing is shared.
unsafe impl Send for BatchReceiver {}

impl Default for BatchReceiver {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchReceiver {
    pub fn new() -> Self {
        let mut bufs = Box::new([[0u8; BUF]; BATCH]);
        // SAFETY: all-zero is a valid iovec/mmsghdr (null pointers, zero
        // lengths); the pointers set below refer to the boxed arrays, whose
        // heap addresses never change.
        let mut iov: Box<[libc::iovec; BATCH]> = Box::new(unsafe { std::mem::zeroed() });
        let mut hdr: Box<[libc::mmsghdr; BATCH]> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: all-zero is a valid sockaddr_storage.
        let mut names: Box<[libc::sockaddr_storage; BATCH]> =
            Box::new(unsafe { std::mem::zeroed() });
        for i in 0..BATCH {
            iov[i].iov_base = bufs[i].as_mut_ptr().cast();
            iov[i].iov_len = BUF;
            hdr[i].msg_hdr.msg_iov = &mut iov[i];
            hdr[i].msg_hdr.msg_iovlen = 1;
            hdr[i].msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
            hdr[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
        }
        BatchReceiver {
            bufs,
            _iov: iov,
            hdr,
            names,
            lens: [0; BATCH],
            count: 0,
        }
    }

    /// Takes what is queued on the non-blocking socket `fd`: the number of
    /// datagrams (0..=BATCH), or `WouldBlock` when nothing is queued.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        // SAFETY: `hdr` holds BATCH headers whose iovecs point into buffers
        // of BUF bytes owned by self; MSG_DONTWAIT never blocks.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdr.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            self.count = 0;
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for (i, h) in self.hdr.iter_mut().take(n).enumerate() {
            self.lens[i] = (h.msg_len as usize).min(BUF);
        }
        // recvmmsg shortens msg_namelen per message: restore for next time.
        for h in self.hdr.iter_mut() {
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
        }
        self.count = n;
        Ok(n)
    }

    /// Source address of datagram `i` of the last batch.
    pub fn source(&self, i: usize) -> Option<std::net::SocketAddr> {
        if i >= self.count {
            return None;
        }
        let ss = &self.names[i];
        match i32::from(ss.ss_family) {
            libc::AF_INET => {
                // SAFETY: the kernel wrote a sockaddr_in for AF_INET.
                let a: &libc::sockaddr_in =
                    unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
                let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                Some((ip, u16::from_be(a.sin_port)).into())
            }
            libc::AF_INET6 => {
                // SAFETY: the kernel wrote a sockaddr_in6 for AF_INET6.
                let a: &libc::sockaddr_in6 =
                    unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
                let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
                Some((ip, u16::from_be(a.sin6_port)).into())
            }
            _ => None,
        }
    }

    /// Datagram `i` of the last batch, writable (SRTP decrypts in place).
    pub fn packet_mut(&mut self, i: usize) -> &mut [u8] {
        if i < self.count {
            &mut self.bufs[i][..self.lens[i]]
        } else {
            &mut []
        }
    }

    /// Datagram `i` of the last batch.
    pub fn packet(&self, i: usize) -> &[u8] {
        if i < self.count {
            &self.bufs[i][..self.lens[i]]
        } else {
            &[]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn drains_queued_datagrams_in_batches() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut b = BatchReceiver::new();
        assert_eq!(
            b.recv(rx.as_raw_fd()).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        for i in 0..20u8 {
            tx.send_to(&[i; 172], rx.local_addr().unwrap()).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        let n = b.recv(rx.as_raw_fd()).unwrap();
        assert_eq!(n, BATCH);
        assert_eq!(b.packet(0), &[0u8; 172][..]);
        assert_eq!(b.source(0), Some(tx.local_addr().unwrap()));
        assert_eq!(b.packet(15)[0], 15);
        assert_eq!(b.recv(rx.as_raw_fd()).unwrap(), 4);
        assert_eq!(b.packet(3)[0], 19);
        assert!(b.packet(4).is_empty());
    }
}
