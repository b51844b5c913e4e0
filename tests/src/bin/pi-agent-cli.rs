//! The `pi-agent` command line, built inside the test crate so tests can spawn it.

fn main() -> std::process::ExitCode {
    pi_agent::cli::main()
}
