//! `/openapi.json` against the server it describes: schemathesis (PyPI,
//! installed by scripts/setup.sh) generates requests from the document and
//! sends them to a real `herald web` with the operator token. The test
//! fails on any answer that is a server error, a status or a body the
//! document does not describe, or a refusal of a request the document
//! calls valid.
//!
//! Schemathesis is looked up in `$HERALD_SCHEMATHESIS`, then in the
//! setup's state directory (`$HERALD_STATE_DIR`, default `.herald/`) under
//! `venv/bin/`. The rules JSON Schema cannot state are in
//! `openapi_fuzz/hooks.py`.

use std::path::PathBuf;

use crate::{
    helpers::{env_with, stop_logged, wait_for, WEB_TOKEN},
    ops::free_port,
};

/// Examples per operation and seed: a bounded, repeatable run (under a
/// minute on two cores). The stateful phase is left out: it has no links
/// to follow and would take minutes.
const EXAMPLES: &str = "40";
const SEED: &str = "20261130";

/// The checks that must hold for every generated request.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance,positive_data_acceptance,ignored_auth";

fn schemathesis() -> PathBuf {
    if let Some(path) = std::env::var_os("HERALD_SCHEMATHESIS") {
        return PathBuf::from(path);
    }
    let state = std::env::var_os("HERALD_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.herald")));
    state.join("venv/bin/schemathesis")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_valid_by_the_document_are_served_as_it_says() {
    let runner = schemathesis();
    assert!(
        runner.exists(),
        "{} is missing: run `bash scripts/setup.sh`, which installs schemathesis",
        runner.display()
    );
    let bind = format!("127.0.0.1:{}", free_port());
    // The Pusher provider, so that `/v1/push/auth` signs what the document
    // calls valid (with Tuisongbao it answers 501). Schemathesis sends
    // hundreds of requests without a valid token from one address; with
    // the default throttle most would be answered 429 before reaching the
    // route under test, so the throttle is raised here (it has its own
    // tests in `operator_access.rs`).
    let env = env_with(&[
        ("HERALD_WEB_BIND", &bind),
        ("HERALD_WEB_TOKEN", WEB_TOKEN),
        ("HERALD_PUSH_PROVIDER", "pusher"),
        ("HERALD_WEB_FAILED_LOGINS_PER_MINUTE", "100000"),
    ])
    .await;
    let log = std::env::temp_dir().join(format!("{}-web.log", env.namespace));
    let mut web = env.spawn_herald_logged(&["web"], &[], &log);
    let base = format!("http://{bind}");
    wait_for("herald web to be ready", || async {
        let response = env.http.get(format!("{base}/readyz")).send().await.ok()?;
        (response.status() == 200).then_some(())
    })
    .await;

    let report = std::env::temp_dir().join(format!("{}-schemathesis", env.namespace));
    std::fs::create_dir_all(&report).expect("a report directory");
    let output = tokio::process::Command::new(&runner)
        // Its run cache and reports go to the temporary directory.
        .current_dir(&report)
        .args(["run", &format!("{base}/openapi.json")])
        .args(["--header", &format!("Authorization: Bearer {WEB_TOKEN}")])
        .args(["--checks", CHECKS])
        .args(["--max-examples", EXAMPLES, "--seed", SEED])
        .args([
            "--workers",
            "1",
            "--no-color",
            "--suppress-health-check",
            "all",
        ])
        .args(["--generation-database", "none"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .env(
            "PYTHONPATH",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/integration/openapi_fuzz"
            ),
        )
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .await
        .expect("schemathesis runs");
    let (_, server_log) = stop_logged(&mut web, &log);
    let _ = std::fs::remove_dir_all(&report);
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{text}\nherald web logged:\n{server_log}"
    );
}
