//! `herald-bench all`'s table and the product's targets checked against it.
//!
//! Every ratio divides by a baseline measured in the same run: plain
//! apalis-redis for no-op jobs, the lower of the raw MongoDB insert rate and
//! the raw stand-in rate for end-to-end messages, the raw cursor scan for
//! exports, one `count` command over as many index keys for a user's
//! unread count, the floor of sequential service round trips for latency.

use std::{fmt::Write as _, time::Duration};

use crate::{export, inbox, latency, pipeline, write_concern, Row};

/// One line of the table.
#[derive(Debug, Clone)]
struct Line {
    name: String,
    count: u64,
    elapsed: Duration,
    ratio: Option<f64>,
    p50: Option<Duration>,
    p99: Option<Duration>,
    peak_kib: Option<u64>,
}

impl Line {
    fn from_row(row: &Row, ratio: Option<f64>) -> Self {
        Self {
            name: row.name.clone(),
            count: row.count,
            elapsed: row.elapsed,
            ratio,
            p50: None,
            p99: None,
            peak_kib: None,
        }
    }
}

/// A target of the product owner's, and whether this run met it.
#[derive(Debug, Clone)]
pub struct Target {
    /// What is required.
    pub what: String,
    /// The measured ratio (for the idle worker's targets, the measured
    /// value itself, as the target's wording says); with trials, their
    /// median.
    pub ratio: f64,
    /// The ratio required (at least, or at most for memory).
    pub required: f64,
    /// Whether the requirement is a ceiling rather than a floor.
    pub at_most: bool,
    /// Each trial's ratio, when the figure is a median of alternating
    /// trials (empty for a single measurement).
    pub trials: Vec<f64>,
    /// Why this run's figure cannot judge the target, if something outside
    /// Herald (a stall of the machine) was larger than the allowance.
    pub noise: Option<String>,
}

/// What a run says about a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Met (with trials: the whole confidence interval of their median
    /// meets it).
    Met,
    /// Missed (with trials: the whole interval misses it).
    Missed,
    /// The interval straddles the target: on this machine's noise the run
    /// cannot tell, and says so rather than pass or fail by chance.
    Inconclusive,
}

/// Fewest trials for which [`Target::verdict`] judges by a confidence
/// interval of the median (five is the fewest whose widest interval,
/// lowest to highest trial, reaches [`MEDIAN_CONFIDENCE`]).
pub const JUDGED_TRIALS: usize = 5;

/// The least confidence a verdict over trials must have that the true
/// median lies inside the interval it judges on.
pub const MEDIAN_CONFIDENCE: f64 = 0.90;

/// The narrowest interval of order statistics that holds the median of
/// the distribution `n` independent trials came from with at least
/// [`MEDIAN_CONFIDENCE`], as `(k, confidence)`: the interval runs from
/// the `k`-th lowest trial to the `k`-th highest (`k` from 1). `None`
/// when even the lowest-to-highest interval falls short (too few trials).
///
/// It makes no assumption about the distribution: the median lies
/// between the `k`-th lowest and the `k`-th highest of `n` trials unless
/// at least `n - k + 1` of them fall on one side of it, each side with a
/// binomial chance of one half per trial.
pub fn median_interval(n: usize) -> Option<(usize, f64)> {
    // P(X <= j) for X ~ Binomial(n, 1/2), built up term by term.
    let mut term = 0.5f64.powi(n as i32);
    let mut below = 0.0;
    let mut best = None;
    for k in 1..=n.div_ceil(2) {
        // Coverage of [x(k), x(n-k+1)] = 1 - 2 P(X <= k - 1).
        below += term;
        term *= (n - (k - 1)) as f64 / k as f64;
        let coverage = 1.0 - 2.0 * below;
        if coverage < MEDIAN_CONFIDENCE {
            break;
        }
        best = Some((k, coverage));
    }
    best
}

impl Target {
    /// A target judged on one figure.
    pub fn single(what: String, ratio: f64, required: f64, at_most: bool) -> Self {
        Self {
            what,
            ratio,
            required,
            at_most,
            trials: Vec::new(),
            noise: None,
        }
    }

    /// A floor judged on the ratios of alternating trials (their median is
    /// the figure shown).
    pub fn over_trials(what: String, trials: &[f64], required: f64) -> Self {
        let mut sorted = trials.to_vec();
        sorted.sort_by(f64::total_cmp);
        let ratio = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
        Self {
            what,
            ratio,
            required,
            at_most: false,
            trials: trials.to_vec(),
            noise: None,
        }
    }

    fn holds(&self, value: f64) -> bool {
        if self.at_most {
            value <= self.required
        } else {
            value >= self.required
        }
    }

    /// What this run says. With at least [`JUDGED_TRIALS`] trials, the
    /// confidence interval of their median ([`median_interval`]) decides:
    /// both ends on the right side, met; both on the wrong side, missed;
    /// one on each side, inconclusive. (Judging by fewer trials' agreement,
    /// four of five say, gives a verdict by chance more than a third of the
    /// time to a figure whose true median sits on the target; this rule
    /// about one time in sixteen.) With fewer trials the median decides.
    /// A figure that misses while [`Target::noise`] names something
    /// outside Herald larger than the allowance is inconclusive.
    pub fn verdict(&self) -> Verdict {
        let interval = match self.interval() {
            Some((low, high, _)) if self.trials.len() >= JUDGED_TRIALS => (low, high),
            _ => {
                return match (self.holds(self.ratio), &self.noise) {
                    (true, _) => Verdict::Met,
                    (false, Some(_)) => Verdict::Inconclusive,
                    (false, None) => Verdict::Missed,
                }
            }
        };
        match (self.holds(interval.0), self.holds(interval.1)) {
            (true, true) => Verdict::Met,
            (false, false) => Verdict::Missed,
            _ => Verdict::Inconclusive,
        }
    }

    /// The trials' confidence interval for their median: its lower and
    /// upper end and its confidence; `None` with too few trials.
    fn interval(&self) -> Option<(f64, f64, f64)> {
        let (k, confidence) = median_interval(self.trials.len())?;
        let mut sorted = self.trials.clone();
        sorted.sort_by(f64::total_cmp);
        Some((sorted[k - 1], sorted[sorted.len() - k], confidence))
    }

    /// Whether the run missed it (an inconclusive run did not).
    pub fn missed(&self) -> bool {
        self.verdict() == Verdict::Missed
    }

    /// The trials' spread as printed: lowest, the median's confidence
    /// interval, highest; or why the figure cannot judge the target.
    fn spread(&self) -> String {
        if self.verdict() == Verdict::Inconclusive {
            if let Some(noise) = &self.noise {
                return format!("; {noise}");
            }
        }
        if self.trials.is_empty() {
            return String::new();
        }
        let mut sorted = self.trials.clone();
        sorted.sort_by(f64::total_cmp);
        let (first, last) = (sorted[0], sorted[sorted.len() - 1]);
        match self.interval() {
            Some((low, high, confidence)) => format!(
                "; {} trials: min {first:.2}, median's {:.0}% interval {low:.2}-{high:.2}, max {last:.2}",
                sorted.len(),
                confidence * 100.0,
            ),
            None => format!(
                "; {} trials: min {first:.2}, max {last:.2}, too few to judge by an interval",
                sorted.len()
            ),
        }
    }
}

/// The measurements of one `herald-bench all` run.
#[derive(Debug, Default)]
pub struct Report {
    /// No-op jobs: the baseline first, then Herald's rows.
    pub noop: Vec<Row>,
    /// End to end, per concurrency.
    pub pipeline: Vec<pipeline::Measured>,
    /// Exports, per size (smallest first).
    pub export: Vec<export::Measured>,
    /// The write concern's cost, per concurrency (no target: information).
    pub write_concern: Vec<write_concern::Measured>,
    /// A user's unread count against one count over as many index keys.
    pub inbox: Option<inbox::Measured>,
    /// Latency at light load, from outside.
    pub latency: Option<latency::Measured>,
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

impl Report {
    /// The product's targets, evaluated on this run.
    pub fn targets(&self) -> Vec<Target> {
        let mut targets = Vec::new();
        if let (Some(base), Some(herald)) = (self.noop.first(), self.noop.get(1)) {
            targets.push(Target::single(
                format!("no-op: {} >= plain apalis-redis", herald.name),
                herald.rate() / base.rate().max(1e-9),
                1.0,
                false,
            ));
        }
        for m in &self.pipeline {
            targets.push(Target::over_trials(
                format!(
                    "end to end, concurrency {}: >= 80% of the lower of raw insert_many (Herald's batch size) and raw push",
                    m.concurrency
                ),
                &m.trial_ratios,
                0.8,
            ));
        }
        for m in &self.export {
            targets.push(Target::over_trials(
                format!("export, {} rows: >= 90% of the raw scan's rows/s", m.rows),
                &m.trial_ratios,
                0.9,
            ));
            if m.s3.is_some() {
                targets.push(Target::over_trials(
                    format!(
                        "export to S3, {} rows: >= 90% of the raw scan's rows/s",
                        m.rows
                    ),
                    &m.s3_trial_ratios,
                    0.9,
                ));
            }
        }
        if let (Some(small), Some(large)) = (self.export.first(), self.export.last()) {
            if large.rows > small.rows {
                targets.push(Target::single(
                    format!(
                        "export peak memory, {} rows <= 1.2 x {} rows",
                        large.rows, small.rows
                    ),
                    large.export_peak_kib as f64 / small.export_peak_kib.max(1) as f64,
                    1.2,
                    true,
                ));
            }
        }
        if let Some(inbox) = &self.inbox {
            targets.push(Target::single(
                format!(
                    "unread count, never read, {} messages: <= {} x one count over the same number of index keys",
                    inbox.messages,
                    inbox::TARGET_RATIO
                ),
                inbox.never_read.ratio(),
                inbox::TARGET_RATIO,
                true,
            ));
        }
        if let Some(latency) = &self.latency {
            targets.extend(latency.targets());
        }
        targets
    }

    fn sections(&self) -> Vec<(String, Vec<Line>)> {
        let mut sections = Vec::new();
        if let Some(base) = self.noop.first() {
            let lines = self
                .noop
                .iter()
                .map(|row| Line::from_row(row, Some(row.rate() / base.rate().max(1e-9))))
                .collect();
            sections.push((
                "No-op jobs, one worker (ratio: to plain apalis-redis, its defaults)".to_owned(),
                lines,
            ));
        }
        for m in &self.pipeline {
            let limit = m.limit().max(1e-9);
            let mut lines = vec![
                Line::from_row(&m.raw_insert, Some(m.raw_insert.rate() / limit)),
                Line::from_row(&m.raw_insert_many, Some(m.raw_insert_many.rate() / limit)),
                Line::from_row(&m.raw_post, Some(m.raw_post.rate() / limit)),
                Line::from_row(&m.raw_both, Some(m.raw_both.rate() / limit)),
            ];
            for timed in std::iter::once(&m.herald).chain(&m.one_job_at_a_time) {
                let mut line = Line::from_row(&timed.row, Some(timed.row.rate() / limit));
                line.p50 = Some(timed.p50);
                line.p99 = Some(timed.p99);
                lines.push(line);
            }
            sections.push((
                format!(
                    "Messages end to end, concurrency {} (at most {} request(s) in flight to each service; Herald's insert_many carried {:.1} messages on average and took {:.2} ms a call, the raw one {:.2} ms; {}; ratio: to the lower of raw insert_many and raw push; the median of {} trial(s), whose ratios were {}; to the two raw stages run at once, for information: {})",
                    m.concurrency,
                    m.concurrency,
                    m.batch_size,
                    m.insert_call.as_secs_f64() * 1000.0,
                    m.raw_insert_call().as_secs_f64() * 1000.0,
                    m.redis.describe(),
                    m.trial_ratios.len(),
                    listed(&m.trial_ratios),
                    listed(&m.both_trial_ratios)
                ),
                lines,
            ));
        }
        for m in &self.write_concern {
            let insert_base = m.insert.rate().max(1e-9);
            let herald_base = m.herald.row.rate().max(1e-9);
            let named = |row: &Row, name: String| Row {
                name,
                ..row.clone()
            };
            let timed_line = |timed: &pipeline::Timed, name: String| {
                let mut line = Line::from_row(
                    &named(&timed.row, name),
                    Some(timed.row.rate() / herald_base),
                );
                line.p50 = Some(timed.p50);
                line.p99 = Some(timed.p99);
                line
            };
            sections.push((
                format!(
                    "Write concern, concurrency {} (same server, alternating; ratio: to the configured write concern, {}; for information)",
                    m.concurrency, m.configured
                ),
                vec![
                    Line::from_row(
                        &named(&m.insert, format!("insert_one, {}", m.configured)),
                        Some(1.0),
                    ),
                    Line::from_row(
                        &named(&m.insert_relaxed, "insert_one, w:1, no journal".to_owned()),
                        Some(m.insert_relaxed.rate() / insert_base),
                    ),
                    timed_line(&m.herald, format!("Herald, {}", m.configured)),
                    timed_line(&m.herald_relaxed, "Herald, w:1, no journal".to_owned()),
                ],
            ));
        }
        for m in &self.export {
            let base = m.scan.rate().max(1e-9);
            let mut scan = Line::from_row(&m.scan, Some(1.0));
            scan.peak_kib = Some(m.scan_peak_kib);
            let mut export = Line::from_row(&m.export, Some(m.export.rate() / base));
            export.peak_kib = Some(m.export_peak_kib);
            let mut lines = vec![scan, export];
            if let Some((row, peak)) = &m.s3 {
                let mut s3 = Line::from_row(row, Some(row.rate() / base));
                s3.peak_kib = Some(*peak);
                lines.push(s3);
            }
            let s3_trials = match m.s3 {
                Some(_) => format!(", to S3 {}", listed(&m.s3_trial_ratios)),
                None => String::new(),
            };
            sections.push((
                format!(
                    "Export, {} documents, {:.1} MB file (ratio: to the raw scan; the trial with the median ratio of {} alternating trial(s), whose ratios were {}{s3_trials}; peak memory: the highest of any trial)",
                    m.rows,
                    m.file_bytes as f64 / 1e6,
                    m.trial_ratios.len(),
                    listed(&m.trial_ratios)
                ),
                lines,
            ));
        }
        if let Some(inbox) = &self.inbox {
            sections.extend(inbox_sections(inbox));
        }
        if let Some(latency) = &self.latency {
            sections.extend(latency_sections(latency));
        }
        sections
    }

    /// The table and the targets, as printed.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<52} {:>9} {:>8} {:>10} {:>6} {:>8} {:>8} {:>9}",
            "workload", "count", "seconds", "per second", "ratio", "p50 ms", "p99 ms", "peak MiB"
        );
        for (title, lines) in self.sections() {
            let _ = writeln!(out, "-- {title}");
            for line in lines {
                let opt = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
                let _ = writeln!(
                    out,
                    "{:<52} {:>9} {:>8.2} {:>10.0} {:>6} {:>8} {:>8} {:>9}",
                    line.name,
                    line.count,
                    line.elapsed.as_secs_f64(),
                    line.count as f64 / line.elapsed.as_secs_f64().max(1e-9),
                    opt(line.ratio.map(|r| format!("{r:.2}"))),
                    opt(line.p50.map(ms)),
                    opt(line.p99.map(ms)),
                    opt(line.peak_kib.map(|k| format!("{:.1}", k as f64 / 1024.0))),
                );
            }
        }
        if !self.pipeline.is_empty() {
            let _ = writeln!(
                out,
                "-- Order: events that reached the stand-in after the event of a message enqueued later (each run's messages belong to one account)"
            );
            for m in &self.pipeline {
                for timed in std::iter::once(&m.herald).chain(&m.one_job_at_a_time) {
                    let _ = writeln!(
                        out,
                        "  {:<50} {:>9} of {}",
                        timed.row.name, timed.out_of_order, timed.row.count
                    );
                }
            }
        }
        if let Some(inbox) = &self.inbox {
            render_inbox_details(&mut out, inbox);
        }
        if let Some(latency) = &self.latency {
            render_latency_details(&mut out, latency);
        }
        let targets = self.targets();
        if !targets.is_empty() {
            let _ = writeln!(out, "-- Targets");
            for t in targets {
                let _ = writeln!(
                    out,
                    "{:<12} {} (measured {:.3}, required {} {:.2}{})",
                    match t.verdict() {
                        Verdict::Met => "met",
                        Verdict::Missed => "MISSED",
                        Verdict::Inconclusive => "INCONCLUSIVE",
                    },
                    t.what,
                    t.ratio,
                    if t.at_most { "<=" } else { ">=" },
                    t.required,
                    t.spread()
                );
            }
            if self
                .targets()
                .iter()
                .any(|t| t.verdict() == Verdict::Inconclusive)
            {
                let _ = writeln!(
                    out,
                    "INCONCLUSIVE: this machine's noise (trials on both sides of the target, or a stall longer than its allowance) is larger than the distance to the target, so this run neither meets nor misses it"
                );
            }
        }
        out
    }
}

/// The unread-count sections: per scenario, the baseline and the subject,
/// each a call's median time (seconds and p50) and the index keys it
/// counts; the subject's ratio is the median of the trials' ratios.
fn inbox_sections(m: &inbox::Measured) -> Vec<(String, Vec<Line>)> {
    m.scenarios()
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            // The first scenario, never read, is the target's.
            let targeted = i == 0;
            let line = |name: String, median: Duration, ratio: f64| {
                let mut line = Line::from_row(
                    &Row {
                        name,
                        count: s.keys,
                        elapsed: median,
                    },
                    Some(ratio),
                );
                line.p50 = Some(median);
                line
            };
            let (low, high) = s.ratio_range();
            let ratios: Vec<String> = s.ratios().iter().map(|r| format!("{r:.2}")).collect();
            (
                format!(
                    "Unread count, {}, {} messages in the user's inbox (count: index keys per call; seconds and p50: the median time per call; ratio: time over the baseline's, the median of {} alternating trial(s), whose ratios were {}, min-max {low:.2}-{high:.2}{})",
                    s.name,
                    m.messages,
                    s.baseline.len(),
                    ratios.join(" "),
                    if targeted { "" } else { "; for information" },
                ),
                vec![
                    line(
                        if i == 1 {
                            format!("$group by category, {} keys of one range", s.keys)
                        } else {
                            format!("count command, {} keys of one range", s.keys)
                        },
                        s.baseline_median(),
                        1.0,
                    ),
                    line(
                        if i == 1 {
                            format!("Inbox::unread_by_category ({} unread)", s.unread)
                        } else {
                            format!("Inbox::unread_count, {} ({} unread)", s.name, s.unread)
                        },
                        s.subject_median(),
                        s.ratio(),
                    ),
                ],
            )
        })
        .collect()
}

/// Every trial's times of the unread-count scenarios, and the seeding.
fn render_inbox_details(out: &mut String, m: &inbox::Measured) {
    let _ = writeln!(
        out,
        "-- Unread count: ms per call in each trial (min-max), {} documents seeded in {:.1} s",
        m.seeded,
        m.seed.as_secs_f64()
    );
    for s in m.scenarios() {
        for (what, times) in [("baseline", &s.baseline), ("unread_count", &s.subject)] {
            let ms_each: Vec<f64> = times.iter().map(|d| d.as_secs_f64() * 1e3).collect();
            let (low, high) = inbox::spread(&ms_each);
            let _ = writeln!(
                out,
                "  {:<16} {:<13} {} ({low:.1}-{high:.1}; {} call(s) per trial)",
                s.name,
                what,
                ms_each
                    .iter()
                    .map(|t| format!("{t:.1}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                s.calls
            );
        }
    }
}

/// A line of latencies, its ratio the p50 over the floor's p50.
fn latency_line(series: &latency::Latencies, floor: Duration) -> Line {
    let mut line = Line::from_row(
        &series.row(),
        Some(series.p50.as_secs_f64() / floor.as_secs_f64().max(1e-9)),
    );
    line.p50 = Some(series.p50);
    line.p99 = Some(series.p99);
    line
}

/// The latency run's sections of the table.
fn latency_sections(m: &latency::Measured) -> Vec<(String, Vec<Line>)> {
    let floor = m.floor.p50;
    // Every trial's documents over every trial's time; the p50 column
    // holds the median trial's time.
    let exports = |name: String, times: &[Duration]| {
        let row = Row {
            name,
            count: m.export.rows * times.len() as u64,
            elapsed: times.iter().sum(),
        };
        Line::from_row(&row, None)
    };
    let mut baseline = exports(
        format!("raw read, write and sync, {} documents", m.export.rows),
        &m.export.baseline,
    );
    baseline.ratio = Some(1.0);
    baseline.p50 = Some(m.export.baseline_median());
    let mut export = exports(
        format!(
            "export, enqueue to export_finish, {} documents",
            m.export.rows
        ),
        &m.export.export,
    );
    export.ratio = Some(m.export.ratio());
    export.p50 = Some(m.export.export_median());
    vec![
        (
            "Latency at light load, herald web and herald worker as processes (ratio: p50 over the floor's p50)".to_owned(),
            vec![
                latency_line(&m.floor_hot, floor),
                latency_line(&m.floor, floor),
                latency_line(&m.http, floor),
                latency_line(&m.producer, floor),
            ],
        ),
        (
            "Latency under load, through the producer (ratio: p50 over the floor's p50; for information)".to_owned(),
            vec![
                Line::from_row(&m.max_rate, None),
                latency_line(&m.under_load, floor),
            ],
        ),
        (
            format!(
                "Export start, {} trial(s) of each, alternating (p50: the median trial's time; ratio: the medians' ratio; the exports took {} ms)",
                m.export.export.len(),
                m.export
                    .export
                    .iter()
                    .map(|&d| ms(d))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            vec![baseline, export],
        ),
    ]
}

/// The slowest message of each latency series and the idle worker's cost,
/// which have no column of their own.
fn render_latency_details(out: &mut String, m: &latency::Measured) {
    let _ = writeln!(
        out,
        "-- Latency: the slowest of each series, and the machine's stalls while it ran (a thread's 1 ms sleeps that took longer)"
    );
    for series in [&m.floor_hot, &m.floor, &m.http, &m.producer, &m.under_load] {
        let stalls = match series.stalls {
            Some(seen) => format!(
                "; machine stalls: longest {} ms, {} of 5 ms or more",
                ms(seen.longest),
                seen.count
            ),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "  {:<50} max {:>8} ms{stalls}",
            series.name,
            ms(series.max)
        );
    }
    let _ = writeln!(
        out,
        "-- Idle worker on a private redis-server, watched {:.0} s",
        m.idle.seconds
    );
    let _ = writeln!(
        out,
        "  CPU {:.2}% of one core; {} Redis commands sent ({:.1} per second); {} processed, counting those its scripts ran ({:.1} per second)",
        m.idle.cpu_percent,
        m.idle.sent,
        m.idle.sent_per_sec(),
        m.idle.commands,
        m.idle.commands_per_sec()
    );
}

/// Trial ratios as the section titles list them: two decimals, spaced.
fn listed(ratios: &[f64]) -> String {
    ratios
        .iter()
        .map(|r| format!("{r:.2}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floor(trials: &[f64]) -> Verdict {
        Target::over_trials("t".into(), trials, 0.9).verdict()
    }

    #[test]
    fn five_trials_are_judged_by_their_lowest_and_highest() {
        // Every trial on the right side: met.
        assert_eq!(floor(&[0.95, 0.91, 0.92, 0.99, 1.1]), Verdict::Met);
        // Every trial on the wrong side: missed.
        assert_eq!(floor(&[0.85, 0.5, 0.88, 0.89, 0.7]), Verdict::Missed);
        // Four of five on one side is not enough: the fifth could be where
        // the median lies.
        assert_eq!(floor(&[0.95, 0.5, 0.92, 0.99, 1.1]), Verdict::Inconclusive);
        assert_eq!(floor(&[0.85, 0.5, 0.88, 0.99, 0.7]), Verdict::Inconclusive);
        // Fewer trials: the median decides.
        assert_eq!(floor(&[0.85, 0.95, 0.91]), Verdict::Met);
        assert_eq!(floor(&[0.85, 0.95, 0.89]), Verdict::Missed);
        let figure = Target::over_trials("t".into(), &[0.85, 0.95, 0.89], 0.9);
        assert_eq!(figure.ratio, 0.89, "the median is the figure shown");
    }

    #[test]
    fn more_trials_narrow_the_median_interval() {
        // Four trials cannot give 90%: even lowest to highest is 87.5%.
        assert_eq!(median_interval(4), None);
        let (k, confidence) = median_interval(5).unwrap();
        assert_eq!(k, 1);
        assert!((confidence - 0.9375).abs() < 1e-9, "{confidence}");
        // Seven: second lowest to second highest would be 87.5%, too little.
        assert_eq!(median_interval(7).unwrap().0, 1);
        // Nine: 96.1% from the second lowest to the second highest.
        let (k, confidence) = median_interval(9).unwrap();
        assert_eq!(k, 2);
        assert!((confidence - 0.9609375).abs() < 1e-9, "{confidence}");
        // Nine trials with one outlier on each side still judge.
        assert_eq!(
            floor(&[0.5, 0.93, 0.95, 0.92, 0.94, 0.96, 0.91, 0.97, 1.3]),
            Verdict::Met
        );
    }

    #[test]
    fn the_spread_names_the_interval_and_its_confidence() {
        let target = Target::over_trials("t".into(), &[0.85, 0.5, 0.88, 0.99, 0.7], 0.9);
        assert_eq!(
            target.spread(),
            "; 5 trials: min 0.50, median's 94% interval 0.50-0.99, max 0.99"
        );
        let few = Target::over_trials("t".into(), &[0.85, 0.5], 0.9);
        assert_eq!(
            few.spread(),
            "; 2 trials: min 0.50, max 0.85, too few to judge by an interval"
        );
    }

    #[test]
    fn a_miss_under_a_stall_larger_than_the_allowance_is_inconclusive() {
        let mut target = Target::single("p99".into(), 14.3, 10.0, true);
        assert!(target.missed());
        target.noise = Some("the machine stalled for 120 ms".into());
        assert_eq!(target.verdict(), Verdict::Inconclusive);
        // A figure within the target is met whatever the machine did.
        target.ratio = 4.0;
        assert_eq!(target.verdict(), Verdict::Met);
    }

    #[test]
    fn a_ceiling_is_judged_the_other_way() {
        let mut target = Target::single("t".into(), 1.1, 1.2, true);
        assert_eq!(target.verdict(), Verdict::Met);
        target.ratio = 1.3;
        assert!(target.missed());
    }
}
