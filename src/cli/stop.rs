//! `stop`, `kill`, `restart` and `forget`: one request each, the outcomes
//! printed alike.

use clap::Args;
use refine_proc::controller::Request;
use refine_proc::text::parse_signal;
use refine_proc::{Result, Selection};

use super::args::IdArg;
use super::output::{self, View};
use super::Core;

#[derive(Args, Debug)]
pub struct StopArgs {
    /// Record ids (or unique prefixes), or unit names
    #[arg(required_unless_present_any = ["owner", "workflow", "session", "all"])]
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
    /// Every running managed process (and the queued runs)
    #[arg(long, conflicts_with = "ids")]
    pub all: bool,
    /// Also every running process they launched, transitively (as `list
    /// --tree` draws them), children first
    #[arg(long)]
    pub tree: bool,
    /// Print the outcomes as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct KillArgs {
    pub id: String,
    /// Signal name or number
    #[arg(long, short, default_value = "TERM")]
    pub signal: String,
    /// Print the outcome as JSON
    #[arg(long)]
    pub json: bool,
}

pub async fn stop(core: &Core, args: StopArgs) -> Result<i32> {
    let selection = Selection {
        ids: args.ids,
        owner: args.owner.as_deref().map(str::parse).transpose()?,
        workflow: args.workflow,
        session: args.session,
        all: args.all,
    };
    let request = Request::StopSelection {
        selection,
        tree: args.tree,
    };
    outcomes(core, request, args.json).await
}

pub async fn kill(core: &Core, args: KillArgs) -> Result<i32> {
    let signal = parse_signal(&args.signal)?;
    outcomes(
        core,
        Request::Kill {
            id: args.id,
            signal,
        },
        args.json,
    )
    .await
}

pub async fn restart(core: &Core, args: IdArg) -> Result<i32> {
    outcomes(core, Request::Restart { id: args.id }, args.json).await
}

pub async fn forget(core: &Core, args: IdArg) -> Result<i32> {
    outcomes(core, Request::Forget { id: args.id }, args.json).await
}

/// A request answered with outcomes, printed.
pub async fn outcomes(core: &Core, request: Request, json: bool) -> Result<i32> {
    let answer = core.handle(request).await?;
    output::answer(&answer, json, View::Plain)?;
    Ok(0)
}
