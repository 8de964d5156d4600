//! The few system calls the IO layer makes through libc: the descriptor
//! limit, free disk space, a socket's receive buffer.

/// Raises the soft descriptor limit (RLIMIT_NOFILE) to the hard one: the
/// default soft limit (often 1,024) is far below what thousands of streams
/// need. Returns the limit in force.
pub fn raise_nofile_limit() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return 1024;
    }
    if r.rlim_cur < r.rlim_max {
        let want = libc::rlimit {
            rlim_cur: r.rlim_max,
            rlim_max: r.rlim_max,
        };
        // SAFETY: setrlimit reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
            tracing::info!(
                from = r.rlim_cur,
                to = r.rlim_max,
                "raised the open-file limit"
            );
            r.rlim_cur = r.rlim_max;
        }
    }
    // The cap keeps RLIM_INFINITY sane.
    r.rlim_cur.min(1 << 30)
}

/// Is this OS error the process or the system out of descriptors?
pub fn out_of_descriptors(errno: Option<i32>) -> bool {
    matches!(errno, Some(libc::EMFILE | libc::ENFILE))
}

/// Asks for a receive buffer of `bytes` (capped by net.core.rmem_max).
pub fn set_recv_buffer(sock: &tokio::net::UdpSocket, bytes: usize) {
    use std::os::fd::AsRawFd;
    let v = bytes as libc::c_int;
    // SAFETY: setsockopt reads `v` (a c_int, size given) on a descriptor
    // `sock` owns.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "SO_RCVBUF on the SIP socket");
    }
}

/// Free bytes (for unprivileged users) on the filesystem holding `path`.
pub fn free_bytes(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: a valid NUL-terminated path and a zeroed out-struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}
