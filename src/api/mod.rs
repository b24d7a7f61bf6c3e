//! The HTTP API the daemon serves: on a Unix socket (always) and on
//! loopback TCP for browsers (`daemon --listen`), with an OpenAPI document
//! generated from the handlers and their types. Every request goes through
//! the same operations, policy and audit as the CLI, for the caller the
//! connection establishes (see [`auth`]): a client can do nothing the CLI
//! could not.

pub mod auth;
pub mod extract;
pub mod idempotency;
pub mod mcp;
pub mod openapi;
pub mod problem;
pub mod processes;
pub mod schema;
pub mod server;
pub mod sessions;
pub mod streams;
pub mod system;
pub mod terminal;
pub mod web;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::controller::Controller;
use crate::error::{Error, Result};
use crate::model::Timestamp;
use crate::provenance::Peer;

pub use server::default_socket;

/// Where to listen.
#[derive(Clone, Debug)]
pub struct Options {
    pub socket: PathBuf,
    /// Whether `socket` was asked for (then failing to bind it is an
    /// error; the default socket held by another daemon only a warning).
    pub socket_given: bool,
    /// Loopback TCP for browsers; off by default.
    pub listen: Option<SocketAddr>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            socket: default_socket(),
            socket_given: false,
            listen: None,
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The daemon's controller settings (index, policy, systemd
    /// connection), from which each request's controller is made.
    base: Arc<Controller>,
    pub auth: Arc<auth::Auth>,
    /// The daemon's uid: the only one served.
    pub uid: u32,
    pub started: Timestamp,
    pub socket: PathBuf,
    pub listen: Option<SocketAddr>,
}

impl AppState {
    /// A controller that acts for this request's caller.
    pub fn controller(&self, caller: &auth::Caller) -> Controller {
        if caller.peer.pid.is_some() {
            return self.base.for_peer(caller.peer.clone());
        }
        // A person with a session has no process whose PATH and cwd
        // resolve commands: the daemon's (the user manager's) and home.
        let mut person = crate::controller::Caller::person(caller.peer.uid);
        person.env = crate::spec::CallerEnv {
            cwd: crate::provenance::home_dir(),
            path: std::env::var_os("PATH"),
        };
        self.base.on_behalf_of(person)
    }

    /// The page's address, with `--listen`.
    pub fn url(&self) -> Option<String> {
        self.listen
            .map(|a| format!("http://{}/", auth::allowed_hosts(&a)[0]))
    }
}

/// The file in the index directory that names the socket the daemon of
/// that index serves: a CLI that cannot reach the user bus (a confined
/// unit) finds its daemon there, whatever `--socket` it was given.
pub const SOCKET_FILE: &str = "api.socket";

/// The socket of the daemon of the index in `dir`, as its [`SOCKET_FILE`]
/// names it (None without a daemon that wrote one).
pub fn socket_of(dir: &std::path::Path) -> Option<PathBuf> {
    std::fs::read_to_string(dir.join(SOCKET_FILE))
        .ok()
        .map(|s| PathBuf::from(s.trim_end_matches('\n')))
        .filter(|p| p.is_absolute())
}

/// Writes [`SOCKET_FILE`] atomically (a temporary file, fsynced, renamed,
/// the directory fsynced): a reader never sees half a path.
fn write_socket_file(dir: &std::path::Path, socket: &std::path::Path) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!(".{SOCKET_FILE}.{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(format!("{}\n", socket.display()).as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(SOCKET_FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

/// The running listeners; dropping it stops them and removes the socket.
pub struct Server {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    socket: Option<PathBuf>,
    /// The [`SOCKET_FILE`] written for `socket`.
    socket_file: Option<PathBuf>,
    /// The TCP listener's address (the port chosen for `:0`).
    pub listen: Option<SocketAddr>,
}

impl Drop for Server {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Some(s) = &self.socket {
            let _ = std::fs::remove_file(s);
        }
        if let Some(f) = &self.socket_file {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// Binds the listeners and serves them in tasks of the current runtime.
pub async fn start(controller: &Controller, options: Options) -> Result<Server> {
    // One connection to systemd, shared by every request's controller.
    controller.systemd().await?;
    let uid = crate::provenance::uid();
    let base = Arc::new(controller.for_peer(Peer::person(uid)));
    let unix = match server::bind_unix(&options.socket) {
        Ok(l) => Some(l),
        Err(e) if !options.socket_given => {
            tracing::warn!("no API on the Unix socket: {}", e.message);
            None
        }
        Err(e) => return Err(e),
    };
    let tcp = match options.listen {
        Some(addr) => {
            server::check_listen(&addr)?;
            let l = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                Error::refused(format!("cannot listen on {addr}: {e}"))
                    .hint("pick a free port, e.g. --listen 127.0.0.1:0 for any")
            })?;
            Some(l)
        }
        None => None,
    };
    let listen = tcp.as_ref().and_then(|l| l.local_addr().ok());
    let state = AppState {
        auth: Arc::new(auth::Auth::new(listen, controller.index().dir())),
        base,
        uid,
        started: Timestamp::now(),
        socket: options.socket.clone(),
        listen,
    };
    let app = openapi::app(state);
    let mut tasks = Vec::new();
    let socket = unix.is_some().then(|| options.socket.clone());
    if let Some(l) = unix {
        let make = app
            .clone()
            .into_make_service_with_connect_info::<server::Conn>();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(l, make).await {
                tracing::error!("the API on the Unix socket stopped: {e}");
            }
        }));
        tracing::info!("API on {}", options.socket.display());
    }
    let dir = controller.index().dir();
    let socket_file = match &socket {
        Some(s) => match write_socket_file(dir, s) {
            Ok(()) => Some(dir.join(SOCKET_FILE)),
            Err(e) => {
                // Only confined callers need it; the others use the bus.
                tracing::warn!("cannot write {}: {e}", dir.join(SOCKET_FILE).display());
                None
            }
        },
        None => None,
    };
    if let Some(l) = tcp {
        let make = app.into_make_service_with_connect_info::<server::Conn>();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(l, make).await {
                tracing::error!("the API on TCP stopped: {e}");
            }
        }));
        tracing::info!(
            "API and page on http://{}/",
            listen.map(|a| a.to_string()).unwrap_or_default()
        );
    }
    Ok(Server {
        tasks,
        socket,
        socket_file,
        listen,
    })
}
