//! Statements answered by the wire protocol itself, never by the engine: what PostgreSQL
//! clients send around their queries (`SET` and `RESET`, `SHOW`, transaction control,
//! `DISCARD`, `SELECT version()` and a few other functions drivers and tools call at connect).
//! Settings are acknowledged and not applied: the session is read-only and its formats fixed.

use thinglake_queries::datafusion::sql::parser::DFParser;

use crate::error::{sqlstate, user_error};

/// The server version clients see (`server_version`, `SHOW server_version`, `version()`):
/// PostgreSQL 16's protocol and text formats.
pub const SERVER_VERSION: &str = "16.6";

/// A statement answered here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Local {
    /// A command with no rows, answered with its tag (`SET`, `BEGIN`, `COMMIT`, …).
    Command(&'static str),
    /// One row with one text column.
    Value { column: String, value: String },
}

/// Whether `text` (one statement) is answered here, and how; `user` is the signed-in email.
pub fn local(text: &str, user: &str) -> Result<Option<Local>, pgwire::error::PgWireError> {
    let normalized = normalize(text);
    let words: Vec<&str> = normalized.split(' ').collect();
    let command = match words.as_slice() {
        ["set", ..] => Some("SET"),
        ["reset", ..] => Some("RESET"),
        ["begin", ..] | ["start", "transaction", ..] => Some("BEGIN"),
        ["commit", ..] | ["end", ..] => Some("COMMIT"),
        ["rollback", ..] | ["abort", ..] => Some("ROLLBACK"),
        ["discard", ..] => Some("DISCARD ALL"),
        ["deallocate", ..] => Some("DEALLOCATE"),
        ["unlisten", ..] => Some("UNLISTEN"),
        _ => None,
    };
    if let Some(tag) = command {
        return Ok(Some(Local::Command(tag)));
    }
    // PostgreSQL's own forms (`COPY … TO STDOUT`, `VACUUM`, `GRANT`) do not all parse as
    // DataFusion SQL: refused by their first word, like the engine refuses what it parses.
    if let Some(first) = words.first().filter(|w| WRITES.contains(w)) {
        return Err(user_error(
            sqlstate::INSUFFICIENT_PRIVILEGE,
            format!("statement refused: {} is not accepted, only SELECT, WITH and EXPLAIN", first.to_uppercase()),
        ));
    }
    if let ["show", name] = words.as_slice() {
        let value = setting(name, user).ok_or_else(|| {
            user_error(sqlstate::UNDEFINED_OBJECT, format!("unrecognized configuration parameter \"{name}\""))
        })?;
        return Ok(Some(Local::Value { column: (*name).to_string(), value }));
    }
    let value = |column: &str, value: String| Ok(Some(Local::Value { column: column.to_string(), value }));
    match normalized.as_str() {
        "select version()" | "select pg_catalog.version()" => {
            value("version", format!("PostgreSQL {SERVER_VERSION} (Thinglake {})", env!("CARGO_PKG_VERSION")))
        }
        "select current_schema()" | "select current_schema" => value("current_schema", "public".to_string()),
        "select current_database()" => value("current_database", DATABASE.to_string()),
        "select current_user" | "select session_user" | "select user" => value("current_user", user.to_string()),
        _ => Ok(None),
    }
}

/// First words of statements that write, define or move data.
const WRITES: &[&str] = &[
    "copy", "insert", "update", "delete", "merge", "truncate", "create", "drop", "alter", "grant", "revoke", "vacuum",
    "cluster", "reindex", "lock", "call", "do", "listen", "notify", "comment", "import", "refresh", "security",
];

/// The name of the one database.
const DATABASE: &str = "thinglake";

/// The values `SHOW` answers (PostgreSQL's names, lowercase).
fn setting(name: &str, user: &str) -> Option<String> {
    let value = match name {
        "server_version" => SERVER_VERSION,
        "server_version_num" => "160006",
        "server_encoding" | "client_encoding" => "UTF8",
        "timezone" => "UTC",
        "datestyle" => "ISO, MDY",
        "intervalstyle" => "postgres",
        "standard_conforming_strings" | "integer_datetimes" => "on",
        "transaction_isolation" | "default_transaction_isolation" => "read committed",
        "transaction_read_only" | "default_transaction_read_only" => "on",
        "search_path" => "public",
        "max_identifier_length" => "63",
        "is_superuser" => "off",
        "application_name" => "",
        "session_authorization" => user,
        _ => return None,
    };
    Some(value.to_string())
}

/// Lowercase, one space between words, no trailing semicolon.
fn normalize(text: &str) -> String {
    text.trim().trim_end_matches(';').split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// The statements of a simple-protocol query string, each as its own text. A string the parser
/// cannot split is one statement (the engine then says what is wrong with it).
pub fn split(text: &str) -> Vec<String> {
    match DFParser::parse_sql(text) {
        Ok(statements) if statements.len() > 1 => statements.iter().map(ToString::to_string).collect(),
        _ => vec![text.to_string()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_statements_are_answered_here() {
        let answer = |text| local(text, "a@b.c").expect("answered");
        assert_eq!(answer("SET extra_float_digits = 3"), Some(Local::Command("SET")));
        assert_eq!(answer("set application_name = 'PostgreSQL JDBC Driver';"), Some(Local::Command("SET")));
        assert_eq!(answer("BEGIN READ ONLY"), Some(Local::Command("BEGIN")));
        assert_eq!(answer("commit"), Some(Local::Command("COMMIT")));
        assert_eq!(answer("SHOW TimeZone"), Some(Local::Value { column: "timezone".into(), value: "UTC".into() }));
        assert!(matches!(answer("select  VERSION() ;"), Some(Local::Value { value, .. }) if value.starts_with("PostgreSQL 16")));
        assert_eq!(answer("SELECT current_user"), Some(Local::Value { column: "current_user".into(), value: "a@b.c".into() }));
        assert_eq!(answer("SELECT 1"), None);
        assert_eq!(answer("SELECT version, key FROM telemetry"), None);
        assert!(local("SHOW nonsense", "a@b.c").is_err());
        assert!(local("COPY telemetry TO STDOUT", "a@b.c").is_err());
        assert!(local("vacuum", "a@b.c").is_err());
    }

    #[test]
    fn a_query_string_splits_into_its_statements() {
        assert_eq!(split("SELECT 1; SELECT 2").len(), 2);
        assert_eq!(split("SELECT 1"), vec!["SELECT 1".to_string()]);
        assert_eq!(split("SELEC nonsense; x").len(), 1);
    }
}
