//! Cost of one command probe: `/bin/sh -c true` as the daemon runs it,
//! contained by its process group only (before issue 10.13) and in a probe
//! cgroup emptied with cgroup.kill (now). It measures and prints; it
//! asserts nothing. The cgroup side needs a writable cgroup of its own, as
//! the daemon has under the user manager: run it as a delegated unit,
//!
//!   systemd-run --user --wait --pipe -p Delegate=yes target/release/deps/probe-HASH
//!
//! (inside tests/sandbox/with-user-manager when there is no user manager).
//! PROBE_RUNS sets the probes per side [300].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use refine_proc::health::{probe_in, HealthCheck, HealthSpec};
use refine_proc::probe_cgroup::ProbeCgroups;

fn main() {
    let runs: usize = std::env::var("PROBE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let cgroups = match ProbeCgroups::detect() {
        Ok(c) => c,
        Err(why) => {
            eprintln!("probe bench: no probe cgroups here ({why}); run it as a delegated unit");
            std::process::exit(2);
        }
    };
    let spec = HealthSpec::new(HealthCheck::Cmd {
        command: "true".into(),
    });
    let env = BTreeMap::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut plain, mut contained) = (Vec::new(), Vec::new());
    rt.block_on(async {
        for i in 0..runs * 2 {
            // Alternating, so noise hits both sides alike.
            let start = Instant::now();
            let r = if i % 2 == 0 {
                probe_in(&spec, None, &env, None).await
            } else {
                let cg = cgroups.for_record("benchprb").unwrap();
                probe_in(&spec, None, &env, Some(cg)).await
            };
            assert!(r.ok, "{r:?}");
            let took = start.elapsed();
            if i % 2 == 0 {
                plain.push(took)
            } else {
                contained.push(took)
            }
        }
    });
    cgroups.remove("benchprb");
    let report = |name: &str, v: &mut Vec<Duration>| {
        v.sort();
        let at = |q: f64| v[((v.len() - 1) as f64 * q) as usize];
        println!(
            "{name:<22} median {:>8.3} ms  p90 {:>8.3} ms  (n={})",
            at(0.5).as_secs_f64() * 1e3,
            at(0.9).as_secs_f64() * 1e3,
            v.len()
        );
        at(0.5)
    };
    let a = report("process group only", &mut plain);
    let b = report("probe cgroup", &mut contained);
    println!(
        "cost of the cgroup per probe: {:+.3} ms (median), x{:.2}",
        (b.as_secs_f64() - a.as_secs_f64()) * 1e3,
        b.as_secs_f64() / a.as_secs_f64()
    );
}
