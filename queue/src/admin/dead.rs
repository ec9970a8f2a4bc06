//! Dead jobs as the failed list shows them: a page, newest failure first,
//! optionally filtered by label values and an error group, and the error
//! groups themselves, largest first. Each is a range over one sorted set
//! (the dead set or one of its indexes, see [`crate::dead_index`]),
//! so a page costs the same with a hundred dead jobs or a hundred thousand.

use std::sync::LazyLock;

use redis::Script;
use serde::{Deserialize, Serialize};

use super::{error_of, meta_number, meta_time, DeadJob, ShardAdmin};
use crate::{dead_index::group_id, QueueError};

static DEAD_PAGE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/dead_page.lua")));

/// Most ids one filtered page examines (more than the default dead cap).
const PAGE_SCAN_BUDGET: usize = 1_000_000;

/// Which dead jobs a list or a bulk action is about: every one, or those
/// with each of the given label values and in the given error group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadFilter {
    /// Label name → the value it must have (names from the queue's
    /// [`crate::DeadLabel`]s).
    #[serde(default)]
    pub labels: Vec<(String, String)>,
    /// The id of the error group ([`ErrorGroup::id`]).
    #[serde(default)]
    pub error: Option<String>,
}

impl DeadFilter {
    /// Every dead job.
    pub fn all() -> Self {
        Self::default()
    }

    /// Whether it selects every dead job.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.error.is_none()
    }
}

/// Dead jobs that failed with the same error (ids and counts aside).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorGroup {
    /// Its id in filters and URLs.
    pub id: String,
    /// The error, with what differs from job to job masked as `*`.
    pub error: String,
    /// Dead jobs in the group.
    pub count: u64,
    /// When the latest of them failed (Unix seconds).
    pub last_failed_at: Option<f64>,
}

impl ShardAdmin {
    /// The index keys `filter` names, after checking its labels are ones
    /// the queue indexes and its error group id is well formed.
    pub(super) fn filter_keys(&self, filter: &DeadFilter) -> Result<Vec<String>, QueueError> {
        let mut keys = Vec::new();
        for (name, value) in &filter.labels {
            if !self.config.dead_labels.iter().any(|l| &l.name == name) {
                let known: Vec<&str> = self
                    .config
                    .dead_labels
                    .iter()
                    .map(|l| l.name.as_str())
                    .collect();
                return Err(self.filter_error(format!(
                    "dead jobs are not indexed by '{name}' (labels: {})",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                )));
            }
            keys.push(self.config.dead_label_key(name, value));
        }
        if let Some(group) = &filter.error {
            if group.len() != 40 || !group.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(self.filter_error(format!(
                    "'{group}' is not an error group id (40 hex digits)"
                )));
            }
            keys.push(self.config.dead_error_key(&group.to_ascii_lowercase()));
        }
        Ok(keys)
    }

    pub(super) fn filter_error(&self, detail: String) -> QueueError {
        QueueError::Filter {
            queue: self.config.name.clone(),
            detail,
        }
    }

    /// The ids (with their failure times) of the dead jobs `filter`
    /// selects, most recently failed first; `offset` and `limit` page
    /// through them. Returns the page and how many the filter selects in
    /// all. [`ShardAdmin::read_dead`] reads the jobs.
    pub async fn dead_page(
        &self,
        filter: &DeadFilter,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<(String, f64)>, usize), QueueError> {
        let keys = self.filter_keys(filter)?;
        let mut conn = self.conn.clone();
        let last = offset.saturating_add(limit.max(1)) - 1;
        let (page, total): (Vec<(String, f64)>, usize) = match keys.as_slice() {
            // One sorted set, ordered by failure time: a page is one range.
            [] | [_] => {
                let set = keys
                    .first()
                    .cloned()
                    .unwrap_or_else(|| self.config.dead_key());
                redis::pipe()
                    .zrevrange_withscores(&set, offset as isize, last as isize)
                    .zcard(&set)
                    .query_async(&mut conn)
                    .await
                    .map_err(self.error("list dead jobs"))?
            }
            several => {
                let mut page = DEAD_PAGE.prepare_invoke();
                for key in several {
                    page.key(key);
                }
                page.arg(offset).arg(limit).arg(PAGE_SCAN_BUDGET);
                let page: Vec<(String, f64)> = page
                    .invoke_async(&mut conn)
                    .await
                    .map_err(self.error("list dead jobs"))?;
                let total: usize = redis::cmd("ZINTERCARD")
                    .arg(several.len())
                    .arg(several)
                    .query_async(&mut conn)
                    .await
                    .map_err(self.error("count dead jobs"))?;
                (page, total)
            }
        };
        if limit == 0 {
            return Ok((Vec::new(), total));
        }
        Ok((page, total))
    }

    /// Payload and metadata of the dead jobs `page` (id, failure time), in
    /// one round trip.
    pub async fn read_dead(&self, page: Vec<(String, f64)>) -> Result<Vec<DeadJob>, QueueError> {
        let records = self
            .read_records(page.iter().map(|(id, _)| id.as_str()))
            .await?;
        Ok(page
            .into_iter()
            .zip(records)
            .map(|((id, failed_at), (payload, meta))| DeadJob {
                id,
                payload,
                attempts: meta_number(&meta, "attempts"),
                error_group: meta
                    .get("error_group")
                    .filter(|g| !g.is_empty())
                    .map(|g| group_id(g)),
                last_error: error_of(meta.get("result")),
                failed_at: Some(failed_at),
                enqueued_at: meta_time(&meta, "enqueued_at"),
                status: meta.get("status").cloned().unwrap_or_default(),
            })
            .collect())
    }

    /// The error groups of the dead jobs, those with the most jobs first;
    /// at most `limit`. Returns them and how many groups there are.
    pub async fn error_groups(&self, limit: usize) -> Result<(Vec<ErrorGroup>, usize), QueueError> {
        let mut conn = self.conn.clone();
        let errors = self.config.dead_errors_key();
        let (groups, total): (Vec<(String, f64)>, usize) = redis::pipe()
            .zrevrange_withscores(&errors, 0, limit.max(1) as isize - 1)
            .zcard(&errors)
            .query_async(&mut conn)
            .await
            .map_err(self.error("list error groups"))?;
        if groups.is_empty() {
            return Ok((Vec::new(), total));
        }
        let mut pipe = redis::pipe();
        let ids: Vec<String> = groups.iter().map(|(text, _)| group_id(text)).collect();
        for id in &ids {
            pipe.zrevrange_withscores(self.config.dead_error_key(id), 0, 0);
        }
        let latest: Vec<Vec<(String, f64)>> = pipe
            .query_async(&mut conn)
            .await
            .map_err(self.error("list error groups"))?;
        let groups = groups
            .into_iter()
            .zip(ids)
            .zip(latest)
            .map(|(((error, count), id), latest)| ErrorGroup {
                id,
                error,
                count: count.max(0.0) as u64,
                last_failed_at: latest.first().map(|(_, at)| *at),
            })
            .collect();
        Ok((groups, total))
    }
}
