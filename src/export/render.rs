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
//!   dates are never altered: `-5` stays a number. Column titles, which the
//!   producer writes, are neutralised the same way ([`header_cell`]).

use std::fmt::Write as _;

use chrono::{Datelike, TimeZone, Timelike};
use chrono_tz::Tz;
use mongodb::bson::{Bson, RawArray, RawBsonRef, RawDocument};

/// Characters that make a spreadsheet treat a cell as a formula.
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// Separator between the elements of an array in one cell.
const ARRAY_SEPARATOR: &str = ", ";

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

fn push_display(out: &mut String, value: impl std::fmt::Display) {
    let _ = write!(out, "{value}");
}

/// The columns' paths, each split once into its segments: the one place
/// a dotted path is resolved in a document.
///
/// A row is resolved in one pass over the raw document: its top-level
/// elements are walked once for every column together (looking each path
/// up on its own walks the document once per column, checking every key's
/// UTF-8 each time), then each column follows the rest of its path. Only
/// the elements a column wants are decoded, and nothing is copied.
#[derive(Debug, Clone)]
struct RowPaths {
    /// Per column: the first segment and the ones after it.
    columns: Vec<(String, Vec<String>)>,
}

impl RowPaths {
    /// The paths of the columns, in column order.
    fn new<'p>(paths: impl IntoIterator<Item = &'p str>) -> Self {
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
    fn len(&self) -> usize {
        self.columns.len()
    }

    /// Puts every value at each column's path into `out[column]` (several
    /// when the path crosses arrays, none when it is missing); `out` must
    /// have [`Self::len`] entries. A malformed element (which a server does
    /// not send) counts as missing.
    fn resolve<'a>(&self, doc: &'a RawDocument, out: &mut [Vec<RawBsonRef<'a>>]) {
        for values in out.iter_mut() {
            values.clear();
        }
        let mut missing = self.columns.len();
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
                    descend(value, segment, &mut next);
                }
                values.append(&mut next);
            }
        }
    }
}

/// Follows one path segment from `value`: into a sub-document by key, into
/// an array by index (`items.1`) or, for any other segment, into each of
/// its elements (`items.sku` is every item's sku).
fn descend<'a>(value: RawBsonRef<'a>, segment: &str, out: &mut Vec<RawBsonRef<'a>>) {
    match value {
        RawBsonRef::Document(doc) => {
            if let Some(inner) = first_value(doc, segment) {
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
                    descend(item, segment, out);
                }
            }
        }
        _ => {}
    }
}

/// The first value under `key` in `doc`, decoding no other element (a
/// lookup with [`RawDocument::get`] decodes every element it passes).
fn first_value<'a>(doc: &'a RawDocument, key: &str) -> Option<RawBsonRef<'a>> {
    for element in doc.iter_elements() {
        let element = element.ok()?;
        if element.key() == key {
            return element.value().ok();
        }
    }
    None
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
                write_cell(values, self.time_zone, &mut cell);
                out.write_field(&cell)?;
            }
            out.write_record(None::<&[u8]>)?;
        }
        Ok(())
    }
}

/// Whether a value renders as a number or a date (never neutralised).
fn is_plain(value: RawBsonRef<'_>) -> bool {
    match value {
        RawBsonRef::Int32(_) | RawBsonRef::Int64(_) | RawBsonRef::Double(_) => true,
        RawBsonRef::Decimal128(_) | RawBsonRef::DateTime(_) | RawBsonRef::Boolean(_) => true,
        RawBsonRef::ObjectId(_) | RawBsonRef::Null => true,
        RawBsonRef::Array(items) => items.into_iter().all(|i| i.is_ok_and(is_plain)),
        _ => false,
    }
}

fn render_array(items: &RawArray, tz: Tz, out: &mut String) {
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push_str(ARRAY_SEPARATOR);
        }
        if let Ok(item) = item {
            render(item, tz, out);
        }
    }
}

/// Appends the text of `value` to `out`, decoding nothing it need not.
fn render(value: RawBsonRef<'_>, tz: Tz, out: &mut String) {
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
        RawBsonRef::Array(items) => render_array(items, tz, out),
        // Sub-documents and the rare types (binary, regex, timestamp, ...)
        // as relaxed extended JSON.
        other => {
            if let Ok(decoded) = Bson::try_from(other) {
                push_display(out, decoded.into_relaxed_extjson());
            }
        }
    }
}

/// A column title as the header row holds it: text that a spreadsheet
/// would run as a formula gets a leading `'`, as data cells do.
pub fn header_cell(title: &str) -> std::borrow::Cow<'_, str> {
    if title.starts_with(FORMULA_STARTS) {
        std::borrow::Cow::Owned(format!("'{title}"))
    } else {
        std::borrow::Cow::Borrowed(title)
    }
}

/// The cell for `values` (as [`RowPaths::resolve`] finds them for one
/// column), written into `out` (cleared first). Text that a spreadsheet
/// would run as a formula gets a leading `'`.
fn write_cell(values: &[RawBsonRef<'_>], tz: Tz, out: &mut String) {
    out.clear();
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            out.push_str(ARRAY_SEPARATOR);
        }
        render(*value, tz, out);
    }
    if !values.iter().all(|v| is_plain(*v)) && out.starts_with(FORMULA_STARTS) {
        out.insert(0, '\'');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::{doc, oid::ObjectId, DateTime, Document, RawDocumentBuf};

    const UTC: Tz = chrono_tz::UTC;
    const SHANGHAI: Tz = chrono_tz::Asia::Shanghai;

    /// The cells of `d`'s row for columns at `paths`, as the CSV holds them.
    fn row(d: &Document, paths: &[&str], tz: Tz) -> Vec<String> {
        let raw = RawDocumentBuf::from_document(d).unwrap();
        let mut csv_rows = csv::Writer::from_writer(Vec::new());
        RowLayout::new(paths.iter().copied(), tz)
            .write_rows([&*raw].into_iter(), &mut csv_rows)
            .unwrap();
        let bytes = csv_rows.into_inner().unwrap();
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(&bytes[..]);
        let record = reader.records().next().unwrap().unwrap();
        record.iter().map(str::to_owned).collect()
    }

    /// The cell of `d` for the column at `path`, dates in Shanghai time.
    fn at(d: &Document, path: &str) -> String {
        row(d, &[path], SHANGHAI).remove(0)
    }

    #[test]
    fn nested_paths_and_arrays_of_documents_resolve() {
        let d = doc! {
            "profile": { "name": "王小明", "address": { "city": "Shanghai" } },
            "items": [ { "sku": "A1" }, { "sku": "B2" }, { "other": 1 } ],
            "tags": ["vip", "new"],
        };
        for (path, cell) in [
            ("profile.name", "王小明"),
            ("profile.address.city", "Shanghai"),
            ("items.sku", "A1, B2"),
            ("items.1.sku", "B2"),
            ("tags", "vip, new"),
            ("profile.missing", ""),
            ("nothing.here", ""),
        ] {
            assert_eq!(at(&d, path), cell, "{path}");
        }
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
        assert_eq!(row(&d, &["at"], UTC), ["2026-01-02 03:04:05"]);
        for (path, cell) in [
            ("n", "42"),
            ("big", "9007199254740993"),
            ("x", "2.5"),
            ("whole", "3"),
            ("yes", "true"),
            ("none", ""),
        ] {
            assert_eq!(at(&d, path), cell, "{path}");
        }
    }

    #[test]
    fn formula_like_titles_are_neutralised_like_data_cells() {
        for title in [
            "=HYPERLINK(\"http://x\")",
            "+1",
            "-1",
            "@SUM(A1)",
            "\tx",
            "\rx",
        ] {
            assert_eq!(header_cell(title), format!("'{title}"), "{title:?}");
        }
        for title in ["Name", "城市", "1+1", " =x"] {
            assert_eq!(header_cell(title), title);
        }
    }

    #[test]
    fn formula_like_text_is_neutralised_but_numbers_are_not() {
        let d = doc! {
            "eq": "=HYPERLINK(\"http://x\")", "plus": "+1", "minus": "-2+3", "at": "@SUM(A1)",
            "tab": "\tx", "cr": "\rx", "safe": "a=b", "negative": -5, "list": ["=1", "b"],
            "items": [ { "sku": "A1" }, { "sku": "=B2" } ],
        };
        for (path, cell) in [
            ("eq", "'=HYPERLINK(\"http://x\")"),
            ("plus", "'+1"),
            ("minus", "'-2+3"),
            ("at", "'@SUM(A1)"),
            ("tab", "'\tx"),
            ("cr", "'\rx"),
            ("safe", "a=b"),
            ("negative", "-5"),
            ("list", "'=1, b"),
            ("items.1.sku", "'=B2"),
        ] {
            assert_eq!(at(&d, path), cell, "{path}");
        }
    }

    #[test]
    fn every_date_field_is_zero_padded_and_other_years_are_signed() {
        // 2026-03-03 21:06:07 UTC is 05:06:07 on the 4th in Shanghai.
        let millis = DateTime::parse_rfc3339_str("2026-03-03T21:06:07Z")
            .unwrap()
            .timestamp_millis();
        assert_eq!(format_date(millis, SHANGHAI), "2026-03-04 05:06:07");
        assert_eq!(format_date(0, UTC), "1970-01-01 00:00:00");
        assert_eq!(
            format_date(-70_000_000_000_000, UTC),
            "-0249-10-15 19:33:20"
        );
    }

    #[test]
    fn sub_documents_and_other_bson_render_as_extended_json() {
        let d = doc! { "sub": { "a": 1 }, "items": [ { "sku": "A1" }, 2 ] };
        assert_eq!(at(&d, "sub"), "{\"a\":1}");
        assert_eq!(at(&d, "items"), "{\"sku\":\"A1\"}, 2");
    }

    #[test]
    fn a_row_resolved_at_once_equals_each_column_resolved_alone() {
        let d = doc! {
            "profile": { "name": "王小明", "address": { "city": "Shanghai" } },
            "items": [ { "sku": "A1" }, { "sku": "=B2" }, { "other": 1 } ],
            "tags": ["vip", "new"], "n": 42, "eq": "=1+2", "sub": { "a": 1 },
        };
        // Repeated columns and columns sharing a first segment included.
        let paths = [
            "profile.name",
            "items.sku",
            "n",
            "profile.address.city",
            "missing",
            "items.1.sku",
            "n",
            "eq",
            "sub",
            "tags",
        ];
        let alone: Vec<String> = paths.iter().map(|path| at(&d, path)).collect();
        assert_eq!(row(&d, &paths, SHANGHAI), alone);
    }
}
