//! The `pi-agent` binary: everything lives in the library; see `pi_agent::cli`.

fn main() -> std::process::ExitCode {
    pi_agent::cli::main()
}
