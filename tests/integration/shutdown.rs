//! The real binary under signals.

use std::time::Duration;

use herald_jobs::{QueueName, SendMessage};

use crate::helpers::{account, env, signal, wait_for, HeraldProcess};

/// Waits for the child to exit (it is killed if it hangs past the
/// deadline, when the failed wait drops it).
async fn wait_exit(mut child: HeraldProcess) -> (std::process::ExitStatus, String) {
    let exit = wait_for("the worker process to exit", || {
        let status = child.try_wait().expect("try_wait");
        async move { status }
    })
    .await;
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
    wait_for("the worker to register", || async {
        let mut conn = redis::Client::open(crate::helpers::redis_url())
            .ok()?
            .get_multiplexed_async_connection()
            .await
            .ok()?;
        let key = format!(
            "{}:workers",
            env.settings.redis.namespace.queue(QueueName::Push)
        );
        let n: usize = redis::cmd("ZCARD")
            .arg(key)
            .query_async(&mut conn)
            .await
            .ok()?;
        (n > 0).then_some(())
    })
    .await;
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
