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
    run(args).await.unwrap_or_else(|err| {
        eprintln!("error: {err:#}");
        ExitCode::FAILURE
    })
}

/// Loads the settings and runs the command; the exit code reports its outcome.
async fn run(args: args::Cli) -> anyhow::Result<ExitCode> {
    let settings = herald::config::Settings::load().context("invalid configuration")?;
    cli::run(args.command, &settings).await
}
