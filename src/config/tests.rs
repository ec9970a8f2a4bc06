//! Loading tests, and the tests that hold `config/default.toml` and the table of
//! variables in `docs/configuration.md` to the settings' declarations.

use std::collections::{BTreeMap, HashMap};

use secrecy::ExposeSecret;

use super::*;

/// `pairs` as the process environment, with a configuration directory that
/// does not exist unless `pairs` names one, so only compiled defaults apply.
pub(super) fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    let mut map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    map.entry("HERALD_CONFIG_DIR".into())
        .or_insert_with(|| "/nonexistent-herald-config".into());
    map
}

#[test]
fn compiled_defaults_load_without_any_file() {
    let s = Settings::load_from(&vars(&[])).unwrap();
    assert_eq!(s.redis.url, "redis://127.0.0.1:6379");
    assert_eq!(s.redis.namespace.as_str(), "herald");
    assert_eq!(s.mongodb.database, "herald");
    assert_eq!(s.message.max_content_bytes, 64 * 1024);
    assert_eq!(s.log.format, LogFormat::Pretty);
}

#[test]
fn every_named_variable_overrides_its_setting() {
    let s = Settings::load_from(&vars(&[
        ("HERALD_REDIS_URL", "redis://cache:6380/2"),
        ("HERALD_MONGODB_URL", "mongodb://db1,db2/?replicaSet=rs0"),
        ("HERALD_MONGODB_DATABASE", "scrm"),
        ("HERALD_TUISONGBAO_URL", "https://push.example.com"),
        ("HERALD_TUISONGBAO_APP_ID", "app-1"),
        ("HERALD_TUISONGBAO_SECRET", "s3cret"),
        ("HERALD_QUEUES_SEND_MESSAGE_CONCURRENCY", "3"),
        ("HERALD_LOG_FORMAT", "json"),
    ]))
    .unwrap();
    assert_eq!(s.redis.url, "redis://cache:6380/2");
    assert_eq!(s.mongodb.url, "mongodb://db1,db2/?replicaSet=rs0");
    assert_eq!(s.mongodb.database, "scrm");
    assert_eq!(s.tuisongbao.url.as_str(), "https://push.example.com/");
    assert_eq!(s.tuisongbao.app_id, "app-1");
    assert_eq!(s.tuisongbao.secret.expose_secret(), "s3cret");
    assert_eq!(s.queues.send_message.concurrency, 3);
    assert_eq!(s.log.format, LogFormat::Json);
}

#[test]
fn every_declared_setting_is_read_through_its_variable() {
    // A declared setting that its section's `read` ignores would take a
    // variable and do nothing with it. Set each to a value that either is
    // refused or changes what loads: "x" for numbers and booleans, empty
    // for text.
    let base = format!("{:?}", Settings::load_from(&vars(&[])).unwrap());
    for setting in all_settings() {
        let typed =
            setting.default.parse::<f64>().is_ok() || setting.default.parse::<bool>().is_ok();
        // An empty default cannot be changed by an empty value: "x" then.
        let value = if typed || setting.default.is_empty() {
            "x"
        } else {
            ""
        };
        let var = setting.env_var();
        // A provider's section counts only when it is the chosen one.
        let provider = if setting.key.starts_with("pusher.") {
            "pusher"
        } else {
            "tuisongbao"
        };
        let base = if provider == "pusher" {
            format!(
                "{:?}",
                Settings::load_from(&vars(&[("HERALD_PUSH_PROVIDER", provider)])).unwrap()
            )
        } else {
            base.clone()
        };
        let mut pairs = vec![(var.as_str(), value)];
        if setting.key != "push.provider" {
            pairs.push(("HERALD_PUSH_PROVIDER", provider));
        }
        match Settings::load_from(&vars(&pairs)) {
            Err(e) => assert!(e.to_string().contains(setting.key), "{var}={value:?}: {e}"),
            // The secret does not print, so its change is seen through it.
            Ok(s) if setting.key == "tuisongbao.secret" => {
                assert_eq!(s.tuisongbao.secret.expose_secret(), value)
            }
            Ok(s) if setting.key == "pusher.secret" => {
                assert_eq!(s.pusher.secret.expose_secret(), value)
            }
            Ok(s) if setting.key == "export.s3_secret_access_key" => {
                assert_eq!(s.export.s3.secret_access_key.expose_secret(), value)
            }
            Ok(s) => assert_ne!(format!("{s:?}"), base, "{var}={value:?} changed nothing"),
        }
    }
}

#[test]
fn variables_are_derived_from_keys_and_distinct() {
    let mut seen = HashMap::new();
    for setting in all_settings() {
        let var = setting.env_var();
        assert_eq!(
            var,
            format!("HERALD_{}", setting.key.to_uppercase().replace('.', "_"))
        );
        if let Some(other) = seen.insert(var.clone(), setting.key) {
            panic!("{} and {other} share {var}", setting.key);
        }
    }
    assert_eq!(env_var_for("redis.url"), "HERALD_REDIS_URL");
    assert_eq!(
        env_var_for("queues.push.concurrency"),
        "HERALD_QUEUES_PUSH_CONCURRENCY"
    );
}

#[test]
fn invalid_values_name_the_setting_and_its_variable() {
    let cases = [
        ("HERALD_REDIS_URL", "http://cache", "redis.url"),
        ("HERALD_REDIS_NAMESPACE", "a:b", "redis.namespace"),
        ("HERALD_MONGODB_URL", "", "mongodb.url"),
        ("HERALD_MONGODB_DATABASE", "a.b", "mongodb.database"),
        ("HERALD_TUISONGBAO_URL", "not a url", "tuisongbao.url"),
        ("HERALD_TUISONGBAO_SECRET", "", "tuisongbao.secret"),
        (
            "HERALD_QUEUES_SEND_MESSAGE_CONCURRENCY",
            "0",
            "queues.send_message.concurrency",
        ),
        ("HERALD_LOG_FORMAT", "xml", "log.format"),
        ("HERALD_WORKER_OPS_BIND", "localhost", "worker.ops_bind"),
    ];
    for (var, value, key) in cases {
        let err = Settings::load_from(&vars(&[(var, value)])).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(key) && text.contains(var),
            "{var}={value}: {text}"
        );
    }
}

#[test]
fn every_declared_bound_is_the_one_enforced() {
    // Each whole-number rule is tried at its edges through the setting's
    // variable: the edges load, one past them is refused naming the
    // setting. So the page's "allowed" column is what loading does.
    let mut checked = 0;
    for setting in all_settings() {
        let var = setting.env_var();
        // A provider's section counts only when it is the chosen one.
        let provider = if setting.key.starts_with("pusher.") {
            "pusher"
        } else {
            "tuisongbao"
        };
        let loads = |var: &str, value: &str| {
            Settings::load_from(&vars(&[(var, value), ("HERALD_PUSH_PROVIDER", provider)]))
                .map(|_| ())
        };
        let (min, max) = match setting.rule {
            Rule::AtLeast(min) => (min, None),
            Rule::Between(min, max) => (min, Some(max)),
            Rule::Fraction => {
                for inside in ["1", "0.001"] {
                    assert!(loads(&var, inside).is_ok(), "{var}={inside}");
                }
                for outside in ["0", "1.01", "-0.5"] {
                    let err = loads(&var, outside).expect_err(&var).to_string();
                    assert!(err.contains(setting.key), "{var}={outside}: {err}");
                }
                checked += 1;
                continue;
            }
            _ => continue,
        };
        let default: u64 = setting.default.parse().expect("a whole-number default");
        assert!(
            default >= min && max.is_none_or(|max| default <= max),
            "{}: the default is outside its rule",
            setting.key
        );
        assert!(loads(&var, &min.to_string()).is_ok(), "{var}={min}");
        if min > 0 {
            let below = (min - 1).to_string();
            let err = loads(&var, &below).expect_err(&var).to_string();
            assert!(
                err.contains(setting.key) && err.contains(&var),
                "{var}={below}: {err}"
            );
        }
        if let Some(max) = max {
            assert!(loads(&var, &max.to_string()).is_ok(), "{var}={max}");
            let above = (max + 1).to_string();
            let err = loads(&var, &above).expect_err(&var).to_string();
            assert!(err.contains(setting.key), "{var}={above}: {err}");
        }
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} settings have numeric rules");
}

#[test]
fn every_setting_with_a_numeric_default_declares_a_numeric_rule() {
    for setting in all_settings() {
        if setting.default.parse::<f64>().is_ok() {
            assert!(
                matches!(
                    setting.rule,
                    Rule::AtLeast(_) | Rule::Between(..) | Rule::Fraction
                ),
                "{} has a numeric default but rule {:?}",
                setting.key,
                setting.rule
            );
        }
    }
}

#[test]
fn a_non_numeric_number_is_a_load_error_naming_the_key() {
    let err =
        Settings::load_from(&vars(&[("HERALD_QUEUES_PUSH_CONCURRENCY", "many")])).unwrap_err();
    assert!(err.to_string().contains("concurrency"), "{err}");
}

/// The repository's `config/` folder with `HERALD_ENV=environment`, plus
/// `extra` variables.
fn load_environment(environment: &str, extra: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/config");
    let mut all = vec![("HERALD_CONFIG_DIR", dir), ("HERALD_ENV", environment)];
    all.extend_from_slice(extra);
    Settings::load_from(&vars(&all))
}

#[test]
fn the_production_file_requires_push_credentials() {
    let err = load_environment("production", &[]).unwrap_err();
    assert!(err.to_string().contains("HERALD_TUISONGBAO_URL"), "{err}");

    let ok = load_environment(
        "production",
        &[
            ("HERALD_TUISONGBAO_URL", "https://api.example.com"),
            ("HERALD_TUISONGBAO_APP_ID", "a"),
            ("HERALD_TUISONGBAO_SECRET", "s"),
        ],
    )
    .unwrap();
    assert_eq!(ok.log.format, LogFormat::Json);

    // With the Pusher provider, its settings are the ones required.
    let err = load_environment("production", &[("HERALD_PUSH_PROVIDER", "pusher")]).unwrap_err();
    assert!(err.to_string().contains("HERALD_PUSHER_URL"), "{err}");
    let ok = load_environment(
        "production",
        &[
            ("HERALD_PUSH_PROVIDER", "pusher"),
            ("HERALD_PUSHER_URL", "https://api-eu.pusher.com"),
            ("HERALD_PUSHER_APP_ID", "1"),
            ("HERALD_PUSHER_KEY", "k"),
            ("HERALD_PUSHER_SECRET", "s"),
        ],
    )
    .unwrap();
    assert_eq!(ok.pusher.url.as_str(), "https://api-eu.pusher.com/");
}

#[test]
fn an_unknown_environment_is_refused() {
    let err = load_environment("staging", &[]).unwrap_err();
    assert!(err.to_string().contains("staging.toml"), "{err}");
}

/// Where `found` (a file's view of the settings) disagrees with `declared`,
/// one line each: a declared entry it lacks or spells otherwise (shown as
/// `expected` prints it), or an entry of its own that names no setting.
fn disagreements<V: PartialEq>(
    declared: &BTreeMap<String, V>,
    found: &BTreeMap<String, V>,
    expected: impl Fn(&str, &V) -> String,
) -> String {
    let wrong = declared
        .iter()
        .filter(|(name, value)| found.get(*name) != Some(value))
        .map(|(name, value)| expected(name, value));
    let unknown = found
        .keys()
        .filter(|name| !declared.contains_key(*name))
        .map(|name| format!("names no setting: {name}"));
    wrong.chain(unknown).collect::<Vec<_>>().join("\n")
}

#[test]
fn default_toml_gives_every_declared_setting_its_declared_default() {
    // The compiled-in text is config/default.toml itself.
    let file = config::Config::builder()
        .add_source(config::File::from_str(
            DEFAULTS_TOML,
            config::FileFormat::Toml,
        ))
        .build()
        .unwrap();
    let in_file: BTreeMap<String, String> = flatten(&file)
        .into_iter()
        .map(|(key, value)| (key, value.into_string().unwrap()))
        .collect();
    let declared: BTreeMap<String, String> = all_settings()
        .map(|s| (s.key.to_owned(), s.default.to_owned()))
        .collect();
    let wrong = disagreements(&declared, &in_file, |key, default| {
        format!("should give {key} = {default:?}")
    });
    assert!(
        wrong.is_empty(),
        "config/default.toml and the declarations differ:\n{wrong}"
    );
}

/// `HERALD_` variables the documents name that are not settings, and why.
const DOC_NON_SETTINGS: &[(&str, &str)] = &[
    ("HERALD_ENV", "chooses the environment file"),
    ("HERALD_CONFIG_DIR", "chooses the configuration directory"),
    (
        "HERALD_TOKEN",
        "a producer's own variable in the PHP example",
    ),
    ("HERALD_TEST_REDIS_URL", "the integration tests' Redis"),
    (
        "HERALD_TEST_REDIS_CLUSTER_URL",
        "the integration tests' Redis Cluster",
    ),
    ("HERALD_TEST_MONGODB_URL", "the integration tests' MongoDB"),
    ("HERALD_TEST_S3S_FS", "the integration tests' s3s-fs binary"),
    (
        "HERALD_TEST_SOCKUDO",
        "the inbox example test's Sockudo binary",
    ),
    (
        "HERALD_INBOX_SCREENSHOT",
        "where the inbox example test saves docs/inbox.png",
    ),
    (
        "HERALD_MONGO_IMPL",
        "which SecantusDB scripts/setup.sh installs",
    ),
];

/// The reference of every setting, with the table this test keeps true.
const CONFIGURATION_DOC: &str = include_str!("../../docs/configuration.md");

/// README and every document under `docs/`, one text each.
fn documents() -> Vec<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = vec![root.join("README.md")];
    let mut docs: Vec<_> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ is readable")
        .map(|entry| entry.expect("a docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    paths.extend(docs);
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("a readable document");
            (path.display().to_string(), text)
        })
        .collect()
}

#[test]
fn the_configuration_page_holds_the_generated_table() {
    // The page's table runs from its header row to the first line that is
    // not a row; it must be `herald config --markdown` to the byte.
    let first = CONFIGURATION_DOC
        .find("| setting | variable | default | allowed | meaning |")
        .expect("docs/configuration.md has the table of variables");
    let committed: String = CONFIGURATION_DOC[first..]
        .lines()
        .take_while(|line| line.starts_with('|'))
        .map(|line| format!("{line}\n"))
        .collect();
    let generated = super::reference_table();
    if committed != generated {
        let declared: BTreeMap<&str, &str> = generated.lines().map(|l| (l, "")).collect();
        let shown: BTreeMap<&str, &str> = committed.lines().map(|l| (l, "")).collect();
        let missing: Vec<&&str> = declared
            .keys()
            .filter(|l| !shown.contains_key(*l))
            .collect();
        let extra: Vec<&&str> = shown
            .keys()
            .filter(|l| !declared.contains_key(*l))
            .collect();
        panic!(
            "docs/configuration.md's table is not `herald config --markdown`; \
             replace it with that output.\nmissing or different: {missing:#?}\nnot declared: {extra:#?}"
        );
    }
}

#[test]
fn every_setting_is_in_the_plain_reference_with_its_default() {
    let text = super::reference_text();
    for setting in all_settings() {
        assert!(
            text.contains(&format!(
                "{} = {:?} ({})",
                setting.key,
                setting.default,
                setting.env_var()
            )),
            "{}",
            setting.key
        );
    }
}

#[test]
fn the_documents_name_no_herald_variable_that_is_not_a_setting_or_listed() {
    let settings: Vec<String> = all_settings().map(Setting::env_var).collect();
    let documents = documents();
    let mut unknown = Vec::new();
    for (path, text) in &documents {
        for (start, _) in text.match_indices("HERALD_") {
            let name: String = text[start..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            // `HERALD_<SECTION>_<KEY>` describes the pattern.
            let known = name == "HERALD_"
                || settings.contains(&name)
                || DOC_NON_SETTINGS.iter().any(|(var, _)| *var == name);
            if !known {
                unknown.push(format!("{name} in {path}"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "the documents name unknown variables: {unknown:?}"
    );
    for (var, _) in DOC_NON_SETTINGS {
        assert!(
            documents.iter().any(|(_, text)| text.contains(var)),
            "{var} is listed but no document names it"
        );
    }
}

#[test]
fn keys_that_are_not_settings_are_listed_and_the_shipped_files_have_none() {
    let dir = std::env::temp_dir().join(format!("herald-config-unknown-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("default.toml"),
        "[worker]\npoll_interval_ms = 100\nconcurency = 4\n\n[redis]\nnamespace = \"ok\"\n",
    )
    .unwrap();
    let loaded = Settings::load_from(&vars(&[("HERALD_CONFIG_DIR", dir.to_str().unwrap())]));
    let _ = std::fs::remove_dir_all(&dir);
    let loaded = loaded.unwrap();
    assert_eq!(
        loaded.unknown_keys,
        ["worker.concurency", "worker.poll_interval_ms"]
    );
    assert_eq!(loaded.redis.namespace.as_str(), "ok");
    // Variables named like a section's settings, but none of them, too;
    // other HERALD_ variables (tools', tests') are not the settings' business.
    let loaded = Settings::load_from(&vars(&[
        ("HERALD_WORKER_POLL_INTERVAL_MS", "100"),
        ("HERALD_WORKER_CONCURRENCY", "4"),
        ("HERALD_MONGO_IMPL", "py"),
        ("HERALD_TEST_REDIS_URL", "redis://elsewhere"),
        ("HERALD_PUSHER_URL", "http://127.0.0.1:1"),
    ]))
    .unwrap();
    // An earlier name of a setting is listed too (and read, see
    // `queues::tests`).
    assert_eq!(
        loaded.unknown_keys,
        [
            "HERALD_WORKER_CONCURRENCY",
            "HERALD_WORKER_POLL_INTERVAL_MS"
        ]
    );
    for environment in ["development", "test", "production"] {
        let extra = [
            ("HERALD_TUISONGBAO_URL", "https://api.example.com"),
            ("HERALD_TUISONGBAO_APP_ID", "a"),
            ("HERALD_TUISONGBAO_SECRET", "s"),
        ];
        let settings = load_environment(environment, &extra).unwrap();
        assert!(
            settings.unknown_keys.is_empty(),
            "{environment}: {:?}",
            settings.unknown_keys
        );
    }
}

#[test]
fn printed_settings_show_no_secret() {
    let settings = Settings::load_from(&vars(&[
        ("HERALD_REDIS_URL", "redis://app:redis-pass@cache:6379"),
        (
            "HERALD_MONGODB_URL",
            "mongodb://app:mongo-pass@db:27017/?tlsCertificateKeyFilePassword=tls-pass",
        ),
        (
            "HERALD_WEB_TOKEN",
            "operator-token-of-at-least-32-characters",
        ),
        ("HERALD_TUISONGBAO_SECRET", "tuisongbao-secret"),
    ]))
    .unwrap();
    let printed = format!("{settings:?}");
    for secret in [
        "redis-pass",
        "mongo-pass",
        "tls-pass",
        "operator-token-of-at-least",
        "tuisongbao-secret",
    ] {
        assert!(!printed.contains(secret), "{secret} in {printed}");
    }
    assert!(printed.contains("cache:6379") && printed.contains("db:27017"));
}
