//! `recover` and `resurrect`.

use refine_proc::controller::{Request, Response};
use refine_proc::{ErrorKind, Result};

use super::output::{self, View};
use super::Core;

pub async fn recover(core: &Core, json: bool) -> Result<i32> {
    let answer = core.handle(Request::Recover).await?;
    output::answer(&answer, json, View::Plain)?;
    Ok(0)
}

/// Exits 1 (systemd) when one of them could not be started again.
pub async fn resurrect(core: &Core, json: bool) -> Result<i32> {
    let answer = core.handle(Request::Resurrect).await?;
    output::answer(&answer, json, View::Plain)?;
    let failed = match &answer.response {
        Response::Resurrections(done) => done.iter().any(|d| d.outcome == "failed"),
        _ => false,
    };
    Ok(if failed {
        ErrorKind::Systemd.exit_code()
    } else {
        0
    })
}
