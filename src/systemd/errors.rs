//! systemd's D-Bus errors, turned into refine-proc errors that say what was
//! being done and to what.

use crate::error::{Error, ErrorKind};
use zbus::DBusError;

/// KillUnit's answer when the process to signal is gone.
pub(super) const NO_SUCH_PROCESS: &str = "org.freedesktop.systemd1.NoSuchProcess";

pub(super) fn error_name(e: &zbus::Error) -> Option<String> {
    match e {
        zbus::Error::MethodError(name, _, _) => Some(name.to_string()),
        zbus::Error::FDO(fdo) => Some(fdo.name().to_string()),
        _ => None,
    }
}

/// The text of a D-Bus error reply, without its name.
fn dbus_message(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(_, Some(msg), _) => msg.clone(),
        e => e.to_string(),
    }
}

pub(super) fn is_no_such_unit(e: &zbus::Error) -> bool {
    error_name(e).as_deref() == Some("org.freedesktop.systemd1.NoSuchUnit")
        || matches!(e, zbus::Error::FDO(f) if matches!(**f, zbus::fdo::Error::UnknownObject(_)))
}

/// Why no manager answered, and what usually fixes it.
pub(super) fn unreachable(reason: &str) -> Error {
    let runtime = std::env::var_os("XDG_RUNTIME_DIR");
    let cause = match (&runtime, std::env::var_os("DBUS_SESSION_BUS_ADDRESS")) {
        (None, None) => "neither XDG_RUNTIME_DIR nor DBUS_SESSION_BUS_ADDRESS is set".to_string(),
        _ => reason.to_string(),
    };
    if crate::confine::looks_confined(reason) {
        return Error::new(
            ErrorKind::Unavailable,
            format!("no systemd user manager is reachable: {cause}"),
        )
        .hint(crate::confine::UNREACHABLE_HINT);
    }
    Error::new(
        ErrorKind::Unavailable,
        format!("no systemd user manager is reachable: {cause}"),
    )
    .hint(
        "run refine-proc inside a user session, or set XDG_RUNTIME_DIR=/run/user/$(id -u) \
         (and DBUS_SESSION_BUS_ADDRESS=unix:path=$XDG_RUNTIME_DIR/bus); for SSH or cron \
         without a login, enable lingering: loginctl enable-linger $USER",
    )
}

/// Maps a D-Bus failure while doing `action` on `unit` to a library error.
pub(super) fn dbus_error(action: &str, unit: &str, e: zbus::Error) -> Error {
    let name = error_name(&e).unwrap_or_default();
    match name.as_str() {
        "org.freedesktop.DBus.Error.ServiceUnknown"
        | "org.freedesktop.DBus.Error.NameHasNoOwner" => {
            unreachable("the bus has no org.freedesktop.systemd1 (no systemd --user on this bus)")
        }
        "org.freedesktop.systemd1.NoSuchUnit" => {
            Error::not_found(format!("cannot {action}: {unit} is not loaded"))
        }
        // A pid handed to systemd (a scope's PIDs) exited meanwhile.
        "org.freedesktop.DBus.Error.UnixProcessIdUnknown" => {
            Error::not_found(format!("cannot {action}: {}", dbus_message(&e)))
        }
        "org.freedesktop.systemd1.UnitExists" => Error::systemd(format!(
            "cannot {action}: a unit named {unit} already exists"
        )),
        _ => match e {
            zbus::Error::InputOutput(_) => unreachable(&e.to_string()),
            e => Error::systemd(format!("cannot {action}: {e}")),
        },
    }
}
