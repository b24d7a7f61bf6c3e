//! What a caller may read of another process: environment values can hold
//! secrets (a token passed with `--env`), so a managed caller (an agent,
//! confined or not, or a person lowered with `--actor`) sees the values of
//! the processes its policy lets it act on, and only the names of the
//! others'. A person sees everything. The index files are out of a confined
//! unit's reach (see [`crate::confine`]); this keeps the answers of every
//! surface (CLI, API, MCP) from handing them over instead.

use super::*;

/// What a hidden environment value reads as.
pub const HIDDEN: &str = "(hidden)";

/// What a caller sees of others' environment values, decided once per
/// answer.
#[derive(Clone, Copy)]
enum Sees {
    /// A person.
    All,
    /// A managed actor: those of the processes it may act on.
    Reach,
    /// The caller cannot be established (a policy that cannot be read,
    /// which refuses every action but not reading): names only.
    Names,
}

impl Controller {
    /// Hides the environment values of `record` (and of systemd's view of
    /// its unit) unless the caller may act on it.
    pub(super) async fn hide_foreign_environment(
        &self,
        record: &mut Record,
        systemd: Option<&mut ServiceInfo>,
    ) -> Result<()> {
        let sees = self.sees().await;
        self.hide_unless_seen(sees, record, systemd).await
    }

    /// [`Controller::hide_foreign_environment`] for a list.
    pub(super) async fn hide_foreign_environments(&self, listed: &mut [Listed]) -> Result<()> {
        let sees = self.sees().await;
        for l in listed {
            self.hide_unless_seen(sees, &mut l.record, None).await?;
        }
        Ok(())
    }

    async fn sees(&self) -> Sees {
        match self.requester().await {
            Ok(r) if r.actor == Actor::Person => Sees::All,
            Ok(_) => Sees::Reach,
            Err(_) => Sees::Names,
        }
    }

    async fn hide_unless_seen(
        &self,
        sees: Sees,
        record: &mut Record,
        systemd: Option<&mut ServiceInfo>,
    ) -> Result<()> {
        let seen = match sees {
            Sees::All => true,
            Sees::Reach => self.act_on_denial("read", record).await?.is_none(),
            Sees::Names => false,
        };
        if !seen {
            hide_values(record, systemd);
        }
        Ok(())
    }
}

/// The values go, the names stay (what a process was given is not a
/// secret; what it was given is). systemd's `REFINE_*` entries are the
/// record's own fields, shown anyway.
fn hide_values(record: &mut Record, systemd: Option<&mut ServiceInfo>) {
    for value in record.environment.values_mut() {
        *value = HIDDEN.to_string();
    }
    for entry in systemd
        .map(|s| s.environment.iter_mut())
        .into_iter()
        .flatten()
    {
        if let Some((name, _)) = entry.split_once('=') {
            if !name.starts_with("REFINE_") {
                *entry = format!("{name}={HIDDEN}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_values_keep_their_names_and_the_refine_contract() {
        let mut record = base_record("abc".into(), UnitKind::Service, Owner::Agent, "x".into());
        record
            .environment
            .insert("API_TOKEN".into(), "hunter2".into());
        let mut info = ServiceInfo {
            environment: vec![
                "API_TOKEN=hunter2".into(),
                "REFINE_ID=abc".into(),
                "ODD".into(),
            ],
            ..Default::default()
        };
        hide_values(&mut record, Some(&mut info));
        assert_eq!(record.environment["API_TOKEN"], HIDDEN);
        assert_eq!(
            info.environment,
            ["API_TOKEN=(hidden)", "REFINE_ID=abc", "ODD"]
        );
    }
}
