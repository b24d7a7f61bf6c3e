//! `pause` and `resume` (and `pause --list`).

use clap::Args;
use refine_proc::controller::Request;
use refine_proc::{Error, Result};

use super::output::{self, View};
use super::stop::outcomes;
use super::Core;

#[derive(Args, Debug)]
pub struct PauseArgs {
    /// Record ids (or unique prefixes), or unit names
    pub ids: Vec<String>,
    /// Every running process of this owner
    #[arg(long, conflicts_with_all = ["ids", "workflow", "session", "all"])]
    pub owner: Option<String>,
    /// Every running process of this workflow
    #[arg(long, value_name = "ID", conflicts_with_all = ["ids", "session", "all"])]
    pub workflow: Option<String>,
    /// Every running process of this session
    #[arg(long, value_name = "ID", conflicts_with_all = ["ids", "all"])]
    pub session: Option<String>,
    /// Every managed process, as the pause policy says (see pause --help)
    #[arg(long, conflicts_with = "ids")]
    pub all: bool,
    /// Show the group pauses in force and the queued runs; change nothing
    #[arg(long, conflicts_with_all = ["ids", "owner", "workflow", "session", "all"])]
    pub list: bool,
    /// Print the outcomes (with --list: the pauses) as JSON
    #[arg(long)]
    pub json: bool,
}

impl PauseArgs {
    pub fn selection(self) -> Result<refine_proc::Selection> {
        let group = self.owner.is_some() || self.workflow.is_some() || self.session.is_some();
        if self.ids.is_empty() && !group && !self.all {
            return Err(Error::invalid("nothing to act on")
                .hint("give ids, or one of --owner, --workflow, --session, or --all (pause --list shows the pauses in force)"));
        }
        Ok(refine_proc::Selection {
            ids: self.ids,
            owner: self.owner.as_deref().map(str::parse).transpose()?,
            workflow: self.workflow,
            session: self.session,
            all: self.all,
        })
    }
}

pub async fn pause(core: &Core, args: PauseArgs) -> Result<i32> {
    if args.list {
        let answer = core.handle(Request::Pauses).await?;
        output::answer(&answer, args.json, View::Plain)?;
        return Ok(0);
    }
    let json = args.json;
    outcomes(core, Request::Pause(args.selection()?), json).await
}

pub async fn resume(core: &Core, args: PauseArgs) -> Result<i32> {
    let json = args.json;
    outcomes(core, Request::Resume(args.selection()?), json).await
}
