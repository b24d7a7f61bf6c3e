//! The index check of `doctor`: the state directory, inspected without
//! being created or changed.

use std::io::ErrorKind as IoKind;
use std::path::Path;

use super::Check;
use crate::error::ErrorKind;
use crate::index::INDEX_FORMAT;

/// The index, inspected without being created or changed.
pub fn index_check(dir: &Path) -> Check {
    let check = Check::new("index", true, ErrorKind::Index);
    let other = "or pass --state-dir DIR (or set REFINE_PROC_STATE_DIR) to use another directory";
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == IoKind::NotFound => {
            // Created on first use: the nearest existing parent must allow it.
            let parent = dir.ancestors().skip(1).find(|p| p.exists());
            return match parent {
                Some(p) if writable(p) => check.ok(format!(
                    "{} does not exist yet; it is created on first use",
                    dir.display()
                )),
                Some(p) => check.bad(
                    format!(
                        "{} does not exist and {} is not writable",
                        dir.display(),
                        p.display()
                    ),
                    format!("create it: mkdir -p {}; {other}", dir.display()),
                ),
                None => check.bad(format!("{} has no existing parent", dir.display()), other),
            };
        }
        Err(e) => return check.bad(format!("cannot read {}: {e}", dir.display()), other),
    };
    if !meta.is_dir() {
        return check.bad(
            format!("{} is not a directory", dir.display()),
            format!("move it aside, {other}"),
        );
    }
    if !writable(dir) {
        return check.bad(
            format!("{} is not writable", dir.display()),
            format!("make it yours (chown -R $USER {}), {other}", dir.display()),
        );
    }
    let format_file = dir.join("format.json");
    let format = match crate::index::read_small_state_file(&format_file) {
        Err(e) if e.kind() == IoKind::NotFound => None,
        Err(e) => {
            return check.bad(
                format!("cannot read {}: {e}", format_file.display()),
                format!("make it readable, {other}"),
            )
        }
        Ok(bytes) => match serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("format")?.as_u64())
        {
            Some(f) if f > u64::from(INDEX_FORMAT) => {
                return check.bad(
                    format!(
                    "{} has format {f}, newer than this refine-proc understands ({INDEX_FORMAT})",
                    dir.display()
                ),
                    format!("upgrade refine-proc, {other}"),
                )
            }
            Some(f) => Some(f),
            None => {
                return check.bad(
                    format!("{} does not hold {{\"format\": N}}", format_file.display()),
                    "move the file aside; refine-proc recreates it",
                )
            }
        },
    };
    let count = |sub: &str| {
        std::fs::read_dir(dir.join(sub))
            .map(|d| {
                d.flatten()
                    .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                    .count()
            })
            .unwrap_or(0)
    };
    let (records, quarantined) = (count("records"), count("quarantine"));
    let what = format!(
        "{}: format {}, {records} record{}, writable",
        dir.display(),
        format.map_or("(new)".to_string(), |f| f.to_string()),
        if records == 1 { "" } else { "s" }
    );
    if quarantined > 0 {
        return check.warn(
            format!(
                "{what}; {quarantined} unreadable file{} in quarantine/",
                if quarantined == 1 { "" } else { "s" }
            ),
            format!(
                "look at {}/quarantine/ and delete what you no longer need",
                dir.display()
            ),
        );
    }
    check.ok(what)
}

fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a valid NUL-terminated path; access has no other preconditions.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}
