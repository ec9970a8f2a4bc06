//! A user's unread count with many messages, against one `count` command
//! over as many index keys, measured in the same run.
//!
//! One account A is seeded with `messages` messages its user U sees, half
//! to the whole account and half addressed to U, and as much noise that
//! must not be counted: as many messages to U's colleague V, and as many of
//! another account B (half to all of B, half addressed to U's id within
//! B). Every document is Herald's own (`store::message_document`), with
//! increasing `createdAt`, inserted with `insert_many` in batches of
//! 5,000 into a `message` collection with Herald's indexes. Then two
//! scenarios, each over `trials` trials, the baseline and the subject
//! alternating (one first in odd trials, the other in even ones):
//!
//! 1. **never read**: U has read nothing. The subject is
//!    `Inbox::unread_count(A, U, None)`, which must answer `messages`: it
//!    counts U's own unread messages and the account-wide ones (two index
//!    ranges, half of `messages` keys each) and U's read marks (none).
//!    The baseline is one `count` command over V's messages, `messages`
//!    index keys of one range of the same index in the same collection.
//! 2. **never read, per category**, for information: every seeded message
//!    has one of [`CATEGORIES`]; the subject is `Inbox::unread_by_category(A,
//!    U)`, whose total must answer `messages` and whose categories must
//!    share it evenly. The baseline is one aggregation that groups V's
//!    `messages` documents by category (`$match` on one index range, then
//!    `$group`): the least the server does to count per category, since no
//!    index holds the category.
//! 3. **read up to date**: after `Inbox::mark_all_read(A, U, None)`, 1,000
//!    new messages (half to U, half to all of A), of which U marks 100 read
//!    one by one (50 of each kind). The subject must answer 900: 450 of
//!    U's own unread, 500 account-wide since the mark-all less 50 marks,
//!    1,000 index keys in all over three ranges. The baseline is one
//!    `count` over V's newest 1,000 messages, one range of 1,000 keys.
//!
//! Why the baseline is the physical limit: an index count has to read
//! every key it counts, and one `count` command whose query is one range
//! of one index is the least the server offers for that many keys: one
//! round trip, one range, no document fetched. The subject counts exactly
//! as many keys, so its ratio is what splitting the count three ways (and
//! reading the user's read state first) costs, and an index that missed a
//! range, or a plan that fetched documents, would show as a ratio far
//! above it.
//!
//! Each measurement is as many calls back to back as count about 100,000
//! keys (one call at full size, 100 of 1,000 keys), so it lasts long
//! enough to time; its figure is the time per call. Every call's answer is
//! checked, so the run fails if a count is wrong. Before the first trial
//! each side runs once, untimed. The run uses its own database and drops
//! it afterwards.

use std::{
    future::Future,
    time::{Duration, Instant},
};

use futures::TryStreamExt;
use herald::{
    config::Settings,
    store::{
        self,
        inbox::{InboxAction, Selection},
        Inbox, MessageStore, MESSAGE_COLLECTION,
    },
};
use herald_jobs::{AccountId, SendMessage, UserId};
use mongodb::{
    bson::{doc, oid::ObjectId, Bson, DateTime, Document},
    Database,
};

use crate::{pipeline::private_settings, queue::BenchError};

/// The categories the seeded messages have, in turn.
pub const CATEGORIES: [&str; 4] = ["billing", "export", "security", "team"];

/// Documents per `insert_many` while seeding.
pub const SEED_BATCH: usize = 5_000;

/// New messages after the mark-all of the second scenario, and the index
/// keys its baseline counts.
pub const NEW_MESSAGES: u64 = 1_000;

/// Of the new messages, how many U marks read one by one (half of them
/// addressed to U, half to the whole account).
pub const MARKED: u64 = 100;

/// Of the new messages, how many U archives (half of each kind, none of
/// them among those marked read): they are read, and leave the count.
pub const ARCHIVED: u64 = 50;

/// Of the messages to the whole account from before U's mark-all, how many
/// U marks unread again: they join the count, through a fourth range.
pub const UNREAD_AGAIN: u64 = 50;

/// The most the never-read unread count may take, as a multiple of one
/// count over the same number of index keys (the product's target).
pub const TARGET_RATIO: f64 = 2.5;

/// Index keys each measurement counts, about: calls are repeated until
/// they add up to this many.
const KEYS_PER_MEASUREMENT: u64 = 100_000;

/// The workload's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workload {
    /// Messages U sees (half to the whole account, half to U), and as
    /// many of each kind of noise.
    pub messages: u64,
    /// Trials of each scenario.
    pub trials: usize,
}

impl Workload {
    /// The product's case: 100,000 messages, five trials.
    pub fn standard() -> Self {
        Self {
            messages: 100_000,
            trials: 5,
        }
    }

    /// Seconds, for checking the command works, not for figures.
    pub fn smoke() -> Self {
        Self {
            messages: 2_000,
            trials: 1,
        }
    }

    /// Whether the sizes can be run: the second scenario's baseline is a
    /// range of [`NEW_MESSAGES`] of V's messages.
    pub fn check(&self) -> Result<(), String> {
        if self.messages < NEW_MESSAGES {
            return Err(format!("--messages must be at least {NEW_MESSAGES}"));
        }
        if self.trials == 0 {
            return Err("--trials must be positive".to_owned());
        }
        Ok(())
    }
}

/// One scenario's trials.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// What U has read, e.g. `never read`.
    pub name: &'static str,
    /// What `unread_count` answered (every call did).
    pub unread: u64,
    /// Index keys each side counts per call.
    pub keys: u64,
    /// Calls per measurement.
    pub calls: u64,
    /// The baseline's time per call, one per trial.
    pub baseline: Vec<Duration>,
    /// `unread_count`'s time per call, one per trial.
    pub subject: Vec<Duration>,
}

impl Scenario {
    /// Each trial's subject time over its baseline time.
    pub fn ratios(&self) -> Vec<f64> {
        self.subject
            .iter()
            .zip(&self.baseline)
            .map(|(s, b)| s.as_secs_f64() / b.as_secs_f64().max(1e-9))
            .collect()
    }

    /// The median of the trials' ratios: what the target checks.
    pub fn ratio(&self) -> f64 {
        let ratios = self.ratios();
        ratios
            .get(crate::median_index(&ratios, |r| *r))
            .copied()
            .unwrap_or(f64::NAN)
    }

    /// The lowest and highest trial ratio.
    pub fn ratio_range(&self) -> (f64, f64) {
        spread(&self.ratios())
    }

    /// The median baseline time per call.
    pub fn baseline_median(&self) -> Duration {
        median(&self.baseline)
    }

    /// The median `unread_count` time per call.
    pub fn subject_median(&self) -> Duration {
        median(&self.subject)
    }
}

/// The lowest and highest of `values`.
pub fn spread(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

/// The middle value (the lower middle one of an even count).
fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted
        .get(sorted.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or_default()
}

/// What the run measured.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Messages U sees after the seeding.
    pub messages: u64,
    /// Documents seeded, noise included.
    pub seeded: u64,
    /// How long the seeding took (for information).
    pub seed: Duration,
    /// U has read nothing.
    pub never_read: Scenario,
    /// U has read nothing, counted per category.
    pub by_category: Scenario,
    /// U marked all read, then 1,000 new messages came, 100 of them read.
    pub read_up_to_date: Scenario,
}

impl Measured {
    /// Every scenario, in order.
    pub fn scenarios(&self) -> [&Scenario; 3] {
        [&self.never_read, &self.by_category, &self.read_up_to_date]
    }
}

/// Who the messages are for.
#[derive(Debug, Clone, Copy)]
struct Parties {
    /// The account measured.
    account: AccountId,
    /// The user whose unread count is measured.
    user: UserId,
    /// Another user of the account (noise, and the baseline's range).
    colleague: UserId,
    /// Another account (noise).
    other: AccountId,
}

/// When the `i`th message of `lane` (0: U's inbox, 1: V's, 2: the other
/// account's) was created: every document later than the one before.
fn created_at(start: i64, i: u64, lane: u64) -> DateTime {
    DateTime::from_millis(start + ((i * 3 + lane) * 1000) as i64)
}

/// Herald's document of `job`, created at `created_at`.
fn document(
    settings: &Settings,
    job: &SendMessage,
    created_at: DateTime,
) -> Result<Document, BenchError> {
    let valid = job
        .validate(&settings.message)
        .map_err(|e| BenchError::Invalid(e.to_string()))?;
    Ok(store::message_document(&valid, created_at, None))
}

/// Runs both scenarios with the services of `settings`.
pub async fn run(settings: &Settings, workload: Workload) -> Result<Measured, BenchError> {
    workload.check().map_err(BenchError::Invalid)?;
    let settings = private_settings(settings, "inbox")?;
    let database = store::connect(&settings.mongodb).await?;
    let result = measure(&settings, &database, workload).await;
    let _ = database.drop().await;
    store::close(&database).await;
    result
}

async fn measure(
    settings: &Settings,
    database: &Database,
    workload: Workload,
) -> Result<Measured, BenchError> {
    MessageStore::new(database).ensure_indexes().await?;
    let parties = Parties {
        account: AccountId::from(ObjectId::new()),
        user: UserId::from(ObjectId::new()),
        colleague: UserId::from(ObjectId::new()),
        other: AccountId::from(ObjectId::new()),
    };
    let start = DateTime::parse_rfc3339_str("2026-01-01T00:00:00Z")
        .map_err(|e| BenchError::Invalid(e.to_string()))?
        .timestamp_millis();
    let seeding = Instant::now();
    let seeded = seed(settings, database, parties, workload.messages, start).await?;
    let seed = seeding.elapsed();
    let inbox = Inbox::new(database);

    // 1. Never read: U's `messages` against V's `messages`.
    let colleague = doc! {
        "accountId": parties.account.object_id(),
        "to.target": "user", "to.id": parties.colleague.object_id(),
    };
    let never_read = compare(
        database,
        &inbox,
        parties,
        Counted::Total,
        Scenario {
            name: "never read",
            unread: workload.messages,
            keys: workload.messages,
            calls: 0,
            baseline: Vec::new(),
            subject: Vec::new(),
        },
        colleague.clone(),
        workload.trials,
    )
    .await?;

    // 2. Never read, per category: the same messages, grouped.
    let by_category = compare(
        database,
        &inbox,
        parties,
        Counted::PerCategory,
        Scenario {
            name: "never read, per category",
            unread: workload.messages,
            keys: workload.messages,
            calls: 0,
            baseline: Vec::new(),
            subject: Vec::new(),
        },
        colleague,
        workload.trials,
    )
    .await?;

    // 3. Read up to date: everything marked read, then new messages.
    let marked_all = inbox
        .mark_all_read(parties.account, parties.user, None)
        .await?;
    if marked_all != workload.messages {
        return Err(BenchError::Invalid(format!(
            "mark_all_read marked {marked_all} of {} unread messages",
            workload.messages
        )));
    }
    let left = inbox
        .unread_count(parties.account, parties.user, &Default::default())
        .await?;
    if left != 0 {
        return Err(BenchError::Invalid(format!(
            "{left} unread after mark_all_read"
        )));
    }
    let marked = add_new_messages(
        settings,
        database,
        &inbox,
        parties,
        workload.messages,
        start,
    )
    .await?;
    if marked != MARKED {
        return Err(BenchError::Invalid(format!(
            "mark_read marked {marked} of {MARKED} new messages"
        )));
    }
    // V's newest messages: one range of as many keys as the four counts
    // read (425 own unread + 500 account-wide + 75 marks, and 50 marks
    // unread again).
    let since = created_at(start, workload.messages - NEW_MESSAGES - UNREAD_AGAIN, 1);
    let read_up_to_date = compare(
        database,
        &inbox,
        parties,
        Counted::Total,
        Scenario {
            name: "read up to date",
            unread: NEW_MESSAGES - MARKED - ARCHIVED + UNREAD_AGAIN,
            keys: NEW_MESSAGES + UNREAD_AGAIN,
            calls: 0,
            baseline: Vec::new(),
            subject: Vec::new(),
        },
        doc! {
            "accountId": parties.account.object_id(),
            "to.target": "user", "to.id": parties.colleague.object_id(),
            "createdAt": { "$gte": since },
        },
        workload.trials,
    )
    .await?;

    Ok(Measured {
        messages: workload.messages,
        seeded,
        seed,
        never_read,
        by_category,
        read_up_to_date,
    })
}

/// Seeds U's `messages` and the noise, in batches of [`SEED_BATCH`];
/// returns the documents inserted.
async fn seed(
    settings: &Settings,
    database: &Database,
    parties: Parties,
    messages: u64,
    start: i64,
) -> Result<u64, BenchError> {
    let collection = database.collection::<Document>(MESSAGE_COLLECTION);
    let mut batch = Vec::with_capacity(SEED_BATCH);
    let mut seeded = 0;
    for i in 0..messages {
        let mine = match i % 2 {
            0 => SendMessage::new(parties.account, format!("to all {i}"), "to every user"),
            _ => SendMessage::new(parties.account, format!("to U {i}"), "to one user")
                .to_user(parties.user),
        };
        let colleague = SendMessage::new(parties.account, format!("to V {i}"), "to a colleague")
            .to_user(parties.colleague);
        // Another account's: to all of it, or to U's id within it.
        let other = match i % 2 {
            0 => SendMessage::new(parties.other, format!("to B {i}"), "another account"),
            _ => SendMessage::new(parties.other, format!("to U in B {i}"), "another account")
                .to_user(parties.user),
        };
        let category = CATEGORIES[(i / 2) as usize % CATEGORIES.len()];
        for (lane, job) in [mine, colleague, other].into_iter().enumerate() {
            let job = job.category(category);
            batch.push(document(settings, &job, created_at(start, i, lane as u64))?);
        }
        if batch.len() >= SEED_BATCH {
            seeded += batch.len() as u64;
            collection.insert_many(std::mem::take(&mut batch)).await?;
        }
    }
    if !batch.is_empty() {
        seeded += batch.len() as u64;
        collection.insert_many(batch).await?;
    }
    Ok(seeded)
}

/// Inserts [`NEW_MESSAGES`] after every seeded one, half to U and half to
/// all of the account, and marks [`MARKED`] of them read for U, half of
/// each kind; returns how many `mark_read` reported newly read.
async fn add_new_messages(
    settings: &Settings,
    database: &Database,
    inbox: &Inbox,
    parties: Parties,
    messages: u64,
    start: i64,
) -> Result<u64, BenchError> {
    let mut documents = Vec::new();
    let (mut to_user, mut to_all) = (Vec::new(), Vec::new());
    for i in 0..NEW_MESSAGES {
        let job = match i % 2 {
            0 => SendMessage::new(parties.account, format!("new to U {i}"), "to one user")
                .to_user(parties.user),
            _ => SendMessage::new(parties.account, format!("new to all {i}"), "to every user"),
        };
        let document = document(settings, &job, created_at(start, messages + i, 0))?;
        let id = document
            .get_object_id("_id")
            .map_err(|e| BenchError::Invalid(e.to_string()))?;
        match i % 2 {
            0 => to_user.push(id),
            _ => to_all.push(id),
        }
        documents.push(document);
    }
    database
        .collection::<Document>(MESSAGE_COLLECTION)
        .insert_many(documents)
        .await?;
    // Every tenth of each kind: spread over the new messages.
    let half = (MARKED / 2) as usize;
    let ids: Vec<ObjectId> = [&to_user, &to_all]
        .iter()
        .flat_map(|ids| ids.iter().step_by(10).take(half).copied())
        .collect();
    let marking = inbox.mark_read(parties.account, parties.user, &ids).await?;
    let archive: Vec<ObjectId> = [&to_user, &to_all]
        .iter()
        .flat_map(|ids| ids.iter().skip(5).step_by(10).take((ARCHIVED / 2) as usize))
        .copied()
        .collect();
    let older: Vec<ObjectId> = database
        .collection::<Document>(MESSAGE_COLLECTION)
        .find(doc! {
            "accountId": parties.account.object_id(),
            "to.target": "account", "to.id": parties.account.object_id(),
        })
        .sort(doc! { "createdAt": 1 })
        .limit(UNREAD_AGAIN as i64)
        .projection(doc! { "_id": 1 })
        .await?
        .try_collect::<Vec<Document>>()
        .await?
        .iter()
        .filter_map(|d| d.get_object_id("_id").ok())
        .collect();
    for (action, ids, expected) in [
        (InboxAction::Archive, archive, ARCHIVED),
        (InboxAction::Unread, older, UNREAD_AGAIN),
    ] {
        let changed = inbox
            .apply(parties.account, parties.user, action, &Selection::Ids(ids))
            .await?
            .count;
        if changed != expected {
            return Err(BenchError::Invalid(format!(
                "{} changed {changed} of {expected} messages",
                action.as_str()
            )));
        }
    }
    Ok(marking.newly_read.len() as u64)
}

/// The number in a `count` command's reply.
fn count_of(reply: &Document) -> u64 {
    match reply.get("n") {
        Some(Bson::Int32(n)) => (*n).max(0) as u64,
        Some(Bson::Int64(n)) => (*n).max(0) as u64,
        Some(Bson::Double(n)) => n.max(0.0) as u64,
        _ => 0,
    }
}

/// One `count` command on the `message` collection.
async fn count(database: &Database, query: &Document) -> Result<u64, BenchError> {
    let reply = database
        .run_command(doc! { "count": MESSAGE_COLLECTION, "query": query.clone() })
        .await?;
    Ok(count_of(&reply))
}

/// `calls` calls of `call` back to back, each answer checked against
/// `expected`; the time per call.
async fn timed<F, Fut>(
    what: &str,
    calls: u64,
    expected: u64,
    mut call: F,
) -> Result<Duration, BenchError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64, BenchError>>,
{
    let begun = Instant::now();
    for _ in 0..calls {
        let counted = call().await?;
        if counted != expected {
            return Err(BenchError::Invalid(format!(
                "{what} counted {counted}, expected {expected}"
            )));
        }
    }
    Ok(begun.elapsed() / calls.max(1) as u32)
}

/// What a scenario counts: one total, or a total per category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counted {
    /// `unread_count` against one `count` command.
    Total,
    /// `unread_by_category` against one `$group` aggregation.
    PerCategory,
}

/// The documents matching `query`, counted per category by one
/// aggregation; their total, once every category has as many.
async fn count_per_category(database: &Database, query: &Document) -> Result<u64, BenchError> {
    let groups: Vec<Document> = database
        .collection::<Document>(MESSAGE_COLLECTION)
        .aggregate([
            doc! { "$match": query.clone() },
            doc! { "$group": { "_id": "$category", "n": { "$sum": 1 } } },
        ])
        .await?
        .try_collect()
        .await?;
    even_total(groups.iter().map(|group| {
        let n = match group.get("n") {
            Some(Bson::Int32(n)) => *n as u64,
            Some(Bson::Int64(n)) => *n as u64,
            _ => 0,
        };
        (group.get_str("_id").unwrap_or_default().to_owned(), n)
    }))
}

/// The sum of `counts`, checked to be the same for each of [`CATEGORIES`]
/// and nothing else (the seeding gives each category as many messages).
fn even_total(counts: impl Iterator<Item = (String, u64)>) -> Result<u64, BenchError> {
    let counts: std::collections::BTreeMap<String, u64> = counts.collect();
    let names: Vec<&str> = counts.keys().map(String::as_str).collect();
    let mut expected = CATEGORIES.to_vec();
    expected.sort_unstable();
    let first = counts.values().next().copied().unwrap_or(0);
    if names != expected || counts.values().any(|&n| n != first) {
        return Err(BenchError::Invalid(format!(
            "per-category counts are not even over {CATEGORIES:?}: {counts:?}"
        )));
    }
    Ok(counts.values().sum())
}

/// Measures `scenario`: the baseline (one `count` of `baseline`, or one
/// aggregation per category, which must match `scenario.keys` documents)
/// against `unread_count` or `unread_by_category` (which must answer
/// `scenario.unread`), alternating over `trials` trials.
async fn compare(
    database: &Database,
    inbox: &Inbox,
    parties: Parties,
    counted: Counted,
    mut scenario: Scenario,
    baseline: Document,
    trials: usize,
) -> Result<Scenario, BenchError> {
    scenario.calls = KEYS_PER_MEASUREMENT.div_ceil(scenario.keys.max(1));
    let baseline = &baseline;
    let baseline_call = move || async move {
        match counted {
            Counted::Total => count(database, baseline).await,
            Counted::PerCategory => count_per_category(database, baseline).await,
        }
    };
    let subject_call = move || async move {
        match counted {
            Counted::Total => inbox
                .unread_count(parties.account, parties.user, &Default::default())
                .await
                .map_err(BenchError::from),
            Counted::PerCategory => {
                let unread = inbox
                    .unread_by_category(parties.account, parties.user)
                    .await?;
                if unread.uncategorized != 0 {
                    return Err(BenchError::Invalid(format!(
                        "{} unread without a category",
                        unread.uncategorized
                    )));
                }
                even_total(unread.categories.into_iter())
            }
        }
    };
    let (keys, unread, calls) = (scenario.keys, scenario.unread, scenario.calls);
    let baseline_what = format!("the baseline of {:?}", scenario.name);
    let subject_what = format!("unread_count, {}", scenario.name);
    // Once each, untimed: the server settles after the seeding.
    timed(&baseline_what, 1, keys, baseline_call).await?;
    timed(&subject_what, 1, unread, subject_call).await?;
    for trial in 0..trials {
        if trial % 2 == 0 {
            let b = timed(&baseline_what, calls, keys, baseline_call).await?;
            let s = timed(&subject_what, calls, unread, subject_call).await?;
            scenario.baseline.push(b);
            scenario.subject.push(s);
        } else {
            let s = timed(&subject_what, calls, unread, subject_call).await?;
            let b = timed(&baseline_what, calls, keys, baseline_call).await?;
            scenario.subject.push(s);
            scenario.baseline.push(b);
        }
    }
    Ok(scenario)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(baseline: &[u64], subject: &[u64]) -> Scenario {
        let ms = |v: &[u64]| v.iter().map(|&m| Duration::from_millis(m)).collect();
        Scenario {
            name: "never read",
            unread: 10,
            keys: 10,
            calls: 1,
            baseline: ms(baseline),
            subject: ms(subject),
        }
    }

    #[test]
    fn the_ratio_is_the_median_of_each_trials_ratio() {
        // Quarters of a second: every ratio exact in binary.
        let s = scenario(&[250, 250, 500], &[375, 750, 500]);
        assert_eq!(s.ratios(), [1.5, 3.0, 1.0]);
        assert_eq!(s.ratio(), 1.5);
        assert_eq!(s.ratio_range(), (1.0, 3.0));
        assert_eq!(s.baseline_median(), Duration::from_millis(250));
        assert_eq!(s.subject_median(), Duration::from_millis(500));
    }

    #[test]
    fn every_document_is_later_than_the_one_before() {
        let times: Vec<i64> = (0..3)
            .flat_map(|i| (0..3).map(move |lane| created_at(0, i, lane).timestamp_millis()))
            .collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    }

    #[test]
    fn the_second_scenario_needs_as_many_messages_as_its_baseline_range() {
        assert!(Workload::standard().check().is_ok());
        assert!(Workload::smoke().check().is_ok());
        let small = Workload {
            messages: NEW_MESSAGES - 1,
            trials: 1,
        };
        assert!(small.check().is_err());
    }
}
