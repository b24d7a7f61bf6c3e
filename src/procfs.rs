//! What `/proc` says about running processes, for `adopt`: who owns a
//! process, its command line, its cgroup, and its descendants. Parsing is
//! kept in pure functions (unit-tested on sample text); the readers around
//! them only open files.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;

use crate::model::{parse_unit, Owner, UnitKind};

/// The fields of `/proc/PID/stat` that `adopt` needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    pub pid: u32,
    /// The executable's name as the kernel keeps it (at most 15 bytes).
    pub comm: String,
    /// R, S, D, Z (zombie), X (dead), T, t, I, ...
    pub state: char,
    pub ppid: u32,
}

impl Stat {
    /// A process that has exited but not been reaped by its parent yet.
    pub fn is_zombie(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

/// Parses one `/proc/PID/stat` line. The command name is in parentheses
/// and may itself contain spaces and `)`, so the fields after it are found
/// from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let comm = text.get(open + 1..close)?.to_string();
    let mut rest = text.get(close + 1..)?.split_ascii_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some(Stat {
        pid,
        comm,
        state,
        ppid,
    })
}

/// `/proc/PID/stat`; `NotFound` when there is no such process.
pub fn stat(pid: u32) -> io::Result<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("cannot parse /proc/{pid}/stat"),
        )
    })
}

/// A process's identity that survives pid reuse: `PID:STARTTIME` (the
/// start time in clock ticks since boot, field 22 of `/proc/PID/stat`).
pub fn identity(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = text.get(text.rfind(')')? + 1..)?;
    // Fields after the command name start at field 3 (state).
    let start = after_comm.split_ascii_whitespace().nth(22 - 3)?;
    Some(format!("{pid}:{start}"))
}

/// Whether the process an [`identity`] names still runs (the same one, not
/// a later process that reuses its pid).
pub fn is_alive(identity: &str) -> bool {
    let pid = identity.split(':').next().and_then(|p| p.parse().ok());
    pid.and_then(crate::procfs::identity).as_deref() == Some(identity)
}

/// The uid that owns the process (its effective uid, as `/proc/PID` shows).
pub fn owner_uid(pid: u32) -> io::Result<u32> {
    Ok(std::fs::metadata(format!("/proc/{pid}"))?.uid())
}

/// The process's argv, each argument decoded as lossy UTF-8; empty for
/// kernel threads and zombies.
pub fn cmdline(pid: u32) -> io::Result<Vec<String>> {
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline"))?;
    Ok(parse_cmdline(&bytes))
}

/// Splits NUL-terminated arguments (a last argument without its NUL, as a
/// process that rewrote its argv may leave, is kept).
pub fn parse_cmdline(bytes: &[u8]) -> Vec<String> {
    let bytes = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// The process's working directory, when the caller may read it.
pub fn cwd(pid: u32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/cwd"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// The process's cgroup v2 path (`/user.slice/.../app.slice/x.scope`), as
/// seen from the caller's cgroup namespace.
pub fn cgroup(pid: u32) -> io::Result<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    parse_cgroup(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("/proc/{pid}/cgroup has no cgroup v2 entry"),
        )
    })
}

/// The unified hierarchy's entry (`0::PATH`) of a `/proc/PID/cgroup` file.
pub fn parse_cgroup(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}

/// The refine-proc unit a cgroup path lies in, if any: a path component
/// named `refine-<owner>-<id>.service` or `.scope`.
pub fn managed_unit(cgroup: &str) -> Option<(Owner, String, UnitKind)> {
    cgroup.split('/').find_map(parse_unit)
}

/// Whether a cgroup path is `root` or below it.
pub fn is_within(cgroup: &str, root: &str) -> bool {
    let root = root.trim_end_matches('/');
    root.is_empty()
        || cgroup == root
        || cgroup
            .strip_prefix(root)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Every process in `/proc`, read once (a process that exits while the
/// directory is read is skipped).
pub fn all_processes() -> io::Result<Vec<Stat>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(s) = stat(pid) {
            out.push(s);
        }
    }
    Ok(out)
}

/// The descendants of `root` (children, their children, ...) in a snapshot
/// of the process table, nearest first. Built from the parent pid of every
/// process, so it does not depend on `/proc/PID/task/*/children`.
pub fn descendants(root: u32, processes: &[Stat]) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for p in processes {
        if p.pid != p.ppid {
            children.entry(p.ppid).or_default().push(p.pid);
        }
    }
    for list in children.values_mut() {
        list.sort_unstable();
    }
    let mut out = Vec::new();
    let mut next = 0;
    let mut frontier = vec![root];
    while let Some(&pid) = frontier.get(next) {
        next += 1;
        for &child in children.get(&pid).map(Vec::as_slice).unwrap_or_default() {
            // A pid reused during the scan cannot form a cycle back to us.
            if child != root && !out.contains(&child) {
                out.push(child);
                frontier.push(child);
            }
        }
    }
    out
}

/// The processes of a cgroup (a path as systemd's ControlGroup names it)
/// and of the cgroups below it, on cgroup2 (unified, or the `unified` part
/// of a hybrid system). None when it cannot be read there.
pub fn cgroup_processes(cgroup: &str) -> Option<Vec<u32>> {
    let rel = cgroup.trim_start_matches('/');
    // The root would be every process of the system.
    if rel.is_empty() || rel.split('/').any(|c| c == "..") {
        return None;
    }
    let dir = [crate::usage::CGROUP_MOUNT, "/sys/fs/cgroup/unified"]
        .iter()
        .map(|root| std::path::Path::new(root).join(rel))
        .find(|d| d.join("cgroup.procs").is_file())?;
    let mut pids = Vec::new();
    let mut todo = vec![dir];
    while let Some(dir) = todo.pop() {
        // A cgroup removed meanwhile has no processes left.
        if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
        if let Ok(entries) = std::fs::read_dir(&dir) {
            todo.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    Some(pids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kill_never_reads_the_root_cgroup() {
        // "" (a unit whose processes are gone) or "/" would list every
        // process of the system.
        for root in ["", "/", "//", "/a/../..", "/../x"] {
            assert_eq!(cgroup_processes(root), None, "{root:?}");
        }
    }

    fn st(pid: u32, ppid: u32) -> Stat {
        Stat {
            pid,
            comm: "x".into(),
            state: 'S',
            ppid,
        }
    }

    #[test]
    fn stat_lines_parse_even_with_parentheses_in_the_name() {
        let s = parse_stat("4242 (we)ird (name)) S 17 4242 4242 0 -1 4194560 ...").unwrap();
        assert_eq!(
            (s.pid, s.comm.as_str(), s.state, s.ppid),
            (4242, "we)ird (name)", 'S', 17)
        );
        assert!(parse_stat("1 (init) Z 0 0").unwrap().is_zombie());
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn command_lines_split_on_nul_and_keep_bad_bytes_as_replacement() {
        assert_eq!(
            parse_cmdline(b"sh\0-c\0echo a b\0"),
            vec!["sh", "-c", "echo a b"]
        );
        assert_eq!(parse_cmdline(b"rewritten title"), vec!["rewritten title"]);
        assert_eq!(parse_cmdline(b"x\xff\0"), vec!["x\u{fffd}"]);
        assert!(parse_cmdline(b"").is_empty());
    }

    #[test]
    fn cgroups_name_the_refine_unit_they_lie_in() {
        let text = "1:name=systemd:/\n0::/user.slice/user-1000.slice/user@1000.service/refine.slice/refine-user\\x2dhelper.slice/refine-user-helper-abcd2345.service\n";
        let cg = parse_cgroup(text).unwrap();
        assert_eq!(
            managed_unit(&cg),
            Some((Owner::UserHelper, "abcd2345".to_string(), UnitKind::Service))
        );
        let scope = "/user.slice/user-1000.slice/user@1000.service/refine.slice/refine-agent.slice/refine-agent-bcde3456.scope";
        assert_eq!(managed_unit(scope).unwrap().2, UnitKind::Scope);
        let terminal =
            "/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-terminal-1.scope";
        assert_eq!(managed_unit(terminal), None);
        assert_eq!(
            managed_unit("/user.slice/user-1000.slice/session-3.scope"),
            None
        );
    }

    #[test]
    fn subtree_checks_compare_whole_path_components() {
        let root = "/user.slice/user-1000.slice/user@1000.service";
        assert!(is_within(&format!("{root}/app.slice/x.scope"), root));
        assert!(is_within(root, root));
        assert!(!is_within(
            "/user.slice/user-1000.slice/session-3.scope",
            root
        ));
        assert!(!is_within(
            "/user.slice/user-1000.slice/user@1000.service2/x",
            root
        ));
        assert!(is_within("/anything", "/"));
    }

    #[test]
    fn descendants_are_found_from_parent_pids_nearest_first() {
        // 10 -> 11 -> 13, 10 -> 12; 20 is unrelated; 1 -> 10.
        let table = [
            st(1, 0),
            st(10, 1),
            st(11, 10),
            st(12, 10),
            st(13, 11),
            st(20, 1),
        ];
        assert_eq!(descendants(10, &table), vec![11, 12, 13]);
        assert_eq!(descendants(13, &table), Vec::<u32>::new());
        // A cycle (pid reuse caught mid-scan) does not loop.
        assert_eq!(descendants(5, &[st(5, 6), st(6, 5)]), vec![6]);
    }

    #[test]
    fn a_process_identity_outlives_no_pid_reuse() {
        let me = identity(std::process::id()).unwrap();
        assert!(me.starts_with(&format!("{}:", std::process::id())));
        assert!(is_alive(&me));
        let (pid, _) = me.split_once(':').unwrap();
        assert!(!is_alive(&format!("{pid}:1")));
        assert!(!is_alive("not-a-pid"));
    }
}
