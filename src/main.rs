//! The `refine-proc` command: parse, run, print, map errors to exit codes.

mod cli;

fn main() {
    std::process::exit(cli::main());
}
