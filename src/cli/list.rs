//! `list` and `status`.

use clap::Args;
use refine_proc::controller::{ListFilter, Request, Response};
use refine_proc::{Result, State};

use super::args::IdArg;
use super::output::{self, View};
use super::{Core, DAEMON_FIX};

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Include ended processes
    #[arg(long, short)]
    pub all: bool,
    #[arg(long)]
    pub owner: Option<String>,
    #[arg(long, value_name = "ID")]
    pub workflow: Option<String>,
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
    #[arg(long, value_name = "ID")]
    pub gap: Option<String>,
    /// starting, running, paused, exited, failed, stopped, lost or ended
    #[arg(long)]
    pub state: Option<String>,
    /// Show who started whom: children under the process that launched them
    #[arg(long)]
    pub tree: bool,
    /// Print an array of records as JSON
    #[arg(long)]
    pub json: bool,
}

pub async fn list(core: &Core, args: ListArgs) -> Result<i32> {
    let filter = ListFilter {
        all: args.all,
        owner: args.owner.as_deref().map(str::parse).transpose()?,
        workflow: args.workflow.clone(),
        session: args.session.clone(),
        gap: args.gap.clone(),
        state: args.state.as_deref().map(str::parse::<State>).transpose()?,
    };
    let mut answer = core.handle(Request::List(filter)).await?;
    let Response::Listed(listed) = &answer.response else {
        unreachable!("list answers records, not {:?}", answer.response)
    };
    let checked = listed.iter().filter(|l| l.health_status.is_some()).count();
    let unprobed = checked > 0 && core.unprobed();
    if unprobed {
        answer.warnings.push(format!(
            "no refine-proc daemon runs for this index, so nothing probes the health checks of {checked} process{}: HEALTH is what was last stored; {DAEMON_FIX}",
            if checked == 1 { "" } else { "es" }
        ));
    }
    let view = View::Table {
        all: args.all,
        tree: args.tree,
        unprobed,
    };
    output::answer(&answer, args.json, view)?;
    Ok(0)
}

pub async fn status(core: &Core, args: IdArg) -> Result<i32> {
    let mut answer = core.handle(Request::Status { id: args.id }).await?;
    let Response::Status(status) = &mut answer.response else {
        unreachable!("status answers a status, not {:?}", answer.response)
    };
    if status.health.is_some() && !status.record.state.is_ended() && core.unprobed() {
        let warning = format!(
            "no refine-proc daemon runs for this index, so nothing probes its health check: its health is what was last stored; {DAEMON_FIX}"
        );
        // In the JSON too, as the core's own warnings are.
        status.warnings.push(warning.clone());
        answer.warnings.push(warning);
    }
    output::answer(&answer, args.json, View::Plain)?;
    Ok(0)
}
