//! Operator access, tried as an attacker and as an auditor would: no
//! built-in credentials, viewer and operator roles, the audit trail of
//! every action, real sessions, throttled guessing, and a server that holds
//! up against slow clients and says nothing of its internals.
//!
//! `herald web` runs as a real process where a test needs its start-up,
//! its log or its own listener; in this process otherwise.

use std::{
    io::{Read, Write},
    net::{IpAddr, TcpStream},
    time::{Duration, Instant},
};

use herald_jobs::QueueName;
use reqwest::{header, redirect::Policy, Method, StatusCode};
use serde_json::{json, Value};

use crate::{
    helpers::{
        call_json, env_with, exited, stop_logged, wait_for, HeraldProcess, TestEnv, WEB_TOKEN,
    },
    ops::free_port,
};

/// A client that does not follow redirects (sign-in answers one), bound
/// to `local` when given (another loopback address is another client).
fn client(local: Option<IpAddr>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder().redirect(Policy::none());
    if let Some(local) = local {
        builder = builder.local_address(local);
    }
    builder.build().expect("a client")
}

/// `herald web` as a process on a free port, with `extra` settings; its
/// base URL and log. Waits until it answers `/healthz`.
async fn web_process(
    env: &TestEnv,
    extra: &[(&str, &str)],
) -> (HeraldProcess, String, std::path::PathBuf) {
    let bind = format!("127.0.0.1:{}", free_port());
    let log = std::env::temp_dir().join(format!("{}-web-{}.log", env.namespace, free_port()));
    let mut vars = vec![("HERALD_WEB_BIND", bind.as_str())];
    vars.extend_from_slice(extra);
    let mut process = env.spawn_herald_logged(&["web"], &vars, &log);
    let base = format!("http://{bind}");
    wait_for("herald web to answer /healthz", || {
        let exited = process.try_wait().expect("try_wait");
        let http = env.http.clone();
        let url = format!("{base}/healthz");
        let log = log.clone();
        async move {
            if let Some(status) = exited {
                panic!(
                    "herald web exited ({status}):\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            http.get(url)
                .send()
                .await
                .ok()
                .filter(|r| r.status() == 200)
                .map(|_| ())
        }
    })
    .await;
    (process, base, log)
}

/// Runs `herald web` expecting it to refuse to start; its standard error.
async fn refused_start(env: &TestEnv, extra: &[(&str, &str)]) -> String {
    let bind = format!("127.0.0.1:{}", free_port());
    let log = std::env::temp_dir().join(format!("{}-refused-{}.log", env.namespace, free_port()));
    let mut vars = vec![("HERALD_WEB_BIND", bind.as_str())];
    vars.extend_from_slice(extra);
    let mut process = env.spawn_herald_logged(&["web"], &vars, &log);
    let status = exited(&mut process).await;
    assert!(!status.success(), "herald web started");
    std::fs::read_to_string(&log).unwrap_or_default()
}

async fn get_json(http: &reqwest::Client, url: &str, token: &str) -> (StatusCode, Value) {
    call_json(http, Method::GET, url, Some(token), None).await
}

async fn post_json(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: Value,
) -> (StatusCode, Value) {
    call_json(http, Method::POST, url, Some(token), Some(body)).await
}

/// [`post_json`] to `path` of the server at `base`.
async fn post_api(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    token: &str,
    body: Value,
) -> (StatusCode, Value) {
    post_json(http, &format!("{base}{path}"), token, body).await
}

/// The trail's records matching `query`, newest first.
async fn audit(http: &reqwest::Client, base: &str, query: &str) -> Vec<Value> {
    let (status, page) = get_json(http, &format!("{base}/api/v1/audit?{query}"), WEB_TOKEN).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["records"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_web_refuses_to_start_without_operator_credentials_unless_in_development() {
    let env = env_with(&[]).await;
    let stderr = refused_start(&env, &[("HERALD_WEB_TOKEN", "")]).await;
    assert!(stderr.contains("no operator credentials"), "{stderr}");
    assert!(stderr.contains("HERALD_WEB_TOKEN"), "{stderr}");
    let stderr = refused_start(&env, &[("HERALD_WEB_TOKEN", "1234567890")]).await;
    assert!(
        stderr.contains("HERALD_WEB_TOKEN") && stderr.contains("at least 32"),
        "{stderr}"
    );

    // Development mode, asked for: a token for this run, and a warning.
    let (mut web, base, log) = web_process(
        &env,
        &[("HERALD_WEB_TOKEN", ""), ("HERALD_WEB_DEV", "true")],
    )
    .await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("DEVELOPMENT MODE"), "{text}");
    let token = text
        .split("token=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the development token is printed")
        .trim_matches('"')
        .to_owned();
    let (status, me) = get_json(&env.http, &format!("{base}/api/v1/me"), &token).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["role"], "operator");
    stop_logged(&mut web, &log);

    // An operator token in the database is credentials enough.
    let (_, secret) = env.operator_token("ann", "operator");
    let (mut web, base, log) = web_process(&env, &[("HERALD_WEB_TOKEN", "")]).await;
    let (status, me) = get_json(&env.http, &format!("{base}/api/v1/me"), &secret).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        me,
        json!({"name": "ann", "role": "operator", "via": "token"})
    );
    let (status, _) = get_json(&env.http, &format!("{base}/api/v1/me"), WEB_TOKEN).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no configured token now");
    let (_, text) = stop_logged(&mut web, &log);
    assert!(!text.contains("DEVELOPMENT MODE"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_see_operators_act_and_every_action_is_on_the_trail() {
    let mut env = env_with(&[]).await;
    env.start_worker().await;
    let base = env.start_web().await;
    let http = env.http.clone();
    let (_, viewer) = env.operator_token("victor", "viewer");
    let (ann_id, ann) = env.operator_token("ann", "operator");

    // Two poison push jobs go dead at once: something to act on.
    let first = env.push_bytes(QueueName::Push, b"not json").await;
    env.push_bytes(QueueName::Push, b"not json either").await;
    wait_for("two dead push jobs", || async {
        (env.queue_set(QueueName::Push, "dead").await.len() == 2).then_some(())
    })
    .await;

    // A viewer reads everything and changes nothing.
    for path in [
        "/api/v1/queues",
        "/api/v1/queues/push/failed",
        "/api/v1/audit",
        "/api/v1/exports",
        "/api/v1/messages/stats",
    ] {
        let (status, answer) = get_json(&http, &format!("{base}{path}"), &viewer).await;
        assert_eq!(status, StatusCode::OK, "{path}: {answer}");
    }
    let (_, me) = get_json(&http, &format!("{base}/api/v1/me"), &viewer).await;
    assert_eq!(me["role"], "viewer");
    for (path, body) in [
        ("/api/v1/queues/push/pause", json!({})),
        (
            &format!("/api/v1/queues/push/failed/{first}/retry") as &str,
            json!({}),
        ),
        ("/api/v1/queues/push/failed/discard", json!({"all": true})),
    ] {
        let (status, answer) = post_json(&http, &format!("{base}{path}"), &viewer, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains("viewer"));
    }
    assert_eq!(env.queue_set(QueueName::Push, "dead").await.len(), 2);

    // An operator acts; each action is recorded with who, what and how many.
    let (status, _) = post_api(&http, &base, "/api/v1/queues/push/pause", &ann, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = post_api(&http, &base, "/api/v1/queues/push/resume", &ann, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = post_api(
        &http,
        &base,
        "/api/v1/queues/push/failed/retry",
        &ann,
        json!({"ids": [first]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    wait_for("the retried job dead again", || async {
        (env.queue_set(QueueName::Push, "dead").await.len() == 2).then_some(())
    })
    .await;
    let (status, answer) = post_api(
        &http,
        &base,
        "/api/v1/queues/push/failed/discard",
        WEB_TOKEN,
        json!({"filter": {"labels": {}, "error": null}, "all": false}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "an empty filter selects nothing: {answer}"
    );
    let (status, answer) = post_api(
        &http,
        &base,
        "/api/v1/queues/push/failed/discard",
        WEB_TOKEN,
        json!({"all": true}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    // The command line's actions are on the trail too.
    let output = env.run_herald(&["queue", "pause", "send_message"], &[("USER", "root-op")]);
    assert!(output.status.success(), "{output:?}");
    let output = env.run_herald(&["queue", "resume", "send_message"], &[("USER", "root-op")]);
    assert!(output.status.success(), "{output:?}");

    let records = audit(&http, &base, "limit=100").await;
    let find = |actor: &str, action: &str| {
        records
            .iter()
            .find(|r| r["actor"]["name"] == actor && r["action"] == action)
            .cloned()
            .unwrap_or_else(|| panic!("no {action} by {actor} in {records:#?}"))
    };
    for action in ["pause", "resume"] {
        let record = find("ann", action);
        assert_eq!(record["actor"]["role"], "operator");
        assert_eq!(record["actor"]["via"], "token");
        assert_eq!(record["actor"]["from"], "127.0.0.1");
        assert_eq!(record["target"]["queue"], "push");
        assert_eq!(record["outcome"], "ok");
    }
    let retry = find("ann", "retry");
    assert_eq!(retry["target"]["ids"], json!([first]));
    assert_eq!(retry["count"], 1);
    let bulk = find("web.token", "discard_bulk");
    assert_eq!(bulk["count"], 2, "{bulk}");
    assert!(bulk["target"]["filter"].is_object(), "{bulk}");
    let cli = find("cli:root-op", "pause");
    assert_eq!(cli["actor"]["via"], "cli");
    assert_eq!(cli["target"]["queue"], "send_message");
    assert!(records
        .iter()
        .any(|r| r["action"] == "token_create" && r["target"]["name"] == "victor"));
    // Nothing the viewer tried was done, and nothing of it is an action.
    assert!(records.iter().all(|r| r["actor"]["name"] != "victor"));

    // Pages and filters, over the API and the CLI.
    let (_, page) = get_json(&http, &format!("{base}/api/v1/audit?limit=2"), WEB_TOKEN).await;
    let next = page["next"].as_str().expect("older records").to_owned();
    let older = audit(&http, &base, &format!("limit=2&before={next}")).await;
    assert_eq!(older.len(), 2);
    assert!(older
        .iter()
        .all(|r| r["id"].as_str().unwrap() < next.as_str()));
    let anns = audit(&http, &base, "actor=ann").await;
    assert_eq!(anns.len(), 3, "{anns:#?}");
    let output = env.run_herald(&["audit", "--json", "--action", "pause"], &[]);
    let lines: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines.iter().all(|r| r["action"] == "pause"));

    // Revoked, ann's token stops working at once; the revocation is recorded.
    let output = env.run_herald(&["token", "revoke", &ann_id], &[("USER", "root-op")]);
    assert!(output.status.success(), "{output:?}");
    let (status, _) = get_json(&http, &format!("{base}/api/v1/me"), &ann).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let revoked = audit(&http, &base, "action=token_revoke").await;
    assert_eq!(revoked[0]["target"]["id"], ann_id);
    assert_eq!(revoked[0]["count"], 1);
}

/// Signs in with `token`; the answer's status and its `Set-Cookie`.
async fn sign_in(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    https: bool,
) -> (StatusCode, String) {
    let mut request = http.post(format!("{base}/login")).form(&[("token", token)]);
    if https {
        request = request.header("x-forwarded-proto", "https");
    }
    let response = request.send().await.expect("answers");
    let cookie = response
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (response.status(), cookie)
}

/// `herald_session=...` of a `Set-Cookie` value.
fn session_of(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap_or_default().to_owned()
}

async fn whoami(http: &reqwest::Client, base: &str, session: &str) -> StatusCode {
    http.get(format!("{base}/api/v1/me"))
        .header(header::COOKIE, session)
        .send()
        .await
        .expect("answers")
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_new_at_each_sign_in_expire_and_end_at_sign_out_and_revocation() {
    let env = env_with(&[]).await;
    let mut settings = env.settings.clone();
    settings.web.session_ttl = Duration::from_secs(2);
    let base = env.start_web_with(&settings).await;
    let http = client(None);
    let (bob_id, bob) = env.operator_token("bob", "viewer");

    let (status, first) = sign_in(&http, &base, &bob, false).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{first}");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=2"] {
        assert!(first.contains(flag), "{flag}: {first}");
    }
    assert!(!first.contains("Secure"), "plain HTTP: {first}");
    assert!(!first.contains(&bob), "the cookie is not the token");
    let (_, second) = sign_in(&http, &base, &bob, true).await;
    assert!(second.contains("; Secure"), "behind a TLS proxy: {second}");
    assert_ne!(
        session_of(&first),
        session_of(&second),
        "a new id at each sign-in"
    );
    assert_eq!(
        whoami(&http, &base, &session_of(&first)).await,
        StatusCode::OK
    );

    // Signing out ends the session on the server, not only in the browser.
    let response = http
        .post(format!("{base}/logout"))
        .header(header::COOKIE, session_of(&first))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        whoami(&http, &base, &session_of(&first)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        whoami(&http, &base, &session_of(&second)).await,
        StatusCode::OK
    );

    // Sessions expire.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(
        whoami(&http, &base, &session_of(&second)).await,
        StatusCode::UNAUTHORIZED
    );

    // Revoking the token ends its sessions.
    let mut lasting = settings.clone();
    lasting.web.session_ttl = Duration::from_secs(600);
    let base = env.start_web_with(&lasting).await;
    let (_, cookie) = sign_in(&http, &base, &bob, false).await;
    assert_eq!(
        whoami(&http, &base, &session_of(&cookie)).await,
        StatusCode::OK
    );
    let output = env.run_herald(&["token", "revoke", &bob_id], &[]);
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("1 session(s) ended"),
        "{output:?}"
    );
    assert_eq!(
        whoami(&http, &base, &session_of(&cookie)).await,
        StatusCode::UNAUTHORIZED
    );

    // A session of the configured token ends when the token changes.
    let (_, configured) = sign_in(&http, &base, WEB_TOKEN, false).await;
    assert_eq!(
        whoami(&http, &base, &session_of(&configured)).await,
        StatusCode::OK
    );
    let state = herald::web::WebState::new(
        herald::queue::connect(env.settings.redis.url.as_str())
            .await
            .unwrap(),
        &env.database,
        &lasting,
        Some(secrecy::SecretString::from(
            "another-operator-token-of-32-chars!".to_owned(),
        )),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(herald::web::serve(listener, state, std::future::pending()));
    assert_eq!(
        whoami(&http, &other, &session_of(&configured)).await,
        StatusCode::UNAUTHORIZED
    );

    // Each sign-in and sign-out is on the trail.
    let records = audit(&env.http, &base, "actor=bob").await;
    let actions: Vec<&str> = records
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions.iter().filter(|a| **a == "sign_in").count(),
        3,
        "{actions:?}"
    );
    assert_eq!(
        actions.iter().filter(|a| **a == "sign_out").count(),
        1,
        "{actions:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_is_throttled_per_address_before_any_check() {
    let env = env_with(&[("HERALD_WEB_FAILED_LOGINS_PER_MINUTE", "5")]).await;
    let base = env.start_web().await;
    let tokens = herald::store::ApiTokenStore::new(&env.database);
    let (_, api_token) = tokens
        .create("producer", herald::store::TokenScope::AnyAccount)
        .await
        .unwrap();
    let guesser = client(Some("127.0.0.1".parse().unwrap()));
    for i in 0..5 {
        let (status, _) = sign_in(&guesser, &base, &format!("guess-{i}"), false).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let response = guesser
        .post(format!("{base}/login"))
        .form(&[("token", "guess-6")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = response.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    // While throttled, even the right credentials are not checked: a guess
    // made now tells nothing.
    let (status, _) = sign_in(&guesser, &base, WEB_TOKEN, false).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    for path in [
        "/api/v1/queues",
        "/v1/accounts/5f0c8a3e2b1d4c0012345678/messages",
    ] {
        let status = guesser
            .get(format!("{base}{path}"))
            .bearer_auth(&api_token)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{path}");
    }
    // Another address is not held back.
    let neighbour = client(Some("127.0.0.2".parse().unwrap()));
    let (status, _) = sign_in(&neighbour, &base, WEB_TOKEN, false).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let status = neighbour
        .get(format!(
            "{base}/v1/accounts/5f0c8a3e2b1d4c0012345678/messages"
        ))
        .bearer_auth(&api_token)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_database_down_answers_name_the_request_and_hide_the_cause() {
    let dead = format!("mongodb://127.0.0.1:{}", free_port());
    let env = env_with(&[]).await;
    let (mut web, base, log) = web_process(
        &env,
        &[
            ("HERALD_MONGODB_URL", &dead),
            ("HERALD_WEB_FAILED_LOGINS_PER_MINUTE", "100"),
        ],
    )
    .await;
    let port = dead.rsplit(':').next().unwrap().to_owned();
    // A token of the wrong form is refused without asking the database...
    let started = Instant::now();
    let response = env
        .http
        .get(format!(
            "{base}/v1/accounts/5f0c8a3e2b1d4c0012345678/messages"
        ))
        .bearer_auth("hrd_not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "no database wait"
    );
    // ...one of the right form needs it, and the answer says only that.
    let well_formed = format!("hrd_{}", "ab".repeat(32));
    let mut answers = Vec::new();
    for (path, token) in [
        (
            "/v1/accounts/5f0c8a3e2b1d4c0012345678/messages",
            well_formed.as_str(),
        ),
        ("/api/v1/audit", WEB_TOKEN),
        ("/api/v1/me", &format!("hro_{}", "cd".repeat(32))),
    ] {
        let response = env
            .http
            .get(format!("{base}{path}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = response.text().await.unwrap();
        assert!(body.contains(&format!("request {id}")), "{body}");
        for internal in [
            port.as_str(),
            "127.0.0.1",
            "Kind",
            "Server selection",
            "mongodb",
        ] {
            assert!(!body.contains(internal), "{path} shows {internal}: {body}");
        }
        answers.push(id);
    }
    let (status, readiness) = get_json(&env.http, &format!("{base}/readyz"), WEB_TOKEN).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!readiness.to_string().contains(&port), "{readiness}");
    // The log has each request's id beside its cause.
    let (_, text) = stop_logged(&mut web, &log);
    for id in answers {
        let line = text
            .lines()
            .find(|l| l.contains(&id) && l.contains("request failed"))
            .unwrap_or_else(|| panic!("no log line for {id}:\n{text}"));
        assert!(
            line.contains(&port) || line.contains("Server selection"),
            "{line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off_connections_capped_and_every_answer_hardened() {
    let dead = format!("mongodb://127.0.0.1:{}", free_port());
    let env = env_with(&[]).await;
    let (mut web, base, log) = web_process(
        &env,
        &[
            ("HERALD_WEB_HEADER_TIMEOUT_SECS", "1"),
            ("HERALD_WEB_MAX_CONNECTIONS", "3"),
            ("HERALD_WEB_REQUEST_TIMEOUT_SECS", "1"),
            ("HERALD_MONGODB_URL", &dead),
        ],
    )
    .await;
    let address = base.trim_start_matches("http://").to_owned();

    // A client that trickles its headers is cut off.
    let mut slow = TcpStream::connect(&address).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "held for {:?}",
        started.elapsed()
    );

    // Past the cap, a connection waits until one closes.
    let held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(&address).unwrap())
        .collect();
    let waiting = tokio::spawn({
        let http = client(None);
        let url = format!("{base}/healthz");
        async move {
            let started = Instant::now();
            let status = http.get(url).send().await.map(|r| r.status());
            (started.elapsed(), status)
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "answered past the cap");
    drop(held);
    let (took, status) = waiting.await.unwrap();
    assert_eq!(status.unwrap(), StatusCode::OK);
    assert!(took >= Duration::from_millis(500), "{took:?}");

    // An answer that cannot start in time is cut off (the readiness check
    // waits 2 s for the absent database).
    let response = env.http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);

    // Every answer carries the security headers and an id.
    for (path, token) in [
        ("/login", None),
        ("/", None),
        ("/api/v1/queues", None),
        ("/v1/messages", None),
        ("/api/v1/queues", Some(WEB_TOKEN)),
        ("/assets/dashboard.js", None),
    ] {
        let mut request = client(None).get(format!("{base}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let headers = response.headers();
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self';"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert!(headers.contains_key("x-request-id"), "{path}");
    }
    // No page needs inline script.
    for page in ["/login"] {
        let (_, html) =
            call_json(&env.http, Method::GET, &format!("{base}{page}"), None, None).await;
        let html = html.as_str().expect("an HTML page");
        assert!(!html.contains("<script>"), "{page}");
    }
    // Every route has a body limit, the dashboard's API too.
    let response = env
        .http
        .post(format!("{base}/api/v1/queues/push/failed/retry"))
        .bearer_auth(WEB_TOKEN)
        .header("content-type", "application/json")
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    stop_logged(&mut web, &log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_readiness_can_stay_on_an_internal_listener() {
    let env = env_with(&[]).await;
    let ops = format!("127.0.0.1:{}", free_port());
    let (mut web, base, log) = web_process(&env, &[("HERALD_WEB_OPS_BIND", &ops)]).await;
    for path in ["/metrics", "/readyz"] {
        let (status, _) =
            call_json(&env.http, Method::GET, &format!("{base}{path}"), None, None).await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "{path} on the public listener"
        );
        let response = env
            .http
            .get(format!("http://{ops}{path}"))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{path} on the internal one");
    }
    let (_, metrics) = call_json(
        &env.http,
        Method::GET,
        &format!("http://{ops}/metrics"),
        None,
        None,
    )
    .await;
    let metrics = metrics.as_str().expect("the metrics as text");
    assert!(metrics.contains("herald_queue_jobs"), "{metrics}");
    let (status, _) = call_json(
        &env.http,
        Method::GET,
        &format!("{base}/healthz"),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    stop_logged(&mut web, &log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logged_values_cannot_forge_lines_and_user_info_is_capped() {
    let env = env_with(&[]).await;
    let (mut web, base, log) = web_process(
        &env,
        &[
            ("HERALD_PUSH_PROVIDER", "pusher"),
            ("HERALD_LOG_FORMAT", "pretty"),
        ],
    )
    .await;
    let account = "5f0c8a3e2b1d4c0012345678";
    let channel = format!("presence-message-wm-global{account}");
    let forged = "u1\n2026-12-07T00:00:00.000000Z  INFO forged: operator signed in";
    let (status, answer) = post_json(
        &env.http,
        &format!("{base}/v1/push/auth"),
        WEB_TOKEN,
        json!({"socketId": "1.2", "channelName": channel, "userId": forged}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, answer) = post_json(
        &env.http,
        &format!("{base}/v1/push/auth"),
        WEB_TOKEN,
        json!({"socketId": "1.2", "channelName": channel, "userId": "u2",
               "userInfo": {"bio": "x".repeat(2_000)}}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer["fields"]["userInfo"]
        .as_str()
        .unwrap()
        .contains("1024"));
    let (_, text) = stop_logged(&mut web, &log);
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("2026-12-07T00:00:00.000000Z")),
        "a forged line:\n{text}"
    );
    assert!(text.contains("u1\\n2026-12-07"), "{text}");
}
