//! What running processes use: CPU time, memory and tasks, read from their
//! cgroup's files (`cpu.stat`, `memory.current`, `memory.peak`,
//! `pids.current`) rather than asked of systemd unit by unit, so `list`
//! costs a few file reads per process and no D-Bus round trip each.
//!
//! A value the kernel does not keep for a cgroup is never reported as zero:
//! it is null, and [`Usage::unavailable`] says why (most often: the memory
//! or pids controller is not delegated to the user manager, so systemd
//! can neither measure nor enforce those limits).

use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind as IoKind;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::model::Owner;

/// Where cgroup2 is mounted on a unified-hierarchy system.
pub const CGROUP_MOUNT: &str = "/sys/fs/cgroup";

/// The resources a running process's cgroup uses now.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Usage {
    /// CPU time of all its processes, microseconds (`cpu.stat` usage_usec).
    pub cpu_usec: Option<u64>,
    /// Memory charged to the cgroup now, bytes.
    pub memory_current: Option<u64>,
    /// Most memory charged at once since the cgroup was created (Linux >= 5.19).
    pub memory_peak: Option<u64>,
    /// Tasks (processes and threads) in the cgroup.
    pub tasks: Option<u64>,
    /// Why values are null, by controller: `cpu` (cpu_usec), `memory`
    /// (memory_current and memory_peak), `memory_peak` alone, `pids` (tasks).
    pub unavailable: BTreeMap<String, String>,
}

/// The cgroup tree as this process sees it, and what the user manager's
/// cgroup was given: read once per command.
#[derive(Clone, Debug)]
pub struct Cgroups {
    /// The cgroup2 mount point.
    root: PathBuf,
    /// The user manager's cgroup, relative to `root`.
    manager: Option<String>,
    /// Controllers available to the user manager's cgroup.
    manager_controllers: Option<BTreeSet<String>>,
    /// Why nothing can be read at all (no cgroup2, manager unknown).
    problem: Option<String>,
}

impl Cgroups {
    /// The system's cgroup2 hierarchy (unified, or the `unified` part of a
    /// hybrid setup) and the user manager's cgroup as systemd reported it.
    pub fn detect(manager: Result<String, String>) -> Cgroups {
        let root = [CGROUP_MOUNT.to_string(), format!("{CGROUP_MOUNT}/unified")]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.join("cgroup.controllers").is_file());
        match root {
            Some(root) => Cgroups::new(root, manager),
            None => Cgroups {
                root: PathBuf::from(CGROUP_MOUNT),
                manager: None,
                manager_controllers: None,
                problem: Some(format!(
                    "no cgroup v2 hierarchy is mounted at {CGROUP_MOUNT}"
                )),
            },
        }
    }

    /// A cgroup2 tree mounted at `root` (tests use a plain directory).
    pub fn new(root: PathBuf, manager: Result<String, String>) -> Cgroups {
        match manager {
            Ok(manager) => {
                let manager_controllers =
                    std::fs::read_to_string(join(&root, &manager).join("cgroup.controllers"))
                        .ok()
                        .map(|t| parse_controllers(&t));
                Cgroups {
                    root,
                    manager: Some(manager),
                    manager_controllers,
                    problem: None,
                }
            }
            Err(why) => Cgroups {
                root,
                manager: None,
                manager_controllers: None,
                problem: Some(format!("the user manager's cgroup is unknown: {why}")),
            },
        }
    }

    /// The cgroup systemd gives a managed unit: `<manager>/refine.slice/
    /// <owner slice>/<unit>` (slices nest by name). None when the manager's
    /// cgroup is unknown.
    pub fn unit_cgroup(&self, owner: Owner, unit: &str) -> Option<String> {
        let manager = self.manager.as_deref()?.trim_end_matches('/');
        Some(format!("{manager}/refine.slice/{}/{unit}", owner.slice()))
    }

    /// The cgroup of an owner's slice (`<manager>/refine.slice/<slice>`),
    /// whose usage is the sum of its running processes'.
    pub fn slice_cgroup(&self, owner: Owner) -> Option<String> {
        let manager = self.manager.as_deref()?.trim_end_matches('/');
        Some(format!("{manager}/refine.slice/{}", owner.slice()))
    }

    /// Usage of many cgroups, in order. The kernel takes ~20 µs to open and
    /// read one cgroup file (kernfs), whatever the file: a long list is read
    /// on all cores.
    pub fn read_all(&self, cgroups: &[Option<String>]) -> Vec<Option<Usage>> {
        crate::par::on_all_cores(cgroups, 128, |c| self.read(c.as_deref()))
    }

    /// Usage of the cgroup at `cgroup` (as in systemd's ControlGroup
    /// property); None when that cgroup does not exist (the unit is not
    /// running).
    pub fn read(&self, cgroup: Option<&str>) -> Option<Usage> {
        if let Some(problem) = &self.problem {
            return Some(Usage::unavailable_all(problem));
        }
        let dir = join(&self.root, cgroup?);
        let mut usage = Usage::default();
        // usage_usec is core cgroup2 accounting, in every cgroup with or
        // without the cpu controller: its absence means no cgroup.
        match std::fs::read_to_string(dir.join("cpu.stat")) {
            Ok(text) => match parse_cpu_stat(&text) {
                Some(v) => usage.cpu_usec = Some(v),
                None => usage.note("cpu", "cpu.stat has no usage_usec".into()),
            },
            Err(e) if e.kind() == IoKind::NotFound && !dir.is_dir() => return None,
            Err(e) => usage.note("cpu", format!("cannot read cpu.stat: {e}")),
        }
        // Read only to explain a missing value.
        let controllers = std::cell::OnceCell::new();
        let unit_controllers = || {
            controllers
                .get_or_init(|| {
                    std::fs::read_to_string(dir.join("cgroup.controllers"))
                        .map(|t| parse_controllers(&t))
                        .unwrap_or_default()
                })
                .clone()
        };
        // Where the manager lacks a controller no unit has its files: the
        // reason is known without looking.
        let undelegated = |c: &str| {
            self.manager_controllers
                .as_ref()
                .is_some_and(|m| !m.contains(c))
        };
        let memory = if undelegated("memory") {
            Err(Missing)
        } else {
            read_counter(&dir, "memory.current")
        };
        match memory {
            Ok(v) => {
                usage.memory_current = Some(v);
                match read_counter(&dir, "memory.peak") {
                    Ok(v) => usage.memory_peak = Some(v),
                    Err(Missing) => usage.note(
                        "memory_peak",
                        "this kernel keeps no memory.peak (Linux 5.19 or later does)".into(),
                    ),
                    Err(Unreadable(why)) => usage.note("memory_peak", why),
                }
            }
            Err(e) => usage.note("memory", self.why_missing("memory", unit_controllers, e)),
        }
        let pids = if undelegated("pids") {
            Err(Missing)
        } else {
            read_counter(&dir, "pids.current")
        };
        match pids {
            Ok(v) => usage.tasks = Some(v),
            Err(e) => usage.note("pids", self.why_missing("pids", unit_controllers, e)),
        }
        Some(usage)
    }

    /// Why a controller's file is missing in a unit's cgroup.
    fn why_missing(
        &self,
        controller: &str,
        unit_controllers: impl FnOnce() -> BTreeSet<String>,
        error: ReadError,
    ) -> String {
        if let Unreadable(why) = error {
            return why;
        }
        let delegated = self
            .manager_controllers
            .as_ref()
            .map(|c| c.contains(controller));
        match delegated {
            Some(false) => {
                format!("the {controller} controller is not delegated to the user manager")
            }
            _ if !unit_controllers().contains(controller) => {
                format!("the {controller} controller is not enabled for this unit's cgroup")
            }
            _ => format!("the cgroup has no {controller} files"),
        }
    }
}

impl Usage {
    fn note(&mut self, key: &str, why: String) {
        self.unavailable.insert(key.to_string(), why);
    }

    fn unavailable_all(why: &str) -> Usage {
        let mut usage = Usage::default();
        for key in ["cpu", "memory", "pids"] {
            usage.note(key, why.to_string());
        }
        usage
    }
}

/// `root` + an absolute cgroup path.
fn join(root: &Path, cgroup: &str) -> PathBuf {
    root.join(cgroup.trim_start_matches('/'))
}

enum ReadError {
    Missing,
    Unreadable(String),
}
use ReadError::{Missing, Unreadable};

fn read_counter(dir: &Path, name: &str) -> Result<u64, ReadError> {
    match std::fs::read_to_string(dir.join(name)) {
        Ok(text) => parse_counter(&text)
            .ok_or_else(|| Unreadable(format!("{name} holds {:?}, not a number", text.trim()))),
        Err(e) if e.kind() == IoKind::NotFound => Err(Missing),
        Err(e) => Err(Unreadable(format!("cannot read {name}: {e}"))),
    }
}

/// `usage_usec` of a `cpu.stat` file.
pub fn parse_cpu_stat(text: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == "usage_usec").then(|| value.trim().parse().ok())?
    })
}

/// A single-number cgroup file such as `memory.current` or `pids.current`.
pub fn parse_counter(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// The space-separated names of a `cgroup.controllers` file.
pub fn parse_controllers(text: &str) -> BTreeSet<String> {
    text.split_whitespace().map(String::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn parses_cgroup_files() {
        let stat = "usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\n";
        assert_eq!(parse_cpu_stat(stat), Some(123456));
        assert_eq!(parse_cpu_stat("user_usec 5\n"), None);
        assert_eq!(parse_cpu_stat(""), None);
        assert_eq!(parse_counter("4096\n"), Some(4096));
        assert_eq!(parse_counter("max\n"), None);
        let c = parse_controllers("cpu memory pids\n");
        assert!(c.contains("memory") && c.contains("pids") && c.len() == 3);
        assert!(parse_controllers("\n").is_empty());
    }

    const MANAGER: &str = "/user.slice/user-1000.slice/user@1000.service";

    /// A fake cgroup2 tree: the manager with `delegated` controllers and
    /// one unit whose cgroup has the given files.
    fn tree(delegated: &str, unit_files: &[(&str, &str)]) -> (tempfile::TempDir, Cgroups, String) {
        let tmp = tempfile::tempdir().unwrap();
        let manager = join(tmp.path(), MANAGER);
        fs::create_dir_all(&manager).unwrap();
        fs::write(manager.join("cgroup.controllers"), format!("{delegated}\n")).unwrap();
        let cgroups = Cgroups::new(tmp.path().to_path_buf(), Ok(MANAGER.into()));
        let unit = cgroups
            .unit_cgroup(Owner::UserHelper, "refine-user-helper-abcd2345.service")
            .unwrap();
        let dir = join(tmp.path(), &unit);
        fs::create_dir_all(&dir).unwrap();
        for (name, text) in unit_files {
            fs::write(dir.join(name), text).unwrap();
        }
        (tmp, cgroups, unit)
    }

    #[test]
    fn unit_cgroups_nest_under_the_owner_slice() {
        let (_tmp, _, unit) = tree("", &[]);
        assert_eq!(
            unit,
            format!(
                "{MANAGER}/refine.slice/refine-user\\x2dhelper.slice/refine-user-helper-abcd2345.service"
            )
        );
        let none = Cgroups::new("/x".into(), Err("no bus".into()));
        assert_eq!(none.unit_cgroup(Owner::Agent, "u.service"), None);
    }

    #[test]
    fn every_value_is_read_where_the_controllers_are_delegated() {
        let (_tmp, cgroups, unit) = tree(
            "cpu memory pids",
            &[
                ("cgroup.controllers", "cpu memory pids\n"),
                ("cpu.stat", "usage_usec 2500\nuser_usec 2000\n"),
                ("memory.current", "1048576\n"),
                ("memory.peak", "2097152\n"),
                ("pids.current", "3\n"),
            ],
        );
        let u = cgroups.read(Some(&unit)).unwrap();
        assert_eq!(
            u,
            Usage {
                cpu_usec: Some(2500),
                memory_current: Some(1 << 20),
                memory_peak: Some(2 << 20),
                tasks: Some(3),
                unavailable: BTreeMap::new(),
            }
        );
    }

    #[test]
    fn missing_controllers_are_null_with_the_reason_never_zero() {
        // As in a container whose user manager got no controllers.
        let (_tmp, cgroups, unit) = tree(
            "",
            &[("cgroup.controllers", "\n"), ("cpu.stat", "usage_usec 7\n")],
        );
        let u = cgroups.read(Some(&unit)).unwrap();
        assert_eq!(u.cpu_usec, Some(7));
        assert_eq!(
            (u.memory_current, u.memory_peak, u.tasks),
            (None, None, None)
        );
        assert_eq!(
            u.unavailable["memory"],
            "the memory controller is not delegated to the user manager"
        );
        assert_eq!(
            u.unavailable["pids"],
            "the pids controller is not delegated to the user manager"
        );
        assert!(!u.unavailable.contains_key("cpu"));

        // Delegated, but not enabled for this unit; and an old kernel.
        let (_tmp, cgroups, unit) = tree(
            "memory pids",
            &[
                ("cgroup.controllers", "memory\n"),
                ("cpu.stat", "usage_usec 7\n"),
                ("memory.current", "4096\n"),
            ],
        );
        let u = cgroups.read(Some(&unit)).unwrap();
        assert_eq!((u.memory_current, u.memory_peak), (Some(4096), None));
        assert!(u.unavailable["memory_peak"].contains("5.19"));
        assert_eq!(
            u.unavailable["pids"],
            "the pids controller is not enabled for this unit's cgroup"
        );
    }

    #[test]
    fn a_cgroup_that_does_not_exist_has_no_usage() {
        let (_tmp, cgroups, _) = tree("memory", &[]);
        let gone = cgroups.unit_cgroup(Owner::Agent, "refine-agent-zzzz2345.service");
        assert_eq!(cgroups.read(gone.as_deref()), None);
        assert_eq!(cgroups.read(None), None);
    }

    #[test]
    fn an_unknown_manager_makes_everything_unavailable_with_the_reason() {
        let cgroups = Cgroups::new("/nonexistent".into(), Err("no bus".into()));
        let u = cgroups.read(Some("/x.service")).unwrap();
        assert_eq!(u.cpu_usec, None);
        assert_eq!(u.unavailable.len(), 3);
        assert!(u.unavailable["cpu"].contains("no bus"));
    }
}
