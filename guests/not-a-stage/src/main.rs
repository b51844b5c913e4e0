//! A WASI command: a perfectly good component that exports `wasi:cli/run`, not a pipeline
//! stage. Loading it as a stage must fail with a clear error.

fn main() {
    println!("I am a command, not a pipeline stage");
}
