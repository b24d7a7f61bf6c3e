//! Who a request acts for, and whether it may be made at all.
//!
//! On the Unix socket the peer is established from its credentials (see
//! `server`): another uid is refused; a peer inside a managed unit is that
//! managed process, bound by its policy, exactly as its CLI call would be.
//!
//! On loopback TCP, against what browsers' attackers do today: `Host` must
//! name the listener (DNS rebinding), `Origin`, when sent, must be the
//! listener's own (and a cookie-authenticated state change must send it),
//! no CORS header is ever sent, and every request needs a session: a
//! cookie (HttpOnly, SameSite=Strict) got for a one-time code, or a token
//! with a scope (read, control). Either acts as `person`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::problem::Problem;
use super::server::Conn;
use super::AppState;
use crate::provenance::Peer;

/// How long a one-time code may wait to be exchanged.
pub const CODE_TTL: Duration = Duration::from_secs(120);
/// How long a browser session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// The session cookie's name.
pub const COOKIE: &str = "refine_session";

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// GET only.
    Read,
    /// Everything a person may do.
    Control,
}

/// How a request reached the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    Unix,
    /// TCP with a session of this scope.
    Tcp(Scope),
}

/// The established caller of one request.
#[derive(Clone, Debug)]
pub struct Caller {
    pub peer: Peer,
    pub via: Via,
}

impl Caller {
    /// Refuses unless a person asks over the socket: only they may open
    /// sessions or make tokens (a managed process would escape its policy).
    pub fn must_be_person_on_socket(&self, what: &str) -> Result<(), Problem> {
        if self.via != Via::Unix {
            return Err(
                Problem::forbidden(format!("{what} only over the Unix socket"))
                    .hint("run refine-proc web (or curl --unix-socket) as yourself"),
            );
        }
        if let Some(m) = &self.peer.managed {
            return Err(Problem::forbidden(format!(
                "{what}: refused to the managed process {} ({})",
                m.id, m.owner
            ))
            .hint("a managed process acts under its own policy, never as a person"));
        }
        Ok(())
    }
}

/// A token for scripts, as `secrets/api-tokens.json` (0600) keeps it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Token {
    secret: String,
    scope: Scope,
    created_at: crate::model::Timestamp,
}

/// Sessions, codes and tokens of the TCP listener.
pub struct Auth {
    /// `host:port` spellings that name the listener.
    hosts: Vec<String>,
    codes: Mutex<HashMap<String, Instant>>,
    sessions: Mutex<HashMap<String, Instant>>,
    tokens_path: PathBuf,
}

/// 32 random bytes from the kernel, as hex.
pub fn random_secret() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("the kernel's random source");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares secrets in time independent of where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Auth {
    pub fn new(listen: Option<SocketAddr>, state_dir: &std::path::Path) -> Auth {
        let hosts = listen.map_or_else(Vec::new, |a| allowed_hosts(&a));
        Auth {
            hosts,
            codes: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            tokens_path: tokens_file(state_dir),
        }
    }

    /// A new one-time code, valid for [`CODE_TTL`].
    pub fn new_code(&self) -> String {
        let code = random_secret();
        let mut codes = self.codes.lock().unwrap();
        codes.retain(|_, at| at.elapsed() < CODE_TTL);
        codes.insert(code.clone(), Instant::now());
        code
    }

    /// Exchanges a code (once) for a session secret.
    pub fn exchange(&self, code: &str) -> Option<String> {
        let issued = self.codes.lock().unwrap().remove(code)?;
        if issued.elapsed() >= CODE_TTL {
            return None;
        }
        let session = random_secret();
        let mut sessions = self.sessions.lock().unwrap();
        sessions.retain(|_, at| at.elapsed() < SESSION_TTL);
        sessions.insert(session.clone(), Instant::now());
        Some(session)
    }

    fn session_ok(&self, secret: &str) -> bool {
        let sessions = self.sessions.lock().unwrap();
        sessions
            .iter()
            .any(|(s, at)| same_secret(s, secret) && at.elapsed() < SESSION_TTL)
    }

    fn load_tokens(&self) -> Vec<Token> {
        std::fs::read(&self.tokens_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Makes a token and stores it (0600, atomically, synced).
    pub fn new_token(&self, scope: Scope) -> crate::error::Result<String> {
        let secret = random_secret();
        let mut tokens = self.load_tokens();
        tokens.push(Token {
            secret: secret.clone(),
            scope,
            created_at: crate::model::Timestamp::now(),
        });
        let bytes = serde_json::to_vec_pretty(&tokens).expect("tokens serialize");
        super::idempotency::write_replace(&self.tokens_path, &bytes).map_err(|e| {
            crate::error::Error::index(format!("cannot write {}: {e}", self.tokens_path.display()))
        })?;
        Ok(secret)
    }

    pub fn tokens_path(&self) -> &std::path::Path {
        &self.tokens_path
    }

    fn token_scope(&self, secret: &str) -> Option<Scope> {
        self.load_tokens()
            .into_iter()
            .find(|t| same_secret(&t.secret, secret))
            .map(|t| t.scope)
    }

    /// Whether `host` (the Host header) names the listener.
    pub fn host_ok(&self, host: Option<&str>) -> bool {
        host.is_some_and(|h| self.hosts.iter().any(|a| a.eq_ignore_ascii_case(h)))
    }

    /// Whether `origin` is the listener's own.
    pub fn origin_ok(&self, origin: &str) -> bool {
        self.hosts
            .iter()
            .any(|h| origin.eq_ignore_ascii_case(&format!("http://{h}")))
    }
}

/// The file of the API's tokens: in the index's `secrets/`, which confined
/// units cannot see. One left by an older version beside the records (where
/// a confined process could read it) is moved there first.
pub fn tokens_file(state_dir: &std::path::Path) -> PathBuf {
    let path = state_dir.join(crate::index::SECRETS_DIR).join(TOKENS);
    let old = state_dir.join(TOKENS);
    if !path.exists() && old.exists() {
        let moved = std::fs::rename(&old, &path).and_then(|()| {
            std::fs::File::open(state_dir.join(crate::index::SECRETS_DIR))?.sync_all()?;
            std::fs::File::open(state_dir)?.sync_all()
        });
        match moved {
            Ok(()) => tracing::info!("moved {} to {}", old.display(), path.display()),
            Err(e) => tracing::warn!("cannot move {} to {}: {e}", old.display(), path.display()),
        }
    }
    path
}

const TOKENS: &str = "api-tokens.json";

/// The Host values that name `addr`: its literal address and, for
/// 127.0.0.1 and ::1, `localhost`.
pub fn allowed_hosts(addr: &SocketAddr) -> Vec<String> {
    let port = addr.port();
    let mut hosts = vec![match addr {
        SocketAddr::V4(a) => format!("{}:{port}", a.ip()),
        SocketAddr::V6(a) => format!("[{}]:{port}", a.ip()),
    }];
    if addr.ip().is_loopback() {
        hosts.push(format!("localhost:{port}"));
    }
    hosts
}

fn cookie_session(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// A long-lived response (a stream): its Origin is checked like a change.
fn is_stream(req: &Request) -> bool {
    let accepts_sse = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    let follows = req.uri().query().is_some_and(|q| {
        q.split('&')
            .any(|kv| kv == "follow=true" || kv == "follow=1")
    });
    accepts_sse || follows
}

/// Paths a TCP client may reach without a session: the page itself (it
/// holds no data) and the exchange of a code.
fn is_public(path: &str, method: &Method) -> bool {
    (path == "/api/v1/session" && method == Method::POST)
        || (!path.starts_with("/api/") && (method == Method::GET || method == Method::HEAD))
}

/// The TCP checks, in order: Host, Origin, session. Returns the scope.
pub fn check_tcp(auth: &Auth, req: &Request) -> Result<Option<Scope>, Problem> {
    let headers = req.headers();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if !auth.host_ok(host) {
        return Err(Problem::forbidden(format!(
            "Host {:?} does not name this listener",
            host.unwrap_or("")
        ))
        .hint("connect to http://127.0.0.1:PORT/ as refine-proc web prints it"));
    }
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD);
    let origin = headers
        .get(header::ORIGIN)
        .map(|o| o.to_str().unwrap_or(""));
    if let Some(o) = origin {
        if (changes || is_stream(req)) && !auth.origin_ok(o) {
            return Err(
                Problem::forbidden(format!("cross-origin request from {o:?} refused"))
                    .hint("use the page served by the daemon itself"),
            );
        }
    }
    let path = req.uri().path();
    if is_public(path, req.method()) {
        return Ok(None);
    }
    if let Some(secret) = cookie_session(headers) {
        if auth.session_ok(secret) {
            // A browser sends Origin with every POST: one without it is
            // not the page.
            if changes && origin.is_none() {
                return Err(Problem::forbidden("a change without Origin refused")
                    .hint("use the page served by the daemon itself"));
            }
            return Ok(Some(Scope::Control));
        }
    }
    if let Some(secret) = bearer(headers) {
        match auth.token_scope(secret) {
            // MCP is all POSTs: its server gives a read token only the
            // read-only tools (see `api::mcp`).
            Some(Scope::Read) if changes && path != super::mcp::PATH => {
                return Err(Problem::forbidden("this token may only read")
                    .hint("make a control token: refine-proc web --token control"))
            }
            Some(scope) => return Ok(Some(scope)),
            None => {}
        }
    }
    Err(Problem::unauthorized("no session").hint(
        "open the URL refine-proc web prints (a one-time code), or send Authorization: Bearer TOKEN",
    ))
}

/// The caller of a Unix socket connection: only the daemon's own uid, and
/// only a peer whose cgroup could be read (else it could pass for a person).
pub fn check_unix(
    daemon_uid: u32,
    uid: Option<u32>,
    peer: Option<Peer>,
) -> Result<Caller, Problem> {
    match (uid, peer) {
        (Some(uid), _) if uid != daemon_uid => Err(Problem::forbidden(format!(
            "uid {uid} may not use the API of uid {daemon_uid}"
        ))
        .hint("each user talks to their own daemon")),
        (Some(_), Some(peer)) if peer.uid == daemon_uid => Ok(Caller {
            peer,
            via: Via::Unix,
        }),
        _ => Err(Problem::forbidden("cannot establish who is connecting")
            .hint("the peer's credentials or cgroup could not be read")),
    }
}

/// Establishes the caller of every request, or refuses it.
pub async fn guard(
    State(state): State<AppState>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    mut req: Request,
    next: Next,
) -> Response {
    let caller = match conn {
        Conn::Unix { uid, peer } => match check_unix(state.uid, uid, peer) {
            Ok(c) => c,
            Err(p) => return p.into_response(),
        },
        Conn::Tcp { .. } => match check_tcp(&state.auth, &req) {
            Ok(scope) => Caller {
                peer: Peer::person(state.uid),
                via: Via::Tcp(scope.unwrap_or(Scope::Read)),
            },
            Err(p) => return p.into_response(),
        },
    };
    req.extensions_mut().insert(caller);
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert("x-content-type-options", "nosniff".parse().unwrap());
    h.insert("x-frame-options", "DENY".parse().unwrap());
    h.insert("referrer-policy", "no-referrer".parse().unwrap());
    h.entry(header::CACHE_CONTROL)
        .or_insert("no-store".parse().unwrap());
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn auth() -> Auth {
        Auth::new(
            Some("127.0.0.1:8123".parse().unwrap()),
            std::path::Path::new("/nonexistent"),
        )
    }

    fn req(method: &str, path: &str, headers: &[(&str, &str)]) -> Request {
        let mut b = axum::http::Request::builder().method(method).uri(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Body::empty()).unwrap()
    }

    #[test]
    fn tcp_without_a_session_is_401_and_a_wrong_host_or_origin_is_403() {
        let a = auth();
        let host = ("host", "127.0.0.1:8123");
        let p = check_tcp(&a, &req("GET", "/api/v1/processes", &[host])).unwrap_err();
        assert_eq!(p.status, 401);
        // DNS rebinding: the attacker's name in Host.
        let p = check_tcp(
            &a,
            &req("GET", "/api/v1/processes", &[("host", "evil.example:8123")]),
        )
        .unwrap_err();
        assert_eq!(p.status, 403);
        let p = check_tcp(&a, &req("GET", "/api/v1/processes", &[])).unwrap_err();
        assert_eq!(p.status, 403);
        // Cross-origin change, before any session is looked at.
        let evil = ("origin", "http://evil.example");
        let p = check_tcp(&a, &req("POST", "/api/v1/session", &[host, evil])).unwrap_err();
        assert_eq!(p.status, 403);
        let p =
            check_tcp(&a, &req("GET", "/api/v1/events?follow=true", &[host, evil])).unwrap_err();
        assert_eq!(p.status, 403);
        // The page and the code exchange need no session.
        assert!(check_tcp(&a, &req("GET", "/", &[host])).is_ok());
        let own = ("origin", "http://127.0.0.1:8123");
        assert!(check_tcp(&a, &req("POST", "/api/v1/session", &[host, own])).is_ok());
    }

    #[test]
    fn a_code_makes_one_session_and_a_cookie_change_needs_origin() {
        let a = auth();
        let code = a.new_code();
        let session = a.exchange(&code).unwrap();
        assert!(a.exchange(&code).is_none(), "a code is good once");
        let host = ("host", "localhost:8123");
        let cookie = format!("other=1; {COOKIE}={session}");
        let cookie = ("cookie", cookie.as_str());
        assert_eq!(
            check_tcp(&a, &req("GET", "/api/v1/processes", &[host, cookie])).unwrap(),
            Some(Scope::Control)
        );
        let p = check_tcp(
            &a,
            &req("POST", "/api/v1/processes/x/stop", &[host, cookie]),
        )
        .unwrap_err();
        assert_eq!(p.status, 403);
        let own = ("origin", "http://localhost:8123");
        assert!(check_tcp(
            &a,
            &req("POST", "/api/v1/processes/x/stop", &[host, cookie, own])
        )
        .is_ok());
        let wrong = ("cookie", "refine_session=00");
        let p = check_tcp(&a, &req("GET", "/api/v1/processes", &[host, wrong])).unwrap_err();
        assert_eq!(p.status, 401);
    }

    #[test]
    fn a_peer_of_another_uid_or_of_unknown_cgroup_is_refused() {
        let me = crate::provenance::uid();
        let other = me.wrapping_add(1);
        let peer = Peer::from_pid(me, std::process::id()).unwrap();
        assert!(check_unix(me, Some(me), Some(peer.clone())).is_ok());
        let p = check_unix(
            me,
            Some(other),
            Some(Peer {
                uid: other,
                ..peer.clone()
            }),
        )
        .unwrap_err();
        assert_eq!(p.status, 403);
        assert!(p.detail.contains(&format!("uid {other}")), "{}", p.detail);
        assert_eq!(check_unix(me, Some(me), None).unwrap_err().status, 403);
        assert_eq!(check_unix(me, None, Some(peer)).unwrap_err().status, 403);
        // A managed peer is that managed process, never a person.
        let text = "0::/user.slice/user@1000.service/refine.slice/refine-agent.slice/refine-agent-abcd2345.service\n";
        let managed = Peer {
            uid: me,
            pid: Some(1),
            managed: crate::provenance::managed_unit_in_cgroup(text),
        };
        let c = check_unix(me, Some(me), Some(managed)).unwrap();
        assert!(c.must_be_person_on_socket("a session").is_err());
    }

    #[test]
    fn hosts_of_a_listener() {
        assert_eq!(
            allowed_hosts(&"127.0.0.1:80".parse().unwrap()),
            ["127.0.0.1:80", "localhost:80"]
        );
        assert_eq!(
            allowed_hosts(&"[::1]:9".parse().unwrap()),
            ["[::1]:9", "localhost:9"]
        );
    }
}
