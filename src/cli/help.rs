//! `completions` and `man`: generated from the command line's definition;
//! they need no index and no bus.

use std::io::Write;
use std::path::PathBuf;

use clap::CommandFactory;
use refine_proc::{Error, Result};

use super::args::{Cli, ABOUT};
use super::output;

/// Shell completions for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<()> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut visible_command(), "refine-proc", &mut out);
    output::io_result(std::io::stdout().write_all(&out))
}

/// The command line without its hidden commands: clap_complete would
/// offer them (record-exit, completions) to people otherwise.
fn visible_command() -> clap::Command {
    let full = Cli::command();
    let mut cmd = clap::Command::new("refine-proc")
        .about(ABOUT)
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(true)
        .args(full.get_arguments().cloned());
    for sub in full.get_subcommands().filter(|s| !s.is_hide_set()) {
        cmd = cmd.subcommand(sub.clone());
    }
    cmd
}

/// The man page on stdout, or a page per command written into `dir`
/// (their paths on stdout).
pub fn man(dir: Option<&std::path::Path>) -> Result<()> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let Some(dir) = dir else {
        let mut out = Vec::new();
        output::io_result(clap_mangen::Man::new(cmd).render(&mut out))?;
        return output::io_result(std::io::stdout().write_all(&out));
    };
    fn write(
        cmd: clap::Command,
        dir: &std::path::Path,
        paths: &mut Vec<PathBuf>,
    ) -> std::io::Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            write(sub.clone(), dir, paths)?;
        }
        paths.push(clap_mangen::Man::new(cmd).generate_to(dir)?);
        Ok(())
    }
    let mut paths = Vec::new();
    std::fs::create_dir_all(dir)
        .and_then(|_| write(cmd, dir, &mut paths))
        .map_err(|e| {
            Error::invalid(format!("cannot write man pages to {}: {e}", dir.display()))
                .hint("pass a directory you can write to")
        })?;
    let list: String = paths.iter().map(|p| format!("{}\n", p.display())).collect();
    output::io_result(std::io::stdout().write_all(list.as_bytes()))
}
