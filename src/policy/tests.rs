//! Unit tests of the policy: parsing, the checks and the verdicts.

use std::path::Path;

use crate::error::Result;
use crate::model::{Limits, Owner};

use super::*;

fn policy(text: &str) -> Result<Policy> {
    Policy::parse(Path::new("/p/policy.toml"), text)
}

fn launch<'a>(owner: Owner, exe: &'a Path, limits: &'a Limits) -> LaunchRequest<'a> {
    LaunchRequest {
        owner,
        executable: exe,
        limits,
    }
}

const AGENTS: &str = r#"
# Agents may run project scripts and checks, within bounds.
[actors.agent]
launch_as = ["agent", "quality"]
commands = ["/usr/bin/*", "/home/me/project/**"]
act_on = "descendants"
default_limits = { memory_max = "1G" }
max_limits = { memory_max = "4G", runtime_max = "2h" }
"#;

#[test]
fn pause_all_defaults_and_a_file_moving_an_owner_between_lists() {
    use PauseTreatment::*;
    let p = Policy::load(Path::new("/nonexistent/policy.toml")).unwrap();
    let d = p.pause_all();
    assert_eq!(d.treatment(Owner::Agent), Freeze);
    for o in [Owner::Import, Owner::Maintenance, Owner::Quality] {
        assert_eq!(d.treatment(o), Stop);
    }
    for o in [Owner::Daemon, Owner::TargetApp, Owner::UserHelper] {
        assert_eq!(d.treatment(o), KeepRunning);
    }
    // Quality moved to freeze: it leaves the default stop list.
    let p = policy("[pause_all]\nfreeze = [\"agent\", \"quality\"]\n").unwrap();
    let a = p.pause_all();
    assert_eq!(a.treatment(Owner::Quality), Freeze);
    assert_eq!(a.treatment(Owner::Import), Stop);
    assert!(a.source.contains("[pause_all]"));
    let e = policy("[pause_all]\nfreeze = [\"agent\"]\nstop = [\"agent\"]\n").unwrap_err();
    assert!(
        e.message.contains(":1: pause_all: agent is in both"),
        "{}",
        e.message
    );
    let e = policy("[pause_all]\nfreeze = [\"robots\"]\n").unwrap_err();
    assert!(e.message.contains("robots"), "{}", e.message);
}

#[test]
fn without_a_file_a_person_may_do_everything_and_a_process_only_to_its_descendants() {
    let p = Policy::load(Path::new("/nonexistent/policy.toml")).unwrap();
    assert!(!p.from_file);
    assert_eq!(p.rules(Actor::Person).act_on, Reach::All);
    assert_eq!(
        p.rules(Actor::Managed(Owner::Agent)).act_on,
        Reach::Descendants
    );
    let none = Limits::default();
    let exe = Path::new("/bin/anything");
    assert!(p
        .check_launch(
            Actor::Managed(Owner::Agent),
            &launch(Owner::Daemon, exe, &none)
        )
        .is_ok());
}

#[test]
fn refusals_name_the_rule_and_exit_with_the_denied_code() {
    let p = policy(AGENTS).unwrap();
    let agent = Actor::Managed(Owner::Agent);
    let capped = Limits {
        runtime_max_sec: Some(60),
        ..Default::default()
    };
    let e = p
        .check_launch(
            agent,
            &launch(Owner::Daemon, Path::new("/usr/bin/make"), &capped),
        )
        .unwrap_err();
    assert_eq!(e.exit_code(), 7);
    assert!(
        e.message.contains("may not launch processes as daemon"),
        "{e}"
    );
    assert!(e
        .hint
        .unwrap()
        .contains("rule launch_as of /p/policy.toml [actors.agent]"));
    let e = p
        .check_launch(
            agent,
            &launch(Owner::Agent, Path::new("/opt/evil/bin/x"), &capped),
        )
        .unwrap_err();
    assert!(e.message.contains("may not run /opt/evil/bin/x"), "{e}");
    // `*` stays within one directory, `**` does not.
    assert!(p
        .check_launch(
            agent,
            &launch(Owner::Agent, Path::new("/usr/bin/sub/x"), &capped)
        )
        .is_err());
    assert!(p
        .check_launch(
            agent,
            &launch(
                Owner::Agent,
                Path::new("/home/me/project/a/b/run.sh"),
                &capped
            )
        )
        .is_ok());
}

#[test]
fn limits_get_defaults_and_may_not_exceed_caps() {
    let p = policy(AGENTS).unwrap();
    let agent = Actor::Managed(Owner::Agent);
    let exe = Path::new("/usr/bin/make");
    let asked = Limits {
        runtime_max_sec: Some(60),
        ..Default::default()
    };
    let got = p
        .check_launch(agent, &launch(Owner::Agent, exe, &asked))
        .unwrap();
    assert_eq!(got.memory_max, Some(1 << 30), "the default applies");
    let too_much = Limits {
        memory_max: Some(8 << 30),
        runtime_max_sec: Some(60),
        ..Default::default()
    };
    let e = p
        .check_launch(agent, &launch(Owner::Agent, exe, &too_much))
        .unwrap_err();
    assert!(e.hint.unwrap().contains("max_limits.memory_max"));
    // A cap without a default: the launch must set the limit.
    let e = p
        .check_launch(agent, &launch(Owner::Agent, exe, &Limits::default()))
        .unwrap_err();
    assert!(e.message.contains("runtime_max is capped"), "{e}");
}

#[test]
fn changes_keep_to_caps_and_a_managed_process_cannot_raise_its_own_limits() {
    use crate::model::{LimitChange, LimitValue};
    let p = policy(AGENTS).unwrap();
    let agent = Actor::Managed(Owner::Agent);
    let now = Limits {
        memory_max: Some(1 << 30),
        ..Default::default()
    };
    let to = |v: LimitValue| LimitChange {
        memory_max: Some(v),
        ..Default::default()
    };
    assert!(p
        .check_change(agent, &now, &to(LimitValue::Value(1 << 29)), true)
        .is_ok());
    let e = p
        .check_change(agent, &now, &to(LimitValue::Value(2 << 30)), true)
        .unwrap_err();
    assert!(e.message.contains("may not raise its own limits"), "{e}");
    // On a child, raising within the cap is fine; past it is not.
    assert!(p
        .check_change(agent, &now, &to(LimitValue::Value(2 << 30)), false)
        .is_ok());
    assert!(p
        .check_change(agent, &now, &to(LimitValue::Infinity), false)
        .is_err());
    // A person is bound by its own (here: no) caps only.
    assert!(p
        .check_change(Actor::Person, &now, &to(LimitValue::Infinity), true)
        .is_ok());
}

#[test]
fn startup_variables_are_refused_for_bounded_actors_unless_named_exactly() {
    let p = policy(AGENTS).unwrap();
    let agent = Actor::Managed(Owner::Agent);
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    for evil in [
        "LD_PRELOAD",
        "LD_AUDIT",
        "BASH_ENV",
        "NODE_OPTIONS",
        "PYTHONSTARTUP",
        "GIT_CONFIG_COUNT",
    ] {
        let e = p.check_environment(agent, &names(&[evil])).unwrap_err();
        assert_eq!(e.exit_code(), 7);
        assert!(e.message.contains(evil), "{e}");
        assert!(e
            .hint
            .unwrap()
            .contains("rule env (start-up variables) of /p/policy.toml [actors.agent]"));
    }
    assert!(p
        .check_environment(agent, &names(&["RUST_LOG", "CI"]))
        .is_ok());
    // Unbounded (no commands, not confined): as before.
    assert!(p
        .check_environment(Actor::Person, &names(&["LD_PRELOAD"]))
        .is_ok());
    let p = policy("[actors.agent]\ncommands = [\"/usr/bin/*\"]\nenv = [\"RUST_*\", \"CI\", \"PYTHONPATH\", \"*\"]\n").unwrap();
    assert!(p
        .check_environment(agent, &names(&["RUST_LOG", "PYTHONPATH", "X"]))
        .is_ok());
    // A glob does not let a start-up variable through.
    assert!(p.check_environment(agent, &names(&["LD_PRELOAD"])).is_err());
    let p = policy("[actors.agent]\nenv = [\"RUST_*\", \"CI\"]\n").unwrap();
    let e = p.check_environment(agent, &names(&["HOME"])).unwrap_err();
    assert!(
        e.message
            .contains("may not pass HOME (allowed: RUST_*, CI)"),
        "{e}"
    );
    assert!(e.hint.unwrap().contains("rule env of"));
}

#[test]
fn confine_and_writable_are_read_and_checked() {
    let p = policy("[actors.agent]\nconfine = true\nwritable = [\"~/ws\", \"/srv/b\"]\n").unwrap();
    let r = p.rules(Actor::Managed(Owner::Agent));
    assert!(r.confine && r.bounded());
    assert_eq!(r.writable, ["~/ws", "/srv/b"]);
    assert!(!r.devices, "the machine's devices are hidden by default");
    assert!(!p.rules(Actor::Managed(Owner::Quality)).confine);
    let p = policy("[actors.agent]\nconfine = true\ndevices = true\n").unwrap();
    assert!(p.rules(Actor::Managed(Owner::Agent)).devices);
    for (text, why) in [
        (
            "[actors.agent]\nwritable = [\"~/ws\"]\n",
            "without confine = true",
        ),
        (
            "[actors.agent]\ndevices = true\n",
            "agent.devices has no effect without confine = true",
        ),
        (
            "[actors.agent]\nconfine = true\nwritable = [\"~\"]\n",
            "home directory",
        ),
        (
            "[actors.agent]\nconfine = true\nwritable = [\"ws\"]\n",
            "not an absolute path",
        ),
        (
            "[actors.person]\nconfine = true\n",
            "a person is not confined",
        ),
        (
            "[actors.agent]\nenv = [\"A=B\"]\n",
            "not a variable name or glob",
        ),
    ] {
        let e = policy(text).unwrap_err();
        assert!(e.message.contains(why), "{text:?}: {e}");
    }
}

#[test]
fn a_policy_with_an_error_is_rejected_whole_with_its_line() {
    for (text, line, why) in [
        ("[actors.agent]\nlaunch_as = [\"robot\"]\n", ":2", "robot"),
        ("[actors.robot]\n", ":1", "unknown actor"),
        (
            "[actors.agent]\nmax_limits = { memory_max = \"lots\" }\n",
            ":1",
            "invalid size",
        ),
        (
            "[actors.agent]\ncommands = [\"make\"]\n",
            ":1",
            "not an absolute path",
        ),
        ("[actors.agent]\nlaunch-as = []\n", ":2", "unknown field"),
        ("[actors.agent\n", ":1", ""),
    ] {
        let e = policy(text).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.message.contains(&format!("policy.toml{line}")),
            "{text:?}: {e}"
        );
        assert!(e.message.contains(why), "{text:?}: {e}");
        assert!(e.hint.unwrap().contains("half-read"));
    }
}
