//! `herald token ...`: API tokens for producers.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use herald::{
    config::Settings,
    store::{self, ApiTokenStore, TokenScope},
};
use herald_jobs::{AccountId, UserId};
use mongodb::bson::oid::ObjectId;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it once (only its digest is stored).
    Create {
        /// What the token is for, e.g. the producing app's name.
        #[arg(long)]
        name: String,
        /// Bind the token to this account (24-hex): it then reaches only
        /// this account's messages, exports and users' inboxes. Without it,
        /// every account.
        #[arg(long, value_name = "HEX")]
        account: Option<AccountId>,
        /// Bind the token to this user of --account (24-hex): it then reads
        /// and marks only this user's inbox and signs only their channels
        /// (what a browser may hold); it enqueues nothing.
        #[arg(long, value_name = "HEX", requires = "account")]
        user: Option<UserId>,
    },
    /// List tokens: id, name, account, creation time (never the secret).
    List,
    /// Revoke a token by its id; it stops working at once.
    Revoke {
        /// The token's id, as `herald token list` shows it.
        id: String,
    },
}

/// Runs `herald token ...`.
pub async fn run(command: TokenCommand, settings: &Settings) -> anyhow::Result<ExitCode> {
    let database = store::connect(&settings.mongodb).await?;
    let tokens = ApiTokenStore::new(&database);
    match command {
        TokenCommand::Create {
            name,
            account,
            user,
        } => {
            if name.trim().is_empty() {
                anyhow::bail!("--name must not be empty");
            }
            let scope = match (account, user) {
                (None, None) => TokenScope::AnyAccount,
                (Some(account), None) => TokenScope::Account(account),
                (Some(account), Some(user)) => TokenScope::User(account, user),
                (None, Some(_)) => anyhow::bail!("--user needs --account"),
            };
            tokens.ensure_indexes().await?;
            let (token, secret) = tokens.create(name.trim(), scope).await?;
            eprintln!(
                "token {} ({}) for {}; store it now, it is not shown again:",
                token.id, token.name, token.scope
            );
            println!("{secret}");
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::List => {
            for token in tokens.list().await? {
                let (account, user) = match token.scope {
                    TokenScope::AnyAccount => ("*".to_owned(), "*".to_owned()),
                    TokenScope::Account(account) => (account.to_hex(), "*".to_owned()),
                    TokenScope::User(account, user) => (account.to_hex(), user.to_hex()),
                };
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    token.id,
                    token.name,
                    account,
                    user,
                    token.created_at.try_to_rfc3339_string().unwrap_or_default()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Revoke { id } => {
            let oid = ObjectId::parse_str(&id)
                .with_context(|| format!("'{id}' is not a token id (24-hex)"))?;
            if tokens.revoke(oid).await? {
                println!("revoked {id}");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("no token with id {id}");
                Ok(ExitCode::FAILURE)
            }
        }
    }
}
