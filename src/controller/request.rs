//! The typed front door of the core: every operation as a [`Request`], its
//! result as a [`Response`], one `match` that routes them. Every surface
//! (the CLI, the HTTP API, the MCP server) builds a request, hands it to
//! [`Controller::handle`] on behalf of its caller, and renders the
//! response; serialized, a response is exactly the CLI's `--json` output.

use super::*;
use crate::doctor::Report;
use crate::events::Event;
use crate::policy::{Overview, Verdict};

/// Which events `events` returns.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// A record id (or a prefix or unit name, resolved first).
    pub id: Option<String>,
    pub owner: Option<Owner>,
    pub workflow: Option<String>,
    /// Only events at or after this time.
    pub since: Option<Timestamp>,
    /// Only the last N that match.
    pub last: Option<usize>,
}

impl EventFilter {
    /// Whether an event passes (with `id` already resolved).
    pub fn matches(&self, e: &Event) -> bool {
        self.id.as_ref().is_none_or(|i| e.id.as_ref() == Some(i))
            && self.owner.is_none_or(|o| e.owner == Some(o))
            && self
                .workflow
                .as_ref()
                .is_none_or(|w| e.workflow.as_ref() == Some(w))
            && self.since.is_none_or(|t| e.time >= t)
    }
}

/// The events that matched, and how many torn lines of the history were
/// skipped.
#[derive(Debug, Clone, Serialize)]
pub struct EventPage {
    pub events: Vec<Event>,
    pub skipped: usize,
}

/// An event with its place in the history (the cursor to resume after it).
#[derive(Debug, Clone, Serialize)]
pub struct EventWithId {
    pub event_id: String,
    #[serde(flatten)]
    pub event: Event,
}

/// A page of the history after a cursor.
#[derive(Debug, Clone, Serialize)]
pub struct EventsAfter {
    pub events: Vec<EventWithId>,
    /// Pass back to continue (the last event read, matching or not).
    pub next_cursor: Option<String>,
    /// More events are there already.
    pub more: bool,
    /// The cursor's file was rotated away: the page starts at the oldest
    /// event kept, and events between may be gone.
    pub restarted: bool,
}

/// A launch `policy check` is asked about.
#[derive(Debug, Clone, Default)]
pub struct CheckRequest {
    /// The actor to check (default: the caller's own).
    pub actor: Option<Actor>,
    /// The launch, if any (only what the rules look at needs to be set).
    pub launch: Option<RunSpec>,
}

/// The policy file and every actor's effective rules (`policy show`).
#[derive(Debug, Clone, Serialize)]
pub struct PolicyView {
    #[serde(flatten)]
    pub overview: Overview,
    /// The policy file's text, for people (the JSON has the rules).
    #[serde(skip)]
    pub text: String,
}

/// Every operation of the core.
#[derive(Debug, Clone)]
pub enum Request {
    Run {
        spec: RunSpec,
        options: RunOptions,
    },
    Adopt(AdoptSpec),
    List(ListFilter),
    Status {
        id: String,
    },
    Stop {
        ids: Vec<String>,
    },
    /// `stop` of a selection (ids, or a group), with `tree` every process
    /// they launched too.
    StopSelection {
        selection: Selection,
        tree: bool,
    },
    Kill {
        id: String,
        signal: i32,
    },
    Restart {
        id: String,
    },
    Forget {
        id: String,
    },
    Set {
        id: String,
        change: LimitChange,
    },
    SetOwner {
        owner: Owner,
        change: LimitChange,
    },
    Pause(Selection),
    Resume(Selection),
    Pauses,
    Events(EventFilter),
    Recover,
    Resurrect,
    PolicyShow,
    PolicyCheck(CheckRequest),
    /// Where `logs` reads: a stream of lines is the surface's to run (a
    /// follow has no end to answer with), so the core answers which
    /// processes and which journal query.
    Logs(LogsRequest),
    /// What this machine and session give refine-proc (for this index).
    Doctor,
}

/// What an operation returns. Serialized untagged: each variant is the
/// JSON the CLI prints for that command.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Response {
    Record(Box<Record>),
    Adopted(Box<Adopted>),
    Listed(Vec<Listed>),
    Status(Box<Status>),
    Outcomes(Vec<ActionOutcome>),
    OwnerLimits(Box<OwnerLimits>),
    Pauses(Box<Pauses>),
    Events(EventPage),
    Recovery(Box<Recovery>),
    Resurrections(Vec<Resurrection>),
    Policy(Box<PolicyView>),
    Verdict(Box<Verdict>),
    LogSources(Box<LogSources>),
    Doctor(Box<Report>),
}

/// A response and the warnings that came with it (for stderr, or a
/// `warnings` field).
#[derive(Debug, Clone)]
pub struct Answer {
    pub response: Response,
    pub warnings: Vec<String>,
}

impl From<Response> for Answer {
    fn from(response: Response) -> Answer {
        Answer {
            response,
            warnings: Vec::new(),
        }
    }
}

/// How long a read in the daemon waits for ends it has streamed but not
/// yet written (an fsync: milliseconds).
const ENDS_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl Controller {
    /// Carries out one request for this controller's caller.
    pub async fn handle(&self, request: Request) -> Result<Answer> {
        use Response as R;
        Ok(match request {
            Request::Run { spec, options } => {
                R::Record(Box::new(self.run(spec, options).await?)).into()
            }
            Request::Adopt(spec) => {
                let adopted = self.adopt(spec).await?;
                let warnings = adopted.warnings.clone();
                Answer {
                    response: R::Adopted(Box::new(adopted)),
                    warnings,
                }
            }
            Request::List(filter) => {
                self.index.ends_written(ENDS_WAIT).await;
                let (mut listed, warnings) = self.list_with_usage(&filter).await?;
                self.hide_foreign_environments(&mut listed).await?;
                Answer {
                    response: R::Listed(listed),
                    warnings,
                }
            }
            Request::Status { id } => {
                self.index.ends_written(ENDS_WAIT).await;
                let mut status = self.status(&id).await?;
                let Status {
                    record, systemd, ..
                } = &mut status;
                self.hide_foreign_environment(record, systemd.as_mut())
                    .await?;
                Answer {
                    warnings: status.warnings.clone(),
                    response: R::Status(Box::new(status)),
                }
            }
            Request::Stop { ids } => R::Outcomes(self.stop(&ids).await?).into(),
            Request::StopSelection { selection, tree } => {
                R::Outcomes(self.stop_selection(&selection, tree).await?).into()
            }
            Request::Kill { id, signal } => R::Outcomes(vec![self.kill(&id, signal).await?]).into(),
            Request::Restart { id } => R::Outcomes(vec![self.restart(&id).await?]).into(),
            Request::Forget { id } => R::Outcomes(vec![self.forget(&id).await?]).into(),
            Request::Set { id, change } => {
                R::Record(Box::new(self.set_limits(&id, &change).await?)).into()
            }
            Request::SetOwner { owner, change } => {
                R::OwnerLimits(Box::new(self.set_owner_limits(owner, &change).await?)).into()
            }
            Request::Pause(selection) => R::Outcomes(self.pause(&selection).await?).into(),
            Request::Resume(selection) => R::Outcomes(self.resume(&selection).await?).into(),
            Request::Pauses => R::Pauses(Box::new(self.pauses()?)).into(),
            Request::Events(filter) => {
                let page = self.events_matching(&filter)?;
                let warnings = match page.skipped {
                    0 => Vec::new(),
                    n => vec![format!("skipped {n} unreadable lines of the history")],
                };
                Answer {
                    response: R::Events(page),
                    warnings,
                }
            }
            Request::Recover => R::Recovery(Box::new(self.recover().await?)).into(),
            Request::Resurrect => R::Resurrections(self.resurrect().await?).into(),
            Request::PolicyShow => {
                let policy = &self.requester().await?.policy;
                R::Policy(Box::new(PolicyView {
                    overview: policy.overview(),
                    text: policy.text().to_string(),
                }))
                .into()
            }
            Request::PolicyCheck(check) => {
                R::Verdict(Box::new(self.policy_check(check).await?)).into()
            }
            Request::Logs(request) => {
                R::LogSources(Box::new(self.log_sources(request).await?)).into()
            }
            Request::Doctor => {
                let report = crate::doctor::run(Ok(self.index().dir())).await;
                R::Doctor(Box::new(report)).into()
            }
        })
    }

    /// The history that passes `filter`, oldest first.
    pub fn events_matching(&self, filter: &EventFilter) -> Result<EventPage> {
        let mut filter = filter.clone();
        filter.id = filter.id.as_deref().map(|a| self.resolve(a)).transpose()?;
        let (mut events, skipped) = self.events()?;
        events.retain(|e| filter.matches(e));
        if let Some(n) = filter.last {
            events.drain(..events.len().saturating_sub(n));
        }
        Ok(EventPage { events, skipped })
    }

    /// Events in file order after `cursor` (an event's id, `INODE-OFFSET`,
    /// as the API's streams send it), at most `limit`, each with its id:
    /// a reader that passes back the last id neither loses nor repeats one.
    pub fn events_after(
        &self,
        cursor: Option<&str>,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<EventsAfter> {
        use crate::events::{EventPos, EventReader};
        let mut filter = filter.clone();
        filter.id = filter.id.as_deref().map(|a| self.resolve(a)).transpose()?;
        let dir = self.index.dir().to_path_buf();
        let (mut reader, restarted) = match cursor {
            Some(c) => match EventReader::after(dir.clone(), c.parse::<EventPos>()?) {
                Some(r) => (r, false),
                // Rotated away: from the oldest kept, and say so.
                None => (EventReader::from_start(dir), true),
            },
            None => (EventReader::from_start(dir), false),
        };
        let read = reader.read_new().map_err(|e| {
            Error::new(
                crate::ErrorKind::Index,
                format!("cannot read the history: {e}"),
            )
        })?;
        let mut events = Vec::new();
        let mut next = cursor.map(String::from);
        let mut more = false;
        for (pos, event) in read {
            if events.len() == limit {
                more = true;
                break;
            }
            next = Some(pos.to_string());
            if filter.matches(&event) {
                events.push(EventWithId {
                    event_id: pos.to_string(),
                    event,
                });
            }
        }
        Ok(EventsAfter {
            events,
            next_cursor: next,
            more,
            restarted,
        })
    }

    /// What `actor` (default: the caller) may do, and whether a launch
    /// would pass: with the defaults `run` applies (the owner a managed
    /// caller's children inherit), so the verdict is the one `run` reaches.
    pub async fn policy_check(&self, check: CheckRequest) -> Result<Verdict> {
        let requester = self.requester().await?;
        let actor = check.actor.unwrap_or(requester.actor);
        let launch = match check.launch {
            None => None,
            Some(mut spec) => {
                if spec.owner.is_none() {
                    spec.owner = match actor {
                        Actor::Managed(owner) => Some(owner),
                        Actor::Person => None,
                    };
                    requester.inherit(&mut spec.owner, &mut spec.metadata);
                }
                Some(spec.validate_in(&requester.who.env)?)
            }
        };
        let request = launch.as_ref().map(|l| LaunchRequest {
            owner: l.owner,
            executable: &l.executable,
            limits: &l.limits,
        });
        Ok(requester.policy.verdict(actor, request.as_ref()))
    }
}
