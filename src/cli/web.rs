//! `daemon --listen/--socket` and `refine-proc web`: the CLI side of the
//! HTTP API. `web` asks the daemon, over its Unix socket, for a one-time
//! code and prints (or opens) the page's URL with it.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use refine_proc::{Error, Result};

#[derive(Args, Debug, Default)]
pub struct DaemonArgs {
    /// Also serve the API and the browser page on loopback TCP, e.g. 127.0.0.1:8765 (off by default)
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,
    /// The API's Unix socket [default: $XDG_RUNTIME_DIR/refine-proc/api.sock]
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
}

impl DaemonArgs {
    pub fn options(&self) -> refine_proc::api::Options {
        refine_proc::api::Options {
            socket: self
                .socket
                .clone()
                .unwrap_or_else(refine_proc::api::default_socket),
            socket_given: self.socket.is_some(),
            listen: self.listen,
        }
    }
}

#[derive(Args, Debug)]
pub struct WebArgs {
    /// The daemon's API socket [default: $XDG_RUNTIME_DIR/refine-proc/api.sock]
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Open the URL in the browser (xdg-open) instead of only printing it
    #[arg(long)]
    open: bool,
    /// Print a token for scripts instead (scope read or control), kept 0600 by the daemon
    #[arg(long, value_name = "SCOPE")]
    token: Option<String>,
    #[arg(long)]
    json: bool,
}

/// One request over the socket (HTTP/1.1, closed after the answer).
fn request(
    socket: &std::path::Path,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String)> {
    let unreachable = |e: std::io::Error| {
        Error::new(
            refine_proc::ErrorKind::Unavailable,
            format!("cannot reach the daemon's API at {}: {e}", socket.display()),
        )
        .hint("start the daemon: systemctl --user start refine-proc (with --listen 127.0.0.1:PORT for the page)")
    };
    let mut s = std::os::unix::net::UnixStream::connect(socket).map_err(unreachable)?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(unreachable)?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).map_err(unreachable)?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| Error::systemd("the daemon's answer is not HTTP"))?;
    Ok((status, body.to_string()))
}

fn problem(body: &str) -> Error {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let mut e = Error::refused(v["detail"].as_str().unwrap_or(body).to_string());
    if let Some(h) = v["hint"].as_str() {
        e = e.hint(h);
    }
    e
}

/// `refine-proc web`: prints (or opens) `http://127.0.0.1:PORT/#CODE`.
pub fn web(args: &WebArgs) -> Result<i32> {
    let socket = args
        .socket
        .clone()
        .unwrap_or_else(refine_proc::api::default_socket);
    if let Some(scope) = &args.token {
        let body = serde_json::json!({ "scope": scope }).to_string();
        let (status, body) = request(&socket, "POST", "/api/v1/tokens", &body)?;
        if status != 201 {
            return Err(problem(&body));
        }
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if args.json {
            println!("{body}");
        } else {
            println!("{}", v["token"].as_str().unwrap_or_default());
        }
        return Ok(0);
    }
    let (status, body) = request(&socket, "POST", "/api/v1/web/code", "")?;
    if status != 200 {
        return Err(problem(&body));
    }
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let url = v["url"].as_str().unwrap_or_default().to_string();
    if args.json {
        println!("{body}");
    } else {
        println!("{url}");
        eprintln!("refine-proc: open it within two minutes; the code works once");
    }
    if args.open {
        let opened = std::process::Command::new("xdg-open").arg(&url).status();
        if !opened.is_ok_and(|s| s.success()) {
            eprintln!("refine-proc: could not run xdg-open: open the URL above yourself");
        }
    }
    Ok(0)
}
