//! refine-proc: a process controller for developers and agents.
//!
//! Every managed process is a transient systemd user service; refine-proc
//! adds owners, workflow metadata, a durable index of every run and its
//! exit, and one view of all of it. The [`Controller`] is the entry point.

pub mod controller;
pub mod error;
pub mod index;
pub mod journal;
pub mod model;
pub mod spec;
pub mod systemd;
pub mod text;

pub use controller::{Controller, ListFilter, RunOptions, Status};
pub use error::{Error, ErrorKind, Result};
pub use model::{Owner, Record, State};
pub use spec::RunSpec;
