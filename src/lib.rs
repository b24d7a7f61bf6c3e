#![doc = include_str!("../README.md")]

pub mod api;
pub mod confine;
pub mod controller;
pub mod daemon;
pub mod dirwatch;
pub mod doctor;
pub mod error;
pub mod events;
pub(crate) mod fault;
pub mod follow;
pub mod health;
pub mod index;
pub mod journal;
pub mod mcp;
pub mod model;
pub(crate) mod par;
pub mod pauses;
pub mod policy;
// Internal; public only for the refine-proc binary (its CLI).
#[doc(hidden)]
pub mod probe_cgroup;
pub(crate) mod procfs;
pub mod provenance;
pub mod pty;
pub mod run_request;
pub mod spec;
pub mod systemd;
// Internal; public only for the refine-proc binary (its CLI).
#[doc(hidden)]
pub mod text;
// Internal; public only for the refine-proc binary (its CLI).
#[doc(hidden)]
pub mod unitexec;
pub mod usage;

pub use controller::{Controller, ListFilter, Listed, RunOptions, Selection, Status};
pub use error::{Error, ErrorKind, Field, Result};
pub use model::{Owner, Record, State};
pub use spec::{AdoptSpec, RunSpec};
