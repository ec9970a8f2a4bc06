//! `[mongodb]`: the MongoDB server holding messages, and how durable a
//! write must be before it counts.

use super::setting::{define_settings, non_empty, Rule, Values};
use super::ConfigError;

define_settings! {
    section "mongodb";
    URL: "url" = "mongodb://127.0.0.1:27017", Rule::Form("a mongodb:// or mongodb+srv:// URL"), "message store (replica-set URLs work)";
    DATABASE: "database" = "herald", Rule::Form("a database name"), "database of the `message` collection";
    WRITE_CONCERN: "write_concern" = "majority", Rule::Form("`majority`, 1 or more, or a tag set's name"),
        "members that must have a write before it counts (`majority`, `1`, `2`, ... or a tag set's name; `0` refused)";
    WRITE_JOURNAL: "write_journal" = "true", Rule::Any, "a write counts only once it is in the journal";
}

/// MongoDB connection. Its `Debug` shows the URL without its password or
/// secret options.
#[derive(Clone)]
pub struct MongoSettings {
    /// Connection string.
    pub url: String,
    /// Database name.
    pub database: String,
    /// How many members must have a write before it counts as done.
    pub write_concern: WriteAcknowledgment,
    /// Whether a write counts as done only once it is in the journal.
    pub write_journal: bool,
}

impl std::fmt::Debug for MongoSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoSettings")
            .field("url", &herald_jobs::redact_url(&self.url))
            .field("database", &self.database)
            .field("write_concern", &self.write_concern)
            .field("write_journal", &self.write_journal)
            .finish()
    }
}

/// `mongodb.write_concern`: which members must acknowledge a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteAcknowledgment {
    /// A majority of the replica set's voting members (`"majority"`).
    Majority,
    /// This many members (`"1"`, `"2"`, ...).
    Members(u32),
    /// A custom write concern defined by the replica set's tags.
    Tag(String),
}

impl WriteAcknowledgment {
    /// Parses the setting's text. `"0"` (no acknowledgment) is refused:
    /// Herald pushes a message only once it knows the message is stored.
    fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        match text {
            "" => Err("must not be empty".to_owned()),
            "majority" => Ok(Self::Majority),
            "0" => Err("'0' would not wait for any acknowledgment; Herald pushes a message only after the database has it (use \"majority\" or 1 and up)".to_owned()),
            number if number.bytes().all(|b| b.is_ascii_digit()) => number
                .parse()
                .map(Self::Members)
                .map_err(|_| format!("'{number}' is not a usable member count")),
            tag => Ok(Self::Tag(tag.to_owned())),
        }
    }
}

/// Reads and checks `[mongodb]`.
pub(super) fn read(values: &Values) -> Result<MongoSettings, ConfigError> {
    Ok(MongoSettings {
        url: values.checked(&URL, |url| non_empty(url).and_then(mongodb_url))?,
        database: values.checked(&DATABASE, |name| non_empty(name).and_then(database_name))?,
        write_concern: values.checked(&WRITE_CONCERN, |text: String| {
            WriteAcknowledgment::parse(&text)
        })?,
        write_journal: values.get(&WRITE_JOURNAL)?,
    })
}

fn mongodb_url(url: String) -> Result<String, String> {
    if url.starts_with("mongodb://") || url.starts_with("mongodb+srv://") {
        Ok(url)
    } else {
        Err(format!(
            "'{url}' must start with mongodb:// or mongodb+srv://"
        ))
    }
}

fn database_name(name: String) -> Result<String, String> {
    if name.contains(['/', '\\', '.', ' ', '"', '$']) || name.len() > 63 {
        Err(format!("'{name}' is not a valid MongoDB database name"))
    } else {
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{tests::vars, Settings};

    #[test]
    fn replica_set_urls_are_accepted() {
        let url = "mongodb://user:pw@db-a:27017,db-b:27017,db-c:27017/?replicaSet=rs0&readPreference=primary";
        let s = Settings::load_from(&vars(&[("HERALD_MONGODB_URL", url)])).unwrap();
        assert_eq!(s.mongodb.url, url);
        let srv = "mongodb+srv://cluster0.example.net/?replicaSet=rs0";
        let s = Settings::load_from(&vars(&[("HERALD_MONGODB_URL", srv)])).unwrap();
        assert_eq!(s.mongodb.url, srv);
    }
}
