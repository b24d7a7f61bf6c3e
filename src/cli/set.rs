//! `set`: new limits for a process or an owner's slice.

use clap::Args;
use refine_proc::controller::Request;
use refine_proc::model::LimitChange;
use refine_proc::text::{parse_cpu_quota, parse_cpu_weight, parse_limit, parse_size, parse_tasks};
use refine_proc::{Owner, Result};

use super::output::{self, View};
use super::Core;

#[derive(Args, Debug)]
pub struct SetArgs {
    /// Record id (or a unique prefix), or unit name
    #[arg(required_unless_present = "owner", conflicts_with = "owner")]
    pub id: Option<String>,
    /// Set the limits of this owner's slice instead of one process
    #[arg(long)]
    pub owner: Option<String>,
    /// Memory limit (MemoryMax=), e.g. 512M, 2G, or infinity
    #[arg(long, value_name = "SIZE")]
    pub memory_max: Option<String>,
    /// Memory throttling threshold (MemoryHigh=), e.g. 1G, or infinity
    #[arg(long, value_name = "SIZE")]
    pub memory_high: Option<String>,
    /// CPU limit in percent of one CPU (CPUQuota=), e.g. 150%, or infinity
    #[arg(long, value_name = "PERCENT")]
    pub cpu_quota: Option<String>,
    /// CPU weight (CPUWeight=), 1 to 10000, or infinity for systemd's default
    #[arg(long, value_name = "N")]
    pub cpu_weight: Option<String>,
    /// Maximum number of tasks (TasksMax=), or infinity
    #[arg(long, value_name = "N")]
    pub tasks_max: Option<String>,
    /// Print the record (or the owner's limits) as JSON
    #[arg(long)]
    pub json: bool,
}

/// Every value is parsed and checked before systemd is asked.
pub async fn set(core: &Core, a: SetArgs) -> Result<i32> {
    let limit = |v: &Option<String>, parse: fn(&str) -> Result<u64>| {
        v.as_deref().map(|s| parse_limit(s, parse)).transpose()
    };
    let change = LimitChange {
        memory_max: limit(&a.memory_max, parse_size)?,
        memory_high: limit(&a.memory_high, parse_size)?,
        cpu_quota_percent: limit(&a.cpu_quota, parse_cpu_quota)?,
        cpu_weight: limit(&a.cpu_weight, parse_cpu_weight)?,
        tasks_max: limit(&a.tasks_max, parse_tasks)?,
    };
    change.validate()?;
    let request = match (a.id, a.owner) {
        (_, Some(owner)) => Request::SetOwner {
            owner: owner.parse::<Owner>()?,
            change,
        },
        (Some(id), None) => Request::Set { id, change },
        (None, None) => unreachable!("clap requires an id or --owner"),
    };
    let answer = core.handle(request).await?;
    output::answer(&answer, a.json, View::LimitsSet)?;
    Ok(0)
}
