//! The listeners: the Unix socket (always) and loopback TCP (`--listen`),
//! and who the peer of each connection is. On the socket the kernel says
//! (SO_PEERCRED), read when the connection is accepted, before the client
//! has sent a byte; nothing the client says about itself counts.

use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::net::{TcpListener, UnixListener};

use crate::error::{Error, Result};
use crate::provenance::Peer;

/// The socket's default path: `$XDG_RUNTIME_DIR/refine-proc/api.sock`
/// (else `/run/user/UID/refine-proc/api.sock`).
pub fn default_socket() -> PathBuf {
    let runtime = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_absolute())
        .unwrap_or_else(|| PathBuf::from(format!("/run/user/{}", crate::provenance::uid())));
    runtime.join("refine-proc").join("api.sock")
}

/// Who is at the other end of one connection.
#[derive(Clone, Debug)]
pub enum Conn {
    /// A Unix socket peer: its uid and pid from the kernel, and the
    /// managed process its cgroup names (None when it could not be read).
    Unix {
        uid: Option<u32>,
        peer: Option<Peer>,
    },
    /// A TCP peer on loopback: a person once it shows a session.
    Tcp { addr: SocketAddr },
}

impl Connected<IncomingStream<'_, UnixListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Self {
        let cred = stream.io().peer_cred().ok();
        let uid = cred.as_ref().map(|c| c.uid());
        // Read now, while the peer is blocked on its first request: the
        // pid is the one that connected.
        let peer = cred.and_then(|c| {
            let pid = u32::try_from(c.pid()?).ok()?;
            Peer::from_pid(c.uid(), pid)
        });
        Conn::Unix { uid, peer }
    }
}

impl Connected<IncomingStream<'_, TcpListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        Conn::Tcp {
            addr: *stream.remote_addr(),
        }
    }
}

/// Binds the socket: its directory private (0700, ours), a stale socket
/// of a dead daemon replaced, a live one left alone (refused).
pub fn bind_unix(path: &Path) -> Result<UnixListener> {
    let io = |what: &str, e: std::io::Error| {
        Error::index(format!("cannot {what} {}: {e}", path.display()))
            .hint("check the permissions of $XDG_RUNTIME_DIR, or pass --socket PATH")
    };
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io("create the directory of", e))?;
    let meta = std::fs::metadata(dir).map_err(|e| io("inspect the directory of", e))?;
    if meta.uid() != crate::provenance::uid() {
        return Err(Error::refused(format!(
            "{} belongs to uid {}, not to you",
            dir.display(),
            meta.uid()
        ))
        .hint("pass --socket PATH in a directory of your own"));
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| io("make private the directory of", e))?;
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(Error::refused(format!(
                "another daemon serves the API on {}",
                path.display()
            ))
            .hint("stop it first, or pass --socket PATH"));
        }
        std::fs::remove_file(path).map_err(|e| io("remove the stale socket", e))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| io("listen on", e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| io("make private", e))?;
    Ok(listener)
}

/// Checks a `--listen` address: loopback only, so nothing off this
/// machine can reach it.
pub fn check_listen(addr: &SocketAddr) -> Result<()> {
    if addr.ip().is_loopback() {
        return Ok(());
    }
    Err(
        Error::invalid(format!("--listen {addr} is not a loopback address"))
            .hint("use 127.0.0.1:PORT (or [::1]:PORT); the API is for this machine only"),
    )
}
