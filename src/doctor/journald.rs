//! The journal checks of `doctor`: journald's settings and whether this
//! user can read its own lines.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Check;
use crate::error::ErrorKind;

/// journald's settings that matter here, from journald.conf and its drop-ins.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct JournaldConf {
    /// `[Journal]` key -> value; later files win, as in journald.
    values: BTreeMap<String, String>,
}

impl JournaldConf {
    pub(super) fn read() -> JournaldConf {
        let mut conf = JournaldConf::default();
        for path in journald_conf_files(Path::new("/")) {
            if let Ok(text) = std::fs::read_to_string(&path) {
                conf.apply(&text);
            }
        }
        conf
    }

    /// Applies one file: `Key=Value` lines of its `[Journal]` section.
    pub(super) fn apply(&mut self, text: &str) {
        let mut in_journal = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_journal = line == "[Journal]";
            } else if in_journal && !line.starts_with(['#', ';']) {
                if let Some((k, v)) = line.split_once('=') {
                    self.values.insert(k.trim().into(), v.trim().into());
                }
            }
        }
    }

    pub(super) fn get(&self, key: &str, default: &str) -> String {
        self.values
            .get(key)
            .filter(|v| !v.is_empty())
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }

    pub(super) fn rate_limit_note(&self, major: Option<u32>) -> String {
        let interval = self.get("RateLimitIntervalSec", "30s");
        let burst = self.get("RateLimitBurst", "10000");
        let shared = if major.is_some_and(|m| m <= 252) {
            " On this systemd all of your services share one budget (systemd issue #36191)."
        } else {
            ""
        };
        format!(
            "journald drops a service's lines past RateLimitBurst={burst} per RateLimitIntervalSec={interval} (the burst grows with free disk space).{shared} For processes that print more, raise the limits in /etc/systemd/journald.conf or have them write a log file."
        )
    }
}

/// journald.conf and its drop-ins in the order journald applies them: the
/// main file (first found), then `*.conf` drop-ins sorted by file name, a
/// name in /etc hiding the same name in /run and /usr/lib.
pub(super) fn journald_conf_files(root: &Path) -> Vec<PathBuf> {
    let dirs = ["etc", "run", "usr/local/lib", "usr/lib"];
    let mut files: Vec<PathBuf> = dirs
        .iter()
        .map(|d| root.join(d).join("systemd/journald.conf"))
        .filter(|p| p.is_file())
        .take(1)
        .collect();
    let mut dropins: BTreeMap<std::ffi::OsString, PathBuf> = BTreeMap::new();
    for d in dirs.iter().rev() {
        let Ok(entries) = std::fs::read_dir(root.join(d).join("systemd/journald.conf.d")) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "conf") {
                dropins.insert(e.file_name(), path);
            }
        }
    }
    files.extend(dropins.into_values());
    files
}

/// Is the journal kept on disk, and can this user read its own lines?
pub(super) fn journal_checks(conf: &JournaldConf) -> (Check, Check) {
    let persistent = Check::new("journal-persistent", false, ErrorKind::Systemd);
    let readable = Check::new("journal-readable", false, ErrorKind::Systemd);
    let storage = conf.get("Storage", "auto");
    let var = Path::new("/var/log/journal");
    let on_disk = match storage.as_str() {
        "persistent" => true,
        "auto" => var.is_dir(),
        _ => false,
    };
    let make_persistent = "sudo mkdir -p /var/log/journal && sudo systemctl restart systemd-journald (with Storage=auto or persistent in /etc/systemd/journald.conf)";
    let persistent = if on_disk {
        persistent.ok(format!(
            "Storage={storage}: journald keeps logs in {}",
            var.display()
        ))
    } else {
        persistent.bad(
            format!("Storage={storage}{}: logs live in /run and are lost at reboot, and a non-root user cannot read them", if var.is_dir() { "" } else { " and no /var/log/journal" }),
            make_persistent,
        )
    };
    let uid = crate::provenance::uid();
    let journals = journal_files(var);
    let open = |p: &PathBuf| std::fs::File::open(p).map(drop);
    let system = journals.iter().find(|p| is_named(p, "system"));
    let own = journals
        .iter()
        .find(|p| is_named(p, &format!("user-{uid}")));
    let readable = match (system.map(|p| (p, open(p))), own.map(|p| (p, open(p)))) {
        _ if !on_disk => readable.bad(
            "no persistent journal: `refine-proc logs` can read nothing",
            make_persistent,
        ),
        (None, None) => readable.bad(
            format!("no journal files in {}/*/ (is systemd-journald running?)", var.display()),
            "sudo systemctl start systemd-journald && sudo journalctl --flush",
        ),
        (Some((p, Ok(()))), _) => readable.ok(format!("reads the whole journal ({})", p.display())),
        (_, Some((p, Ok(())))) => readable.ok(format!("reads its own journal file {}", p.display())),
        (_, Some((p, Err(e)))) => readable.bad(
            format!("cannot read {}: {e}", p.display()),
            "sudo systemctl restart systemd-journald (it fixes the file's ACL), or add yourself to the systemd-journal group",
        ),
        (_, None) if conf.get("SplitMode", "uid") == "none" => readable.bad(
            "SplitMode=none: journald keeps every user's lines in the system journal, which you cannot read",
            "set SplitMode=uid in /etc/systemd/journald.conf, or add yourself to the systemd-journal group",
        ),
        (_, None) if uid < 1000 => readable.bad(
            format!("uid {uid} is a system user: journald keeps its lines in the system journal, which it cannot read"),
            "add the user to the systemd-journal group (usermod -aG systemd-journal USER), or use a regular user (uid 1000 or above)",
        ),
        (_, None) => readable.bad(
            format!("no journal file of uid {uid} in {}/*/ yet: journald creates user-{uid}.journal when one of your processes first logs", var.display()),
            "run a process (refine-proc run -- echo hello) and check again; or add yourself to the systemd-journal group",
        ),
    };
    (persistent, readable)
}

/// `<dir>/<machine-id>/*.journal`.
fn journal_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for machine in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(machine.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let p = f.path();
            if p.extension().is_some_and(|x| x == "journal") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

/// `system.journal` or an archived `system@....journal` for "system".
fn is_named(path: &Path, stem: &str) -> bool {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    name == format!("{stem}.journal") || name.starts_with(&format!("{stem}@"))
}
