//! Health checks: what a check is ([`HealthSpec`]), one probe of it
//! ([`probe`]), and the pure state machine ([`HealthState`]) that turns
//! probe results into `starting`, `healthy` or `unhealthy`.
//!
//! Nothing here runs on its own: the daemon schedules probes (every
//! `interval_sec`, only while the process runs: see [`is_probed`]), stores
//! each [`HealthState`] with [`crate::index::Index::save_health`], emits
//! [`health_event`] on a transition and acts on `on_unhealthy`.
//!
//! A probe is cheap and quiet: a command check runs `/bin/sh -c` as a
//! child of the caller (no systemd unit, no journal line per probe), an
//! HTTP or TCP check is one connection from the caller.

mod command;
mod http;
mod probe;
mod spec;
mod state;
mod tcp;

pub use probe::*;
pub use spec::*;
pub use state::*;

#[cfg(test)]
mod tests;

/// The shell a command check runs (`SHELL -c COMMAND`); the policy must
/// let the actor run it (see `Controller::run`).
pub const SHELL: &str = "/bin/sh";
/// Default seconds between two probes.
pub const DEFAULT_INTERVAL_SEC: u64 = 10;
/// Default seconds one probe may take.
pub const DEFAULT_TIMEOUT_SEC: u64 = 5;
/// Default consecutive failures before `unhealthy`.
pub const DEFAULT_RETRIES: u32 = 3;
/// Longest interval, timeout or start period accepted: one day.
pub const MAX_PERIOD_SEC: u64 = 86_400;
/// Most retries accepted.
pub const MAX_RETRIES: u32 = 1_000;
/// Largest `--health-cmd` accepted, in bytes.
pub const MAX_HEALTH_COMMAND: usize = 16 * 1024;
/// Longest `--health-http` URL or `--health-tcp` address accepted, in bytes.
pub const MAX_ADDRESS: usize = 2048;
/// How much output a probe keeps: the last this many bytes.
pub const MAX_OUTPUT: usize = 4096;
/// How much of an HTTP body a probe keeps after the status line.
const HTTP_BODY_PREFIX: usize = 512;
/// How much of the probe output an event carries.
const EVENT_OUTPUT: usize = 1024;
