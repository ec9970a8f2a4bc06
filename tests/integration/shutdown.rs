//! The real binary under signals.

use std::time::Duration;

use herald_jobs::{QueueName, SendMessage};

use crate::helpers::{
    account, env, exited, signal, wait_for, wait_for_registered_worker, HeraldProcess,
};

/// Waits for the child to exit (it is killed if it hangs past the
/// deadline, when the failed wait drops it).
async fn wait_exit(mut child: HeraldProcess) -> (std::process::ExitStatus, String) {
    let exit = exited(&mut child).await;
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        use std::io::Read;
        let _ = pipe.read_to_string(&mut stderr);
    }
    (exit, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_job_lets_it_finish_and_exits_zero() {
    let env = env().await;
    // The push will take 2 s at the sandbox: long enough to signal mid-job.
    env.script_failures(None, 2000, 1).await;
    let worker = env.spawn_herald(&["worker"]);
    let id = env
        .enqueue(SendMessage::new(account(), "slow", "push"))
        .await;
    wait_for("the stored message", || env.find_message(id)).await;
    // The push job is now in flight, waiting on the sandbox.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        env.delivered("new_message").await.is_empty(),
        "push still running"
    );

    signal(&worker, "TERM");
    let (status, stderr) = wait_exit(worker).await;
    assert_eq!(status.code(), Some(0), "exit status; stderr:\n{stderr}");
    assert_eq!(
        env.delivered("new_message").await.len(),
        1,
        "the running push finished"
    );
    assert_eq!(
        env.queue_set(QueueName::Push, "done").await.len(),
        1,
        "and was acknowledged"
    );
    assert!(stderr.contains("shutdown requested"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_an_idle_worker_with_exit_zero() {
    let env = env().await;
    let worker = env.spawn_herald(&["worker"]);
    // Wait until it is up: it has registered its workers in Redis.
    wait_for_registered_worker(&env, &crate::helpers::redis_url()).await;
    signal(&worker, "INT");
    let (status, stderr) = wait_exit(worker).await;
    assert_eq!(status.code(), Some(0), "stderr:\n{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_process_a_test_lets_go_of_is_killed_not_left_running() {
    let env = env().await;
    let worker = env.spawn_herald(&["worker"]);
    let pid = worker.id();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    drop(worker);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "process {pid} still exists"
    );
}

/// SIGTERMs sent to `herald web` in a row. Before the MongoDB client was
/// shut down in order, a few in a hundred panicked inside the driver.
const WEB_SHUTDOWNS: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_web_exits_zero_and_quietly_on_every_sigterm() {
    let env = crate::helpers::env_with(&[
        ("HERALD_WEB_TOKEN", crate::helpers::WEB_TOKEN),
        ("HERALD_LOG_FORMAT", "json"),
    ])
    .await;
    for round in 0..WEB_SHUTDOWNS {
        let bind = format!("127.0.0.1:{}", crate::ops::free_port());
        let log = std::env::temp_dir().join(format!("{}-web-{round}.log", env.namespace));
        let mut web = env.spawn_herald_logged(&["web"], &[("HERALD_WEB_BIND", &bind)], &log);
        // Ready means MongoDB answered: the driver's pool and monitors run.
        wait_for("herald web to be ready", || async {
            let response = env
                .http
                .get(format!("http://{bind}/readyz"))
                .send()
                .await
                .ok()?;
            (response.status() == 200).then_some(())
        })
        .await;
        signal(&web, "TERM");
        let status = exited(&mut web).await;
        let stderr = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        assert_eq!(status.code(), Some(0), "shutdown {round}:\n{stderr}");
        // Every line is a JSON log record (a panic's text would not be),
        // and none is an error.
        for line in stderr.lines() {
            let record: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|_| panic!("shutdown {round}: not a log record: {line}"));
            assert_ne!(record["level"], "ERROR", "shutdown {round}: {line}");
        }
        assert!(
            stderr.contains("dashboard stopped"),
            "shutdown {round}:\n{stderr}"
        );
    }
}
