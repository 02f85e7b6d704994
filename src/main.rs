use std::process::ExitCode;

fn main() -> ExitCode {
    mvm::cli::main()
}
