//! `/openapi.json` against the server it describes.
//!
//! Schemathesis (PyPI, installed by `scripts/setup.sh --tests`) generates requests
//! from the document and sends them to a real `herald web`, with every
//! check it has (`--checks all`), its default number of examples and all
//! its phases, from a fixed seed: any answer that is a server error, a
//! status, header or body the document does not describe, a refusal of a
//! request the document calls valid or an acceptance of one it calls
//! invalid fails the test. It runs twice at once, with the two kinds of
//! token the routes tell apart: the operator's (`web.token`, every account)
//! and an API token bound to one account, made as the other tests make one.
//!
//! Every check is on, and none is left out. Two of them judge only what
//! the stateful phase chains along links: `use_after_free` (a read after a
//! DELETE) and `ensure_resource_availability` (a read after a creation).
//! The document declares no links; the two schemathesis infers lead from
//! the message lists to marking one message read, so those two checks find
//! nothing to judge here. Links from `POST /v1/exports` to the export's
//! routes would make them judge the exports, and `use_after_free` would
//! then fail `DELETE /v1/exports/{key}`: it cancels, and the record stays
//! readable as `cancelled` (a design question for that route, not a rule
//! the document misstates).
//!
//! The rules JSON Schema cannot state (an opaque cursor, `to.id` equal to
//! `accountId`, `accountId` required or not by the token, byte limits) are
//! in the document's descriptions and in `openapi_fuzz/hooks.py`, which
//! keeps the fuzzer to them; [`the_rules_the_schema_cannot_state_hold_over_http`]
//! checks the rules the fuzzer found, one by one.
//!
//! Schemathesis is looked up in `$HERALD_SCHEMATHESIS`, then in the
//! setup's state directory (`$HERALD_STATE_DIR`, default `.herald/`) under
//! `venv/bin/`.

use std::{path::PathBuf, time::Instant};

use herald::web::v1::fields::NULL_REFUSED;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{
    helpers::{account, call_json, env_with, stop_logged, wait_for, WEB_TOKEN},
    ops::free_port,
};

/// The seed of every run: the same requests each time.
const SEED: &str = "20261130";

fn schemathesis() -> PathBuf {
    if let Some(path) = std::env::var_os("HERALD_SCHEMATHESIS") {
        return PathBuf::from(path);
    }
    let state = std::env::var_os("HERALD_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.herald")));
    state.join("venv/bin/schemathesis")
}

/// How one schemathesis run ended: whether it passed, what it printed and
/// how long it took.
struct Run {
    passed: bool,
    output: String,
    seconds: f64,
}

/// Runs schemathesis against `base`'s document with `token`; `account` is
/// the account the token is bound to (`None`: it reaches every account),
/// which the hooks aim the requests at.
async fn fuzz(base: &str, token: &str, account: Option<String>, namespace: &str) -> Run {
    let kind = if account.is_some() {
        "bound"
    } else {
        "operator"
    };
    let report = std::env::temp_dir().join(format!("{namespace}-schemathesis-{kind}"));
    std::fs::create_dir_all(&report).expect("a report directory");
    let mut command = tokio::process::Command::new(schemathesis());
    command
        // Its run cache and reports go to the temporary directory.
        .current_dir(&report)
        .args(["run", &format!("{base}/openapi.json")])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--checks", "all", "--seed", SEED])
        // One worker: the requests go out in one order, so the server's
        // state (an export key already in use, say) is the same each time.
        .args(["--workers", "1", "--no-color"])
        // Health checks judge the generator's speed on this machine, not
        // the API; a slow CI machine must not fail the test.
        .args(["--suppress-health-check", "all"])
        // Nothing carried over from an earlier run: the seed decides all.
        .args(["--generation-database", "none"])
        .env(
            "PYTHONPATH",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/integration/openapi_fuzz"
            ),
        )
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("HERALD_FUZZ_ACCOUNT");
    if let Some(account) = &account {
        command.env("HERALD_FUZZ_ACCOUNT", account);
    }
    let started = Instant::now();
    let output = command.output().await.expect("schemathesis runs");
    let _ = std::fs::remove_dir_all(&report);
    Run {
        passed: output.status.success(),
        output: format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
        seconds: started.elapsed().as_secs_f64(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_valid_by_the_document_are_served_as_it_says() {
    let runner = schemathesis();
    assert!(
        runner.exists(),
        "{} is missing: run `bash scripts/setup.sh --tests`, which installs schemathesis",
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
    let own = account();
    let bound = env.account_token("fuzz", own).await;
    let log = std::env::temp_dir().join(format!("{}-web.log", env.namespace));
    let mut web = env.spawn_herald_logged(&["web"], &[], &log);
    let base = format!("http://{bind}");
    wait_for("herald web to be ready", || async {
        let response = env.http.get(format!("{base}/readyz")).send().await.ok()?;
        (response.status() == 200).then_some(())
    })
    .await;

    // Both at once: each mostly waits on its own generator.
    let started = Instant::now();
    let (operator, account_bound) = tokio::join!(
        fuzz(&base, WEB_TOKEN, None, &env.namespace),
        fuzz(&base, &bound, Some(own.to_hex()), &env.namespace),
    );
    let (_, server_log) = stop_logged(&mut web, &log);
    println!(
        "schemathesis: operator token {:.0} s, bound token {:.0} s, {:.0} s in all",
        operator.seconds,
        account_bound.seconds,
        started.elapsed().as_secs_f64()
    );
    for (kind, run) in [("operator", &operator), ("account-bound", &account_bound)] {
        assert!(
            run.passed,
            "schemathesis found failures with the {kind} token:\n{}\nherald web logged:\n{server_log}",
            run.output
        );
    }
}

/// Asserts that `body` is the API's error body and tells nothing of the
/// server: `error`, and `fields` when given, with no decoder's positions,
/// type or module names, file paths or addresses.
fn assert_plain_problem(body: &Value, what: &str) {
    let keys: Vec<&str> = body
        .as_object()
        .unwrap_or_else(|| panic!("{what}: not a JSON object: {body}"))
        .keys()
        .map(String::as_str)
        .collect();
    assert!(
        keys == ["error"] || keys == ["error", "fields"],
        "{what}: {body}"
    );
    let text = body.to_string();
    for internal in [
        "line ",
        "column",
        "serde",
        "herald::",
        "::",
        "src/",
        ".rs",
        "panick",
        "127.0.0.1",
        "mongodb",
        "redis",
    ] {
        assert!(!text.contains(internal), "{what}: {internal:?} in {body}");
    }
}

/// The one field an error body names, and why.
fn only_field(body: &Value) -> (String, String) {
    let fields = body["fields"].as_object().expect("fields");
    assert_eq!(fields.len(), 1, "{body}");
    let (name, reason) = fields.iter().next().expect("one field");
    (name.clone(), reason.as_str().expect("a reason").to_owned())
}

/// The rules the fuzzer found the document and the server disagreeing on
/// (issue 34, point 5), each over HTTP with both kinds of token:
///
/// - an empty `cursor` is the first page, on the two lists that take one;
///   the unread count and read-all take no cursor, and the document lists
///   none for them, so one sent is refused as an unknown parameter;
/// - an optional body property sent as `null` is refused, naming it
///   (`to`, `key`, ...), rather than read as left out;
/// - `to.id` must equal `accountId` when `to.target` is `account`;
///
/// and every refusal is the API's error body, without internals.
#[tokio::test]
async fn the_rules_the_schema_cannot_state_hold_over_http() {
    let env = env_with(&[]).await;
    let url = env.start_web().await;
    let own = account();
    let bound = env.account_token("rules", own).await;
    let call = |method: Method, path: String, token: String, body: Option<Value>| {
        let http = env.http.clone();
        let url = format!("{url}{path}");
        async move { call_json(&http, method, &url, Some(&token), body).await }
    };
    let user = account().to_hex();
    let inbox = format!("/v1/accounts/{own}/users/{user}/messages");
    let document: Value = env
        .http
        .get(format!("{url}/openapi.json"))
        .send()
        .await
        .expect("the document")
        .json()
        .await
        .expect("JSON");

    for token in [bound.clone(), WEB_TOKEN.to_owned()] {
        // An empty cursor: the first page, as the document's pattern allows.
        for list in [format!("/v1/accounts/{own}/messages"), inbox.clone()] {
            let (status, page) =
                call(Method::GET, format!("{list}?cursor="), token.clone(), None).await;
            assert_eq!(status, StatusCode::OK, "{list}?cursor=: {page}");
            assert!(page["messages"].is_array(), "{page}");
            let (status, body) = call(
                Method::GET,
                format!("{list}?cursor=bm90LWEtY3Vyc29y"),
                token.clone(),
                None,
            )
            .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(only_field(&body).0, "cursor");
            assert_plain_problem(&body, "a cursor no page returned");
        }
        // The unread count and read-all: no cursor in the document, none
        // taken.
        for (method, route, path, parameters) in [
            (
                Method::GET,
                "get",
                format!("{inbox}/unread-count"),
                &["accountId", "userId", "status", "category"][..],
            ),
            (
                Method::POST,
                "post",
                format!("{inbox}/read-all"),
                &["accountId", "userId", "status"][..],
            ),
        ] {
            let documented = format!(
                "/v1/accounts/{{accountId}}/users/{{userId}}/messages/{}",
                path.rsplit('/').next().expect("a route")
            );
            let names: Vec<&str> = document["paths"][&documented][route]["parameters"]
                .as_array()
                .expect("parameters")
                .iter()
                .filter_map(|p| p["name"].as_str())
                .collect();
            assert_eq!(names, parameters, "{documented}");
            let (status, answer) = call(method.clone(), path.clone(), token.clone(), None).await;
            assert_eq!(status, StatusCode::OK, "{path}: {answer}");
            let (status, body) = call(
                method,
                format!("{path}?cursor=&limit=5"),
                token.clone(),
                None,
            )
            .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
            assert_eq!(only_field(&body).0, "query", "{body}");
            assert_plain_problem(&body, "a parameter the route does not take");
        }

        // `null` for an optional property: refused, naming it.
        let message = json!({"accountId": own.to_hex(), "title": "t", "content": "c"});
        let export = json!({
            "accountId": own.to_hex(),
            "collection": "message",
            "fields": [{"path": "title", "title": "Title"}],
        });
        let optional = [
            (
                "/v1/messages",
                &message,
                &[
                    "to",
                    "sender",
                    "status",
                    "idempotencyKey",
                    "messageId",
                    "accountId",
                ][..],
            ),
            (
                "/v1/exports",
                &export,
                &["key", "filter", "timeZone", "accountId"][..],
            ),
        ];
        for (path, request, names) in optional {
            for &name in names {
                let mut body = request.clone();
                body[name] = Value::Null;
                let (status, answer) =
                    call(Method::POST, path.into(), token.clone(), Some(body)).await;
                assert_eq!(
                    status,
                    StatusCode::BAD_REQUEST,
                    "{path} {name}: null: {answer}"
                );
                assert_eq!(
                    only_field(&answer),
                    (name.to_owned(), NULL_REFUSED.to_owned())
                );
                assert_plain_problem(&answer, &format!("{name}: null"));
            }
        }
        let mut body = export.clone();
        body["sort"] = json!([{"path": "title", "order": null}]);
        let (status, answer) = call(
            Method::POST,
            "/v1/exports".into(),
            token.clone(),
            Some(body),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(only_field(&answer).0, "sort[0].order");
        assert_plain_problem(&answer, "sort[0].order: null");

        // `to.id` and `accountId`: one account, or a 400 naming `to.id`.
        let other = account().to_hex();
        let mut body = message.clone();
        body["to"] = json!({"id": other, "target": "account"});
        let (status, answer) = call(
            Method::POST,
            "/v1/messages".into(),
            token.clone(),
            Some(body),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        let (field, reason) = only_field(&answer);
        assert_eq!(field, "to.id");
        assert!(reason.contains("must equal accountId"), "{reason}");
        assert_plain_problem(&answer, "to.id not accountId");
        let mut body = message.clone();
        body["to"] = json!({"id": own.to_hex(), "target": "account"});
        let (status, answer) = call(
            Method::POST,
            "/v1/messages".into(),
            token.clone(),
            Some(body),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    }

    // The document states each of these rules.
    let schemas = &document["components"]["schemas"];
    let request = &schemas["MessageRequest"];
    assert!(
        request["description"].as_str().is_some_and(|d| d
            .contains("`to.id` must equal `accountId`")
            && d.contains("`null` is refused")),
        "{request}"
    );
    // No property is nullable (`data` may hold nulls: they are its values).
    let mut properties = request.clone();
    for alternative in properties["anyOf"].as_array_mut().into_iter().flatten() {
        if let Some(all) = alternative["properties"].as_object_mut() {
            all.remove("data");
        }
    }
    assert!(
        !properties.to_string().contains("\"null\""),
        "nullable: {request}"
    );
    let cursor = document["paths"]["/v1/accounts/{accountId}/users/{userId}/messages"]["get"]
        ["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .find(|p| p["name"] == "cursor")
        .expect("a cursor")
        .clone();
    assert!(cursor["schema"]["minLength"].is_null(), "{cursor}");
    assert!(
        cursor["schema"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("Empty or left out: the first page")),
        "{cursor}"
    );
}
