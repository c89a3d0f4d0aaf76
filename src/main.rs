//! The `dirascope` binary: parse arguments, run one subcommand, map its result to an exit code.

fn main() -> std::process::ExitCode {
    dirascope::cli::main()
}
