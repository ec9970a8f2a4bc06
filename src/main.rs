//! The `herald` command: worker, producer CLI, diagnostics and the push sandbox.

mod cli;

/// mimalloc instead of glibc's malloc: the worker allocates and frees many
/// small buffers per job from several threads, and glibc's allocator took
/// about a third of the benchmark process's CPU (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::Parser;

/// The exit status of a configuration Herald refuses (`EX_CONFIG` of
/// sysexits.h): running again cannot help, so a supervisor told of it
/// (systemd's `RestartPreventExitStatus=78`) does not restart the process.
/// Every other fatal error exits 1, and a restart may well help.
const EXIT_CONFIG: u8 = 78;

#[tokio::main]
async fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            let refused_configuration = err
                .chain()
                .any(|cause| cause.is::<herald::config::ConfigError>());
            if refused_configuration {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
