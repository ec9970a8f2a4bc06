//! `herald token ...`: the producers' API tokens and the operators' tokens.
//!
//! Making and revoking a token are operators' actions, recorded in the
//! audit trail (`herald audit`). Revoking an operator token also ends
//! every dashboard session signed in with it.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use herald::{
    config::Settings,
    store::{
        self,
        operators::{OperatorTokenStore, Role},
        ApiTokenStore, TokenScope,
    },
    web::operator::session::{Credential, Sessions},
};
use herald_jobs::{AccountId, UserId};
use mongodb::bson::oid::ObjectId;
use serde_json::json;

use super::audit::audited;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it once (only its digest is stored): an API
    /// token for a producer (--name, and --account, --user to narrow it), or
    /// an operator's token for the dashboard (--operator and --role).
    Create {
        /// What an API token is for, e.g. the producing app's name.
        #[arg(
            long,
            required_unless_present = "operator",
            conflicts_with = "operator"
        )]
        name: Option<String>,
        /// Bind the API token to this account (24-hex): it then reaches only
        /// this account's messages, exports and users' inboxes. Without it,
        /// every account.
        #[arg(long, value_name = "HEX", conflicts_with = "operator")]
        account: Option<AccountId>,
        /// Bind the API token to this user of --account (24-hex): it then
        /// reads and marks only this user's inbox and signs only their
        /// channels (what a browser may hold); it enqueues nothing.
        #[arg(long, value_name = "HEX", requires = "account")]
        user: Option<UserId>,
        /// Make an operator's token for the dashboard and /api/v1, named for
        /// who holds it (e.g. ann).
        #[arg(long, value_name = "NAME", requires = "role")]
        operator: Option<String>,
        /// The operator's role: viewer (sees everything, changes nothing) or
        /// operator (also retries, discards, pauses, cancels, downloads).
        #[arg(long, value_parser = parse_role, requires = "operator")]
        role: Option<Role>,
    },
    /// List tokens, never their secrets: API tokens (id, name, account,
    /// user, creation time), then operator tokens (id, name, role, time).
    List,
    /// Revoke a token (either kind) by its id; it stops working at once,
    /// and an operator token's dashboard sessions end.
    Revoke {
        /// The token's id, as `herald token list` shows it.
        id: String,
    },
}

fn parse_role(text: &str) -> Result<Role, String> {
    text.parse()
}

/// Runs `herald token ...`.
pub async fn run(command: TokenCommand, settings: &Settings) -> anyhow::Result<ExitCode> {
    let database = store::connect(&settings.mongodb).await?;
    let outcome = run_with(&database, command, settings).await;
    // Closed before the runtime ends, so the driver's tasks end first.
    store::close(&database).await;
    outcome
}

async fn run_with(
    database: &mongodb::Database,
    command: TokenCommand,
    settings: &Settings,
) -> anyhow::Result<ExitCode> {
    let tokens = ApiTokenStore::new(database);
    let operators = OperatorTokenStore::new(database);
    let code = match command {
        TokenCommand::Create {
            operator: Some(name),
            role: Some(role),
            ..
        } => {
            let name = name.trim().to_owned();
            anyhow::ensure!(!name.is_empty(), "--operator must not be empty");
            operators.ensure_indexes().await?;
            let target = json!({ "kind": "operator", "name": name, "role": role.as_str() });
            let (token, secret) = audited(settings, "token_create", target, || async {
                Ok((operators.create(&name, role).await?, 1))
            })
            .await?;
            eprintln!(
                "operator token {} for {} ({}); store it now, it is not shown again:",
                token.id, token.name, token.role
            );
            println!("{secret}");
            ExitCode::SUCCESS
        }
        TokenCommand::Create {
            name,
            account,
            user,
            ..
        } => {
            let name = name.unwrap_or_default().trim().to_owned();
            anyhow::ensure!(!name.is_empty(), "--name must not be empty");
            let scope = match (account, user) {
                (None, None) => TokenScope::AnyAccount,
                (Some(account), None) => TokenScope::Account(account),
                (Some(account), Some(user)) => TokenScope::User(account, user),
                (None, Some(_)) => anyhow::bail!("--user needs --account"),
            };
            tokens.ensure_indexes().await?;
            let target = json!({ "kind": "api", "name": name, "scope": scope.to_string() });
            let (token, secret) = audited(settings, "token_create", target, || async {
                Ok((tokens.create(&name, scope).await?, 1))
            })
            .await?;
            eprintln!(
                "token {} ({}) for {}; store it now, it is not shown again:",
                token.id, token.name, token.scope
            );
            println!("{secret}");
            ExitCode::SUCCESS
        }
        TokenCommand::List => {
            for token in tokens.list().await? {
                let (account, user) = match token.scope {
                    TokenScope::AnyAccount => ("*".to_owned(), "*".to_owned()),
                    TokenScope::Account(account) => (account.to_hex(), "*".to_owned()),
                    TokenScope::User(account, user) => (account.to_hex(), user.to_hex()),
                };
                println!(
                    "{}\tapi\t{}\t{}\t{}\t{}",
                    token.id,
                    token.name,
                    account,
                    user,
                    token.created_at.try_to_rfc3339_string().unwrap_or_default()
                );
            }
            for token in operators.list().await? {
                println!(
                    "{}\toperator\t{}\t{}\t{}",
                    token.id,
                    token.name,
                    token.role,
                    token.created_at.try_to_rfc3339_string().unwrap_or_default()
                );
            }
            ExitCode::SUCCESS
        }
        TokenCommand::Revoke { id } => {
            let oid = ObjectId::parse_str(&id)
                .with_context(|| format!("'{id}' is not a token id (24-hex)"))?;
            let target = json!({ "id": id });
            let revoked = audited(settings, "token_revoke", target, || async {
                if tokens.revoke(oid).await? {
                    return Ok((Some("API token".to_owned()), 1));
                }
                let Some(token) = operators.revoke(oid).await? else {
                    return Ok((None, 0));
                };
                let ended = end_sessions(settings, &id).await?;
                Ok((
                    Some(format!(
                        "operator token of {} ({ended} session(s) ended)",
                        token.name
                    )),
                    1,
                ))
            })
            .await?;
            match revoked {
                Some(what) => {
                    println!("revoked {id}: {what}");
                    ExitCode::SUCCESS
                }
                None => {
                    eprintln!("no token with id {id}");
                    ExitCode::FAILURE
                }
            }
        }
    };
    Ok(code)
}

/// Ends every dashboard session made with operator token `id`; how many.
async fn end_sessions(settings: &Settings, id: &str) -> anyhow::Result<u64> {
    let redis = herald::queue::connect(settings.redis.url.as_str()).await?;
    let sessions = Sessions::new(redis, &settings.redis.namespace, settings.web.session_ttl);
    let ended = sessions
        .end_all(&Credential::Operator { id: id.to_owned() })
        .await
        .context("the token is revoked, but its dashboard sessions could not be ended (Redis); they end within web.session_ttl_secs")?;
    Ok(ended)
}
