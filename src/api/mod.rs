//! The HTTP API the daemon serves: on a Unix socket (always) and on
//! loopback TCP for browsers (`daemon --listen`), with an OpenAPI document
//! generated from the handlers and their types. Every request goes through
//! the same operations, policy and audit as the CLI, for the caller the
//! connection establishes (see [`auth`]): a client can do nothing the CLI
//! could not.

pub mod auth;
pub mod extract;
pub mod idempotency;
pub mod openapi;
pub mod problem;
pub mod processes;
pub mod schema;
pub mod server;
pub mod sessions;
pub mod streams;
pub mod system;
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
        self.base.for_peer(caller.peer.clone())
    }

    /// The page's address, with `--listen`.
    pub fn url(&self) -> Option<String> {
        self.listen
            .map(|a| format!("http://{}/", auth::allowed_hosts(&a)[0]))
    }
}

/// The running listeners; dropping it stops them and removes the socket.
pub struct Server {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    socket: Option<PathBuf>,
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
        listen,
    })
}
