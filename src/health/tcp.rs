//! TCP checks: one connection to a host and port.

use crate::error::{Error, Result};
use crate::text::escape;
use std::time::Duration;

use super::http::split_host_port;
use super::*;

/// `HOST:PORT` into a lookup address; the port is required.
pub(super) fn parse_tcp_address(address: &str) -> Result<String> {
    let bad = |why: &str| {
        let shown = escape(&address.chars().take(200).collect::<String>());
        Error::naming(
            crate::error::ErrorKind::Invalid,
            [
                "invalid ".into(),
                crate::error::Field::HealthTcp.into(),
                format!(" address {shown:?}: {why}").into(),
            ],
        )
        .hint("use HOST:PORT, e.g. 127.0.0.1:5432, localhost:6379 or [::1]:8080")
    };
    if address.len() > MAX_ADDRESS {
        return Err(bad("too long"));
    }
    let has_port = if address.starts_with('[') {
        address.contains("]:")
    } else {
        address.contains(':')
    };
    if !has_port {
        return Err(bad("the port is missing"));
    }
    let (host, port) = split_host_port(address, 0).map_err(|why| bad(&why))?;
    Ok(format!("{host}:{port}"))
}

pub(super) async fn probe_tcp(address: &str, timeout: Duration) -> (bool, String) {
    let address = match parse_tcp_address(address) {
        Ok(a) => a,
        Err(e) => return (false, e.message),
    };
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&address)).await {
        Ok(Ok(stream)) => {
            let peer = stream
                .peer_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| address.clone());
            (true, format!("connected to {peer}"))
        }
        Ok(Err(e)) => (false, format!("cannot connect to {address}: {e}")),
        Err(_) => (
            false,
            format!(
                "timed out after {}s connecting to {address}",
                timeout.as_secs_f64()
            ),
        ),
    }
}
