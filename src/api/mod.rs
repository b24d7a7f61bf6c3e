//! The HTTP surface of the daemon.

pub mod web;
