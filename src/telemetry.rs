//! Logging: one place that builds the tracing subscriber.
//!
//! Every unit of work runs in a span carrying `job_id`, `queue` and
//! `account_id`, so a line can be traced back to its job whichever format is
//! chosen. `RUST_LOG` overrides the configured level.

use tracing_subscriber::{fmt, layer::SubscriberExt, util::SubscriberInitExt, EnvFilter};

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber writing to standard error. Calling it twice
/// is harmless (the second call keeps the first subscriber), which lets tests
/// and the binary share code.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match settings.format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(fmt::layer().with_target(false).with_writer(std::io::stderr))
            .try_init(),
    };
    // Already initialised (a test harness or an earlier call): keep that one.
    let _ = result;
}
