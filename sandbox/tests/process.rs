//! The sandbox as a process, as the demo runs it: it starts on the port it
//! is given, says where, records an event Herald's Tuisongbao client sends,
//! and stops on SIGTERM.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use herald_push_sandbox::RecordedRequest;

#[tokio::test]
async fn the_binary_serves_records_and_stops_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_herald-push-sandbox"))
        .args(["--port", "0", "--app-id", "app", "--secret", "secret"])
        .env("HERALD_CONFIG_DIR", "/nonexistent")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the sandbox binary starts");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("its first line");
    let base = first
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .expect("the address it listens on")
        .to_owned();

    let client = reqwest::Client::new();
    let sent = client
        .post(format!("{base}/v2/open/engine/events"))
        .basic_auth("app", Some("secret"))
        .json(&serde_json::json!({"name": "e", "data": {"k": 1}, "channels": ["c"]}))
        .send()
        .await
        .expect("a push");
    assert!(sent.status().is_success(), "{}", sent.status());
    let wrong = client
        .post(format!("{base}/v2/open/engine/events"))
        .basic_auth("app", Some("not the secret"))
        .json(&serde_json::json!({"name": "e", "data": {}, "channels": ["c"]}))
        .send()
        .await
        .expect("a push");
    assert_eq!(wrong.status(), 401);
    let events: Vec<RecordedRequest> = client
        .get(format!("{base}/_sandbox/events"))
        .send()
        .await
        .expect("the events")
        .json()
        .await
        .expect("JSON");
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].name.as_deref(), Some("e"));

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    for _ in 0..100 {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "{status}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    panic!("the sandbox did not stop on SIGTERM");
}
