//! `events`: a page of the history through the core, or (`-f`) a live
//! stream, which no single answer can hold: it runs here, on the filter
//! the core uses.

use clap::Args;
use refine_proc::controller::{EventFilter, Request};
use refine_proc::journal;
use refine_proc::model::Timestamp;
use refine_proc::Result;

use super::output::{self, View};
use super::Core;

#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Only events of this process (id, unique prefix, or unit name)
    #[arg(long)]
    pub id: Option<String>,
    /// Only events of this owner's processes
    #[arg(long)]
    pub owner: Option<String>,
    /// Only events of this workflow's processes
    #[arg(long, value_name = "ID")]
    pub workflow: Option<String>,
    /// Only the last N events
    #[arg(long, short = 'n', value_name = "N")]
    pub lines: Option<usize>,
    /// Only events at or after this time: -1h, '10min ago', today, '2026-11-20 10:00', @EPOCH
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub since: Option<String>,
    /// Keep printing new events as they happen (Ctrl-C ends)
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Print JSON Lines (one event a line)
    #[arg(long)]
    pub json: bool,
}

pub async fn events(core: &Core, args: EventsArgs) -> Result<i32> {
    let since = args
        .since
        .as_deref()
        .map(|t| journal::time_point(t, "--since"))
        .transpose()?;
    let filter = EventFilter {
        id: args.id,
        owner: args.owner.as_deref().map(str::parse).transpose()?,
        workflow: args.workflow,
        since: since.map(Timestamp),
        last: args.lines,
    };
    if !args.follow {
        let answer = core.handle(Request::Events(filter)).await?;
        output::answer(&answer, args.json, View::Plain)?;
        return Ok(0);
    }
    let controller = core.local("events --follow")?;
    let mut filter = filter;
    filter.id = filter
        .id
        .as_deref()
        .map(|a| controller.resolve(a))
        .transpose()?;
    let json = args.json;
    let ready = || eprintln!("refine-proc: following events as they happen (Ctrl-C ends)");
    let keep = |e: &refine_proc::events::Event| filter.matches(e);
    refine_proc::follow::follow(controller, args.lines, keep, ready, |e| {
        if json {
            output::json_lines(std::slice::from_ref(e))
        } else {
            output::event_line(e)
        }
    })
    .await?;
    Ok(0)
}
