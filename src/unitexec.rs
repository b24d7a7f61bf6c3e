//! How a unit's command reaches the process byte for byte: systemd 252
//! rewrites `ExecStart=` when it reads a transient unit back at
//! `daemon-reload` (`;` becomes `\;`, `$$` becomes `\$\$`), so user text
//! never goes through its unit-file quoting. `ExecStart=` runs
//! `refine-proc exec-unit HEX...`, whose arguments are lowercase hex (an
//! alphabet systemd leaves alone); `exec-unit` decodes them and execve()s
//! the real command in the same process, so MainPID, signals, exit codes
//! and Type=exec/notify stay systemd's. The exit hook's index directory is
//! passed the same way.

use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::text::escape;

/// The hidden subcommand `ExecStart=` runs.
pub const EXEC_UNIT: &str = "exec-unit";
/// The hidden option of `record-exit` that carries the index directory.
pub const INDEX_HEX: &str = "--index-hex";
/// Hex characters per argument: far below the kernel's 128 KiB limit for
/// one argument (MAX_ARG_STRLEN), so the largest command still executes.
const CHUNK: usize = 64 * 1024;
/// The payload's first field: its format.
const VERSION: &[u8] = b"1";
/// Set when the process should find refine-proc on PATH (see [`exec_unit`]).
const ADD_OWN_DIR: &[u8] = b"path";
/// systemd's exit status for "the program could not be executed".
pub const EXIT_EXEC: i32 = 203;

/// What `exec-unit` executes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitCommand {
    /// The absolute path executed.
    pub executable: OsString,
    /// argv, including argv\[0\].
    pub argv: Vec<OsString>,
    /// Append the directory of the refine-proc binary to PATH (when it is
    /// missing there), so the process can call refine-proc itself.
    pub add_own_dir_to_path: bool,
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// The bytes of lowercase (or uppercase) hex; None for anything else.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = text.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    b.chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

impl UnitCommand {
    /// The arguments after `exec-unit`: the fields (version, flags,
    /// executable, argv...) each NUL-terminated, in hex, cut into chunks.
    pub fn encode(&self) -> Vec<String> {
        let flags: &[u8] = if self.add_own_dir_to_path {
            ADD_OWN_DIR
        } else {
            b""
        };
        let mut payload = Vec::new();
        let fields = [VERSION, flags, self.executable.as_bytes()]
            .into_iter()
            .chain(self.argv.iter().map(|a| a.as_bytes()));
        for field in fields {
            payload.extend_from_slice(field);
            payload.push(0);
        }
        let text = hex(&payload);
        // Hex is ASCII: cutting at any byte keeps whole characters.
        text.as_bytes()
            .chunks(CHUNK)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect()
    }

    /// The command from the arguments after `exec-unit`.
    pub fn decode<S: AsRef<str>>(chunks: &[S]) -> std::result::Result<UnitCommand, String> {
        let text: String = chunks.iter().map(|c| c.as_ref()).collect();
        let payload = unhex(&text).ok_or("the arguments are not hex")?;
        let Some(body) = payload.strip_suffix(&[0]) else {
            return Err("the command is not NUL-terminated".into());
        };
        let mut fields = body.split(|b| *b == 0);
        if fields.next() != Some(VERSION) {
            return Err("unknown format (from another version of refine-proc?)".into());
        }
        let flags = fields.next().ok_or("no flags")?;
        let executable = fields.next().ok_or("no executable")?;
        let argv: Vec<OsString> = fields.map(|f| OsString::from_vec(f.to_vec())).collect();
        if executable.is_empty() || argv.is_empty() {
            return Err("no executable or no argv[0]".into());
        }
        Ok(UnitCommand {
            executable: OsString::from_vec(executable.to_vec()),
            argv,
            add_own_dir_to_path: flags.split(|b| *b == b',').any(|f| f == ADD_OWN_DIR),
        })
    }
}

/// argv as a unit's `ExecStart=` holds it, back as the user gave it: the
/// command `exec-unit` decodes, or (units of older versions) the argv with
/// systemd's `$$` undone. None when `exec-unit`'s arguments do not decode.
pub fn command_of_exec_start(argv: &[String]) -> Option<Vec<String>> {
    match argv {
        [_, sub, chunks @ ..] if sub == EXEC_UNIT => UnitCommand::decode(chunks).ok().map(|c| {
            let argv: Vec<String> = c
                .argv
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            without_pty_holder(argv)
        }),
        _ => Some(argv.iter().map(|a| a.replace("$$", "$")).collect()),
    }
}

/// The user's argv of a `--pty` unit, whose encoded command is
/// `refine-proc pty-hold OPTIONS -- EXE ARGV...` (see crate::pty).
fn without_pty_holder(argv: Vec<String>) -> Vec<String> {
    let holder = argv.first().map(String::as_str) == Some("refine-proc")
        && argv.get(1).map(String::as_str) == Some(crate::pty::HOLD_COMMAND);
    match argv.iter().position(|a| a == "--") {
        // After `--`: the executable, then argv (argv[0] included).
        Some(end) if holder && argv.len() > end + 2 => argv[end + 2..].to_vec(),
        _ => argv,
    }
}

/// Characters of a path that systemd writes to and reads from a unit file
/// unchanged (the refine-proc binary is named in `ExecStart=` as it is).
fn is_safe_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"/._+,:@=~-".contains(&b)
}

/// Refuses a refine-proc binary whose path systemd could rewrite in a unit
/// file, before anything is started.
pub fn check_program_path(program: &Path) -> Result<()> {
    let bytes = program.as_os_str().as_bytes();
    if bytes.iter().all(|b| is_safe_path_byte(*b)) {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "the refine-proc binary {} has characters in its path that systemd may rewrite in a \
         unit (safe are letters, digits and / . _ + , : @ = ~ -)",
        escape(&program.display().to_string())
    ))
    .hint(
        "install refine-proc under a plain path, or point REFINE_PROC_HOOK at a symlink to it \
         with one",
    ))
}

/// PATH with `dir` appended unless it is there already (its entries keep
/// their order, so the manager's choices still win).
pub fn path_with(path: Option<&OsStr>, dir: &Path) -> Option<OsString> {
    let path = path.filter(|p| !p.is_empty())?;
    if std::env::split_paths(path).any(|p| p == dir) {
        return None;
    }
    let mut out = path.to_os_string();
    out.push(":");
    out.push(dir.as_os_str());
    Some(out)
}

/// `refine-proc exec-unit HEX...`: decodes the command and executes it in
/// this process. Returns only on failure, with systemd's status for a
/// program that could not be executed (203, as if systemd had tried).
pub fn exec_unit<S: AsRef<str>>(chunks: &[S]) -> i32 {
    let command = match UnitCommand::decode(chunks) {
        Ok(c) => c,
        Err(why) => {
            eprintln!("refine-proc exec-unit: cannot read the command: {why}");
            return EXIT_EXEC;
        }
    };
    if command.add_own_dir_to_path {
        let own = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(PathBuf::from));
        if let Some(path) = own.and_then(|d| path_with(std::env::var_os("PATH").as_deref(), &d)) {
            // Single-threaded here: nothing reads the environment meanwhile.
            std::env::set_var("PATH", path);
        }
    }
    let cstr = |s: &OsStr| CString::new(s.as_bytes()).ok();
    let (Some(exe), Some(argv)) = (
        cstr(&command.executable),
        command
            .argv
            .iter()
            .map(|a| cstr(a))
            .collect::<Option<Vec<_>>>(),
    ) else {
        eprintln!("refine-proc exec-unit: the command contains a NUL byte");
        return EXIT_EXEC;
    };
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // execv directly, not std's Command: that would reset signal
    // dispositions (SIGPIPE, which systemd's IgnoreSIGPIPE= set) and the mask.
    // SAFETY: exe and every argv pointer are NUL-terminated strings alive
    // for the call, and the array ends with a null pointer.
    unsafe {
        libc::execv(exe.as_ptr(), ptrs.as_ptr());
    }
    let err = std::io::Error::last_os_error();
    eprintln!(
        "refine-proc exec-unit: cannot execute {}: {err}",
        escape(&command.executable.to_string_lossy())
    );
    EXIT_EXEC
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(argv: &[&str]) -> UnitCommand {
        UnitCommand {
            executable: "/bin/sh".into(),
            argv: argv.iter().map(OsString::from).collect(),
            add_own_dir_to_path: true,
        }
    }

    #[test]
    fn daemon_reload_changes_what_a_unit_runs_unless_only_hex_reaches_systemd() {
        let hostile = [
            "sh",
            "-c",
            "echo \"$0|$1\" >> F; sleep 1; exit 1",
            "a;b",
            "cost $5",
            "$$",
            "",
            "'\"\\%n%%\t\n\r\x01é☃",
            "\\;",
        ];
        let c = command(&hostile);
        let args = c.encode();
        for a in &args {
            assert!(a.bytes().all(|b| b.is_ascii_hexdigit()), "{a}");
        }
        assert_eq!(UnitCommand::decode(&args).unwrap(), c);
        let mut exec_start = vec!["refine-proc".to_string(), EXEC_UNIT.to_string()];
        exec_start.extend(args);
        assert_eq!(
            command_of_exec_start(&exec_start).unwrap(),
            hostile.iter().map(|s| s.to_string()).collect::<Vec<_>>()
        );
        // Units of older versions: `$` doubled.
        assert_eq!(
            command_of_exec_start(&["echo".into(), "$$HOME".into()]).unwrap(),
            ["echo", "$HOME"]
        );
    }

    #[test]
    fn a_large_command_is_cut_into_arguments_the_kernel_accepts() {
        let big = "x".repeat(200 * 1024);
        let c = command(&["sh", &big, "y"]);
        let args = c.encode();
        assert!(args.len() > 2);
        assert!(args.iter().all(|a| a.len() <= CHUNK));
        assert_eq!(UnitCommand::decode(&args).unwrap(), c);
    }

    #[test]
    fn bad_payloads_are_refused() {
        for bad in [&["zz"][..], &["0"], &[""], &[&hex(b"2\0\0/x\0x\0")]] {
            assert!(UnitCommand::decode(bad).is_err(), "{bad:?}");
        }
        assert!(
            UnitCommand::decode(&[hex(b"1\0\0/x\0")]).is_err(),
            "no argv"
        );
        assert_eq!(unhex("0aFF"), Some(vec![10, 255]));
    }

    #[test]
    fn the_binary_path_must_survive_a_unit_file() {
        assert!(check_program_path(Path::new("/home/u/.cargo/bin/refine-proc")).is_ok());
        for bad in [
            "/opt/my tools/refine-proc",
            "/x;y/refine-proc",
            "/a$b/refine-proc",
        ] {
            let e = check_program_path(Path::new(bad)).unwrap_err();
            assert!(e.hint.unwrap().contains("REFINE_PROC_HOOK"), "{bad}");
        }
    }

    #[test]
    fn path_gets_the_own_directory_appended_once() {
        let dir = Path::new("/home/u/.cargo/bin");
        assert_eq!(
            path_with(Some(OsStr::new("/usr/bin:/bin")), dir),
            Some("/usr/bin:/bin:/home/u/.cargo/bin".into())
        );
        assert_eq!(
            path_with(Some(OsStr::new("/home/u/.cargo/bin:/bin")), dir),
            None
        );
        assert_eq!(path_with(None, dir), None);
    }
}
