//! `herald token ...`: API tokens for producers.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use herald::{
    config::Settings,
    store::{self, ApiTokenStore},
};
use herald_jobs::AccountId;
use mongodb::bson::oid::ObjectId;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it once (only its digest is stored).
    Create {
        /// What the token is for, e.g. the producing app's name.
        #[arg(long)]
        name: String,
        /// Bind the token to this account (24-hex): it then reaches only
        /// this account's messages and exports. Without it, every account.
        #[arg(long, value_name = "HEX")]
        account: Option<AccountId>,
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
        TokenCommand::Create { name, account } => {
            if name.trim().is_empty() {
                anyhow::bail!("--name must not be empty");
            }
            tokens.ensure_indexes().await?;
            let (token, secret) = tokens.create(name.trim(), account).await?;
            eprintln!(
                "token {} ({}) for {}; store it now, it is not shown again:",
                token.id,
                token.name,
                token
                    .account
                    .map_or("every account".to_owned(), |a| format!("account {a}"))
            );
            println!("{secret}");
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::List => {
            for token in tokens.list().await? {
                println!(
                    "{}\t{}\t{}\t{}",
                    token.id,
                    token.name,
                    token.account.map_or("*".to_owned(), |a| a.to_hex()),
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
