//! Failed pushes through the dashboard's API and the `herald failed` CLI.

use std::time::Duration;

use herald_jobs::{QueueName, SendMessage};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{account, env_with, wait_for, TestEnv, SECRET, WEB_TOKEN};

/// An environment whose worker pushes with a wrong secret, so every push
/// fails with 401 and lands in the push queue's dead set.
pub(crate) async fn env_with_failed_pushes(count: usize) -> (TestEnv, Vec<String>) {
    env_with_failed_pushes_and(count, &[]).await
}

/// Like [`env_with_failed_pushes`], with extra `HERALD_*` variables (for
/// example another Redis).
pub(crate) async fn env_with_failed_pushes_and(
    count: usize,
    extra: &[(&str, &str)],
) -> (TestEnv, Vec<String>) {
    let mut vars = vec![("HERALD_TUISONGBAO_SECRET", "wrong")];
    vars.extend_from_slice(extra);
    let mut env = env_with(&vars).await;
    env.start_worker().await;
    for i in 0..count {
        env.enqueue(SendMessage::new(account(), format!("failing {i}"), "401"))
            .await;
    }
    let dead = wait_for("the failed pushes", || async {
        let dead = env.queue_set(QueueName::Push, "dead").await;
        (dead.len() == count).then_some(dead)
    })
    .await;
    (env, dead)
}

/// Restarts the worker with the right secret, as an operator would after
/// fixing the configuration.
pub(crate) async fn fix_credentials(env: &mut TestEnv) {
    env.stop_worker().await.expect("worker stops cleanly");
    let mut settings = env.settings.clone();
    settings.tuisongbao.secret = secrecy::SecretString::from(SECRET.to_owned());
    env.start_worker_with(settings).await;
}

pub(crate) async fn api_get(env: &TestEnv, url: String) -> reqwest::Response {
    env.http
        .get(url)
        .bearer_auth(WEB_TOKEN)
        .send()
        .await
        .expect("dashboard answers")
}

pub(crate) async fn api_get_json(env: &TestEnv, url: String) -> Value {
    api_get(env, url).await.json().await.expect("JSON")
}

pub(crate) async fn api_post(
    env: &TestEnv,
    url: String,
    body: Option<&Value>,
) -> reqwest::Response {
    let mut request = env.http.post(url).bearer_auth(WEB_TOKEN);
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send().await.expect("dashboard answers")
}

/// Posts `action` (`retry` or `discard`) for the failed push `id`.
async fn act_on_failed(env: &TestEnv, web: &str, action: &str, id: &str) -> reqwest::Response {
    let url = format!("{web}/api/v1/queues/push/failed/{id}/{action}");
    api_post(env, url, None).await
}

pub(crate) async fn api_post_json(env: &TestEnv, url: String, body: &Value) -> Value {
    api_post(env, url, Some(body))
        .await
        .json()
        .await
        .expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_push_is_listed_retried_after_the_fix_and_delivered_once() {
    let (mut env, dead) = env_with_failed_pushes(1).await;
    let web = env.start_web().await;

    let listed: Value = api_get_json(&env, format!("{web}/api/v1/queues/push/failed")).await;
    assert_eq!(listed["total"], 1);
    let row = &listed["jobs"][0];
    assert_eq!(row["id"], json!(dead[0]));
    assert_eq!(row["event"], "new_message");
    assert!(row["channel"]
        .as_str()
        .unwrap()
        .starts_with("presence-message-wm-global"));
    assert_eq!(row["attempts"], 1, "a 401 is not retried");
    assert!(row["last_error"].as_str().unwrap().contains("401"), "{row}");
    assert!(row["failed_at"].as_f64().is_some());

    let detail: Value =
        api_get_json(&env, format!("{web}/api/v1/queues/push/jobs/{}", dead[0])).await;
    assert_eq!(detail["state"], "failed");
    assert_eq!(detail["payload"]["event"]["name"], "new_message");
    assert_eq!(detail["history"][0]["status"], "Killed");

    fix_credentials(&mut env).await;
    let retried = act_on_failed(&env, &web, "retry", &dead[0]).await;
    assert_eq!(retried.status(), StatusCode::OK);
    wait_for("the retried push", || async {
        (env.delivered("new_message").await.len() == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        env.delivered("new_message").await.len(),
        1,
        "delivered once"
    );
    assert!(env.queue_set(QueueName::Push, "dead").await.is_empty());

    // Retrying it again is a 404: it is no longer failed.
    let again = act_on_failed(&env, &web, "retry", &dead[0]).await;
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_selected_and_retry_all_send_every_chosen_push() {
    let (mut env, dead) = env_with_failed_pushes(3).await;
    let web = env.start_web().await;
    fix_credentials(&mut env).await;

    let response: Value = api_post_json(
        &env,
        format!("{web}/api/v1/queues/push/failed/retry"),
        &json!({ "ids": [dead[0]] }),
    )
    .await;
    assert_eq!(response["retried"], 1);
    // Every failed job: a bulk operation, answered 202 with its record,
    // whose progress the operations route follows to the end.
    let response = api_post(
        &env,
        format!("{web}/api/v1/queues/push/failed/retry"),
        Some(&json!({ "all": true })),
    )
    .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let response: Value = response.json().await.expect("JSON");
    assert_eq!(response["operation"]["total"], 2, "{response}");
    let id = response["operation"]["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let finished = wait_for("the retry-all to finish", || async {
        let now: Value =
            api_get_json(&env, format!("{web}/api/v1/queues/push/operations/{id}")).await;
        (now["operation"]["state"] == "finished").then_some(now)
    })
    .await;
    assert_eq!(finished["operation"]["done"], 2, "{finished}");
    wait_for("every retried push", || async {
        (env.delivered("new_message").await.len() == 3).then_some(())
    })
    .await;

    let bad = api_post(
        &env,
        format!("{web}/api/v1/queues/push/failed/retry"),
        Some(&json!({})),
    )
    .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let body: Value = bad.json().await.unwrap();
    assert!(body["error"].is_string(), "{body}");
    // The producers' API's error body: an unknown field is named.
    let unknown = api_post(
        &env,
        format!("{web}/api/v1/queues/push/failed/retry"),
        Some(&json!({ "colour": 1 })),
    )
    .await;
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    let body: Value = unknown.json().await.unwrap();
    assert!(body["fields"]["colour"].is_string(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discard_removes_a_failed_push_for_good() {
    let (env, dead) = env_with_failed_pushes(1).await;
    let web = env.start_web().await;
    let response = act_on_failed(&env, &web, "discard", &dead[0]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(env.queue_set(QueueName::Push, "dead").await.is_empty());
    let detail = api_get(&env, format!("{web}/api/v1/queues/push/jobs/{}", dead[0])).await;
    assert_eq!(detail.status(), StatusCode::NOT_FOUND);
    assert!(env.job_meta(QueueName::Push, &dead[0]).await.is_empty());
    // And a retry cannot bring it back.
    let retry = act_on_failed(&env, &web, "retry", &dead[0]).await;
    assert_eq!(retry.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_and_the_page_refuse_requests_without_credentials() {
    let (env, dead) = env_with_failed_pushes(1).await;
    let web = env.start_web().await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // The API: no token, a wrong token.
    let anonymous = no_redirects
        .get(format!("{web}/api/v1/queues"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let wrong = no_redirects
        .post(format!("{web}/api/v1/queues/push/failed/{}/retry", dead[0]))
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        env.queue_set(QueueName::Push, "dead").await.len(),
        1,
        "nothing retried"
    );

    // The page: sent to the login form; a wrong token does not sign in.
    let page = no_redirects.get(&web).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    assert_eq!(page.headers()["location"], "/login");
    let login = no_redirects
        .post(format!("{web}/login"))
        .form(&[("token", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::UNAUTHORIZED);
    assert!(login.headers().get("set-cookie").is_none());

    // Signed in, the page loads; state changes need the same-site header.
    let login = no_redirects
        .post(format!("{web}/login"))
        .form(&[("token", WEB_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = no_redirects
        .get(&web)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page
        .text()
        .await
        .unwrap()
        .contains("Failures grouped by error"));

    let retry_url = format!("{web}/api/v1/queues/push/failed/{}/retry", dead[0]);
    let forged = no_redirects
        .post(&retry_url)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        forged.status(),
        StatusCode::FORBIDDEN,
        "a form post from another site"
    );
    let cross_origin = no_redirects
        .post(&retry_url)
        .header("cookie", &cookie)
        .header("x-herald-csrf", "1")
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(cross_origin.status(), StatusCode::FORBIDDEN);
    let get_retry = no_redirects
        .get(&retry_url)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        get_retry.status(),
        StatusCode::METHOD_NOT_ALLOWED,
        "state changes are POST only"
    );
    assert_eq!(
        env.queue_set(QueueName::Push, "dead").await.len(),
        1,
        "still not retried"
    );

    let same_site = no_redirects
        .post(&retry_url)
        .header("cookie", &cookie)
        .header("x-herald-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(same_site.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failed_cli_lists_retries_and_discards() {
    let (mut env, dead) = env_with_failed_pushes(3).await;
    let output = env.run_herald(&["failed", "list", "--json"], &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listed: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 3);
    assert!(listed
        .iter()
        .all(|j| j["last_error"].as_str().unwrap().contains("401")));

    let output = env.run_herald(&["failed", "discard", &dead[0]], &[]);
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("discarded 1"));
    let output = env.run_herald(&["failed", "discard", &dead[0]], &[]);
    assert!(!output.status.success(), "an unknown id is an error");

    fix_credentials(&mut env).await;
    let output = env.run_herald(&["failed", "retry", &dead[1]], &[]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("retried 1"));
    let output = env.run_herald(&["failed", "retry", "--all"], &[]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("retried 1"));
    wait_for("the two retried pushes", || async {
        (env.delivered("new_message").await.len() == 2).then_some(())
    })
    .await;
    let output = env.run_herald(&["failed", "list"], &[]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("0 failed job(s)"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_with_no_worker_is_pending_and_only_a_future_job_is_scheduled() {
    // No worker runs: what producers enqueue waits where they put it.
    let env = env_with(&[]).await;
    let account = account();
    for i in 0..3 {
        env.enqueue(SendMessage::new(
            account,
            format!("waiting {i}"),
            "no worker yet",
        ))
        .await;
    }
    // A job whose time is an hour ahead, as a retry's backoff leaves it.
    let config = herald::queues::config(&env.settings, QueueName::SendMessage);
    let mut conn = herald::queue::connect(env.settings.redis.url.as_str())
        .await
        .expect("redis");
    let later = herald::queue::now_secs_string()
        .parse::<f64>()
        .expect("seconds")
        + 3600.0;
    redis::pipe()
        .hset(config.data_key(), "later-probe", "{}")
        .zadd(config.scheduled_key(), "later-probe", later)
        .query_async::<()>(&mut conn)
        .await
        .expect("schedule a job");

    let web = env.start_web().await;
    let all = api_get_json(&env, format!("{web}/api/v1/queues")).await;
    let sends = all["queues"]
        .as_array()
        .and_then(|queues| {
            queues.iter().find(|q| {
                q["queue"]
                    .as_str()
                    .is_some_and(|name| name.ends_with(":send_message"))
            })
        })
        .cloned()
        .unwrap_or_else(|| panic!("no send_message queue in {all}"));
    assert_eq!(sends["pending"], 3, "{sends}");
    assert_eq!(sends["scheduled"], 1, "{sends}");

    // One job at a time says the same; the producer put the jobs due now
    // straight on the ready list.
    let due: Vec<String> = redis::cmd("LRANGE")
        .arg(config.active_key())
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .expect("ready jobs");
    assert_eq!(due.len(), 3, "{due:?}");
    let detail = api_get_json(
        &env,
        format!("{web}/api/v1/queues/send_message/jobs/{}", due[0]),
    )
    .await;
    assert_eq!(detail["state"], "pending", "{detail}");
    let detail = api_get_json(
        &env,
        format!("{web}/api/v1/queues/send_message/jobs/later-probe"),
    )
    .await;
    assert_eq!(detail["state"], "scheduled", "{detail}");
}
