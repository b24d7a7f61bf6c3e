//! `policy show` and `policy check`.

use clap::{Args, Subcommand};
use refine_proc::controller::{CheckRequest, Request, Response};
use refine_proc::run_request::RunRequest;
use refine_proc::{ErrorKind, Result};

use super::args::LimitArgs;
use super::output::{self, View};
use super::Core;

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Print the policy file and every actor's effective rules
    Show {
        /// Print the policy and every actor's rules as JSON
        #[arg(long)]
        json: bool,
    },
    /// Explain what an actor may do, and whether a launch would be allowed
    Check(Box<PolicyCheckArgs>),
}

#[derive(Args, Debug)]
pub struct PolicyCheckArgs {
    /// The actor: person, or an owner for a managed process [default: whoever runs this]
    #[arg(long = "as", value_name = "ACTOR")]
    pub actor: Option<String>,
    /// Owner the launch would run as [default: as for run: the actor's
    /// own owner for a managed process, else user-helper]
    #[arg(long)]
    pub owner: Option<String>,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Print the verdict as JSON
    #[arg(long)]
    pub json: bool,
    /// The command the launch would run (optional; after --)
    #[arg(trailing_var_arg = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

pub async fn policy(core: &Core, command: PolicyCommand) -> Result<i32> {
    let (request, json) = match command {
        PolicyCommand::Show { json } => (Request::PolicyShow, json),
        PolicyCommand::Check(a) => {
            let json = a.json;
            (Request::PolicyCheck(check_request(*a)?), json)
        }
    };
    let answer = core.handle(request).await?;
    output::answer(&answer, json, View::Plain)?;
    let refused = match &answer.response {
        Response::Verdict(v) => v.launch.as_ref().is_some_and(|l| !l.allowed),
        _ => false,
    };
    Ok(if refused {
        ErrorKind::Denied.exit_code()
    } else {
        0
    })
}

/// The launch to check, parsed as `run` parses it; the owner defaults as
/// for run (the core fills it in).
fn check_request(a: PolicyCheckArgs) -> Result<CheckRequest> {
    let actor = a
        .actor
        .as_deref()
        .map(refine_proc::policy::parse_actor)
        .transpose()?;
    let mut launch = RunRequest {
        command: a.command,
        owner: a.owner,
        ..Default::default()
    };
    a.limits.fill(&mut launch);
    let given = !launch.command.is_empty();
    // Checked before the command, as run checks them.
    let spec = launch.spec()?;
    Ok(CheckRequest {
        actor,
        launch: given.then_some(spec),
    })
}
