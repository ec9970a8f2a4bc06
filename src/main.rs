//! The `herald` command: worker, producer CLI, diagnostics and the push sandbox.

mod cli;

/// mimalloc instead of glibc's malloc: the worker allocates and frees many
/// small buffers per job from several threads, and glibc's allocator took
/// about a third of the benchmark process's CPU (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
