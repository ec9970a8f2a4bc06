//! Turning BSON values into spreadsheet cells.
//!
//! - paths like `profile.name` are followed through sub-documents, and
//!   through arrays element by element (`items.sku` lists every item's sku);
//! - ObjectIds become hex, dates `YYYY-MM-DD HH:MM:SS` in the export's time
//!   zone, arrays are joined with `, `, booleans and numbers are plain text,
//!   a missing value is an empty cell;
//! - a text cell that a spreadsheet would run as a formula (starting with
//!   `=`, `+`, `-`, `@`, tab or carriage return) gets a leading `'`, the
//!   neutralisation OWASP recommends against CSV injection. Numbers and
//!   dates are never altered: `-5` stays a number.

use std::fmt::Write as _;

use chrono::{Datelike, TimeZone, Timelike};
use chrono_tz::Tz;
use mongodb::bson::{Bson, Document, RawArray, RawBsonRef, RawDocument};

/// Characters that make a spreadsheet treat a cell as a formula.
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// Separator between the elements of an array in one cell.
const ARRAY_SEPARATOR: &str = ", ";

/// Every value at `path` in `doc` (several when the path crosses arrays).
pub fn resolve<'a>(doc: &'a Document, path: &str) -> Vec<&'a Bson> {
    let mut current: Vec<&Bson> = Vec::new();
    let mut segments = path.split('.');
    let Some(first) = segments.next() else {
        return current;
    };
    if let Some(value) = doc.get(first) {
        current.push(value);
    }
    for segment in segments {
        let mut next = Vec::new();
        for value in current {
            descend(value, segment, &mut next);
        }
        current = next;
    }
    current
}

fn descend<'a>(value: &'a Bson, segment: &str, out: &mut Vec<&'a Bson>) {
    match value {
        Bson::Document(doc) => {
            if let Some(inner) = doc.get(segment) {
                out.push(inner);
            }
        }
        Bson::Array(items) => {
            if let Ok(index) = segment.parse::<usize>() {
                if let Some(item) = items.get(index) {
                    out.push(item);
                }
            } else {
                for item in items {
                    descend(item, segment, out);
                }
            }
        }
        _ => {}
    }
}

/// Whether a value renders as a number or a date (never neutralised).
fn is_plain_data(value: &Bson) -> bool {
    match value {
        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_) => true,
        Bson::DateTime(_) | Bson::Boolean(_) | Bson::ObjectId(_) | Bson::Null => true,
        Bson::Array(items) => items.iter().all(is_plain_data),
        _ => false,
    }
}

/// A date as `YYYY-MM-DD HH:MM:SS` in `tz`.
pub fn format_date(millis: i64, tz: Tz) -> String {
    let mut out = String::with_capacity(19);
    push_date(millis, tz, &mut out);
    out
}

/// Appends [`format_date`]'s text to `out`. Four-digit years are written
/// digit by digit (an export writes one per date cell, and both strftime
/// patterns and `write!` were a measurable share of its time); other years
/// go through chrono's `%Y`, which signs them.
fn push_date(millis: i64, tz: Tz, out: &mut String) {
    match tz.timestamp_millis_opt(millis).single() {
        Some(local) if (0..=9999).contains(&local.year()) => {
            let year = local.year() as u32;
            push_digits(out, year / 100);
            push_digits(out, year % 100);
            for (separator, field) in [
                ('-', local.month()),
                ('-', local.day()),
                (' ', local.hour()),
                (':', local.minute()),
                (':', local.second()),
            ] {
                out.push(separator);
                push_digits(out, field);
            }
        }
        Some(local) => {
            let _ = write!(out, "{}", local.format("%Y-%m-%d %H:%M:%S"));
        }
        None => {
            let _ = write!(out, "{millis}");
        }
    }
}

/// Appends `n` (below 100) as two digits.
fn push_digits(out: &mut String, n: u32) {
    out.push(char::from(b'0' + (n / 10 % 10) as u8));
    out.push(char::from(b'0' + (n % 10) as u8));
}

fn render(value: &Bson, tz: Tz, out: &mut String) {
    match value {
        Bson::Null | Bson::Undefined => {}
        Bson::String(s) => out.push_str(s),
        Bson::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Bson::Int32(n) => push_display(out, n),
        Bson::Int64(n) => push_display(out, n),
        Bson::Double(n) => push_display(out, n),
        Bson::Decimal128(n) => push_display(out, n),
        Bson::ObjectId(oid) => out.push_str(&oid.to_hex()),
        Bson::DateTime(date) => push_date(date.timestamp_millis(), tz, out),
        Bson::Symbol(s) => out.push_str(s),
        Bson::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(ARRAY_SEPARATOR);
                }
                render(item, tz, out);
            }
        }
        other => out.push_str(&other.clone().into_relaxed_extjson().to_string()),
    }
}

/// The cell for `values` (as [`resolve`] returns them).
pub fn cell(values: &[&Bson], tz: Tz) -> String {
    let mut text = String::new();
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            text.push_str(ARRAY_SEPARATOR);
        }
        render(value, tz, &mut text);
    }
    if values.iter().all(|v| is_plain_data(v)) {
        text
    } else {
        neutralise(text)
    }
}

fn push_display(out: &mut String, value: impl std::fmt::Display) {
    let _ = write!(out, "{value}");
}

/// Every value at `path` in a raw document, as [`resolve`] finds them in a
/// decoded one, appended to `out`. The export reads documents raw: only the
/// exported fields are looked at, and nothing is decoded or copied to find
/// them. A malformed element (which a server does not send) counts as
/// missing.
pub fn resolve_raw<'a>(doc: &'a RawDocument, path: &str, out: &mut Vec<RawBsonRef<'a>>) {
    let mut segments = path.split('.');
    let Some(first) = segments.next() else {
        return;
    };
    let start = out.len();
    if let Ok(Some(value)) = doc.get(first) {
        out.push(value);
    }
    let mut next = Vec::new();
    for segment in segments {
        next.clear();
        for value in out.drain(start..) {
            descend_raw(value, segment, &mut next);
        }
        out.append(&mut next);
    }
}

/// The columns' paths, split once, for resolving a whole row in one pass
/// over a raw document (looking each path up on its own walks the document
/// once per column, checking every key's UTF-8 each time).
#[derive(Debug, Clone)]
pub struct RowPaths {
    columns: Vec<(String, Vec<String>)>,
}

impl RowPaths {
    /// The paths of the columns, in column order.
    pub fn new<'p>(paths: impl IntoIterator<Item = &'p str>) -> Self {
        let columns = paths
            .into_iter()
            .map(|path| {
                let mut segments = path.split('.').map(str::to_owned);
                let first = segments.next().unwrap_or_default();
                (first, segments.collect())
            })
            .collect();
        Self { columns }
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.columns.len()
    }

    /// Whether there are no columns.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// Puts each column's values into `out[column]` (as [`resolve_raw`]
    /// finds them); `out` must have [`Self::len`] entries.
    pub fn resolve<'a>(&self, doc: &'a RawDocument, out: &mut [Vec<RawBsonRef<'a>>]) {
        for values in out.iter_mut() {
            values.clear();
        }
        let mut missing = self.columns.len();
        // Elements are decoded only when a column wants them.
        for element in doc.iter_elements() {
            let Ok(element) = element else { break };
            let key = element.key();
            for ((first, _), values) in self.columns.iter().zip(out.iter_mut()) {
                // The first occurrence of a key wins, as with a lookup.
                if values.is_empty() && first == key {
                    if let Ok(value) = element.value() {
                        values.push(value);
                    }
                    missing -= 1;
                }
            }
            if missing == 0 {
                break;
            }
        }
        let mut next = Vec::new();
        for ((_, rest), values) in self.columns.iter().zip(out.iter_mut()) {
            for segment in rest {
                next.clear();
                for value in values.drain(..) {
                    descend_raw(value, segment, &mut next);
                }
                values.append(&mut next);
            }
        }
    }
}

/// How documents become CSV rows: the columns' paths and the time zone
/// dates are shown in.
#[derive(Debug, Clone)]
pub struct RowLayout {
    paths: RowPaths,
    time_zone: Tz,
}

impl RowLayout {
    /// Columns at `paths` (in order), dates in `time_zone`.
    pub fn new<'p>(paths: impl IntoIterator<Item = &'p str>, time_zone: Tz) -> Self {
        Self {
            paths: RowPaths::new(paths),
            time_zone,
        }
    }

    /// Writes one CSV row per document.
    pub fn write_rows<'d, W: std::io::Write>(
        &self,
        documents: impl Iterator<Item = &'d RawDocument>,
        out: &mut csv::Writer<W>,
    ) -> Result<(), csv::Error> {
        let mut columns = vec![Vec::new(); self.paths.len()];
        let mut cell = String::new();
        for document in documents {
            self.paths.resolve(document, &mut columns);
            for values in &columns {
                write_cell_raw(values, self.time_zone, &mut cell);
                out.write_field(&cell)?;
            }
            out.write_record(None::<&[u8]>)?;
        }
        Ok(())
    }
}

/// The first value under `key` in `doc`, decoding no other element (a
/// lookup with [`RawDocument::get`] decodes every element it passes).
fn get_raw<'a>(doc: &'a RawDocument, key: &str) -> Option<RawBsonRef<'a>> {
    for element in doc.iter_elements() {
        let element = element.ok()?;
        if element.key() == key {
            return element.value().ok();
        }
    }
    None
}

fn descend_raw<'a>(value: RawBsonRef<'a>, segment: &str, out: &mut Vec<RawBsonRef<'a>>) {
    match value {
        RawBsonRef::Document(doc) => {
            if let Some(inner) = get_raw(doc, segment) {
                out.push(inner);
            }
        }
        RawBsonRef::Array(items) => {
            if let Ok(index) = segment.parse::<usize>() {
                if let Ok(Some(item)) = items.get(index) {
                    out.push(item);
                }
            } else {
                for item in items.into_iter().flatten() {
                    descend_raw(item, segment, out);
                }
            }
        }
        _ => {}
    }
}

/// [`is_plain_data`] for a raw value.
fn is_plain_raw(value: RawBsonRef<'_>) -> bool {
    match value {
        RawBsonRef::Int32(_) | RawBsonRef::Int64(_) | RawBsonRef::Double(_) => true,
        RawBsonRef::Decimal128(_) | RawBsonRef::DateTime(_) | RawBsonRef::Boolean(_) => true,
        RawBsonRef::ObjectId(_) | RawBsonRef::Null => true,
        RawBsonRef::Array(items) => items.into_iter().all(|i| i.is_ok_and(is_plain_raw)),
        _ => false,
    }
}

fn render_raw_array(items: &RawArray, tz: Tz, out: &mut String) {
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push_str(ARRAY_SEPARATOR);
        }
        if let Ok(item) = item {
            render_raw(item, tz, out);
        }
    }
}

/// [`render`] for a raw value: the same text, without decoding first.
fn render_raw(value: RawBsonRef<'_>, tz: Tz, out: &mut String) {
    match value {
        RawBsonRef::Null | RawBsonRef::Undefined => {}
        RawBsonRef::String(s) | RawBsonRef::Symbol(s) => out.push_str(s),
        RawBsonRef::Boolean(b) => out.push_str(if b { "true" } else { "false" }),
        RawBsonRef::Int32(n) => out.push_str(itoa::Buffer::new().format(n)),
        RawBsonRef::Int64(n) => out.push_str(itoa::Buffer::new().format(n)),
        RawBsonRef::Double(n) => push_display(out, n),
        RawBsonRef::Decimal128(n) => push_display(out, n),
        RawBsonRef::ObjectId(oid) => out.push_str(&oid.to_hex()),
        RawBsonRef::DateTime(date) => push_date(date.timestamp_millis(), tz, out),
        RawBsonRef::Array(items) => render_raw_array(items, tz, out),
        // Rare in exports: decode and render as the decoded path does.
        other => {
            if let Ok(decoded) = Bson::try_from(other) {
                render(&decoded, tz, out);
            }
        }
    }
}

/// The cell for `values` (as [`resolve_raw`] finds them), written into
/// `out` (cleared first): the same text [`cell`] gives.
pub fn write_cell_raw(values: &[RawBsonRef<'_>], tz: Tz, out: &mut String) {
    out.clear();
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            out.push_str(ARRAY_SEPARATOR);
        }
        render_raw(*value, tz, out);
    }
    if !values.iter().all(|v| is_plain_raw(*v)) && out.starts_with(FORMULA_STARTS) {
        out.insert(0, '\'');
    }
}

/// Prefixes text a spreadsheet would run as a formula with `'`.
pub fn neutralise(text: String) -> String {
    if text.starts_with(FORMULA_STARTS) {
        format!("'{text}")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::{doc, oid::ObjectId, DateTime};

    const UTC: Tz = chrono_tz::UTC;

    fn at(doc: &Document, path: &str) -> String {
        cell(&resolve(doc, path), chrono_tz::Asia::Shanghai)
    }

    #[test]
    fn nested_paths_and_arrays_of_documents_resolve() {
        let d = doc! {
            "profile": { "name": "王小明", "address": { "city": "Shanghai" } },
            "items": [ { "sku": "A1" }, { "sku": "B2" }, { "other": 1 } ],
            "tags": ["vip", "new"],
        };
        assert_eq!(at(&d, "profile.name"), "王小明");
        assert_eq!(at(&d, "profile.address.city"), "Shanghai");
        assert_eq!(at(&d, "items.sku"), "A1, B2");
        assert_eq!(at(&d, "items.1.sku"), "B2");
        assert_eq!(at(&d, "tags"), "vip, new");
        assert_eq!(at(&d, "profile.missing"), "");
        assert_eq!(at(&d, "nothing.here"), "");
    }

    #[test]
    fn ids_dates_numbers_and_booleans_render_as_text() {
        let oid = ObjectId::parse_str("5f0c8a3e2b1d4c0012345678").unwrap();
        // 2026-01-02 03:04:05 UTC is 11:04:05 in Shanghai.
        let date = DateTime::from_millis(1_767_323_045_000);
        let d = doc! { "id": oid, "at": date, "n": 42, "big": 9_007_199_254_740_993_i64,
        "x": 2.5, "whole": 3.0, "yes": true, "none": null };
        assert_eq!(at(&d, "id"), "5f0c8a3e2b1d4c0012345678");
        assert_eq!(at(&d, "at"), "2026-01-02 11:04:05");
        assert_eq!(cell(&resolve(&d, "at"), UTC), "2026-01-02 03:04:05");
        assert_eq!(at(&d, "n"), "42");
        assert_eq!(at(&d, "big"), "9007199254740993");
        assert_eq!(at(&d, "x"), "2.5");
        assert_eq!(at(&d, "whole"), "3");
        assert_eq!(at(&d, "yes"), "true");
        assert_eq!(at(&d, "none"), "");
    }

    #[test]
    fn formula_like_text_is_neutralised_but_numbers_are_not() {
        let d = doc! {
            "eq": "=HYPERLINK(\"http://x\")", "plus": "+1", "minus": "-2+3", "at": "@SUM(A1)",
            "tab": "\tx", "cr": "\rx", "safe": "a=b", "negative": -5, "list": ["=1", "b"],
        };
        assert_eq!(at(&d, "eq"), "'=HYPERLINK(\"http://x\")");
        assert_eq!(at(&d, "plus"), "'+1");
        assert_eq!(at(&d, "minus"), "'-2+3");
        assert_eq!(at(&d, "at"), "'@SUM(A1)");
        assert_eq!(at(&d, "tab"), "'\tx");
        assert_eq!(at(&d, "cr"), "'\rx");
        assert_eq!(at(&d, "safe"), "a=b");
        assert_eq!(at(&d, "negative"), "-5");
        assert_eq!(at(&d, "list"), "'=1, b");
    }

    /// The raw path gives the decoded path's text for every test document.
    fn same_as_decoded(d: &Document, paths: &[&str]) {
        let raw = mongodb::bson::RawDocumentBuf::from_document(d).unwrap();
        let mut values = Vec::new();
        let mut text = String::new();
        for path in paths {
            values.clear();
            resolve_raw(&raw, path, &mut values);
            write_cell_raw(&values, chrono_tz::Asia::Shanghai, &mut text);
            assert_eq!(text, at(d, path), "{path}");
        }
        let row = RowPaths::new(paths.iter().copied());
        let mut columns = vec![Vec::new(); row.len()];
        row.resolve(&raw, &mut columns);
        for (path, values) in paths.iter().zip(&columns) {
            write_cell_raw(values, chrono_tz::Asia::Shanghai, &mut text);
            assert_eq!(text, at(d, path), "row {path}");
        }
        let layout = RowLayout::new(paths.iter().copied(), chrono_tz::Asia::Shanghai);
        let mut csv_rows = csv::Writer::from_writer(Vec::new());
        layout
            .write_rows([&*raw, &*raw].into_iter(), &mut csv_rows)
            .unwrap();
        let mut expected = csv::Writer::from_writer(Vec::new());
        for _ in 0..2 {
            expected
                .write_record(paths.iter().map(|path| at(d, path)))
                .unwrap();
        }
        assert_eq!(
            csv_rows.into_inner().unwrap(),
            expected.into_inner().unwrap(),
            "rows written by the layout"
        );
    }

    #[test]
    fn every_date_field_is_zero_padded() {
        // 2026-03-03 21:06:07 UTC is 05:06:07 on the 4th in Shanghai.
        let millis = DateTime::parse_rfc3339_str("2026-03-03T21:06:07Z")
            .unwrap()
            .timestamp_millis();
        assert_eq!(
            format_date(millis, chrono_tz::Asia::Shanghai),
            "2026-03-04 05:06:07"
        );
        assert_eq!(format_date(0, chrono_tz::UTC), "1970-01-01 00:00:00");
    }

    #[test]
    fn raw_documents_render_like_decoded_ones() {
        let oid = ObjectId::parse_str("5f0c8a3e2b1d4c0012345678").unwrap();
        same_as_decoded(
            &doc! {
                "profile": { "name": "王小明", "address": { "city": "Shanghai" } },
                "items": [ { "sku": "A1" }, { "sku": "=B2" }, { "other": 1 } ],
                "tags": ["vip", "new"], "id": oid, "at": DateTime::from_millis(1_767_323_045_000),
                "n": 42, "big": 9_007_199_254_740_993_i64, "x": 2.5, "whole": 3.0, "yes": true,
                "none": null, "eq": "=1+2", "negative": -5, "list": ["=1", "b"], "sub": { "a": 1 },
                "old": DateTime::from_millis(-70_000_000_000_000),
            },
            &[
                "profile.name",
                "profile.address.city",
                "items.sku",
                "items.1.sku",
                "tags",
                "profile.missing",
                "nothing.here",
                "id",
                "at",
                "n",
                "big",
                "x",
                "whole",
                "yes",
                "none",
                "eq",
                "negative",
                "list",
                "sub",
                "old",
                "items",
            ],
        );
    }

    #[test]
    fn other_bson_renders_as_extended_json() {
        let d = doc! { "sub": { "a": 1 } };
        assert_eq!(at(&d, "sub"), "{\"a\":1}");
    }
}
