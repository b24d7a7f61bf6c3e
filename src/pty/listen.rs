//! The session socket of a confined terminal session, made outside its
//! sandbox and handed to the holder through systemd's file descriptor store.
//!
//! A confined unit cannot reach `$XDG_RUNTIME_DIR/refine-proc/pty` (it is
//! in InaccessiblePaths=, so that no confined process can type into another
//! session), so its holder cannot create its socket there. systemd 252
//! cannot carve the session's own directory out of that either: a
//! BindPaths= below an InaccessiblePaths= is dropped, and
//! TemporaryFileSystem= (or a bind to another path) makes systemd insist on
//! a mount namespace for the privileged exit hook too, which a user manager
//! cannot set up without the user namespace: the hook fails at 226/NAMESPACE
//! and the exit is lost. So the unit gets a privileged `ExecStartPre=`
//! (`refine-proc pty-listen`, outside the sandbox) that binds the socket and
//! stores its fd (`FDSTORE=1`, with `NotifyAccess=all` and
//! `FileDescriptorStoreMax=1`); systemd passes it to the main process as
//! `LISTEN_FDS`, also on a restart, and closes it when the unit ends.
//!
//! The terminal's master side comes the same way: a confined process
//! cannot see /dev/pts at all (where every terminal of the user is, each
//! readable and writable by it), so the master is opened here, outside,
//! and the holder opens the slave side from it (see super::master).

use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::Path;

use crate::error::{Error, Result};

/// The hidden subcommand ExecStartPre runs for a confined `--pty` unit.
pub const LISTEN_COMMAND: &str = "pty-listen";
/// The names of the fds in the unit's store (`LISTEN_FDNAMES`): the
/// session socket, the terminal's master side.
const FD_NAME: &str = "refine-pty";
const MASTER_FD_NAME: &str = "refine-pty-master";
/// systemd's first passed fd (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;

fn io_err(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::systemd(format!("cannot {what} {}: {e}", path.display()))
}

/// Binds `socket` in its private directory (bound under a temporary name
/// and renamed, so a client never finds it before it listens), mode 0600.
pub fn bind(socket: &Path) -> Result<UnixListener> {
    let dir = socket
        .parent()
        .ok_or_else(|| Error::invalid("the session socket has no directory"))?;
    super::private_dir(dir)?;
    let tmp = socket.with_extension("sock.new");
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp).map_err(|e| io_err("listen on", &tmp, e))?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| io_err("restrict", &tmp, e))?;
    std::fs::rename(&tmp, socket).map_err(|e| io_err("publish", socket, e))?;
    Ok(listener)
}

/// `refine-proc pty-listen --socket S`: binds the socket, opens a terminal
/// and puts both in the unit's fd store, replacing what a previous start
/// stored.
pub fn listen_into_store(socket: &Path) -> Result<()> {
    let notify = std::env::var_os("NOTIFY_SOCKET").ok_or_else(|| {
        Error::systemd("no NOTIFY_SOCKET: pty-listen runs as a unit's ExecStartPre=")
            .hint("it is started by refine-proc run --pty for a confined actor, not by hand")
    })?;
    let listener = bind(socket)?;
    let master = super::master::open_master()?;
    let sock = notify_socket(&notify)?;
    let fail = |e: std::io::Error| {
        Error::systemd(format!(
            "cannot hand the session socket to systemd's fd store: {e}"
        ))
    };
    // FDPOLL=0: systemd drops a stored fd that polls POLLHUP, as a master
    // does once its program has closed the terminal; the next start (also
    // one after a daemon-reload, which loses this ExecStartPre=) needs it.
    for (name, fd, keep) in [
        (FD_NAME, listener.as_fd(), ""),
        (MASTER_FD_NAME, master.as_fd(), "\nFDPOLL=0"),
    ] {
        let remove = format!("FDSTOREREMOVE=1\nFDNAME={name}");
        send(&sock, remove.as_bytes(), None).map_err(fail)?;
        let store = format!("FDSTORE=1\nFDNAME={name}{keep}");
        send(&sock, store.as_bytes(), Some(fd)).map_err(fail)?;
    }
    // systemd reads the sender from its pid: wait until it has read every
    // message (it closes the barrier's pipe then), or they could be lost.
    barrier(&sock).map_err(fail)
}

fn notify_socket(addr: &std::ffi::OsStr) -> Result<OwnedFd> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    use std::os::unix::ffi::OsStrExt as _;
    let bytes = addr.as_bytes();
    // An abstract address is written with a leading '@'.
    let sa = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddrUnix::new_abstract_name(name),
        None => SocketAddrUnix::new(bytes),
    }
    .map_err(|e| Error::systemd(format!("NOTIFY_SOCKET is not a socket address: {e}")))?;
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| Error::systemd(format!("cannot open a datagram socket: {e}")))?;
    rustix::net::connect(&fd, &sa)
        .map_err(|e| Error::systemd(format!("cannot reach systemd's notify socket: {e}")))?;
    Ok(fd)
}

/// Sends one datagram, with `fd` attached (SCM_RIGHTS) when given.
fn send(sock: &OwnedFd, msg: &[u8], fd: Option<BorrowedFd<'_>>) -> std::io::Result<()> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let fds = fd.map(|fd| [fd]);
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if let Some(fds) = &fds {
        control.push(SendAncillaryMessage::ScmRights(fds));
    }
    rustix::net::sendmsg(
        sock,
        &[IoSlice::new(msg)],
        &mut control,
        SendFlags::NOSIGNAL,
    )?;
    Ok(())
}

/// `BARRIER=1` with a pipe's write end: systemd closes it once it has
/// handled every message before it; waits up to 10 s for that.
fn barrier(sock: &OwnedFd) -> std::io::Result<()> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    send(sock, b"BARRIER=1", Some(w.as_fd()))?;
    drop(w);
    let mut p = [PollFd::new(&r, PollFlags::IN)];
    let limit = Timespec {
        tv_sec: 10,
        tv_nsec: 0,
    };
    if poll(&mut p, Some(&limit))? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "systemd did not answer the barrier in 10 s",
        ));
    }
    Ok(())
}

/// The listening socket and the terminal's master that systemd passed to
/// the holder (`LISTEN_PID` is this process, the fds named as
/// [`listen_into_store`] stored them): close-on-exec from now on, and the
/// variables removed, so the program on the terminal inherits neither.
pub fn inherited() -> Result<(UnixListener, OwnedFd)> {
    let ours = std::env::var("LISTEN_PID").ok() == Some(std::process::id().to_string());
    let count = std::env::var("LISTEN_FDS").ok();
    let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    for v in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(v);
    }
    let names: Vec<&str> = names.split(':').collect();
    let at = |name: &str| names.iter().position(|n| *n == name);
    let (Some(s), Some(m), true, Some("2")) =
        (at(FD_NAME), at(MASTER_FD_NAME), ours, count.as_deref())
    else {
        return Err(Error::systemd(format!(
            "the holder got no session socket and terminal from systemd (LISTEN_FDS={}, LISTEN_FDNAMES={})",
            count.as_deref().unwrap_or("unset"),
            names.join(":")
        ))
        .hint("the unit's ExecStartPre= (refine-proc pty-listen) stores them: see its journal"));
    };
    let (s, m) = (LISTEN_FDS_START + s as RawFd, LISTEN_FDS_START + m as RawFd);
    // SAFETY: systemd passed these fds to this process alone, under the
    // names pty-listen gave them (the store holds only what it put there):
    // a listening Unix stream socket and a terminal's master.
    let (listener, master) = unsafe { (UnixListener::from_raw_fd(s), OwnedFd::from_raw_fd(m)) };
    let unusable =
        |e: std::io::Error| Error::systemd(format!("cannot use the session socket: {e}"));
    for fd in [listener.as_fd(), master.as_fd()] {
        use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
        use rustix::io::{fcntl_setfd, FdFlags};
        fcntl_setfd(fd, FdFlags::CLOEXEC).map_err(|e| unusable(e.into()))?;
        let fl = fcntl_getfl(fd).map_err(|e| unusable(e.into()))?;
        fcntl_setfl(fd, fl | OFlags::NONBLOCK).map_err(|e| unusable(e.into()))?;
    }
    Ok((listener, master))
}
