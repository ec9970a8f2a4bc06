//! Supervision: Herald's two processes under the supervisors it ships
//! configuration for.
//!
//! `deploy/supervisor/herald.conf` runs under a real supervisord (4.2.5,
//! from PyPI, which `scripts/setup.sh --tests` installs into the setup's
//! virtualenv; looked up in the setup's state directory, `$HERALD_STATE_DIR`
//! or `.herald/`, under `venv/bin/`). Each test writes a supervisord
//! configuration of its own in a scratch directory (control socket, pid
//! file, logs) that includes the shipped file with only the command's two
//! paths (the binary, the environment file), `directory`, `user` and
//! `environment` replaced, so the restart, start-retry and stop options
//! that run are the shipped ones, and the real `herald` binary runs with
//! the test's private Redis namespace, database and push sandbox.
//!
//! `deploy/systemd/` holds the units docs/operations.md shows; they are
//! compared with the document, checked for their stop and restart options
//! (a refused configuration, exit 78, is not restarted; exit 1 is) and their
//! sandbox, and, where `systemd-analyze` exists, verified by it.

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use herald_jobs::{MessageId, Producer, QueueName, SendMessage};
use mongodb::bson::doc;

use crate::{
    helpers::{account, env_with, redis_url, wait_within, TestEnv},
    ops::free_port,
};

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const HERALD: &str = env!("CARGO_BIN_EXE_herald");

/// The paths the shipped files use, which the tests replace.
const SHIPPED_BINARY: &str = "/opt/herald/target/release/herald";
const SHIPPED_ENV_FILE: &str = "/etc/herald/env";

/// The supervisord programs, by Procfile process name.
const WORKER: &str = "herald-worker";
const WEB: &str = "herald-web";

/// Deadlines against hangs, not speed requirements. A start takes the
/// shipped `startsecs` (10 s) before supervisord calls it RUNNING.
const START_PATIENCE: Duration = Duration::from_secs(90);
const LONG_PATIENCE: Duration = Duration::from_secs(240);
/// Longest a `supervisorctl` call may take (a `stop` waits for the drain,
/// at most the shipped `stopwaitsecs` of 45 s).
const CTL_PATIENCE: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------
// The configuration files

/// One `[section]` of an INI file: its name and its `key=value` lines in order.
#[derive(Debug, Clone, PartialEq)]
struct Section {
    name: String,
    entries: Vec<(String, String)>,
}

impl Section {
    fn get(&self, key: &str) -> Option<&str> {
        // The last one wins, as in both supervisord and systemd.
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn expect(&self, key: &str) -> &str {
        self.get(key)
            .unwrap_or_else(|| panic!("[{}] has no {key}", self.name))
    }

    fn number(&self, key: &str) -> u64 {
        let value = self.expect(key);
        value
            .parse()
            .unwrap_or_else(|_| panic!("[{}] {key}={value} is not a number", self.name))
    }
}

/// Parses the INI dialect both supervisord and systemd read, as far as the
/// shipped files use it: `;` and `#` comment lines, `[section]`, `key=value`.
/// What this parser does not handle (continuation lines, inline comments)
/// fails the test rather than being misread.
fn parse_ini(text: &str, what: &str) -> Vec<Section> {
    let mut sections: Vec<Section> = Vec::new();
    for (number, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        assert!(
            !raw.starts_with(char::is_whitespace) && !line.ends_with('\\'),
            "{what}:{}: a continuation line, which this test does not read: {raw}",
            number + 1
        );
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            sections.push(Section {
                name: name.to_owned(),
                entries: Vec::new(),
            });
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{what}:{}: not key=value: {raw}", number + 1));
        let value = value.trim();
        assert!(
            !value.contains(" ;") && !value.contains(" #"),
            "{what}:{}: an inline comment, which this test does not read: {raw}",
            number + 1
        );
        sections
            .last_mut()
            .unwrap_or_else(|| panic!("{what}:{}: a setting outside a section", number + 1))
            .entries
            .push((key.trim().to_owned(), value.to_owned()));
    }
    sections
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(Path::new(REPO).join(relative))
        .unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// The shipped supervisord programs.
fn shipped_supervisor_conf() -> Vec<Section> {
    parse_ini(
        &read("deploy/supervisor/herald.conf"),
        "deploy/supervisor/herald.conf",
    )
}

/// The command the shipped conf gives `program` for the Procfile's
/// `herald <subcommand>`: a shell that exports the environment file and
/// execs herald, so that the process supervisord signals is herald itself.
fn shipped_command(subcommand: &str) -> String {
    format!("/bin/sh -c 'set -a && . {SHIPPED_ENV_FILE} && exec {SHIPPED_BINARY} {subcommand}'")
}

/// The settings the tests replace; every other line of the shipped conf
/// runs as written.
const REPLACED: [&str; 4] = ["command", "directory", "user", "environment"];

/// The shipped programs with `command` running `binary` with `env_file`,
/// `directory` set to `dir`, no `user` (supervisord switches user only as
/// root, and the test machine has no `herald` user) and `environment` set
/// to each program's entry of `extra_env`.
fn render_programs(
    shipped: &[Section],
    binary: &Path,
    env_file: &Path,
    dir: &Path,
    extra_env: &HashMap<&str, Vec<(String, String)>>,
) -> String {
    let mut out = String::from(
        "; Written by tests/integration/supervision.rs from deploy/supervisor/herald.conf.\n",
    );
    for section in shipped {
        out.push_str(&format!("\n[{}]\n", section.name));
        for (key, value) in &section.entries {
            match key.as_str() {
                "command" => {
                    assert!(
                        value.contains(SHIPPED_BINARY) && value.contains(SHIPPED_ENV_FILE),
                        "[{}] command runs {SHIPPED_BINARY} with {SHIPPED_ENV_FILE}: {value}",
                        section.name
                    );
                    let command = value
                        .replace(SHIPPED_BINARY, &binary.display().to_string())
                        .replace(SHIPPED_ENV_FILE, &env_file.display().to_string());
                    out.push_str(&format!("command={command}\n"));
                }
                "directory" => out.push_str(&format!("directory={}\n", dir.display())),
                "user" | "environment" => {}
                _ => out.push_str(&format!("{key}={value}\n")),
            }
        }
        let program = section.name.strip_prefix("program:").unwrap_or_default();
        if let Some(vars) = extra_env.get(program).filter(|v| !v.is_empty()) {
            let pairs: Vec<String> = vars
                .iter()
                .map(|(k, v)| {
                    assert!(!v.contains(['"', '%', '\n']), "{k}={v}");
                    format!("{k}=\"{v}\"")
                })
                .collect();
            out.push_str(&format!("environment={}\n", pairs.join(",")));
        }
    }
    out
}

/// Asserts that `rendered` is `shipped` but for the [`REPLACED`] settings.
fn assert_only_replaced_lines_differ(shipped: &[Section], rendered: &[Section]) {
    let kept = |sections: &[Section]| -> Vec<Section> {
        sections
            .iter()
            .map(|s| Section {
                name: s.name.clone(),
                entries: s
                    .entries
                    .iter()
                    .filter(|(k, _)| !REPLACED.contains(&k.as_str()))
                    .cloned()
                    .collect(),
            })
            .collect()
    };
    assert_eq!(kept(shipped), kept(rendered));
}

/// The production settings, with the provider settings production
/// requires.
fn production_settings() -> herald::config::Settings {
    let vars: HashMap<String, String> = [
        ("HERALD_CONFIG_DIR", format!("{REPO}/config")),
        ("HERALD_ENV", "production".to_owned()),
        (
            "HERALD_TUISONGBAO_URL",
            "https://tuisongbao.invalid".to_owned(),
        ),
        ("HERALD_TUISONGBAO_APP_ID", "app".to_owned()),
        ("HERALD_TUISONGBAO_SECRET", "secret".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    herald::config::Settings::load_from(&vars).expect("production settings load")
}

/// The worker's grace period on SIGTERM with the production settings
/// (`worker.shutdown_timeout_secs`).
fn production_shutdown_timeout() -> Duration {
    production_settings().worker.shutdown_timeout
}

/// The exit status of a configuration herald refuses (`EX_CONFIG`), which
/// no restart can cure; every other fatal error exits 1.
const EXIT_CONFIG: i32 = 78;

/// The sandbox both units run herald in, option by option: herald needs the
/// network and no privilege, and writes nothing but `export.dir` (the
/// worker's `ReadWritePaths=`, checked apart).
const SANDBOX: [(&str, &str); 19] = [
    ("NoNewPrivileges", "yes"),
    ("CapabilityBoundingSet", ""),
    ("ProtectSystem", "strict"),
    ("ProtectHome", "yes"),
    ("PrivateTmp", "yes"),
    ("PrivateDevices", "yes"),
    ("ProtectKernelTunables", "yes"),
    ("ProtectKernelModules", "yes"),
    ("ProtectKernelLogs", "yes"),
    ("ProtectControlGroups", "yes"),
    ("ProtectClock", "yes"),
    ("ProtectHostname", "yes"),
    ("RestrictSUIDSGID", "yes"),
    ("RestrictNamespaces", "yes"),
    ("LockPersonality", "yes"),
    ("MemoryDenyWriteExecute", "yes"),
    ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
    ("SystemCallArchitectures", "native"),
    ("UMask", "0077"),
];

/// What the worker may still do after its grace period: write the last
/// delivery receipts (up to 5 s) and close MongoDB (up to 5 s), as
/// docs/operations.md counts it.
const AFTER_GRACE: Duration = Duration::from_secs(10);

/// The systemd units as docs/operations.md shows them, by file name.
fn documented_units() -> Vec<(String, String)> {
    let doc = read("docs/operations.md");
    let mut units = Vec::new();
    let mut rest = doc.as_str();
    while let Some(start) = rest.find("```ini\n") {
        let block = &rest[start + "```ini\n".len()..];
        let end = block.find("```").expect("a closed ini block");
        let text = &block[..end];
        rest = &block[end + 3..];
        let first = text.lines().next().unwrap_or_default();
        let Some(path) = first
            .strip_prefix("# /etc/systemd/system/")
            .and_then(|p| p.split_whitespace().next())
        else {
            continue;
        };
        units.push((path.to_owned(), text.to_owned()));
    }
    units
}

#[test]
fn the_shipped_supervisor_conf_runs_the_procfile_with_safe_restart_and_stop_options() {
    let programs = shipped_supervisor_conf();
    let names: Vec<&str> = programs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["program:herald-worker", "program:herald-web"]);

    // The Procfile's processes, each as a program running the same command.
    let procfile = read("Procfile");
    let mut processes = Vec::new();
    for line in procfile.lines().filter(|l| !l.trim().is_empty()) {
        let (name, command) = line.split_once(':').expect("name: command");
        let subcommand = command
            .trim()
            .strip_prefix("./target/release/herald ")
            .unwrap_or_else(|| panic!("Procfile runs the release binary: {line}"));
        processes.push(name.to_owned());
        let program = programs
            .iter()
            .find(|s| s.name == format!("program:herald-{name}"))
            .unwrap_or_else(|| panic!("no [program:herald-{name}] for the Procfile's {name}"));
        assert_eq!(program.expect("command"), shipped_command(subcommand));
        assert_eq!(program.expect("directory"), "/opt/herald");
        assert_eq!(program.expect("user"), "herald");
    }
    assert_eq!(processes, ["worker", "web"]);

    let units: HashMap<String, Vec<Section>> = documented_units()
        .into_iter()
        .map(|(name, text)| (name.clone(), parse_ini(&text, &name)))
        .collect();
    let grace = production_shutdown_timeout();
    for program in &programs {
        let name = &program.name;
        assert_eq!(program.expect("autostart"), "true", "{name}");
        // Restarted when it dies (a signal, a panic, exit 1: a fatal error
        // or a Sentinel failover); exit 0 follows only a requested stop.
        assert!(
            ["unexpected", "true"].contains(&program.expect("autorestart")),
            "{name}"
        );
        assert_eq!(program.expect("exitcodes"), "0", "{name}");
        // A process that exits at once ends FATAL after a few tries,
        // whatever its exit status: a refused configuration (78) included,
        // as supervisord has no counterpart to RestartPreventExitStatus=.
        let startsecs = program.number("startsecs");
        let retries = program.number("startretries");
        assert!(
            (5..=60).contains(&startsecs),
            "{name}: startsecs={startsecs}"
        );
        assert!(
            (1..=10).contains(&retries),
            "{name}: startretries={retries}"
        );
        assert_eq!(program.expect("stopsignal"), "TERM", "{name}");
        assert_eq!(program.expect("stopasgroup"), "false", "{name}");
        // The same stop timeout as the systemd unit of the process.
        let unit = if name.ends_with("worker") {
            "herald-worker@.service"
        } else {
            "herald-web.service"
        };
        let service = units[unit]
            .iter()
            .find(|s| s.name == "Service")
            .expect("[Service]");
        let stopwait = program.number("stopwaitsecs");
        assert_eq!(
            stopwait,
            service.number("TimeoutStopSec"),
            "{name}: stopwaitsecs and {unit}'s TimeoutStopSec"
        );
        if name.ends_with("worker") {
            assert!(
                Duration::from_secs(stopwait) > grace + AFTER_GRACE,
                "{name}: stopwaitsecs={stopwait} leaves no time to drain {grace:?} + {AFTER_GRACE:?}"
            );
        }
    }
}

#[test]
fn the_systemd_units_are_the_documented_ones_and_stop_and_restart_safely() {
    let units = documented_units();
    let names: Vec<&str> = units.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["herald-worker@.service", "herald-web.service"]);
    let grace = production_shutdown_timeout();
    for (name, documented) in &units {
        let file = format!("deploy/systemd/{name}");
        // Word for word what the document shows: the options it states,
        // the sandbox included, are the file's, and a change to one is a
        // change to the other.
        assert_eq!(&read(&file), documented, "{file} and docs/operations.md");
        let sections = parse_ini(documented, &file);
        let unit = sections.iter().find(|s| s.name == "Unit").expect("[Unit]");
        let service = sections
            .iter()
            .find(|s| s.name == "Service")
            .expect("[Service]");
        let subcommand = if name.starts_with("herald-worker") {
            "worker"
        } else {
            "web"
        };
        assert_eq!(
            service.expect("ExecStart"),
            format!("{SHIPPED_BINARY} {subcommand}")
        );
        assert_eq!(service.expect("EnvironmentFile"), SHIPPED_ENV_FILE);
        assert_eq!(service.expect("User"), "herald");
        assert_eq!(service.expect("KillSignal"), "SIGTERM", "{name}");
        assert_eq!(service.expect("Restart"), "on-failure", "{name}");
        // A refused configuration (78) is not restarted: it would fail the
        // same way. Exit 1 is every other fatal error, a Sentinel failover
        // among them, which must be restarted.
        let prevent: Vec<&str> = service
            .expect("RestartPreventExitStatus")
            .split_whitespace()
            .collect();
        assert_eq!(
            prevent,
            [EXIT_CONFIG.to_string()],
            "{name}: RestartPreventExitStatus"
        );
        // Restarts 2 s apart, and a unit that fails at every start gives up
        // (is refused a start) within StartLimitIntervalSec instead of
        // being started for ever.
        let restart_sec = service.number("RestartSec");
        assert_eq!(restart_sec, 2, "{name}: RestartSec");
        let interval = unit.number("StartLimitIntervalSec");
        let burst = unit.number("StartLimitBurst");
        assert!(
            (2..=10).contains(&burst) && burst * restart_sec < interval,
            "{name}: StartLimitBurst={burst} starts {restart_sec} s apart within \
             StartLimitIntervalSec={interval}"
        );
        for key in ["StartLimitIntervalSec", "StartLimitBurst"] {
            assert!(
                service.get(key).is_none(),
                "{name}: {key} belongs in [Unit]"
            );
        }

        // The sandbox, option by option, and no capability given back.
        for (key, value) in SANDBOX {
            assert_eq!(
                service.get(key),
                Some(value),
                "{name}: {key}={value} in [Service]"
            );
        }
        assert!(service.get("AmbientCapabilities").is_none(), "{name}");
        // The only path herald writes: the worker's export directory
        // (export.dir, relative to the working directory), with
        // export.storage = local. `herald web` only reads it.
        let writable: Vec<&str> = service
            .entries
            .iter()
            .filter(|(k, _)| k == "ReadWritePaths")
            .map(|(_, v)| v.as_str())
            .collect();
        if subcommand == "worker" {
            let export_dir = Path::new(service.expect("WorkingDirectory"))
                .join(production_settings().export.dir);
            assert_eq!(
                writable,
                [export_dir.display().to_string()],
                "{name}: ReadWritePaths= is export.dir"
            );
        } else {
            assert!(writable.is_empty(), "{name}: ReadWritePaths={writable:?}");
        }
        let stop = Duration::from_secs(service.number("TimeoutStopSec"));
        if subcommand == "worker" {
            assert!(
                stop > grace + AFTER_GRACE,
                "{name}: TimeoutStopSec={stop:?} leaves no time to drain {grace:?} + {AFTER_GRACE:?}"
            );
            assert!(service
                .expect("Environment")
                .starts_with("HERALD_WORKER_OPS_BIND="));
        }
    }

    // systemd's own check, on copies whose ExecStart names a binary that
    // exists (verify refuses a missing one) and with the template
    // instantiated.
    let Some(analyze) = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
    else {
        eprintln!("systemd-analyze is not installed: `systemd-analyze verify` skipped");
        return;
    };
    let dir = std::env::temp_dir().join(format!(
        "herald-units-{}",
        mongodb::bson::oid::ObjectId::new().to_hex()
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let mut paths = Vec::new();
    for (name, text) in &units {
        let copy = text.replace(SHIPPED_BINARY, HERALD);
        let path = dir.join(name);
        std::fs::write(&path, &copy).expect("unit copy");
        paths.push(path);
        if name.ends_with("@.service") {
            let instance = dir.join(name.replace("@.service", "@1.service"));
            std::fs::write(&instance, &copy).expect("instance copy");
            paths.push(instance);
        }
    }
    let output = Command::new(&analyze)
        .arg("verify")
        .args(&paths)
        .output()
        .expect("systemd-analyze runs");
    let _ = std::fs::remove_dir_all(&dir);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "systemd-analyze verify:\n{said}");
    // It warns (unknown keys, values it cannot parse) and still exits 0.
    assert!(
        said.trim().is_empty(),
        "systemd-analyze verify warned:\n{said}"
    );
}

// ---------------------------------------------------------------------------
// A supervisord of the test's own

/// The setup's virtualenv `bin/`, holding supervisord and supervisorctl.
fn supervisor_bin_dir() -> PathBuf {
    let state = std::env::var_os("HERALD_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(REPO).join(".herald"));
    let bin = state.join("venv/bin");
    assert!(
        bin.join("supervisord").is_file() && bin.join("supervisorctl").is_file(),
        "{} has no supervisord or supervisorctl: run `bash scripts/setup.sh --tests`, which installs supervisor",
        bin.display()
    );
    bin
}

/// A supervisord running the shipped programs for one test, stopped
/// (and its programs with it) when dropped.
struct Supervisor {
    dir: PathBuf,
    conf: PathBuf,
    bin: PathBuf,
    process: Child,
    web_bind: String,
}

impl Supervisor {
    /// Starts supervisord with the shipped programs running the real
    /// binary with `env`'s settings; `worker_env` goes to the worker's
    /// `environment` line only.
    async fn start(env: &TestEnv, label: &str, worker_env: &[(&str, &str)]) -> Self {
        let bin = supervisor_bin_dir();
        let dir = std::env::temp_dir().join(format!("{}-sv-{label}", env.namespace));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");

        // The environment file, as /etc/herald/env would hold it.
        let mut lines: Vec<String> = env
            .vars
            .iter()
            .map(|(k, v)| {
                assert!(!v.contains(['\'', '\n']), "{k}={v}");
                format!("{k}='{v}'\n")
            })
            .collect();
        lines.sort();
        let env_file = dir.join("env");
        std::fs::write(&env_file, lines.concat()).expect("env file");

        let web_bind = format!("127.0.0.1:{}", free_port());
        let extra_env: HashMap<&str, Vec<(String, String)>> = [
            (
                WORKER,
                worker_env
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            (WEB, vec![("HERALD_WEB_BIND".to_owned(), web_bind.clone())]),
        ]
        .into_iter()
        .collect();
        let shipped = shipped_supervisor_conf();
        let programs = render_programs(&shipped, Path::new(HERALD), &env_file, &dir, &extra_env);
        assert_only_replaced_lines_differ(&shipped, &parse_ini(&programs, "herald.conf copy"));
        std::fs::write(dir.join("herald.conf"), programs).expect("programs");

        let d = dir.display();
        let conf = dir.join("supervisord.conf");
        std::fs::write(
            &conf,
            format!(
                "[unix_http_server]\nfile={d}/supervisor.sock\n\n\
                 [supervisord]\nlogfile={d}/supervisord.log\npidfile={d}/supervisord.pid\n\
                 childlogdir={d}\nnodaemon=true\nloglevel=info\n\n\
                 [rpcinterface:supervisor]\n\
                 supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n\
                 [supervisorctl]\nserverurl=unix://{d}/supervisor.sock\n\n\
                 [include]\nfiles = {d}/herald.conf\n"
            ),
        )
        .expect("supervisord.conf");
        let output = std::fs::File::create(dir.join("supervisord.out")).expect("output file");
        let process = Command::new(bin.join("supervisord"))
            .arg("-c")
            .arg(&conf)
            .arg("--nodaemon")
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("output file"))
            .stderr(output)
            .spawn()
            .expect("supervisord runs");
        let supervisor = Self {
            dir,
            conf,
            bin,
            process,
            web_bind,
        };
        wait_within(
            "supervisord to answer",
            START_PATIENCE,
            Duration::from_millis(100),
            || async {
                let (_, out) = supervisor.ctl(&["status"]).await;
                (out.contains(WORKER) && out.contains(WEB)).then_some(())
            },
        )
        .await;
        supervisor
    }

    /// Runs `supervisorctl` with `args`; its exit code and what it printed.
    async fn ctl(&self, args: &[&str]) -> (Option<i32>, String) {
        let run = tokio::process::Command::new(self.bin.join("supervisorctl"))
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(CTL_PATIENCE, run)
            .await
            .unwrap_or_else(|_| {
                panic!("supervisorctl {args:?} still running after {CTL_PATIENCE:?}")
            })
            .expect("supervisorctl runs");
        (
            output.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        )
    }

    /// `program`'s state as `supervisorctl status` names it, and its pid
    /// while it has one.
    async fn state(&self, program: &str) -> (String, Option<u32>) {
        let (_, out) = self.ctl(&["status", program]).await;
        let line = out
            .lines()
            .find(|l| l.split_whitespace().next() == Some(program))
            .unwrap_or_else(|| panic!("supervisorctl status {program}: {out}"));
        let words: Vec<&str> = line.split_whitespace().collect();
        let pid = (words.get(2) == Some(&"pid"))
            .then(|| words.get(3)?.trim_end_matches(',').parse().ok())
            .flatten();
        (words.get(1).copied().unwrap_or_default().to_owned(), pid)
    }

    /// Waits until `program` is in `state`; its pid then, if it has one.
    async fn wait_state(&self, program: &str, state: &str) -> Option<u32> {
        wait_within(
            &format!("{program} to be {state}"),
            START_PATIENCE,
            Duration::from_millis(200),
            || async {
                let (now, pid) = self.state(program).await;
                (now == state).then_some(pid)
            },
        )
        .await
    }

    /// The pid of `program`, RUNNING; the process is herald itself (the
    /// shell of the shipped command exec'd it), so signals reach it.
    async fn running_pid(&self, program: &str) -> u32 {
        let pid = self
            .wait_state(program, "RUNNING")
            .await
            .expect("a running program has a pid");
        let (_, out) = self.ctl(&["pid", program]).await;
        assert_eq!(out.trim(), pid.to_string(), "supervisorctl pid {program}");
        assert_eq!(
            process_name(pid).as_deref(),
            Some("herald"),
            "{program}'s pid {pid} is herald"
        );
        pid
    }

    /// supervisord's own log.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("supervisord.log")).unwrap_or_default()
    }

    /// What `program` wrote to standard error, every start of it.
    fn child_stderr(&self, program: &str) -> String {
        let prefix = format!("{program}-stderr---supervisor-");
        let mut text = String::new();
        for entry in std::fs::read_dir(&self.dir).expect("scratch dir").flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
        text
    }

    /// supervisord's log lines about `program` containing `what`.
    fn log_lines(&self, program: &str, what: &str) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains(what) && l.contains(program))
            .map(str::to_owned)
            .collect()
    }

    async fn wait_web_ready(&self, env: &TestEnv) {
        wait_within(
            "herald web to be ready",
            START_PATIENCE,
            Duration::from_millis(100),
            || async {
                let response = env
                    .http
                    .get(format!("http://{}/readyz", self.web_bind))
                    .send()
                    .await
                    .ok()?;
                (response.status() == 200).then_some(())
            },
        )
        .await;
    }
}

/// Processes descending from `pid`, with their names (from /proc): the
/// programs, and whatever they started if a command failed to `exec`.
fn descendants_of(pid: u32) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    // (pid, parent, name) of every process.
    let table: Vec<(u32, u32, String)> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            // pid (comm) state ppid ...; comm may hold spaces.
            let name = stat.get(stat.find('(')? + 1..stat.rfind(')')?)?.to_owned();
            let after = &stat[stat.rfind(')')? + 1..];
            let parent = after.split_whitespace().nth(1)?.parse().ok()?;
            Some((p, parent, name))
        })
        .collect();
    let mut found = Vec::new();
    let mut parents = vec![pid];
    while let Some(parent) = parents.pop() {
        for (p, _, name) in table.iter().filter(|(_, pp, _)| *pp == parent) {
            found.push((*p, name.clone()));
            parents.push(*p);
        }
    }
    found
}

/// The name of process `pid`, if it runs.
fn process_name(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|n| n.trim().to_owned())
}

fn kill(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}

impl Drop for Supervisor {
    /// Stops supervisord, which stops its programs as it would on a host
    /// (SIGTERM, SIGKILL after `stopwaitsecs`); whatever is still running
    /// after that is killed. On a failure the logs are printed first.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("supervisord log:\n{}", self.log());
            for program in [WORKER, WEB] {
                let stderr = self.child_stderr(program);
                let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
                eprintln!(
                    "{program} stderr (last lines):\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
        let pid = self.process.id();
        let programs = descendants_of(pid);
        kill(pid, "TERM");
        let deadline = Instant::now() + Duration::from_secs(60);
        while matches!(self.process.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.process.kill();
        let _ = self.process.wait();
        // Left running only if something went wrong (an orphan of a
        // command that did not exec herald); the same name guards against a
        // reused pid.
        for (child, name) in programs {
            if process_name(child).as_deref() == Some(name.as_str()) {
                kill(child, "KILL");
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------
// Messages

async fn enqueue(env: &TestEnv, label: &str, count: usize) -> Vec<MessageId> {
    let account = account();
    let jobs = (0..count)
        .map(|i| SendMessage::new(account, format!("{label} {i}"), "under supervision"))
        .collect();
    Producer::connect(&redis_url(), &env.settings.redis.namespace)
        .await
        .expect("producer")
        .with_limits(env.settings.message)
        .enqueue_messages(jobs)
        .await
        .expect("bulk enqueue")
}

async fn wait_long<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_within(what, LONG_PATIENCE, Duration::from_millis(200), check).await
}

async fn redis(env: &TestEnv) -> herald_jobs::RedisConnection {
    herald::queue::connect(env.settings.redis.url.as_str())
        .await
        .expect("Redis")
}

/// Push job ids leased (fetched, not acknowledged) by worker process `pid`.
async fn leased_by(env: &TestEnv, pid: u32) -> Vec<String> {
    let mut conn = redis(env).await;
    let pattern = format!(
        "{}:inflight:*-{pid}-*",
        env.settings.redis.namespace.queue(QueueName::Push)
    );
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut conn)
        .await
        .expect("KEYS");
    let mut ids = Vec::new();
    for key in keys {
        let members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(key)
            .query_async(&mut conn)
            .await
            .expect("SMEMBERS");
        ids.extend(members);
    }
    ids
}

/// Push jobs waiting in the ready list.
async fn pending_pushes(env: &TestEnv) -> usize {
    redis::cmd("LLEN")
        .arg(format!(
            "{}:active",
            env.settings.redis.namespace.queue(QueueName::Push)
        ))
        .query_async(&mut redis(env).await)
        .await
        .expect("LLEN")
}

/// Every message stored once, and its `new_message` accepted exactly once.
async fn assert_each_stored_and_pushed_once(env: &TestEnv, ids: &[MessageId]) {
    let oids: Vec<_> = ids.iter().map(|id| id.object_id()).collect();
    assert_eq!(
        env.message_count(doc! { "_id": { "$in": oids } }).await as usize,
        ids.len(),
        "every message stored"
    );
    assert_eq!(
        env.message_count(doc! {}).await as usize,
        ids.len(),
        "nothing else stored"
    );
    let pushes = env.pushes_per_message().await;
    let twice: Vec<_> = pushes.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "pushed more than once: {twice:?}");
    let expected: HashSet<String> = ids.iter().map(|id| id.to_hex()).collect();
    let pushed: HashSet<String> = pushes.into_keys().collect();
    assert_eq!(
        pushed.len(),
        expected.len(),
        "{} of {} pushed",
        pushed.len(),
        expected.len()
    );
    assert_eq!(pushed, expected, "every message pushed");
    assert_eq!(
        env.queue_set(QueueName::Push, "done").await.len(),
        ids.len()
    );
    assert!(env.queue_set(QueueName::Push, "dead").await.is_empty());
}

async fn clear_sandbox_failures(env: &TestEnv) {
    env.http
        .delete(format!("{}/_sandbox/failures", env.sandbox_url))
        .send()
        .await
        .expect("sandbox answers");
}

// ---------------------------------------------------------------------------
// Under supervisord

/// Messages in flight when the worker is killed.
const KILLED_UNDER: usize = 300;
/// Of which pushed before the kill.
const PUSHED_BEFORE_KILL: u32 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_under_load_is_restarted_and_every_message_is_stored_and_pushed_once() {
    // Retries of the pushes held back below at most 2 s apart, so that the
    // run after the kill does not wait out a long backoff.
    let env = env_with(&[("HERALD_WORKER_RETRY_CAP_SECS", "2")]).await;
    // The provider accepts the first 100 pushes; then it holds each push
    // 2 s and answers 503, so that when the worker is killed its pushes in
    // flight are ones the provider has not accepted. (A worker killed in the
    // instant between the provider's 200 and the receipt reaching Redis
    // pushes that event again: docs/delivery.md names that exception.)
    env.script_sandbox(serde_json::json!({
        "skip": PUSHED_BEFORE_KILL,
        "status": 503,
        "delayMs": 2000,
        "count": 1_000_000,
    }))
    .await;
    let supervisor = Supervisor::start(&env, "kill", &[]).await;
    let first = supervisor.running_pid(WORKER).await;
    supervisor.running_pid(WEB).await;
    supervisor.wait_web_ready(&env).await;

    let ids = enqueue(&env, "killed", KILLED_UNDER).await;
    let leased = wait_long("100 pushes done and more held by the worker", || async {
        let done = env.queue_set(QueueName::Push, "done").await.len();
        let accepted = env.accepted_count().await;
        let leased = leased_by(&env, first).await;
        (accepted == u64::from(PUSHED_BEFORE_KILL)
            && done == PUSHED_BEFORE_KILL as usize
            && !leased.is_empty())
        .then_some(leased)
    })
    .await;
    let stored = env.message_count(doc! {}).await;
    eprintln!(
        "at the kill: {stored} of {KILLED_UNDER} stored, {PUSHED_BEFORE_KILL} pushed, {} push jobs leased",
        leased.len()
    );

    kill(first, "KILL");
    // The provider recovers at once, so that the jobs held back do not
    // spend their attempts while the new worker starts.
    clear_sandbox_failures(&env).await;
    let second = wait_within(
        "supervisord to start the worker again",
        START_PATIENCE,
        Duration::from_millis(200),
        || async {
            match supervisor.state(WORKER).await {
                (state, Some(pid)) if state == "RUNNING" && pid != first => Some(pid),
                _ => None,
            }
        },
    )
    .await;
    assert!(
        !Path::new(&format!("/proc/{first}")).exists(),
        "the killed worker is gone"
    );
    assert_eq!(supervisor.running_pid(WORKER).await, second);
    let exits = supervisor.log_lines(WORKER, "exited:");
    assert_eq!(
        exits,
        supervisor.log_lines(
            WORKER,
            "exited: herald-worker (terminated by SIGKILL; not expected)"
        ),
        "one unexpected exit, the kill"
    );
    assert_eq!(exits.len(), 1, "{exits:?}");
    assert_eq!(supervisor.log_lines(WORKER, "spawned:").len(), 2);

    // The new worker takes over the dead one's leases once its heartbeats
    // are overdue (2 s x 2 in config/test.toml).
    wait_long("every message stored and pushed", || async {
        let stored = env.message_count(doc! {}).await as usize;
        let done = env.queue_set(QueueName::Push, "done").await.len();
        (stored == KILLED_UNDER && done == KILLED_UNDER).then_some(())
    })
    .await;
    assert!(
        leased_by(&env, first).await.is_empty(),
        "the killed worker's leases were taken over"
    );
    assert!(
        supervisor
            .child_stderr(WORKER)
            .contains("re-queued jobs of workers that stopped heart-beating"),
        "the restarted worker recovered the killed one's jobs"
    );
    assert_each_stored_and_pushed_once(&env, &ids).await;
    assert_eq!(
        supervisor.state(WORKER).await,
        ("RUNNING".into(), Some(second))
    );
}

/// Messages enqueued before the stop.
const STOPPED_UNDER: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisorctl_stop_drains_the_worker_which_exits_zero_and_loses_nothing() {
    let env = env_with(&[]).await;
    // Each push takes 3 s at the provider, then is accepted: pushes are
    // in flight when the stop comes.
    env.script_sandbox(serde_json::json!({ "delayMs": 3000, "count": 1_000_000 }))
        .await;
    let supervisor = Supervisor::start(&env, "stop", &[]).await;
    let pid = supervisor.running_pid(WORKER).await;

    let ids = enqueue(&env, "stopped", STOPPED_UNDER).await;
    wait_long("every message stored and pushes running", || async {
        let stored = env.message_count(doc! {}).await as usize;
        (stored == STOPPED_UNDER && !leased_by(&env, pid).await.is_empty()).then_some(())
    })
    .await;
    // The running pushes are now waiting at the provider.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let accepted_before = env.accepted_count().await;
    let leased_at_stop = leased_by(&env, pid).await;

    let started = Instant::now();
    let (code, out) = supervisor.ctl(&["stop", WORKER]).await;
    let stop_took = started.elapsed();
    assert_eq!(code, Some(0), "supervisorctl stop: {out}");
    assert!(out.contains("herald-worker: stopped"), "{out}");
    assert_eq!(supervisor.state(WORKER).await, ("STOPPED".into(), None));
    assert_eq!(
        supervisor.log_lines(WORKER, "stopped:"),
        supervisor.log_lines(WORKER, "stopped: herald-worker (exit status 0)"),
    );
    assert_eq!(supervisor.log_lines(WORKER, "stopped:").len(), 1);
    assert!(supervisor.log_lines(WORKER, "exited:").is_empty());
    let stderr = supervisor.child_stderr(WORKER);
    assert!(stderr.contains("shutdown requested"), "{stderr}");
    assert!(stderr.contains("worker stopped"), "{stderr}");

    // The pushes in flight finished and were acknowledged; nothing stays
    // leased; the jobs not started wait in the queue.
    let accepted = env.accepted_count().await;
    let done = env.queue_set(QueueName::Push, "done").await.len();
    let pending = pending_pushes(&env).await;
    eprintln!(
        "stop: {accepted_before} pushed before it, {} leased at it, {accepted} pushed when \
         stopped, {pending} put back, in {stop_took:?}",
        leased_at_stop.len()
    );
    let during_drain = (accepted - accepted_before) as usize;
    assert!(during_drain > 0, "the running pushes finished");
    assert!(
        during_drain <= env.settings.queues.push.concurrency,
        "no push started after the stop: {during_drain} finished during the drain"
    );
    assert_eq!(done as u64, accepted, "and were acknowledged");
    assert!(leased_by(&env, pid).await.is_empty(), "nothing left leased");
    assert_eq!(pending + done, STOPPED_UNDER, "the rest put back");

    // Started again, it pushes the rest, each message once.
    clear_sandbox_failures(&env).await;
    let (code, out) = supervisor.ctl(&["start", WORKER]).await;
    assert_eq!(code, Some(0), "supervisorctl start: {out}");
    let again = supervisor.running_pid(WORKER).await;
    assert_ne!(again, pid);
    wait_long("every message pushed", || async {
        let done = env.queue_set(QueueName::Push, "done").await.len();
        (done == STOPPED_UNDER).then_some(())
    })
    .await;
    assert_each_stored_and_pushed_once(&env, &ids).await;

    // And both programs stop cleanly, as on a host's shutdown.
    supervisor.running_pid(WEB).await;
    supervisor.wait_web_ready(&env).await;
    let (code, out) = supervisor.ctl(&["stop", "all"]).await;
    assert_eq!(code, Some(0), "supervisorctl stop all: {out}");
    for program in [WORKER, WEB] {
        let stops = supervisor.log_lines(program, "stopped:");
        assert_eq!(
            stops,
            supervisor.log_lines(program, &format!("stopped: {program} (exit status 0)")),
            "{program}"
        );
        assert!(supervisor.log_lines(program, "exited:").is_empty());
    }
    assert_eq!(supervisor.log_lines(WORKER, "stopped:").len(), 2);
    assert_eq!(supervisor.log_lines(WEB, "stopped:").len(), 1);
}

/// The time at the start of a supervisord log line.
fn logged_at(line: &str) -> chrono::NaiveDateTime {
    chrono::NaiveDateTime::parse_from_str(
        line.get(..23).unwrap_or_default(),
        "%Y-%m-%d %H:%M:%S,%3f",
    )
    .unwrap_or_else(|e| panic!("{e}: {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_an_invalid_setting_ends_fatal_after_a_few_starts_saying_which() {
    let env = env_with(&[]).await;

    // Without a supervisor first: each kind of invalid value is one line
    // on standard error naming the setting, and exit status 78.
    for (var, value, key) in [
        (
            "HERALD_QUEUES_PUSH_CONCURRENCY",
            "0",
            "queues.push.concurrency",
        ),
        (
            "HERALD_WORKER_FETCH_BATCH_SIZE",
            "lots",
            "worker.fetch_batch_size",
        ),
        ("HERALD_WORKER_OPS_BIND", "nowhere", "worker.ops_bind"),
        ("HERALD_PUSH_PROVIDER", "carrier-pigeon", "push.provider"),
    ] {
        let output = env.run_herald(&["worker"], &[(var, value)]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(EXIT_CONFIG),
            "{var}={value}: {stderr}"
        );
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{var}={value}: {stderr}");
        assert!(
            lines[0].starts_with("error: invalid configuration: ") && lines[0].contains(key),
            "{var}={value}: {stderr}"
        );
    }

    // Another fatal error at start, which a restart may cure, exits 1:
    // the worker's ops address in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let bind = taken.local_addr().expect("its address").to_string();
    let output = env.run_herald(&["worker"], &[("HERALD_WORKER_OPS_BIND", &bind)]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "ops address in use: {stderr}"
    );
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: ")
            && last.contains(&bind)
            && last.contains("HERALD_WORKER_OPS_BIND"),
        "ops address in use: {stderr}"
    );
    drop(taken);

    let startretries = shipped_supervisor_conf()
        .iter()
        .find(|s| s.name == format!("program:{WORKER}"))
        .expect("the worker program")
        .number("startretries") as usize;
    let supervisor =
        Supervisor::start(&env, "fatal", &[("HERALD_QUEUES_PUSH_CONCURRENCY", "0")]).await;
    supervisor.wait_state(WORKER, "FATAL").await;
    // No start after FATAL: look again a few seconds later.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(supervisor.state(WORKER).await.0, "FATAL");

    let spawned = supervisor.log_lines(WORKER, "spawned:");
    let exited = supervisor.log_lines(WORKER, "exited:");
    eprintln!(
        "fatal configuration: {} starts in {:?}",
        spawned.len(),
        logged_at(spawned.last().expect("a start")) - logged_at(&spawned[0])
    );
    // The first start and `startretries` more, no other: exit 78 is not
    // listed in `exitcodes`, and would not count if it were, since every
    // exit came before `startsecs`, each a failed start.
    assert_eq!(spawned.len(), startretries + 1, "{spawned:#?}");
    for line in &exited {
        assert!(
            line.ends_with(&format!(
                "exited: herald-worker (exit status {EXIT_CONFIG}; not expected)"
            )),
            "{line}"
        );
    }
    assert_eq!(exited.len(), spawned.len());
    // Not a tight loop: before its n-th retry supervisord waited n seconds
    // after the exit before it.
    for (n, (exit, spawn)) in exited.iter().zip(&spawned[1..]).enumerate() {
        let waited = logged_at(spawn) - logged_at(exit);
        assert!(
            waited >= chrono::Duration::milliseconds((n as i64 + 1) * 1000 - 50),
            "retry {} came {waited:?} after the exit",
            n + 1
        );
    }
    assert_eq!(
        supervisor
            .log_lines(WORKER, "gave up: herald-worker entered FATAL state")
            .len(),
        1
    );

    // Each start said why in one line, naming the setting and its variable.
    let stderr = supervisor.child_stderr(WORKER);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), spawned.len(), "one line per start:\n{stderr}");
    for line in &lines {
        assert_eq!(
            *line,
            "error: invalid configuration: setting `queues.push.concurrency` \
             (env HERALD_QUEUES_PUSH_CONCURRENCY) must be greater than 0"
        );
    }

    // The other program is not affected.
    supervisor.running_pid(WEB).await;
    supervisor.wait_web_ready(&env).await;
}
