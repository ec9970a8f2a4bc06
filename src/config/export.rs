//! `[export]`: export jobs, and where their files are kept.

use std::{collections::BTreeSet, path::PathBuf, time::Duration};

use herald_jobs::{export::FORBIDDEN_OPERATORS, ExportLimits, FilterPolicy};
use secrecy::SecretString;

use super::setting::{define_settings, non_empty, Rule, Values};
use super::ConfigError;

define_settings! {
    section "export";
    DIR: "dir" = ".herald/exports", Rule::NonEmpty, "where export files are stored (storage `local`)";
    STORAGE: "storage" = "local", Rule::Form("`local` or `s3`"),
        "where export files go: `local` (`export.dir`) or `s3` (the `export.s3_*` settings)";
    S3_ENDPOINT: "s3_endpoint" = "", Rule::Form("an http:// or https:// URL, or empty"),
        "S3 API endpoint URL; empty for AWS S3 in `s3_region` (docs/exports.md, \"Export files on object storage\")";
    S3_BUCKET: "s3_bucket" = "", Rule::Form("not empty with storage `s3`"), "bucket holding the export files (storage `s3`)";
    S3_REGION: "s3_region" = "us-east-1", Rule::NonEmpty, "region the S3 requests are signed for";
    S3_ACCESS_KEY_ID: "s3_access_key_id" = "", Rule::Form("not empty with storage `s3`"), "S3 access key id";
    S3_SECRET_ACCESS_KEY: "s3_secret_access_key" = "", Rule::Form("not empty with storage `s3`"), "S3 secret access key (never logged)";
    S3_PREFIX: "s3_prefix" = "exports", Rule::Any,
        "key prefix of the files in the bucket: PREFIX/<accountId>/<key>.csv (empty: the bucket's root)";
    S3_VIRTUAL_HOSTED_STYLE: "s3_virtual_hosted_style" = "false", Rule::Any,
        "`true`: requests go to BUCKET.endpoint-host (virtual-hosted style); `false`: endpoint-host/BUCKET (path style)";
    PRESIGN_SECS: "presign_secs" = "0", Rule::AtLeast(0),
        "storage `s3`: downloads answer 307 to a presigned URL valid this long; 0 streams through `herald web`";
    KEEP_DAYS: "keep_days" = "7", Rule::AtLeast(0),
        "finished, failed and cancelled exports older than this many days lose their file and record (hourly, one worker at a time); 0 keeps them forever";
    COLLECTIONS: "collections" = "message", Rule::Any, "collections exports may read, comma-separated";
    ACCOUNT_FIELD: "account_field" = "accountId", Rule::NonEmpty,
        "field holding the account id in those collections";
    TIME_ZONE: "time_zone" = "UTC", Rule::Form("an IANA time zone"), "default time zone for dates";
    BATCH_SIZE: "batch_size" = "500", Rule::Between(1, u32::MAX as u64), "documents per cursor batch";
    PROGRESS_INTERVAL_MS: "progress_interval_ms" = "500", Rule::AtLeast(1),
        "progress (status record and `export_progress`) at most this often, plus once at the end; the row count for `total` starts after one interval";
    MAX_RUNNING_PER_ACCOUNT: "max_running_per_account" = "2", Rule::Between(1, u32::MAX as u64),
        "exports of one account running at once, across every worker; the account's others wait (deferred, no attempt spent)";
    MAX_QUERY_MS: "max_query_ms" = "300000", Rule::AtLeast(1),
        "time limit of an export's count and of its whole scan (MongoDB maxTimeMS, and the worker's own clock); an export over it fails";
    MAX_ROWS: "max_rows" = "1048575", Rule::AtLeast(1),
        "most rows in one file (a spreadsheet's limit, with the header); an export with more fails";
    MAX_FIELDS: "max_fields" = "100", Rule::AtLeast(1), "most columns of one export";
    FILTER_OPERATORS: "filter_operators" = "$eq,$ne,$gt,$gte,$lt,$lte,$in,$nin,$exists,$and,$or,$nor,$not,$regex,$options,$type,$size,$all,$elemMatch",
        Rule::Form("query operators, comma-separated"),
        "query operators an export's filter may use, comma-separated; $where, $function and $accumulator are refused whatever this says";
    MAX_FILTER_BYTES: "max_filter_bytes" = "16384", Rule::AtLeast(1), "largest export filter, in bytes of BSON";
    MAX_FILTER_DEPTH: "max_filter_depth" = "8", Rule::AtLeast(1), "deepest nesting of documents and arrays in an export filter";
    MAX_REGEX_BYTES: "max_regex_bytes" = "128", Rule::AtLeast(1), "longest regular expression in an export filter, in bytes";
}

/// Which storage keeps the export files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageKind {
    /// A directory on the worker's disk (`export.dir`).
    Local,
    /// An S3-compatible object store (`export.s3_*`).
    S3,
}

/// Where and how to reach an S3-compatible object store.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// The API endpoint; `None` for AWS S3 in [`Self::region`].
    pub endpoint: Option<reqwest::Url>,
    /// The bucket.
    pub bucket: String,
    /// The region requests are signed for.
    pub region: String,
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key; never printed.
    pub secret_access_key: SecretString,
    /// Key prefix of the files, without leading or trailing `/`.
    pub prefix: String,
    /// Virtual-hosted style (`BUCKET.host`) rather than path style.
    pub virtual_hosted_style: bool,
}

/// Export job settings.
#[derive(Debug, Clone)]
pub struct ExportSettings {
    /// Directory the finished files are stored in (one folder per account)
    /// when [`Self::storage`] is [`StorageKind::Local`].
    pub dir: PathBuf,
    /// Which storage keeps the files.
    pub storage: StorageKind,
    /// The object store, used when [`Self::storage`] is [`StorageKind::S3`].
    pub s3: S3Settings,
    /// How long a presigned download URL is valid; `None`: downloads
    /// stream through `herald web`.
    pub presign: Option<Duration>,
    /// How long ended exports are kept; `None`: forever.
    pub keep: Option<Duration>,
    /// What exports may read and how dates are shown by default.
    pub limits: ExportLimits,
    /// Field holding the account id in exported collections.
    pub account_field: String,
    /// Documents fetched per cursor batch.
    pub batch_size: u32,
    /// Progress is recorded and pushed at most this often.
    pub progress_interval: Duration,
    /// Exports of one account that may run at once.
    pub max_running_per_account: u32,
    /// Time limit of an export's count and whole scan.
    pub max_query: Duration,
    /// Most rows in one file.
    pub max_rows: u64,
}

/// Reads and checks `[export]`.
pub(super) fn read(values: &Values) -> Result<ExportSettings, ConfigError> {
    let collections: String = values.get(&COLLECTIONS)?;
    let storage = values.checked(&STORAGE, |kind: String| match kind.trim() {
        "local" => Ok(StorageKind::Local),
        "s3" => Ok(StorageKind::S3),
        other => Err(format!("is '{other}'; it must be `local` or `s3`")),
    })?;
    let s3 = read_s3(values, storage)?;
    Ok(ExportSettings {
        dir: PathBuf::from(values.text(&DIR)?),
        storage,
        s3,
        presign: Some(values.secs(&PRESIGN_SECS)?).filter(|span| !span.is_zero()),
        keep: Some(values.days(&KEEP_DAYS)?).filter(|span| !span.is_zero()),
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
            filter: FilterPolicy {
                operators: Some(values.checked(&FILTER_OPERATORS, operators)?),
                max_bytes: values.whole(&MAX_FILTER_BYTES)?,
                max_depth: values.whole(&MAX_FILTER_DEPTH)?,
                max_regex_bytes: values.whole(&MAX_REGEX_BYTES)?,
            },
            max_fields: values.whole(&MAX_FIELDS)?,
        },
        account_field: values.text(&ACCOUNT_FIELD)?,
        batch_size: values.whole(&BATCH_SIZE)?,
        progress_interval: values.millis(&PROGRESS_INTERVAL_MS)?,
        max_running_per_account: values.whole(&MAX_RUNNING_PER_ACCOUNT)?,
        max_query: values.millis(&MAX_QUERY_MS)?,
        max_rows: values.whole(&MAX_ROWS)?,
    })
}

/// The operators of `export.filter_operators`: each a `$` name, none that
/// runs JavaScript.
fn operators(list: String) -> Result<BTreeSet<String>, String> {
    let mut allowed = BTreeSet::new();
    for operator in list.split(',').map(str::trim).filter(|op| !op.is_empty()) {
        if !operator.starts_with('$') || operator.len() < 2 {
            return Err(format!("'{operator}' is not a query operator like $eq"));
        }
        if FORBIDDEN_OPERATORS.contains(&operator) {
            return Err(format!(
                "lists {operator}, which runs JavaScript on the server and is never allowed"
            ));
        }
        allowed.insert(operator.to_owned());
    }
    Ok(allowed)
}

/// Reads the `s3_*` settings; with storage `s3`, the bucket and both keys
/// must be set.
fn read_s3(values: &Values, storage: StorageKind) -> Result<S3Settings, ConfigError> {
    let required = |value: String| {
        if storage == StorageKind::S3 {
            non_empty(value).map_err(|reason| format!("{reason} when export.storage is `s3`"))
        } else {
            Ok(value)
        }
    };
    Ok(S3Settings {
        endpoint: values.checked(&S3_ENDPOINT, |text: String| {
            let text = text.trim();
            if text.is_empty() {
                return Ok(None);
            }
            reqwest::Url::parse(text)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                .map(Some)
                .ok_or_else(|| format!("'{text}' is not an http:// or https:// URL"))
        })?,
        bucket: values.checked(&S3_BUCKET, required)?,
        region: values.text(&S3_REGION)?,
        access_key_id: values.checked(&S3_ACCESS_KEY_ID, required)?,
        secret_access_key: SecretString::from(values.checked(&S3_SECRET_ACCESS_KEY, required)?),
        prefix: values
            .get::<String>(&S3_PREFIX)?
            .trim_matches('/')
            .to_owned(),
        virtual_hosted_style: values.get(&S3_VIRTUAL_HOSTED_STYLE)?,
    })
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::StorageKind;
    use crate::config::{tests::vars, Settings};

    #[test]
    fn s3_storage_needs_a_bucket_and_keys_and_never_prints_the_secret() {
        let err = Settings::load_from(&vars(&[("HERALD_EXPORT_STORAGE", "s3")])).unwrap_err();
        assert!(err.to_string().contains("HERALD_EXPORT_S3_BUCKET"), "{err}");
        let s = Settings::load_from(&vars(&[
            ("HERALD_EXPORT_STORAGE", "s3"),
            ("HERALD_EXPORT_S3_ENDPOINT", "http://127.0.0.1:9000"),
            ("HERALD_EXPORT_S3_BUCKET", "exports"),
            ("HERALD_EXPORT_S3_ACCESS_KEY_ID", "AKID"),
            ("HERALD_EXPORT_S3_SECRET_ACCESS_KEY", "hunter2"),
            ("HERALD_EXPORT_S3_PREFIX", "/herald/exports/"),
            ("HERALD_EXPORT_PRESIGN_SECS", "300"),
        ]))
        .unwrap();
        assert_eq!(s.export.storage, StorageKind::S3);
        assert_eq!(s.export.s3.prefix, "herald/exports");
        assert_eq!(s.export.s3.secret_access_key.expose_secret(), "hunter2");
        assert_eq!(s.export.presign.map(|d| d.as_secs()), Some(300));
        assert!(!format!("{s:?}").contains("hunter2"));
        let err = Settings::load_from(&vars(&[("HERALD_EXPORT_STORAGE", "gcs")])).unwrap_err();
        assert!(err.to_string().contains("HERALD_EXPORT_STORAGE"), "{err}");
    }

    #[test]
    fn the_filter_allow_list_is_read_and_never_allows_javascript() {
        let s = Settings::load_from(&vars(&[(
            "HERALD_EXPORT_FILTER_OPERATORS",
            " $eq, $in ,$expr",
        )]))
        .unwrap();
        let allowed = s.export.limits.filter.operators.unwrap();
        assert_eq!(
            allowed.iter().map(String::as_str).collect::<Vec<_>>(),
            ["$eq", "$expr", "$in"]
        );
        for bad in ["$eq,$where", "eq", "$eq,$function"] {
            let err =
                Settings::load_from(&vars(&[("HERALD_EXPORT_FILTER_OPERATORS", bad)])).unwrap_err();
            assert!(
                err.to_string().contains("HERALD_EXPORT_FILTER_OPERATORS"),
                "{err}"
            );
        }
        let defaults = Settings::load_from(&vars(&[])).unwrap();
        assert_eq!(
            defaults.export.limits.filter,
            herald_jobs::FilterPolicy::default()
        );
        assert_eq!(
            defaults.export.limits.max_fields,
            herald_jobs::export::DEFAULT_MAX_FIELDS
        );
        assert_eq!(defaults.export.keep.map(|k| k.as_secs()), Some(7 * 86_400));
    }
}
