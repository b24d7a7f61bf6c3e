//! The holder's pseudo-terminal: opened and sized.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::error::{Error, Result};

/// Sets the terminal's window size (the program gets SIGWINCH).
pub(super) fn set_window(fd: RawFd, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from a valid pointer.
    unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
}

/// A new terminal: (master, slave), both close-on-exec; the master does
/// not block.
pub(super) fn open_pty(rows: u16, cols: u16) -> Result<(OwnedFd, OwnedFd)> {
    let master = open_master()?;
    let slave = open_peer(&master, rows, cols)?;
    Ok((master, slave))
}

/// A new terminal's master side (close-on-exec, not blocking, unlocked).
pub(super) fn open_master() -> Result<OwnedFd> {
    let fail = || {
        Error::systemd(format!(
            "cannot open a pseudo-terminal: {}",
            std::io::Error::last_os_error()
        ))
        .hint("check that /dev/pts is mounted and /dev/ptmx is usable")
    };
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC | libc::O_NONBLOCK;
    // SAFETY: posix_openpt returns a new fd or -1.
    let fd = unsafe { libc::posix_openpt(flags) };
    if fd < 0 {
        return Err(fail());
    }
    // SAFETY: a new fd that nothing else owns.
    let master = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: plain calls on the master we own.
    if unsafe { libc::grantpt(master.as_raw_fd()) } != 0
        || unsafe { libc::unlockpt(master.as_raw_fd()) } != 0
    {
        return Err(fail());
    }
    Ok(master)
}

/// The slave side of `master`, opened from the master itself
/// (`TIOCGPTPEER`), not by its name in /dev/pts: a confined holder gets
/// its master from outside and cannot see /dev/pts (see crate::confine).
/// Sized `rows` x `cols`.
pub(super) fn open_peer(master: &OwnedFd, rows: u16, cols: u16) -> Result<OwnedFd> {
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes open flags and returns a new fd or -1.
    let fd = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) };
    if fd < 0 {
        return Err(Error::systemd(format!(
            "cannot open the pseudo-terminal's slave side: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: a new fd that nothing else owns.
    let slave = unsafe { OwnedFd::from_raw_fd(fd) };
    set_window(master.as_raw_fd(), rows.max(1), cols.max(1));
    Ok(slave)
}
