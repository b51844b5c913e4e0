//! Every integration test of pi-agent, in one binary: one link per change to the host, and
//! one run in which all tests share the machine (rust-lang/cargo's `tests/testsuite` layout).
//! A module per area; what tests share (the fakes, the bot harness, guests) is the test
//! crate's library. `cargo test -p pi-agent-tests -- <area>::` runs one area.

mod bot;
mod calendar;
mod cli;
mod dashboard;
mod grants;
mod hot_swap;
mod loading;
mod news;
mod ollama_client;
mod openai;
mod python;
mod rooms;
mod sandbox;
mod schedule;
mod wit_versions;
mod worker;
