//! The `herald-bench` command: Herald's fixed workloads, each measured
//! against a baseline in the same run (BENCHMARKS.md has the method and the
//! figures).

mod args;
mod cli;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

/// The global allocator of the `herald` binary (its src/main.rs: mimalloc),
/// so the workers this benchmark runs, in process and as the export's child
/// process, allocate as a deployed worker does and the figures stay
/// comparable with it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let args = args::Cli::parse();
    let outcome = match herald::config::Settings::load().context("invalid configuration") {
        Ok(settings) => cli::run(args.command, &settings).await,
        Err(err) => Err(err),
    };
    match outcome {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
