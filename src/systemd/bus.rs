//! The connection to the manager, and riding out a daemon-reexec (the manager
//! leaves the bus for a moment).

use futures_util::StreamExt;
use std::time::Duration;

use super::*;

/// How long to wait for a manager that left the bus (daemon-reexec) to
/// come back before giving up.
const REEXEC_TIMEOUT: Duration = Duration::from_secs(90);

/// How many times one call is tried again after the manager came back.
const REEXEC_RETRIES: usize = 3;

/// Whether a failed call means the manager is off the bus for a moment
/// (daemon-reexec drops its connection: calls in flight get NoReply, new
/// ones find no owner of the name) rather than a real answer.
pub(super) fn is_away(e: &zbus::Error) -> bool {
    matches!(
        error_name(e).as_deref(),
        Some(
            "org.freedesktop.DBus.Error.NoReply"
                | "org.freedesktop.DBus.Error.ServiceUnknown"
                | "org.freedesktop.DBus.Error.NameHasNoOwner"
        )
    )
}

impl Systemd {
    /// Waits, on the bus's NameOwnerChanged, until a manager owns
    /// org.freedesktop.systemd1 and answers again; false if none does in
    /// time (it is not re-executing but gone).
    pub(super) async fn await_manager(&self) -> bool {
        let wait = async {
            let Ok(bus) = zbus::fdo::DBusProxy::new(self.connection()).await else {
                return false;
            };
            // The stream exists before the check, so the return is not missed.
            let Ok(mut owners) = bus
                .receive_name_owner_changed_with_args(&[(0, "org.freedesktop.systemd1")])
                .await
            else {
                return false;
            };
            loop {
                match self.manager.version().await {
                    Ok(_) => return true,
                    Err(e) if is_away(&e) => {}
                    Err(_) => return false,
                }
                if owners.next().await.is_none() {
                    return false;
                }
            }
        };
        tokio::time::timeout(REEXEC_TIMEOUT, wait)
            .await
            .unwrap_or(false)
    }

    /// Makes a call, and again (a few times) when it failed only because
    /// the manager was re-executing: reads are safe to repeat.
    pub(super) async fn retrying<T, F, Fut>(&self, mut call: F) -> zbus::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = zbus::Result<T>>,
    {
        let mut retries = 0;
        loop {
            match call().await {
                Err(e) if is_away(&e) && retries < REEXEC_RETRIES => {
                    retries += 1;
                    if !self.await_manager().await {
                        return Err(e);
                    }
                }
                r => return r,
            }
        }
    }
}
