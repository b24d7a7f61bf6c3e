#![doc = include_str!("../README.md")]

pub mod api;
pub mod confine;
pub mod controller;
pub mod daemon;
pub mod doctor;
pub mod error;
pub mod events;
pub mod fault;
pub mod follow;
pub mod health;
pub mod index;
pub mod journal;
pub mod mcp;
pub mod model;
pub mod par;
pub mod pauses;
pub mod policy;
pub mod probe_cgroup;
pub mod procfs;
pub mod provenance;
pub mod pty;
pub mod run_request;
pub mod spec;
pub mod systemd;
pub mod text;
pub mod unitexec;
pub mod usage;

pub use controller::{Controller, ListFilter, Listed, RunOptions, Selection, Status};
pub use error::{Error, ErrorKind, Result};
pub use model::{Owner, Record, State};
pub use spec::{AdoptSpec, RunSpec};
