//! The `herald` command as an operator or a script uses it.

use crate::helpers::{account, env, wait_for};
use herald_jobs::MessageId;

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_message_prints_the_id_and_the_worker_stores_that_message() {
    let mut env = env().await;
    env.start_worker().await;
    let account = account();
    let user = mongodb::bson::oid::ObjectId::new().to_hex();
    let output = env.run_herald(
        &[
            "enqueue",
            "message",
            "--account",
            &account.to_hex(),
            "--title",
            "From the CLI",
            "--content",
            "<i>hi</i>",
            "--status",
            "error",
            "--to-user",
            &user,
            "--sender-user",
            &user,
        ],
        &[],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let id = MessageId::parse(stdout(&output).trim()).expect("stdout is the message id");
    let stored = wait_for("the CLI's message", || env.find_message(id)).await;
    assert_eq!(stored.get_str("status").unwrap(), "error");
    assert_eq!(
        stored
            .get_document("to")
            .unwrap()
            .get_str("target")
            .unwrap(),
        "user"
    );
    assert_eq!(
        stored
            .get_document("sender")
            .unwrap()
            .get_str("from")
            .unwrap(),
        "user"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_refuses_bad_input_naming_it_and_enqueues_nothing() {
    let env = env().await;
    let good = account().to_hex();
    // (account, title, status) and what the error must mention.
    let cases = [
        ("nothex", "t", "success", "accountId"),
        (good.as_str(), " ", "success", "`title`"),
        (good.as_str(), "t", "info", "info"),
    ];
    for (account, title, status, expected) in cases {
        let args = [
            "enqueue",
            "message",
            "--account",
            account,
            "--title",
            title,
            "--content",
            "c",
            "--status",
            status,
        ];
        let output = env.run_herald(&args, &[]);
        assert!(!output.status.success(), "{args:?} was accepted");
        assert!(stderr(&output).contains(expected), "{}", stderr(&output));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_each_service_on_one_line() {
    let env = env().await;
    let output = env.run_herald(&["doctor"], &[]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}{}", stderr(&output));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for (line, name) in lines.iter().zip(["redis", "mongodb", "push"]) {
        assert!(line.starts_with(name) && line.contains(" ok "), "{line}");
    }
    assert!(
        lines[0].contains("1 queue shards; no worker has run yet"),
        "{text}"
    );
    assert!(
        lines[1].contains(
            "message: 0 documents, 0.0 MiB, none stored; kept until their expiresAt, else forever"
        ),
        "{text}"
    );
    // A worker's count that differs from this process's setting is named.
    let mut conn = herald::queue::connect(env.settings.redis.url.as_str())
        .await
        .expect("Redis");
    herald::queues::shards::claim(&mut conn, &env.settings)
        .await
        .expect("the count written");
    let output = env.run_herald(&["doctor"], &[("HERALD_REDIS_QUEUE_SHARDS", "2")]);
    let text = stdout(&output);
    assert!(
        text.contains("2 queue shards configured but the workers use 1"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_fails_when_a_service_is_down_or_credentials_are_wrong() {
    let env = env().await;
    let output = env.run_herald(&["doctor"], &[("HERALD_REDIS_URL", "redis://127.0.0.1:9")]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(
        text.lines()
            .any(|l| l.starts_with("redis") && l.contains("FAIL")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("mongodb") && l.contains(" ok ")),
        "{text}"
    );

    let output = env.run_herald(&["doctor"], &[("HERALD_TUISONGBAO_SECRET", "wrong")]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    let push = text
        .lines()
        .find(|l| l.starts_with("push"))
        .unwrap_or_default();
    assert!(push.contains("FAIL") && push.contains("401"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_the_pusher_provider_when_it_is_chosen() {
    let env = env().await;
    let pusher = [("HERALD_PUSH_PROVIDER", "pusher")];
    let output = env.run_herald(&["doctor"], &pusher);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}{}", stderr(&output));
    let push = text
        .lines()
        .find(|l| l.starts_with("push"))
        .unwrap_or_default();
    assert!(push.contains(" ok ") && push.contains("/apps/"), "{text}");

    let output = env.run_herald(
        &["doctor"],
        &[
            ("HERALD_PUSH_PROVIDER", "pusher"),
            ("HERALD_PUSHER_SECRET", "wrong"),
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    let push = text
        .lines()
        .find(|l| l.starts_with("push"))
        .unwrap_or_default();
    assert!(
        push.contains("401") && push.contains("HERALD_PUSHER_SECRET"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_setting_stops_start_up_naming_it() {
    let env = env().await;
    let output = env.run_herald(
        &["worker"],
        &[("HERALD_QUEUES_SEND_MESSAGE_CONCURRENCY", "0")],
    );
    // EX_CONFIG: a supervisor told of it does not restart the process.
    assert_eq!(output.status.code(), Some(78));
    let text = stderr(&output);
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    assert!(
        text.contains("queues.send_message.concurrency")
            && text.contains("HERALD_QUEUES_SEND_MESSAGE_CONCURRENCY"),
        "{text}"
    );

    let output = env.run_herald(&["worker"], &[("HERALD_MONGODB_URL", "postgres://x")]);
    assert_eq!(output.status.code(), Some(78));
    let output = env.run_herald(&["worker"], &[("HERALD_QUEUES_PUSH_CONCURRENCY", "lots")]);
    assert_eq!(output.status.code(), Some(78));
    let text = stderr(&output);
    assert_eq!(
        text.matches("invalid type").count(),
        1,
        "the cause once: {text}"
    );
    let output = env.run_herald(&["worker"], &[("HERALD_MONGODB_URL", "postgres://x")]);
    assert!(
        stderr(&output).contains("HERALD_MONGODB_URL"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["worker", "--help"],
        vec!["enqueue", "--help"],
        vec!["enqueue", "message", "--help"],
        vec!["doctor", "--help"],
        vec!["config", "--help"],
        vec!["web", "--help"],
        vec!["token", "--help"],
        vec!["token", "create", "--help"],
        vec!["export", "--help"],
        vec!["failed", "--help"],
        vec!["queue", "--help"],
        vec!["queue", "pause", "--help"],
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(&args)
            .output()
            .unwrap();
        assert!(output.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("Usage"),
            "{args:?}"
        );
    }
}
