//! pi-agent's benchmarks, one binary, a module per table. Each prints its table (medians,
//! ratios against a baseline measured in the same run: timings on shared machines are
//! noisy); none asserts.
//!
//! ```text
//! cargo bench -p pi-agent-tests                       # every table
//! cargo bench -p pi-agent-tests -- pipeline llm       # the tables named
//! ```
//!
//! The `just bench-*` recipes run one each.

mod bot;
mod dashboard;
mod llm;
mod memory;
mod pi;
mod pipeline;
mod python;
mod reload;
mod tasks;

use std::process::ExitCode;

/// Every table, in the order `cargo bench` runs them all.
const TABLES: &[(&str, fn())] = &[
    ("bot", bot::main),
    ("dashboard", dashboard::main),
    ("llm", llm::main),
    ("memory", memory::main),
    ("pi", pi::main),
    ("pipeline", pipeline::main),
    ("python", python::main),
    ("reload", reload::main),
    ("tasks", tasks::main),
];

fn main() -> ExitCode {
    // Cargo adds `--bench`; anything else is a table's name.
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    let known = |name: &String| TABLES.iter().any(|(table, _)| table == name);
    if let Some(unknown) = named.iter().find(|name| !known(name)) {
        let tables: Vec<&str> = TABLES.iter().map(|(name, _)| *name).collect();
        eprintln!(
            "no benchmark {unknown:?}; the tables: {}",
            tables.join(", ")
        );
        return ExitCode::FAILURE;
    }
    for (name, run) in TABLES {
        if named.is_empty() || named.iter().any(|n| n == name) {
            run();
        }
    }
    ExitCode::SUCCESS
}
