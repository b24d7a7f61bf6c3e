//! The one integration test binary: end-to-end tests that drive the real
//! `refine-proc` binary against a real systemd user manager and journald.
//! Run them with `tests/run`, which starts a private manager when the
//! machine has none (see README).

mod e2e;
