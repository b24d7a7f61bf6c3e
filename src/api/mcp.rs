//! MCP over streamable HTTP at `/mcp`, on the API's listeners: the same
//! tools as `refine-proc mcp` (one implementation, [`crate::mcp`]), each
//! HTTP request served by a server built for that request's caller as
//! [`super::auth::guard`] established it: on the socket the peer (a
//! managed process is bound by its policy), on TCP a person with a session
//! or token, of which a read token gets only the read-only tools.
//!
//! Stateless (no `Mcp-Session-Id`): a session shared by requests could be
//! used by another caller than the one that opened it; here every request
//! is authorized afresh. The SDK's DNS-rebinding check (Host, Origin) runs
//! after the API's own.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};

use super::auth::{Caller, Scope, Via};
use super::AppState;
use crate::mcp::McpServer;

/// The path MCP is served at.
pub const PATH: &str = "/mcp";

/// One MCP request (POST; GET and DELETE answer 405: no sessions).
pub async fn serve(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    req: Request,
) -> Response {
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None);
    let config = match (&caller.via, state.listen) {
        // No browser reaches a Unix socket: there is no rebinding to stop.
        (Via::Unix, _) | (_, None) => config.disable_allowed_hosts(),
        (Via::Tcp(_), Some(addr)) => {
            let hosts = super::auth::allowed_hosts(&addr);
            let origins: Vec<String> = hosts.iter().map(|h| format!("http://{h}")).collect();
            config
                .with_allowed_hosts(hosts)
                .with_allowed_origins(origins)
                .enforce_origin_validation()
        }
    };
    let read_only = caller.via == Via::Tcp(Scope::Read);
    let service = StreamableHttpService::new(
        move || {
            let server = McpServer::new(state.controller(&caller));
            Ok(if read_only {
                server.read_only()
            } else {
                server
            })
        },
        Arc::new(NeverSessionManager::default()),
        config,
    );
    service.handle(req).await.into_response()
}
