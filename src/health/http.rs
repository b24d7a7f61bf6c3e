//! HTTP checks: the URL, parsed strictly, and one GET over hyper's HTTP/1.1
//! connection.

use crate::error::{Error, Result};
use crate::text::escape;
use std::time::Duration;

use super::*;

/// Where an HTTP check connects and what it asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct HttpTarget {
    /// As written in the URL: a name, an IPv4 address or `[IPv6]`.
    pub(super) host: String,
    pub(super) port: u16,
    /// `https://`: the connection is TLS, checked against the trusted roots.
    pub(super) tls: bool,
    /// Path and query, starting with `/`.
    pub(super) path: String,
}

impl HttpTarget {
    fn default_port(&self) -> u16 {
        if self.tls {
            443
        } else {
            80
        }
    }

    /// `host:port`, as a socket address lookup takes it.
    fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The Host header: the port only when it is not the scheme's.
    pub(super) fn host_header(&self) -> String {
        if self.port == self.default_port() {
            self.host.clone()
        } else {
            self.authority()
        }
    }
}

fn bad_url(url: &str, why: &str) -> Error {
    Error::naming(
        crate::error::ErrorKind::Invalid,
        [
            "invalid ".into(),
            crate::error::Field::HealthHttp.into(),
            format!(" URL {:?}: {why}", escape(url)).into(),
        ],
    )
    .hint("use http[s]://HOST[:PORT]/PATH, e.g. http://127.0.0.1:8080/health")
}

/// Checks text that goes into a request line or an address: no control
/// characters, spaces or non-ASCII (a header cannot be smuggled in).
fn plain_ascii(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_graphic())
}

pub(super) fn parse_http_url(url: &str) -> Result<HttpTarget> {
    if url.len() > MAX_ADDRESS {
        return Err(bad_url(
            &url.chars().take(60).collect::<String>(),
            &format!("longer than the {MAX_ADDRESS} bytes accepted"),
        ));
    }
    let lower = url.to_ascii_lowercase();
    let (tls, rest) = if lower.starts_with("https://") {
        (true, &url[8..])
    } else if lower.starts_with("http://") {
        (false, &url[7..])
    } else {
        return Err(bad_url(url, "it must start with http:// or https://"));
    };
    if !plain_ascii(rest) {
        return Err(bad_url(
            url,
            "it contains spaces, control or non-ASCII characters (percent-encode them)",
        ));
    }
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = path.split('#').next().unwrap_or_default();
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    if authority.contains('@') {
        return Err(bad_url(url, "user names and passwords are not supported"));
    }
    let default_port = if tls { 443 } else { 80 };
    let (host, port) =
        split_host_port(authority, default_port).map_err(|why| bad_url(url, &why))?;
    Ok(HttpTarget {
        host,
        port,
        tls,
        path,
    })
}

/// `host[:port]` or `[v6][:port]` into the host as written and the port.
pub(super) fn split_host_port(
    s: &str,
    default_port: u16,
) -> std::result::Result<(String, u16), String> {
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return Err("an IPv6 address lacks its closing ]".into());
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{:?} is not an IPv6 address", escape(addr)));
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| "unexpected text after the IPv6 address".to_string())?,
            ),
        };
        (format!("[{addr}]"), port)
    } else {
        match s.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => {
                return Err("write an IPv6 address in brackets, e.g. [::1]:8080".into())
            }
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (s.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err("the host is missing".into());
    }
    if !plain_ascii(&host) || host.contains(['/', '?', '#', '@']) {
        return Err(format!("{:?} is not a host name", escape(&host)));
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(format!(
                    "port {:?} is not a number from 1 to 65535",
                    escape(p)
                ))
            }
        },
    };
    if port == 0 {
        return Err("a port is needed (1 to 65535)".into());
    }
    Ok((host, port))
}

pub(super) async fn probe_http(url: &str, timeout: Duration) -> (bool, String) {
    let target = match parse_http_url(url) {
        Ok(t) => t,
        Err(e) => return (false, e.message),
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let secs = timeout.as_secs_f64();
    match tokio::time::timeout_at(deadline, http_get(&target)).await {
        Ok(Ok((code, output))) => ((200..=399).contains(&code), output),
        Ok(Err(why)) => (false, why),
        Err(_) => (false, format!("timed out after {secs}s")),
    }
}

/// One GET over a new HTTP/1.1 connection (hyper's client connection, no
/// pool), through TLS for `https://`: the status code, and the status
/// line with the start of the body. Bounded by the caller's timeout.
async fn http_get(target: &HttpTarget) -> std::result::Result<(u16, String), String> {
    let authority = target.authority();
    let stream = tokio::net::TcpStream::connect(&authority)
        .await
        .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
    if !target.tls {
        return exchange(target, stream).await;
    }
    let config = tls_config()?;
    // The name the certificate must carry: the host without IPv6 brackets.
    let name = target.host.trim_start_matches('[').trim_end_matches(']');
    let server_name = tokio_rustls::rustls::pki_types::ServerName::try_from(name.to_string())
        .map_err(|e| {
            format!(
                "{:?} cannot be checked against a certificate: {e}",
                escape(name)
            )
        })?;
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(server_name, stream)
        .await
        .map_err(|e| format!("TLS handshake with {authority} failed: {e}"))?;
    exchange(target, stream).await
}

/// The TLS client configuration, built once: ring's provider and the
/// system's trusted roots (`SSL_CERT_FILE` or `SSL_CERT_DIR` when set, as
/// OpenSSL reads them), or why there are none.
fn tls_config() -> std::result::Result<std::sync::Arc<tokio_rustls::rustls::ClientConfig>, String> {
    use std::sync::{Arc, OnceLock};
    use tokio_rustls::rustls;
    static CONFIG: OnceLock<std::result::Result<Arc<rustls::ClientConfig>, String>> =
        OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = rustls::RootCertStore::empty();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .first()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default();
                return Err(format!(
                    "no trusted root certificates to check https against{why}; \
                     set SSL_CERT_FILE in the daemon's environment to a PEM bundle"
                ));
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("cannot set up TLS: {e}"))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
}

/// The GET itself, over a plain or a TLS stream.
async fn exchange<S>(target: &HttpTarget, stream: S) -> std::result::Result<(u16, String), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use http_body_util::BodyExt;
    let authority = target.authority();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("cannot talk HTTP to {authority}: {e}"))?;
    // The connection is driven beside the request, and dropped with it.
    let connection = async move {
        let _ = connection.await;
        std::future::pending::<()>().await
    };
    let request = hyper::Request::get(target.path.as_str())
        .header(hyper::header::HOST, target.host_header())
        .header(hyper::header::USER_AGENT, "refine-proc-health")
        .header(hyper::header::ACCEPT, "*/*")
        .body(http_body_util::Empty::<hyper::body::Bytes>::new())
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let exchange = async {
        let response = sender.send_request(request).await.map_err(|e| {
            if e.is_parse() {
                format!("not an HTTP response: {e}")
            } else if e.is_incomplete_message() {
                "the server closed the connection without a response".to_string()
            } else {
                format!("cannot get a response from {authority}: {e}")
            }
        })?;
        let status = response.status();
        let reason = response
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
            .or_else(|| status.canonical_reason().map(String::from))
            .unwrap_or_default();
        let mut output = format!("{:?} {} {reason}", response.version(), status.as_u16());
        output.truncate(output.trim_end().len());
        // Only the start of the body is kept; a body that fails half-way
        // still has its status.
        let mut body = response.into_body();
        let mut kept = Vec::new();
        while kept.len() < HTTP_BODY_PREFIX {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        kept.extend_from_slice(&data);
                    }
                }
                _ => break,
            }
        }
        let text = String::from_utf8_lossy(&kept);
        let text = head_text(text.trim(), HTTP_BODY_PREFIX);
        if !text.is_empty() {
            output.push('\n');
            output.push_str(text);
        }
        Ok((status.as_u16(), output))
    };
    tokio::select! {
        result = exchange => result,
        () = connection => unreachable!("the connection future never ends"),
    }
}
