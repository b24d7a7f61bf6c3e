//! The view survives a restart of the user manager (logout without linger,
//! a crash, a reboot): exits stay recorded, and refine-proc works on.

use super::common::*;

#[test]
fn after_a_user_manager_restart_exits_are_kept_and_new_runs_work() {
    // Restarting the manager ends every session process: only in the
    // private test sandbox, which provides the script.
    let Some(restart) = std::env::var_os("REFINE_PROC_RESTART_MANAGER") else {
        eprintln!("skipping: not in the test sandbox (REFINE_PROC_RESTART_MANAGER unset)");
        return;
    };
    let _exclusive = exclusive_manager();
    let env = Env::unshared();
    let running = env.run(&[
        "--owner", "agent", "--label", "long job", "--", "sleep", "600",
    ]);
    let ended = env.run(&["--", "sh", "-c", "exit 4"]);
    wait_gone(&ended.unit);
    let out = output(std::process::Command::new(restart));
    assert_eq!(
        out.code, 0,
        "restart-user-manager: {}{}",
        out.stdout, out.stderr
    );
    // The manager stopped the running process on its way out; the exit hook
    // recorded that. The earlier exit is untouched.
    let s = env.status(&running.id);
    assert_eq!(
        (s.state.as_str(), s.exit_signal.as_deref()),
        ("stopped", Some("TERM"))
    );
    assert_eq!(show(&running.unit, "LoadState"), "not-found");
    let e = env.status(&ended.id);
    assert_eq!((e.state.as_str(), e.exit_code), ("failed", Some(4)));
    assert!(env.list(&[]).is_empty());
    assert_eq!(env.list(&["--all"]).len(), 2);
    // The new manager takes new work.
    let again = env.run(&["--", "sleep", "600"]);
    assert_eq!(env.status(&again.id).state, "running");
}
