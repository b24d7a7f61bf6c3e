//! The small surface of systemd's user manager that refine-proc uses:
//! hand-written D-Bus proxies limited to what systemd 252 offers, and the
//! few operations built on them (start and wait for the job, read a unit,
//! list units). Everything else in the crate talks to systemd through here.

use std::time::Duration;

use zbus::proxy::CacheProperties;
use zbus::Connection;

use crate::error::Result;

mod bus;
mod errors;
#[cfg(test)]
pub mod fake;
mod manager;
mod proxies;
mod query;
mod types;
mod units;

use bus::*;
use errors::*;
pub use manager::UnitManager;
use proxies::*;
pub use types::*;
pub use units::StartWatch;

/// How long a freeze or thaw may take before it is reported as stuck.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for systemd to finish a start job.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a start that returns before READY=1 (`run --ready notify`
/// without `--wait-ready`) watches for the process's end, so that a
/// command that fails at once is reported as ended.
const SPAWN_GRACE: Duration = Duration::from_secs(2);
/// How long to wait for a stop or restart job: longer than systemd's own
/// stop timeout (90 s by default), after which systemd kills the process
/// and the job ends.
const STOP_TIMEOUT: Duration = Duration::from_secs(300);

/// A connection to the calling user's systemd manager.
#[derive(Clone)]
pub struct Systemd {
    manager: ManagerProxy<'static>,
}

impl Systemd {
    /// Connects to the user bus and checks that a systemd manager answers.
    pub async fn connect() -> Result<Systemd> {
        let conn = Connection::session()
            .await
            .map_err(|e| unreachable(&e.to_string()))?;
        let manager = ManagerProxy::builder(&conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(|e| unreachable(&e.to_string()))?;
        Ok(Systemd { manager })
    }

    fn connection(&self) -> &Connection {
        self.manager.inner().connection()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names_come_back_from_object_paths() {
        assert_eq!(
            unit_name_of_path("/org/freedesktop/systemd1/unit/refine_2dagent_2dk3x9p2qa_2eservice")
                .as_deref(),
            Some("refine-agent-k3x9p2qa.service")
        );
        assert_eq!(
            unit_name_of_path("/org/freedesktop/systemd1/unit/refine_2duser_5cx2dhelper_2eslice")
                .as_deref(),
            Some("refine-user\\x2dhelper.slice")
        );
        assert_eq!(
            unit_name_of_path("/org/freedesktop/systemd1/unit/bad_zz"),
            None
        );
        assert_eq!(unit_name_of_path("/elsewhere/x"), None);
        for unit in [
            "refine-agent-k3x9p2qa.service",
            "refine-user\\x2dhelper.slice",
        ] {
            assert_eq!(
                unit_name_of_path(&unit_path_of_name(unit)).as_deref(),
                Some(unit)
            );
        }
        assert_eq!(
            unit_path_of_name("refine-a.service"),
            "/org/freedesktop/systemd1/unit/refine_2da_2eservice"
        );
    }
}

#[cfg(test)]
mod unit_path_tests {
    #[test]
    fn a_unit_object_path_decodes_to_its_name() {
        assert_eq!(
            super::unit_name_of_path(
                "/org/freedesktop/systemd1/unit/refine_2dagent_2dabcd2345_2eservice"
            )
            .as_deref(),
            Some("refine-agent-abcd2345.service")
        );
        assert_eq!(
            super::unit_name_of_path("/org/freedesktop/systemd1/unit/bad_zz"),
            None
        );
    }
}
