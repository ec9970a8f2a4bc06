//! The layer rule of `docs/ARCHITECTURE.md`, checked against the code.
//!
//! ARCHITECTURE's table of the crate's modules runs from the bottom up, and
//! "a module uses only the ones above it in this table, never one below".
//! This test reads the table and every source file of each module, collects
//! the top-level modules it names through `crate::` paths (grouped `use
//! crate::{...}` imports included; comments left out), and fails on each
//! use of a module that stands lower in the table, or of one the table
//! does not list.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

const ARCHITECTURE: &str = include_str!("../docs/ARCHITECTURE.md");

/// The modules of the layer table, each with its row number (modules that
/// share a row share it), bottom layer first.
fn layer_table() -> BTreeMap<String, usize> {
    let start = ARCHITECTURE
        .find("| module | one responsibility |")
        .expect("ARCHITECTURE.md has the table of modules");
    let mut ranks = BTreeMap::new();
    for (row, line) in ARCHITECTURE[start..]
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .enumerate()
    {
        let cell = line.split('|').nth(1).expect("a first cell");
        for module in cell.split(',') {
            // "`cli` (binary only)" names `cli`.
            let name = module.split('`').nth(1).expect("a module in backticks");
            ranks.insert(name.to_owned(), row);
        }
    }
    ranks
}

/// The workspace crates `src/lib.rs` re-exports as modules
/// (`pub use herald_queue as queue;`), by module name.
fn reexported_crates() -> BTreeMap<String, String> {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs"))
        .expect("src/lib.rs");
    lib.lines()
        .filter_map(|line| line.strip_prefix("pub use herald_"))
        .filter_map(|rest| rest.trim_end_matches(';').split_once(" as "))
        .map(|(folder, module)| (module.to_owned(), folder.to_owned()))
        .collect()
}

/// Every `.rs` file of top-level module `module` (`src/NAME.rs`, the
/// folder `src/NAME/`, or the `src/` of the workspace crate re-exported
/// under that name). A re-exported crate's own `crate::` paths name its
/// own modules, so only its uses of `herald::` would count, and it cannot
/// depend on `herald`: such a module yields no files here.
fn sources(root: &Path, module: &str) -> Vec<PathBuf> {
    if reexported_crates().contains_key(module) {
        return Vec::new();
    }
    let file = root.join(format!("{module}.rs"));
    if file.is_file() {
        return vec![file];
    }
    let mut found = Vec::new();
    let mut folders = vec![root.join(module)];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("a readable module folder") {
            let path = entry.expect("a folder entry").path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                found.push(path);
            }
        }
    }
    found
}

/// The top-level modules `source` names after `crate::`, comments left out.
fn crate_paths(source: &str) -> BTreeSet<String> {
    let code: String = source
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .map(|line| format!("{line}\n"))
        .collect();
    let mut named = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // A grouped import: the first name of each item at depth one.
            let mut depth = 1;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 1 => break,
                    '}' => depth -= 1,
                    ',' if depth == 1 => {
                        named.extend(first_name(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 1 {
                    item.push(c);
                }
            }
            named.extend(first_name(&item));
        } else {
            named.extend(first_name(rest));
        }
    }
    named
}

/// The identifier a path starts with, if any.
fn first_name(path: &str) -> Option<String> {
    let name: String = path
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty() && name != "self").then_some(name)
}

#[test]
fn every_module_uses_only_the_modules_above_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let ranks = layer_table();
    let mut wrong = Vec::new();
    for (module, &rank) in &ranks {
        for file in sources(&root, module) {
            let text = std::fs::read_to_string(&file).expect("a readable source");
            for used in crate_paths(&text) {
                match ranks.get(&used) {
                    Some(&other) if other <= rank => {}
                    Some(_) => wrong.push(format!(
                        "{} uses `{used}`, which the table puts below `{module}`",
                        file.display()
                    )),
                    None => wrong.push(format!(
                        "{} uses `{used}`, which the table does not list",
                        file.display()
                    )),
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the layer rule of docs/ARCHITECTURE.md is broken:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_table_lists_every_module_of_the_crate() {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs"))
        .expect("src/lib.rs");
    let declared: BTreeSet<String> = lib
        .lines()
        .filter_map(|line| line.strip_prefix("pub mod "))
        .map(|name| name.trim_end_matches(';').to_owned())
        .chain(reexported_crates().into_keys())
        .collect();
    let listed: BTreeSet<String> = layer_table()
        .into_keys()
        .filter(|module| module != "cli")
        .collect();
    assert_eq!(declared, listed, "src/lib.rs's modules and the layer table");
}

#[test]
fn grouped_and_plain_paths_are_both_read() {
    let source = "use crate::{config::Settings, queue::{a, b}, push};\n\
                  // crate::web in a comment\n\
                  let x = crate::store::open();\n";
    let named: Vec<String> = crate_paths(source).into_iter().collect();
    assert_eq!(named, ["config", "push", "queue", "store"]);
}

#[test]
fn the_queue_engine_is_a_crate_that_depends_on_no_domain() {
    // The queue layer is the crate `herald-queue`: the compiler keeps it
    // from naming anything of `herald`, so what remains to hold is that
    // its manifest names no Herald crate but the job contract.
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("queue/Cargo.toml"))
            .expect("queue/Cargo.toml");
    let herald_crates: Vec<&str> = manifest
        .lines()
        .filter(|line| line.starts_with("herald"))
        .collect();
    assert_eq!(
        herald_crates,
        ["herald-jobs = { path = \"../jobs\" }"],
        "herald-queue's dependencies on Herald's crates"
    );
    assert_eq!(
        reexported_crates().get("queue").map(String::as_str),
        Some("queue"),
        "src/lib.rs re-exports herald_queue as queue"
    );
}
