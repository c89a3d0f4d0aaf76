//! The dirascope binary: everything happens in `cli` and the library.
mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
