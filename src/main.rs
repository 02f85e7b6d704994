use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    mvm::cli::run(mvm::cli::Cli::parse())
}
