//! The documents' links hold: every relative link in README.md,
//! BENCHMARKS.md and `docs/*.md` names a file that exists and, when it has
//! a `#fragment`, a heading of that file. The README is an index of
//! `docs/`, and the documents cite each other by section, so a renamed
//! heading or a moved section must fail here rather than leave a dead link.
//! The same holds for the repository paths they cite in code spans
//! (`` `src/queues/shards.rs` ``): a moved file must fail here too.
//! No service is needed.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

/// README.md, BENCHMARKS.md and every Markdown file under `docs/`.
fn documents() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = vec![root.join("README.md"), root.join("BENCHMARKS.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ is readable")
        .map(|entry| entry.expect("a docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    paths.extend(docs);
    paths
}

/// The lines of `text` outside fenced code blocks.
fn prose(text: &str) -> impl Iterator<Item = &str> {
    let mut in_code = false;
    text.lines().filter(move |line| {
        if line.starts_with("```") {
            in_code = !in_code;
            return false;
        }
        !in_code
    })
}

/// The anchor GitHub gives a heading: lower case, punctuation other than
/// `-` and `_` dropped, spaces made hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of every heading of `text`.
fn anchors(text: &str) -> BTreeSet<String> {
    prose(text)
        .filter(|line| line.starts_with('#'))
        .filter_map(|line| line.trim_start_matches('#').strip_prefix(' '))
        .map(anchor)
        .collect()
}

/// Each `](target)` of `line`.
fn link_targets(line: &str) -> Vec<&str> {
    line.match_indices("](")
        .filter_map(|(start, _)| {
            let rest = &line[start + 2..];
            rest.find(')').map(|end| &rest[..end])
        })
        .collect()
}

#[test]
fn every_relative_link_reaches_a_file_and_a_heading() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for document in documents() {
        let text = std::fs::read_to_string(&document).expect("a readable document");
        let dir = document.parent().expect("a document's folder");
        for line in prose(&text) {
            for target in link_targets(line) {
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                checked += 1;
                let (path, fragment) = match target.split_once('#') {
                    Some((path, fragment)) => (path, Some(fragment)),
                    None => (target, None),
                };
                let file = if path.is_empty() {
                    document.clone()
                } else {
                    dir.join(path)
                };
                let name = document.display();
                if !file.exists() {
                    broken.push(format!("{name}: {target}: no such file"));
                    continue;
                }
                if let Some(fragment) = fragment {
                    let target_text = std::fs::read_to_string(&file).expect("a readable target");
                    if !anchors(&target_text).contains(fragment) {
                        broken.push(format!("{name}: {target}: no such heading"));
                    }
                }
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} links found: is the parser right?"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn anchors_are_made_as_github_makes_them() {
    assert_eq!(
        anchor("Channel authorization for the browser (`POST /v1/push/auth`)"),
        "channel-authorization-for-the-browser-post-v1pushauth"
    );
    assert_eq!(
        anchor("Operators: credentials, roles, sessions"),
        "operators-credentials-roles-sessions"
    );
}

/// Where the repository's own paths start.
const REPOSITORY_FOLDERS: [&str; 11] = [
    "src/",
    "queue/",
    "jobs/",
    "bench/",
    "sandbox/",
    "tests/",
    "scripts/",
    "docs/",
    "config/",
    "examples/",
    ".ci/",
];

/// The repository paths cited in code spans of `line`: a span that starts
/// with one of [`REPOSITORY_FOLDERS`] and holds no placeholder (`<id>`,
/// `*`, `{...}`, `$VAR`), without a `:LINE` suffix.
fn cited_paths(line: &str) -> Vec<String> {
    line.split('`')
        .skip(1)
        .step_by(2)
        .filter(|span| !span.contains(char::is_whitespace))
        .filter(|span| {
            REPOSITORY_FOLDERS
                .iter()
                .any(|folder| span.starts_with(folder))
        })
        .filter(|span| !span.contains(['<', '>', '*', '{', '}', '$']))
        .map(|span| match span.rsplit_once(':') {
            Some((path, line)) if line.chars().all(|c| c.is_ascii_digit() || c == '-') => {
                path.to_owned()
            }
            _ => span.to_owned(),
        })
        .collect()
}

#[test]
fn every_cited_repository_path_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut missing = Vec::new();
    for document in documents() {
        let text = std::fs::read_to_string(&document).expect("a readable document");
        for (number, line) in text.lines().enumerate() {
            for path in cited_paths(line) {
                if !root.join(&path).exists() {
                    missing.push(format!("{}:{}: {path}", document.display(), number + 1));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "documents cite paths that are not in the repository:\n{}",
        missing.join("\n")
    );
}

#[test]
fn cited_paths_are_read_from_code_spans_only() {
    assert_eq!(
        cited_paths("see `src/lib.rs:12`, `queue/src/lua/` and `Q:meta:<id>`, not src/x.rs"),
        ["src/lib.rs", "queue/src/lua/"]
    );
    assert!(cited_paths("`src/queue/<name>.rs` and `tests/*.rs`").is_empty());
}
