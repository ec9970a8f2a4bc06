//! API tokens for producers: collection `api_token`.
//!
//! A token is a random secret shown once, when it is created
//! (`herald token create`). The collection keeps only its SHA-256 digest,
//! so a copy of the database does not hand out working tokens. A token has
//! one of three reaches ([`TokenScope`]): every account (a trusted backend
//! that writes for all of them), one account (that account's messages,
//! exports and users' inboxes), or one user of one account (that user's
//! inbox and channels only: what a browser may hold).
//!
//! A record whose scope cannot be read (an `accountId` or `userId` that is
//! not an ObjectId, a user without an account) is not a token at all:
//! [`ApiTokenStore::find`] answers as for an unknown secret, so a damaged
//! record never widens what a token reaches.

use futures::TryStreamExt;
use herald_jobs::{AccountId, UserId};
use mongodb::{
    bson::{doc, oid::ObjectId, Bson, DateTime, Document},
    options::IndexOptions,
    Collection, Database, IndexModel,
};

use super::StoreError;
use crate::secret::{digest, random_hex};

/// Name of the collection.
pub const TOKEN_COLLECTION: &str = "api_token";
/// Every token starts with this, so a leaked one is easy to recognise in
/// logs and secret scanners.
pub const TOKEN_PREFIX: &str = "hrd_";

/// What a token reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenScope {
    /// Every account.
    AnyAccount,
    /// One account: its messages, exports and users' inboxes.
    Account(AccountId),
    /// One user of one account: that user's inbox and channels.
    User(AccountId, UserId),
}

impl TokenScope {
    /// The scope's fields as the record stores them.
    fn fields(self) -> (Bson, Bson) {
        let oid = |id: mongodb::bson::oid::ObjectId| Bson::ObjectId(id);
        match self {
            TokenScope::AnyAccount => (Bson::Null, Bson::Null),
            TokenScope::Account(account) => (oid(account.object_id()), Bson::Null),
            TokenScope::User(account, user) => (oid(account.object_id()), oid(user.object_id())),
        }
    }

    /// The scope a record stores; `None` when its fields do not make one.
    fn of(document: &Document) -> Option<Self> {
        let id = |name: &str| match document.get(name) {
            None | Some(Bson::Null) => Some(None),
            Some(Bson::ObjectId(oid)) => Some(Some(*oid)),
            Some(_) => None,
        };
        match (id("accountId")?, id("userId")?) {
            (None, None) => Some(TokenScope::AnyAccount),
            (Some(account), None) => Some(TokenScope::Account(account.into())),
            (Some(account), Some(user)) => Some(TokenScope::User(account.into(), user.into())),
            (None, Some(_)) => None,
        }
    }
}

impl std::fmt::Display for TokenScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenScope::AnyAccount => f.write_str("every account"),
            TokenScope::Account(account) => write!(f, "account {account}"),
            TokenScope::User(account, user) => write!(f, "user {user} of account {account}"),
        }
    }
}

/// A token's record (never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// The token's id, used to revoke it.
    pub id: ObjectId,
    /// What it is for, e.g. `php-shop`.
    pub name: String,
    /// What it reaches.
    pub scope: TokenScope,
    /// When it was created.
    pub created_at: DateTime,
}

/// The unique index on `digest` a token collection is looked up by.
pub(crate) fn digest_index() -> IndexModel {
    IndexModel::builder()
        .keys(doc! { "digest": 1 })
        .options(
            IndexOptions::builder()
                .unique(true)
                .name("digest_1".to_owned())
                .build(),
        )
        .build()
}

/// A random operator token for one run of `herald web` in development
/// mode (`web.dev`): never stored.
pub fn new_development_token() -> Result<String, getrandom::Error> {
    random_hex("hrdev_")
}

/// A new API token secret.
fn new_secret() -> Result<String, getrandom::Error> {
    random_hex(TOKEN_PREFIX)
}

impl TryFrom<&Document> for ApiToken {
    type Error = ();

    fn try_from(document: &Document) -> Result<Self, ()> {
        Ok(Self {
            id: document.get_object_id("_id").map_err(|_| ())?,
            name: document.get_str("name").unwrap_or_default().to_owned(),
            scope: TokenScope::of(document).ok_or(())?,
            created_at: document
                .get_datetime("createdAt")
                .copied()
                .unwrap_or(DateTime::MIN),
        })
    }
}

/// Creates, finds, lists and revokes API tokens.
#[derive(Debug, Clone)]
pub struct ApiTokenStore {
    collection: Collection<Document>,
}

impl ApiTokenStore {
    /// The store in `database`.
    pub fn new(database: &Database) -> Self {
        Self {
            collection: database.collection(TOKEN_COLLECTION),
        }
    }

    /// Creates the unique index on the digest tokens are looked up by.
    pub async fn ensure_indexes(&self) -> Result<(), StoreError> {
        super::ensure_indexes(
            &self.collection,
            [digest_index()],
            "createIndexes on api_token",
        )
        .await
    }

    /// Creates a token named `name` that reaches `scope`. Returns its
    /// record and the secret, which is not stored and cannot be shown
    /// again.
    pub async fn create(
        &self,
        name: &str,
        scope: TokenScope,
    ) -> Result<(ApiToken, String), StoreError> {
        let secret = new_secret().map_err(|e| StoreError::Random(e.to_string()))?;
        let token = ApiToken {
            id: ObjectId::new(),
            name: name.to_owned(),
            scope,
            created_at: DateTime::now(),
        };
        let (account, user) = scope.fields();
        self.collection
            .insert_one(doc! {
                "_id": token.id,
                "name": name,
                "digest": digest(&secret),
                "accountId": account,
                "userId": user,
                "createdAt": token.created_at,
            })
            .await
            .map_err(StoreError::command("insert into api_token"))?;
        Ok((token, secret))
    }

    /// The token whose secret is `secret`, if it exists and its record is
    /// whole (see the module docs).
    pub async fn find(&self, secret: &str) -> Result<Option<ApiToken>, StoreError> {
        let document = self
            .collection
            .find_one(doc! { "digest": digest(secret) })
            .await
            .map_err(StoreError::command("find in api_token"))?;
        Ok(document.as_ref().and_then(|d| ApiToken::try_from(d).ok()))
    }

    /// Every token, oldest first.
    pub async fn list(&self) -> Result<Vec<ApiToken>, StoreError> {
        let documents: Vec<Document> = self
            .collection
            .find(doc! {})
            .sort(doc! { "createdAt": 1, "_id": 1 })
            .await
            .map_err(StoreError::command("list api_token"))?
            .try_collect()
            .await
            .map_err(StoreError::command("list api_token"))?;
        Ok(documents
            .iter()
            .filter_map(|d| ApiToken::try_from(d).ok())
            .collect())
    }

    /// Deletes token `id`; false if there was none.
    pub async fn revoke(&self, id: ObjectId) -> Result<bool, StoreError> {
        let result = self
            .collection
            .delete_one(doc! { "_id": id })
            .await
            .map_err(StoreError::command("delete from api_token"))?;
        Ok(result.deleted_count == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::is_well_formed;

    #[test]
    fn a_record_whose_scope_cannot_be_read_is_no_token() {
        let base = || doc! { "_id": ObjectId::new(), "name": "t", "digest": "d" };
        let account = ObjectId::new();
        let user = ObjectId::new();
        let scope = |extra: Document| {
            let mut record = base();
            record.extend(extra);
            ApiToken::try_from(&record).ok().map(|t| t.scope)
        };
        assert_eq!(scope(doc! {}), Some(TokenScope::AnyAccount));
        assert_eq!(
            scope(doc! { "accountId": Bson::Null, "userId": Bson::Null }),
            Some(TokenScope::AnyAccount)
        );
        assert_eq!(
            scope(doc! { "accountId": account }),
            Some(TokenScope::Account(account.into()))
        );
        assert_eq!(
            scope(doc! { "accountId": account, "userId": user }),
            Some(TokenScope::User(account.into(), user.into()))
        );
        // Fails closed: none of these reaches every account.
        for broken in [
            doc! { "accountId": "5f0c8a3e2b1d4c0012345678" },
            doc! { "accountId": "not-an-id" },
            doc! { "accountId": 42 },
            doc! { "accountId": account, "userId": "x" },
            doc! { "userId": user },
        ] {
            assert_eq!(scope(broken.clone()), None, "{broken}");
        }
    }

    #[test]
    fn only_well_formed_secrets_are_looked_up() {
        let secret = new_secret().unwrap();
        assert!(is_well_formed(&secret, TOKEN_PREFIX));
        for bad in [
            "hrd_",
            "hrd_0000",
            &secret.to_uppercase(),
            &format!("{secret}0"),
            &secret.replace("hrd_", "hro_"),
            &format!("hrd_{}", "g".repeat(64)),
        ] {
            assert!(!is_well_formed(bad, TOKEN_PREFIX), "{bad}");
        }
    }

    #[test]
    fn secrets_are_prefixed_random_and_stored_only_as_digests() {
        let a = new_secret().unwrap();
        let b = new_secret().unwrap();
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 64);
        assert_ne!(a, b);
        assert_eq!(digest(&a).len(), 64);
        assert_ne!(digest(&a), digest(&b));
        assert_eq!(
            digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
