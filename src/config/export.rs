//! `[export]`: export jobs.

use std::{path::PathBuf, time::Duration};

use herald_jobs::ExportLimits;

use super::setting::{define_settings, millis, non_empty, positive, Values};
use super::ConfigError;

define_settings! {
    section "export";
    DIR: "dir" = ".herald/exports", "where export files are stored";
    COLLECTIONS: "collections" = "message", "collections exports may read, comma-separated";
    ACCOUNT_FIELD: "account_field" = "accountId",
        "field holding the account id in those collections";
    TIME_ZONE: "time_zone" = "UTC", "default time zone for dates";
    BATCH_SIZE: "batch_size" = "500", "documents per cursor batch";
    PROGRESS_INTERVAL_MS: "progress_interval_ms" = "500",
        "progress (status record and `export_progress`) at most this often, plus once at the end; the row count for `total` starts after one interval";
}

/// Export job settings.
#[derive(Debug, Clone)]
pub struct ExportSettings {
    /// Directory the finished files are stored in (one folder per account).
    pub dir: PathBuf,
    /// What exports may read and how dates are shown by default.
    pub limits: ExportLimits,
    /// Field holding the account id in exported collections.
    pub account_field: String,
    /// Documents fetched per cursor batch.
    pub batch_size: u32,
    /// Progress is recorded and pushed at most this often.
    pub progress_interval: Duration,
}

/// Reads and checks `[export]`.
pub(super) fn read(values: &Values) -> Result<ExportSettings, ConfigError> {
    let collections: String = values.get(&COLLECTIONS)?;
    Ok(ExportSettings {
        dir: PathBuf::from(values.checked(&DIR, non_empty)?),
        limits: ExportLimits {
            collections: collections
                .split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect(),
            default_time_zone: values.checked(&TIME_ZONE, |zone: String| {
                zone.parse()
                    .map_err(|_| format!("'{zone}' is not an IANA time zone"))
            })?,
        },
        account_field: values.checked(&ACCOUNT_FIELD, non_empty)?,
        batch_size: values.checked(&BATCH_SIZE, positive)?,
        progress_interval: values.checked(&PROGRESS_INTERVAL_MS, millis)?,
    })
}
