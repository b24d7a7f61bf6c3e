//! Who is asking: the requester behind an operation, authorization
//! against its policy, and the audit of refusals and events.

use super::*;

/// Who is asking, and under which policy.
#[derive(Debug, Clone)]
pub struct Requester {
    pub actor: Actor,
    /// The managed process the request comes from (found from its cgroup).
    pub caller: Option<ManagedCaller>,
    /// That process's record, whose owner and workflow its children inherit.
    pub parent: Option<Record>,
    pub policy: Policy,
}

impl Requester {
    /// A managed caller's children default to its owner and workflow context.
    pub fn inherit(&self, owner: &mut Option<Owner>, metadata: &mut Metadata) {
        if let Some(parent) = &self.parent {
            *owner = owner.or(Some(parent.owner));
            let p = &parent.metadata;
            metadata.workflow = metadata.workflow.take().or_else(|| p.workflow.clone());
            metadata.gap = metadata.gap.take().or_else(|| p.gap.clone());
            metadata.session = metadata.session.take().or_else(|| p.session.clone());
            metadata.mode = metadata.mode.take().or_else(|| p.mode.clone());
            metadata.runner = metadata.runner.take().or_else(|| p.runner.clone());
        } else if let Some(caller) = &self.caller {
            *owner = owner.or(Some(caller.owner));
        }
    }

    pub fn requested_by(&self) -> RequestedBy {
        RequestedBy {
            uid: crate::provenance::uid(),
            acting_owner: self.caller.as_ref().map(|c| c.owner),
            parent: self.caller.as_ref().map(|c| c.id.clone()),
            policy: Some(self.policy.path.display().to_string()),
        }
    }
}

impl Controller {
    /// Who is asking (found once per controller) and the policy that binds
    /// them. A managed caller's policy is the one named in its unit's
    /// environment, as systemd holds it, so the process cannot swap it.
    pub async fn requester(&self) -> Result<&Requester> {
        self.requester
            .get_or_try_init(|| async {
                let Some(caller) = crate::provenance::managed_caller() else {
                    let path = self
                        .policy_path
                        .clone()
                        .unwrap_or_else(|| PathBuf::from("/etc/refine-proc/policy.toml"));
                    // Absolute, so a child cannot make it mean another file by
                    // changing directory.
                    let path = std::path::absolute(&path).unwrap_or(path);
                    return Ok(Requester {
                        actor: Actor::Person,
                        caller: None,
                        parent: None,
                        policy: Policy::load(&path)?,
                    });
                };
                // What binds a managed caller comes from what systemd holds
                // for its unit (a service's Environment=) or, for an adopted
                // scope, from its record; what cannot be established is
                // refused, never guessed.
                let systemd = self.systemd().await?;
                let env: Vec<String> = match systemd.unit_path(&caller.unit).await? {
                    Some(path) if caller.unit.ends_with(".service") => systemd
                        .service_property(&[path], "Environment")
                        .await
                        .pop()
                        .flatten()
                        .and_then(|v| Vec::<String>::try_from(v).ok())
                        .unwrap_or_default(),
                    _ => Vec::new(),
                };
                let from_env = |key: &str| {
                    env.iter()
                        .find_map(|e| e.strip_prefix(key))
                        .map(PathBuf::from)
                };
                let parent = match self.index.load(&caller.id)? {
                    Loaded::Found(r) => Some(*r),
                    _ => None,
                };
                let denied = |why: String| {
                    Error::new(crate::ErrorKind::Denied, format!("refused: {why}")).hint(
                        "a managed process acts through the index and policy it was started with",
                    )
                };
                match from_env("REFINE_PROC_STATE_DIR=") {
                    Some(dir)
                        if std::fs::canonicalize(&dir).ok().as_deref()
                            != Some(self.index.dir()) =>
                    {
                        return Err(denied(format!(
                            "{} was started with the index {}, not {}",
                            caller.id,
                            dir.display(),
                            self.index.dir().display()
                        )))
                    }
                    Some(_) => {}
                    None if parent.is_none() => {
                        return Err(denied(format!(
                            "{} ({}) has no record in the index {}",
                            caller.id,
                            caller.unit,
                            self.index.dir().display()
                        )))
                    }
                    None => {}
                }
                let path = from_env("REFINE_PROC_POLICY=")
                    .or_else(|| {
                        parent
                            .as_ref()
                            .and_then(|p| p.requested_by.policy.as_ref().map(PathBuf::from))
                    })
                    .ok_or_else(|| {
                        denied(format!("cannot tell which policy binds {}", caller.id))
                    })?;
                Ok(Requester {
                    actor: Actor::Managed(caller.owner),
                    caller: Some(caller),
                    parent,
                    policy: Policy::load(&path)?,
                })
            })
            .await
    }

    /// Refuses unless the requester may act on `target` (its policy's
    /// `act_on`: its descendants by default for a managed process).
    pub(super) async fn authorize(&self, action: &str, target: &Record) -> Result<()> {
        let requester = self.requester().await?;
        let rules = requester.policy.rules(requester.actor);
        let caller = requester.caller.as_ref();
        let descends = |ancestor: &str| self.descends_from(target, ancestor);
        let allowed = match rules.act_on {
            Reach::All => true,
            Reach::SameOwner => {
                matches!(requester.actor, Actor::Managed(o) if o == target.owner)
                    || caller.is_some_and(|c| descends(&c.id))
            }
            Reach::Descendants => caller.is_some_and(|c| descends(&c.id)),
        };
        if allowed {
            return Ok(());
        }
        let reach = match rules.act_on {
            Reach::Descendants => "its own descendants",
            Reach::SameOwner => "processes of its own owner and its descendants",
            Reach::All => "all processes",
        };
        let error = crate::policy::denied(
            &rules,
            "act_on",
            format!(
                "{} may {action} only {reach}; {} ({}) is not one of them",
                rules.actor, target.id, target.owner
            ),
        );
        self.record_refusal(action, Some(&target.id), &error);
        Err(error)
    }

    /// Whether `ancestor` started `record`, directly or through children.
    pub(super) fn descends_from(&self, record: &Record, ancestor: &str) -> bool {
        let mut current = record.clone();
        // Bounded: a corrupt parent chain cannot loop forever.
        for _ in 0..64 {
            if current.id == ancestor {
                return true;
            }
            let Some(parent) = current.requested_by.parent.clone() else {
                return false;
            };
            if parent == ancestor {
                return true;
            }
            match self.index.load(&parent) {
                Ok(Loaded::Found(r)) => current = *r,
                _ => return false,
            }
        }
        false
    }

    /// Appends a refusal to the event log (best effort: the refusal itself
    /// is the answer the caller needs).
    pub(super) fn record_refusal(&self, action: &str, target: Option<&str>, error: &Error) {
        let actor = self
            .requester
            .get()
            .map(|r| r.actor.key())
            .unwrap_or("unknown");
        let mut event = Event::new("refused")
            .with("action", action)
            .with("reason", &error.message)
            .with("rule", &error.hint);
        event.id = target.map(String::from);
        event.actor = Some(actor.to_string());
        event.caller = self
            .requester
            .get()
            .and_then(|r| r.caller.as_ref().map(|c| c.id.clone()));
        if let Err(e) = self.index.append_event(&event, true) {
            tracing::warn!("cannot record the refusal: {}", e.message);
        }
    }

    /// Records a lifecycle transition in the history (best effort, not
    /// synced: the record itself is the durable truth).
    /// Appends an event to the history, with the requester as its actor
    /// unless it names one.
    pub fn record_event(&self, event: Event) {
        self.emit(event)
    }

    pub(super) fn emit(&self, mut event: Event) {
        if event.actor.is_none() {
            event.actor = self.requester.get().map(|r| r.actor.key().to_string());
            event.caller = self
                .requester
                .get()
                .and_then(|r| r.caller.as_ref().map(|c| c.id.clone()));
        }
        if let Err(e) = self.index.append_event(&event, false) {
            tracing::warn!("cannot record the {} event: {}", event.event, e.message);
        }
    }

    /// The history, oldest first, with how many torn lines were skipped.
    pub fn events(&self) -> Result<(Vec<Event>, usize)> {
        let (mut events, skipped) = self.index.events()?;
        // A process that exits at once may have its exit written before
        // `run` writes its start: order by when things happened.
        events.sort_by_key(|e| e.time);
        Ok((events, skipped))
    }
}
