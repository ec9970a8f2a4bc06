//! The failed list at scale: dead jobs indexed by event, account and error
//! group, so a hundred thousand of them list, filter and group in one
//! range each; bulk retry and discard of a group in bounded slices with
//! their progress recorded.

use std::collections::HashMap;

use herald::queue::{
    admin::{DeadFilter, QueueAdmin},
    dead_index::{error_group, group_id},
    seed::{seed_dead_jobs, SeedDeadJob},
};
use herald_jobs::QueueName;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{
    dashboard::{api_get, api_get_json, api_post, env_with_failed_pushes, fix_credentials},
    helpers::{env, wait_for, TestEnv},
};

/// Dead push jobs seeded: 100,000, spread over three events, fifty
/// accounts and four errors (each with ids that differ per job).
const SEEDED: usize = 100_000;
const EVENTS: [&str; 3] = ["new_message", "export_finish", "export_progress"];
const ACCOUNTS: usize = 50;

fn account_of(i: usize) -> String {
    format!("{:024x}", 0x5f0c_8a3e_0000_usize + i % ACCOUNTS)
}

fn error_of(i: usize) -> String {
    match i % 4 {
        0 => format!("tuisongbao answered 401 for new_message:{i:024x}"),
        1 => format!("tuisongbao answered 500 after {} ms", 1000 + i),
        2 => format!("connection refused to 127.0.0.1:{}", 10_000 + i % 50_000),
        _ => "data is over 10 KB".to_owned(),
    }
}

/// Seeds the dead jobs the way the complete script writes them.
async fn seed(env: &TestEnv) -> QueueAdmin {
    let config = herald::queues::config(&env.settings, QueueName::Push);
    let mut conn = herald::queue::connect(env.settings.redis.url.as_str())
        .await
        .expect("Redis");
    let jobs: Vec<SeedDeadJob> = (0..SEEDED)
        .map(|i| SeedDeadJob {
            id: format!("seeded-{i:06}"),
            payload: json!({
                "event": { "name": EVENTS[i % 3], "channels": [format!("presence-{}", account_of(i))] },
                "accountId": account_of(i),
                "idempotencyKey": format!("{}:{i}", EVENTS[i % 3]),
            })
            .to_string(),
            failed_at: 1_700_000_000.0 + i as f64,
            error: error_of(i),
        })
        .collect();
    let written = seed_dead_jobs(&mut conn, &config, &jobs)
        .await
        .expect("seeded");
    assert_eq!(written, SEEDED as u64);
    QueueAdmin::new(conn, config)
}

/// How many seeded jobs `keep` selects.
fn expected(keep: impl Fn(usize) -> bool) -> usize {
    (0..SEEDED).filter(|&i| keep(i)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_dead_jobs_list_filter_group_and_discard_by_group() {
    let env = env().await;
    seed(&env).await;
    let web = env.start_web().await;
    let failed = |query: &str| format!("{web}/api/v1/queues/push/failed?{query}");

    // Unfiltered: newest failure first.
    let all = api_get_json(&env, failed("limit=3")).await;
    assert_eq!(all["total"], SEEDED);
    let ids: Vec<&str> = all["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["seeded-099999", "seeded-099998", "seeded-099997"]);

    // One label: a range over its index.
    let finish = api_get_json(&env, failed("event=export_finish&limit=5&offset=10")).await;
    assert_eq!(finish["total"], expected(|i| i % 3 == 1));
    for job in finish["jobs"].as_array().unwrap() {
        assert_eq!(job["event"], "export_finish", "{job}");
    }
    let account = account_of(7);
    let of_account = api_get_json(&env, failed(&format!("account={account}&limit=1000"))).await;
    assert_eq!(of_account["total"], expected(|i| i % ACCOUNTS == 7));
    assert_eq!(of_account["jobs"].as_array().unwrap().len(), 1000);
    for job in of_account["jobs"].as_array().unwrap() {
        assert_eq!(job["account_id"], account.as_str(), "{job}");
    }

    // Two labels together: the page holds only jobs matching both.
    let both = api_get_json(
        &env,
        failed(&format!("event=new_message&account={account}&limit=20")),
    )
    .await;
    let wanted = expected(|i| i % 3 == 0 && i % ACCOUNTS == 7);
    assert_eq!(both["total"], wanted);
    let jobs = both["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 20);
    for job in jobs {
        assert_eq!(
            (job["event"].as_str(), job["account_id"].as_str()),
            (Some("new_message"), Some(account.as_str()))
        );
    }

    // Groups: four, whatever the ids in each message, largest first.
    let groups = api_get_json(&env, format!("{web}/api/v1/queues/push/failed/groups")).await;
    assert_eq!(groups["total"], 4, "{groups}");
    let counts: HashMap<String, u64> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["error"].as_str().unwrap().to_owned(),
                g["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(counts.values().sum::<u64>(), SEEDED as u64);
    assert_eq!(
        counts[&error_group(&error_of(1))],
        expected(|i| i % 4 == 1) as u64
    );

    // A group as a filter, alone and with a label.
    let refused = group_id(&error_group(&error_of(2)));
    let in_group = api_get_json(&env, failed(&format!("error={refused}&limit=2"))).await;
    assert_eq!(in_group["total"], expected(|i| i % 4 == 2));
    assert!(in_group["jobs"][0]["last_error"]
        .as_str()
        .unwrap()
        .starts_with("connection refused"));
    let narrowed = api_get_json(
        &env,
        failed(&format!("error={refused}&event=export_progress&limit=2")),
    )
    .await;
    assert_eq!(narrowed["total"], expected(|i| i % 4 == 2 && i % 3 == 2));

    // Filters the queue does not index, and malformed groups, are 400s.
    assert_eq!(
        api_get(&env, failed("colour=red")).await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        api_get(&env, failed("error=nothex")).await.status(),
        StatusCode::BAD_REQUEST
    );

    // Discard the group in bounded slices, following its progress.
    let begun = api_post(
        &env,
        format!("{web}/api/v1/queues/push/failed/discard"),
        Some(&json!({ "filter": { "error": refused } })),
    )
    .await;
    assert_eq!(begun.status(), StatusCode::ACCEPTED);
    let begun: Value = begun.json().await.unwrap();
    let total = begun["operation"]["total"].as_u64().unwrap();
    assert_eq!(total, expected(|i| i % 4 == 2) as u64);
    let id = begun["operation"]["id"].as_str().unwrap().to_owned();
    let finished = wait_for("the discard to finish", || async {
        let now = api_get_json(&env, format!("{web}/api/v1/queues/push/operations/{id}")).await;
        (now["operation"]["state"] == "finished").then_some(now)
    })
    .await;
    assert_eq!(finished["operation"]["done"].as_u64(), Some(total));
    let after = api_get_json(&env, failed("limit=1")).await;
    assert_eq!(after["total"].as_u64(), Some(SEEDED as u64 - total));
    let groups = api_get_json(&env, format!("{web}/api/v1/queues/push/failed/groups")).await;
    assert_eq!(groups["total"], 3, "the discarded group is gone: {groups}");
    let emptied = api_get_json(&env, failed(&format!("error={refused}"))).await;
    assert_eq!(emptied["total"], 0);
    // The label indexes lost those jobs too.
    let finish_after = api_get_json(&env, failed("event=export_finish&limit=1")).await;
    assert_eq!(
        finish_after["total"],
        expected(|i| i % 3 == 1 && i % 4 != 2)
    );
    let listed = api_get_json(&env, format!("{web}/api/v1/queues/push/operations")).await;
    assert_eq!(listed["operations"][0]["id"], id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_that_failed_for_good_are_grouped_and_a_group_retry_delivers_each_once() {
    let (mut env, dead) = env_with_failed_pushes(4).await;
    let web = env.start_web().await;

    // Found by event and by account, in one group: the wrong secret's 401.
    let first = api_get_json(&env, format!("{web}/api/v1/queues/push/failed?limit=1")).await;
    let account = first["jobs"][0]["account_id"]
        .as_str()
        .expect("an account")
        .to_owned();
    let listed = api_get_json(
        &env,
        format!("{web}/api/v1/queues/push/failed?event=new_message&account={account}"),
    )
    .await;
    assert_eq!(
        listed["total"], 1,
        "each message has its own account: {listed}"
    );
    let by_event = api_get_json(
        &env,
        format!("{web}/api/v1/queues/push/failed?event=new_message"),
    )
    .await;
    assert_eq!(by_event["total"], 4, "{by_event}");
    let groups = api_get_json(&env, format!("{web}/api/v1/queues/push/failed/groups")).await;
    assert_eq!(groups["total"], 1, "{groups}");
    let group = &groups["groups"][0];
    assert_eq!(group["count"], 4);
    assert_eq!(listed["jobs"][0]["error_group"], group["id"]);
    assert!(
        group["error"].as_str().unwrap().contains("HTTP 401"),
        "{group}"
    );

    retry_group_once_credentials_are_fixed(&mut env, &web, group, dead.len()).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        env.delivered("new_message").await.len(),
        dead.len(),
        "each once"
    );
    let groups = api_get_json(&env, format!("{web}/api/v1/queues/push/failed/groups")).await;
    assert_eq!(groups["total"], 0, "{groups}");

    // A bulk action takes one filter.
    let two = api_post(
        &env,
        format!("{web}/api/v1/queues/push/failed/retry"),
        Some(&json!({ "filter": { "labels": { "event": "new_message", "account": account } } })),
    )
    .await;
    assert_eq!(two.status(), StatusCode::BAD_REQUEST);
    let admin = QueueAdmin::new(
        herald::queue::connect(env.settings.redis.url.as_str())
            .await
            .unwrap(),
        herald::queues::config(&env.settings, QueueName::Push),
    );
    let (jobs, total) = admin.dead_jobs(&DeadFilter::all(), 0, 10).await.unwrap();
    assert_eq!((jobs.len(), total), (0, 0));
}

/// Fixes the push credentials of `env`, retries the dead pushes of the
/// error `group` through the API of `herald web` at `web`, and waits until
/// `count` pushes are delivered.
pub(crate) async fn retry_group_once_credentials_are_fixed(
    env: &mut TestEnv,
    web: &str,
    group: &Value,
    count: usize,
) {
    fix_credentials(env).await;
    let begun = api_post(
        env,
        format!("{web}/api/v1/queues/push/failed/retry"),
        Some(&json!({ "filter": { "error": group["id"] } })),
    )
    .await;
    assert_eq!(begun.status(), StatusCode::ACCEPTED);
    wait_for("the group's pushes delivered", || async {
        (env.delivered("new_message").await.len() >= count).then_some(())
    })
    .await;
}
