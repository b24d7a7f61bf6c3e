#![doc = include_str!("../README.md")]

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
pub mod model;
pub mod par;
pub mod pauses;
pub mod policy;
pub mod procfs;
pub mod provenance;
pub mod pty;
pub mod spec;
pub mod systemd;
pub mod text;
pub mod usage;

pub use controller::{Controller, ListFilter, Listed, RunOptions, Selection, Status};
pub use error::{Error, ErrorKind, Result};
pub use model::{Owner, Record, State};
pub use spec::{AdoptSpec, RunSpec};
