//! Who is asking: the [`Caller`] a surface establishes for each request,
//! the [`Requester`] it resolves to (actor, managed process, policy),
//! authorization against that policy, and the audit of refusals and events.

use super::*;
use crate::spec::CallerEnv;

/// Who asks, as the surface that took the request established it: never
/// from anything the caller says about itself.
#[derive(Clone, Debug)]
pub struct Caller {
    pub uid: u32,
    /// The calling process (None for the daemon's own actions).
    pub pid: Option<u32>,
    /// `PID:STARTTIME` (as `procfs::identity` reads it), so that a reused
    /// pid is not taken for it.
    pub identity: Option<String>,
    /// What resolves its commands: its cwd and PATH.
    pub env: CallerEnv,
    pub origin: Origin,
    /// Act as this bounded actor instead (`mcp --actor`): a lower power,
    /// never a higher one (a managed caller keeps its own).
    pub lower_to: Option<Owner>,
}

/// How a [`Caller`] was established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// This process (the CLI): its managed unit, if any, is the one
    /// systemd puts its pid in.
    ThisProcess,
    /// The peer of a connection (SO_PEERCRED): likewise from its pid.
    Peer,
    /// A person proven by a session or token (the API's TCP listener).
    Person,
    /// The daemon's own action (a health or backoff restart, resurrect),
    /// on behalf of the record's launcher: authorized as the launcher,
    /// audited as `daemon`.
    Daemon { on_behalf_of: RequestedBy },
}

impl Caller {
    /// This process, as the CLI runs.
    pub fn this_process() -> Caller {
        let pid = std::process::id();
        Caller {
            uid: crate::provenance::uid(),
            pid: Some(pid),
            identity: crate::procfs::identity(pid),
            env: CallerEnv::of_this_process(),
            origin: Origin::ThisProcess,
            lower_to: None,
        }
    }

    /// The peer of a connection, from its credentials (uid, pid).
    pub fn peer(uid: u32, pid: u32) -> Caller {
        Caller {
            uid,
            pid: Some(pid),
            identity: crate::procfs::identity(pid),
            env: CallerEnv::of_pid(pid),
            origin: Origin::Peer,
            lower_to: None,
        }
    }

    /// A person proven otherwise (a browser session): no process to look
    /// at, so commands resolve as the serving process resolves them, in
    /// the home directory.
    pub fn person(uid: u32) -> Caller {
        Caller {
            uid,
            pid: None,
            identity: None,
            env: CallerEnv {
                cwd: crate::provenance::home_dir(),
                path: std::env::var_os("PATH"),
            },
            origin: Origin::Person,
            lower_to: None,
        }
    }

    /// The daemon acting on `record` on behalf of whoever launched it.
    pub fn daemon_for(record: &Record) -> Caller {
        Caller {
            uid: record.requested_by.uid,
            pid: None,
            identity: None,
            // The record keeps argv as given: its program is found as the
            // daemon finds programs (the launcher's PATH is not kept).
            env: CallerEnv {
                cwd: record.cwd.as_ref().map(PathBuf::from),
                path: std::env::var_os("PATH"),
            },
            origin: Origin::Daemon {
                on_behalf_of: record.requested_by.clone(),
            },
            lower_to: None,
        }
    }

    /// The same caller, acting as a bounded `owner` (see [`Caller::lower_to`]).
    pub fn lowered_to(mut self, owner: Owner) -> Caller {
        self.lower_to = Some(owner);
        self
    }
}

/// A caller resolved: the actor its policy names, the managed process it
/// is (if any), and the policy that binds it.
#[derive(Debug, Clone)]
pub struct Requester {
    pub actor: Actor,
    /// The managed process the request comes from (the unit systemd holds
    /// its pid in).
    pub caller: Option<ManagedCaller>,
    /// That process's record, whose owner and workflow its children inherit.
    pub parent: Option<Record>,
    pub policy: Policy,
    /// Who the audit names: the actor's key, or `daemon`.
    pub audit_actor: String,
    /// A person lowered to a bounded actor: the identity its launches
    /// carry (`requested_by.lowered`), by which it acts on them as a
    /// managed process acts on its children.
    pub lowered: Option<String>,
    /// The caller as established, for its environment and provenance.
    pub who: Caller,
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
        } else if let Actor::Managed(o) = self.actor {
            *owner = owner.or(Some(o));
        }
    }

    pub fn requested_by(&self) -> RequestedBy {
        if let Origin::Daemon { on_behalf_of } = &self.who.origin {
            return on_behalf_of.clone();
        }
        let lowered_owner = match (&self.lowered, self.actor) {
            (Some(_), Actor::Managed(o)) => Some(o),
            _ => None,
        };
        RequestedBy {
            uid: self.who.uid,
            acting_owner: self.caller.as_ref().map(|c| c.owner).or(lowered_owner),
            parent: self.caller.as_ref().map(|c| c.id.clone()),
            policy: Some(self.policy.path.display().to_string()),
            lowered: self.lowered.clone(),
        }
    }
}

impl Controller {
    /// The same index and systemd connection, acting for another caller:
    /// how a server serves each client with its own identity and policy.
    pub fn on_behalf_of(&self, caller: Caller) -> Controller {
        Controller {
            index: self.index.clone(),
            hook_program: self.hook_program.clone(),
            policy_path: self.policy_path.clone(),
            systemd: self.systemd.clone(),
            units: self.units.clone(),
            caller,
            requester: OnceCell::new(),
        }
    }

    /// Acting for a connection's peer as the API established it (see
    /// [`crate::provenance::Peer`]): its process, or a person with a session.
    pub fn for_peer(&self, peer: crate::provenance::Peer) -> Controller {
        self.on_behalf_of(match peer.pid {
            Some(pid) => Caller::peer(peer.uid, pid),
            None => Caller::person(peer.uid),
        })
    }

    /// The caller this controller acts for.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// Who is asking (resolved once per controller) and the policy that
    /// binds them. A managed caller's policy is the one named in its unit's
    /// environment, as systemd holds it, so the process cannot swap it.
    pub async fn requester(&self) -> Result<&Requester> {
        self.requester
            .get_or_try_init(|| self.resolve_requester())
            .await
    }

    async fn resolve_requester(&self) -> Result<Requester> {
        let who = self.caller.clone();
        if let Origin::Daemon { on_behalf_of } = &who.origin {
            return self.launcher_requester(on_behalf_of.clone(), who).await;
        }
        let managed = match (&who.origin, who.pid) {
            // Pid 0: systemd looks up the sender of the call on the bus, by
            // the credentials the bus took at connect time; a pid this
            // process reads in its own (maybe new) PID namespace could lie.
            (Origin::ThisProcess, Some(pid)) => self.managed_unit_of(pid, 0).await?,
            (_, Some(pid)) => self.managed_unit_of(pid, pid).await?,
            _ => None,
        };
        let Some(caller) = managed else {
            return self.person_requester(who);
        };
        self.managed_requester(caller, who).await
    }

    /// `who` as a person (in no managed unit), bound by the person's policy.
    pub(super) fn person_requester(&self, who: Caller) -> Result<Requester> {
        let mut requester = Requester {
            actor: Actor::Person,
            caller: None,
            parent: None,
            policy: Policy::load(&self.person_policy_path())?,
            audit_actor: "person".into(),
            lowered: None,
            who,
        };
        if let Some(owner) = requester.who.lower_to {
            requester.actor = Actor::Managed(owner);
            requester.audit_actor = owner.as_str().into();
            requester.lowered = Some(lowered_identity(owner, &requester.who));
        }
        Ok(requester)
    }

    /// What `run` may guess before the bus says who asks: the caller as a
    /// person, when its origin is a process still to be looked up. Only a
    /// guess: nothing is decided on it (see `Controller::prepare_record`).
    pub(super) fn person_guess(&self) -> Option<Requester> {
        let lookup = matches!(self.caller.origin, Origin::ThisProcess | Origin::Peer);
        if !lookup || self.requester.initialized() {
            return None;
        }
        self.person_requester(self.caller.clone()).ok()
    }

    /// A person's policy file, absolute so that a child cannot make it mean
    /// another file by changing directory.
    fn person_policy_path(&self) -> PathBuf {
        let path = self
            .policy_path
            .clone()
            .unwrap_or_else(|| PathBuf::from("/etc/refine-proc/policy.toml"));
        std::path::absolute(&path).unwrap_or(path)
    }

    /// The managed unit a process is in: as systemd sees its cgroup, which
    /// neither a cgroup namespace nor a lie can change; from /proc only when
    /// the manager cannot be asked. `ask_pid` is what systemd is asked
    /// about (0: the sender of the call).
    async fn managed_unit_of(&self, pid: u32, ask_pid: u32) -> Result<Option<ManagedCaller>> {
        let from_cgroup = |pid: u32| {
            std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .ok()
                .and_then(|text| crate::provenance::managed_unit_in_cgroup(&text))
        };
        let systemd = match self.units().await {
            Ok(s) => s,
            // No manager to ask: /proc is all there is (and nothing can
            // be started or stopped without the manager anyway).
            Err(_) => return Ok(from_cgroup(pid)),
        };
        Ok(systemd
            .unit_of_pid(ask_pid)
            .await?
            .and_then(|unit| crate::provenance::managed_unit_in_cgroup(&format!("0::/{unit}"))))
    }

    /// What binds a managed caller comes from what systemd holds for its
    /// unit (a service's Environment=) or, for an adopted scope, from its
    /// record; what cannot be established is refused, never guessed.
    async fn managed_requester(&self, caller: ManagedCaller, who: Caller) -> Result<Requester> {
        let env = self.units().await?.unit_environment(&caller.unit).await?;
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
            Error::new(crate::ErrorKind::Denied, format!("refused: {why}"))
                .hint("a managed process acts through the index and policy it was started with")
        };
        match from_env("REFINE_PROC_STATE_DIR=") {
            Some(dir) if std::fs::canonicalize(&dir).ok().as_deref() != Some(self.index.dir()) => {
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
            .ok_or_else(|| denied(format!("cannot tell which policy binds {}", caller.id)))?;
        Ok(Requester {
            actor: Actor::Managed(caller.owner),
            audit_actor: caller.owner.as_str().into(),
            caller: Some(caller),
            parent,
            policy: Policy::load(&path)?,
            lowered: None,
            who,
        })
    }

    /// The daemon acting for a record's launcher: the launcher's actor,
    /// managed process and policy, so the daemon can do for it only what
    /// the launcher could; audited as `daemon`.
    async fn launcher_requester(&self, by: RequestedBy, who: Caller) -> Result<Requester> {
        let policy = match &by.policy {
            Some(path) => Policy::load(Path::new(path))?,
            None => Policy::load(&self.person_policy_path())?,
        };
        let (actor, caller) = match (by.acting_owner, &by.parent) {
            (Some(owner), Some(id)) => (
                Actor::Managed(owner),
                Some(ManagedCaller {
                    owner,
                    id: id.clone(),
                    unit: unit_name(owner, id),
                }),
            ),
            (Some(owner), None) => (Actor::Managed(owner), None),
            _ => (Actor::Person, None),
        };
        let lowered = by.lowered.clone().filter(|_| by.acting_owner.is_some());
        let parent = match caller.as_ref().map(|c| self.index.load(&c.id)) {
            Some(Ok(Loaded::Found(r))) => Some(*r),
            _ => None,
        };
        Ok(Requester {
            actor,
            caller,
            parent,
            policy,
            audit_actor: "daemon".into(),
            lowered,
            who,
        })
    }

    /// Refuses unless the requester may act on `target` (its policy's
    /// `act_on`: its descendants by default for a managed process).
    pub(super) async fn authorize(&self, action: &str, target: &Record) -> Result<()> {
        match self.act_on_denial(action, target).await? {
            None => Ok(()),
            Some(error) => {
                self.record_refusal(action, Some(&target.id), &error);
                Err(error)
            }
        }
    }

    /// Why the requester may not act on `target`, or None when it may;
    /// nothing recorded (a terminal viewer is told it watches read-only,
    /// and a refusal is audited only once it tries to type).
    pub(super) async fn act_on_denial(
        &self,
        action: &str,
        target: &Record,
    ) -> Result<Option<Error>> {
        let requester = self.requester().await?;
        let rules = requester.policy.rules(requester.actor);
        let caller = match (&requester.caller, &requester.lowered) {
            (Some(c), _) => Some(Launcher::Process(&c.id)),
            (None, Some(l)) => Some(Launcher::Lowered(l)),
            (None, None) => None,
        };
        let allowed = may_act_on(rules.act_on, requester.actor, caller, target, |id| {
            self.launcher_of(id)
        });
        if allowed {
            return Ok(None);
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
        Ok(Some(error))
    }

    /// Refuses a group action (pause, resume or stop of `--owner`,
    /// `--workflow`, `--session` or `--all`) unless the requester's reach
    /// covers every process the group holds, now and later: a group pause
    /// also holds future runs of others. `act_on = "all"` covers any group;
    /// `same-owner`, only `--owner` of its own owner; `descendants`, none.
    pub(super) async fn authorize_group(&self, action: &str, target: &Selection) -> Result<()> {
        let requester = self.requester().await?;
        let rules = requester.policy.rules(requester.actor);
        let allowed = may_act_on_group(rules.act_on, requester.actor, target);
        if allowed {
            return Ok(());
        }
        let error = crate::policy::denied(
            &rules,
            "act_on",
            format!(
                "{} may not {action} {}: the group reaches processes beyond its act_on",
                rules.actor,
                target.describe()
            ),
        );
        self.record_refusal(action, None, &error);
        Err(error)
    }

    /// The caller's own managed process and every process that launched
    /// it: a group action never freezes or stops the one asking.
    pub(super) async fn caller_and_ancestors(&self) -> Result<Vec<String>> {
        let requester = self.requester().await?;
        let mut out = Vec::new();
        let mut next = requester.caller.as_ref().map(|c| c.id.clone());
        while let Some(id) = next.take() {
            if out.contains(&id) || out.len() >= 64 {
                break;
            }
            next = match self.index.load(&id) {
                Ok(Loaded::Found(r)) => r.requested_by.parent.clone(),
                _ => None,
            };
            out.push(id);
        }
        Ok(out)
    }

    /// Whether `ancestor` started `record`, directly or through children.
    pub(super) fn descends_from(&self, record: &Record, ancestor: &str) -> bool {
        descends(record, Launcher::Process(ancestor), |id| {
            self.launcher_of(id)
        })
    }

    /// Who launched record `id`, as its stored record says.
    fn launcher_of(&self, id: &str) -> Option<RequestedBy> {
        match self.index.load(id) {
            Ok(Loaded::Found(r)) => Some(r.requested_by),
            _ => None,
        }
    }

    /// Appends a refusal to the event log (best effort: the refusal itself
    /// is the answer the caller needs).
    pub(super) fn record_refusal(&self, action: &str, target: Option<&str>, error: &Error) {
        let mut event = Event::new("refused")
            .with("action", action)
            .with("reason", &error.message)
            .with("rule", &error.hint);
        event.id = target.map(String::from);
        self.attribute(&mut event);
        event.actor.get_or_insert_with(|| "unknown".into());
        if let Err(e) = self.index.append_event(&event, true) {
            tracing::warn!("cannot record the refusal: {}", e.message);
        }
    }

    /// Appends an event to the history (best effort, not synced: the record
    /// itself is the durable truth), with the requester as its actor unless
    /// it names one.
    pub fn record_event(&self, event: Event) {
        self.emit(event)
    }

    pub(super) fn emit(&self, mut event: Event) {
        if event.actor.is_none() {
            self.attribute(&mut event);
        }
        if let Err(e) = self.index.append_event(&event, false) {
            tracing::warn!("cannot record the {} event: {}", event.event, e.message);
        }
    }

    /// Names the requester in an event: its actor, the managed process
    /// that asked and, for the daemon, on whose behalf.
    fn attribute(&self, event: &mut Event) {
        let Some(r) = self.requester.get() else {
            return;
        };
        event.actor = Some(r.audit_actor.clone());
        event.caller = r.caller.as_ref().map(|c| c.id.clone());
        if let Origin::Daemon { .. } = r.who.origin {
            event
                .details
                .insert("on_behalf_of".into(), r.actor.key().into());
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

// The decisions of authorization, pure: the index is reached only through
// `parent_of` (who launched a record), so they are unit-tested without
// systemd or an index.

/// The identity of a person lowered to `owner` (see [`Requester::lowered`]):
/// its process, so that another session of the same owner is another
/// launcher, as another managed process would be.
fn lowered_identity(owner: Owner, who: &Caller) -> String {
    let process = who
        .identity
        .clone()
        .or_else(|| who.pid.map(|p| p.to_string()))
        .unwrap_or_else(|| format!("uid{}", who.uid));
    format!("{owner}@{process}")
}

/// Who may count as having launched a record: a managed process (its
/// record id) or a lowered person (its [`RequestedBy::lowered`]).
#[derive(Clone, Copy, Debug)]
pub(super) enum Launcher<'a> {
    Process(&'a str),
    Lowered(&'a str),
}

impl Launcher<'_> {
    fn launched(&self, id: &str, by: &RequestedBy) -> bool {
        match self {
            Launcher::Process(p) => id == *p || by.parent.as_deref() == Some(*p),
            Launcher::Lowered(l) => by.lowered.as_deref() == Some(*l),
        }
    }
}

/// Whether `ancestor` started `record`, directly or through children (a
/// managed process also "started" itself); `launcher_of` gives the
/// `requested_by` of a stored record.
pub(super) fn descends(
    record: &Record,
    ancestor: Launcher,
    launcher_of: impl Fn(&str) -> Option<RequestedBy>,
) -> bool {
    let mut id = record.id.clone();
    let mut by = record.requested_by.clone();
    // Bounded: a corrupt parent chain cannot loop forever.
    for _ in 0..64 {
        if ancestor.launched(&id, &by) {
            return true;
        }
        let Some(parent) = by.parent.take() else {
            return false;
        };
        by = launcher_of(&parent).unwrap_or_default();
        id = parent;
    }
    false
}

/// Whether an actor with reach `reach`, acting as `caller` (a managed
/// process or a lowered person; None: a person), may act on `target`.
pub(super) fn may_act_on(
    reach: Reach,
    actor: Actor,
    caller: Option<Launcher>,
    target: &Record,
    launcher_of: impl Fn(&str) -> Option<RequestedBy>,
) -> bool {
    let descends = || caller.is_some_and(|c| descends(target, c, &launcher_of));
    match reach {
        Reach::All => true,
        Reach::SameOwner => matches!(actor, Actor::Managed(o) if o == target.owner) || descends(),
        Reach::Descendants => descends(),
    }
}

/// Whether reach `reach` covers every process a group action on `target`
/// touches, now and later: `all` any group; `same-owner` only `--owner`
/// of its own owner; `descendants` none.
pub(super) fn may_act_on_group(reach: Reach, actor: Actor, target: &Selection) -> bool {
    match reach {
        Reach::All => true,
        Reach::SameOwner => matches!(
            (actor, target),
            (Actor::Managed(own), Selection { owner: Some(o), workflow: None, session: None, all: false, .. }) if own == *o
        ),
        Reach::Descendants => false,
    }
}

#[cfg(test)]
mod tests;
