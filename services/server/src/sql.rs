//! `thinglake sql [QUERY]`: runs read-only SQL against a running platform over its HTTP API
//! (`POST /api/auth/login`, then `POST /api/sql`), as the signed-in user. Without a query the
//! statements are read from standard input, one result per statement. The answer is printed as
//! an aligned text table (from the API's Arrow IPC stream) or written as the API's CSV, JSON,
//! Arrow or Parquet bytes (see `docs/operations.md`).

use std::fmt;
use std::io::{Read as _, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde_json::{Value, json};
use thinglake_queries::arrow::ipc::reader::StreamReader;
use thinglake_queries::arrow::util::pretty::pretty_format_batches_with_schema;

/// Exit codes of `thinglake sql` (2 is clap's usage error).
pub(crate) const EXIT_FAILURE: u8 = 1;
pub(crate) const EXIT_CONNECTION: u8 = 3;
pub(crate) const EXIT_LOGIN: u8 = 4;
pub(crate) const EXIT_SQL: u8 = 5;

/// Flags and environment variables of `thinglake sql`.
#[derive(Clone, Args)]
pub(crate) struct SqlArgs {
    /// The SQL statement to run; without it, statements are read from standard input (each
    /// ended by a `;` at the end of a line).
    pub(crate) query: Option<String>,
    /// The platform's HTTP address.
    #[arg(long, env = "THINGLAKE_URL", default_value = "http://localhost:8080")]
    pub(crate) url: String,
    /// The user's email.
    #[arg(long, env = "THINGLAKE_SQL_USER")]
    pub(crate) user: String,
    /// The user's password (prefer the environment variable: arguments show in `ps`).
    #[arg(long, env = "THINGLAKE_SQL_PASSWORD", hide_env_values = true)]
    pub(crate) password: String,
    /// `table`: an aligned text table and the row count; the others write the API's answer as is.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub(crate) format: OutputFormat,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    pub(crate) output: Option<PathBuf>,
}

// By hand: the password never shows, not even in a debug print.
impl fmt::Debug for SqlArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlArgs")
            .field("query", &self.query)
            .field("url", &self.url)
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .field("format", &self.format)
            .field("output", &self.output)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputFormat {
    Table,
    Csv,
    Json,
    Arrow,
    Parquet,
}

impl OutputFormat {
    /// The API's `?format=` for this output.
    fn api_format(self) -> &'static str {
        match self {
            OutputFormat::Table | OutputFormat::Arrow => "arrow",
            OutputFormat::Csv => "csv",
            OutputFormat::Json => "json",
            OutputFormat::Parquet => "parquet",
        }
    }
}

/// A failure with its exit code; the message goes to standard error.
#[derive(Debug)]
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

/// Runs the command; the exit code says what failed.
pub(crate) async fn run(args: SqlArgs) -> ExitCode {
    match run_statements(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("thinglake sql: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

async fn run_statements(args: &SqlArgs) -> Result<(), Failure> {
    let statements = match &args.query {
        Some(query) => vec![query.clone()],
        None => {
            let mut input = String::new();
            std::io::stdin().read_to_string(&mut input).map_err(|e| Failure::new(EXIT_FAILURE, format!("reading standard input: {e}")))?;
            split_statements(&input)
        }
    };
    if statements.is_empty() {
        return Err(Failure::new(EXIT_FAILURE, "no SQL statement given (as the argument or on standard input)"));
    }
    if statements.len() > 1 && matches!(args.format, OutputFormat::Arrow | OutputFormat::Parquet) {
        return Err(Failure::new(
            EXIT_FAILURE,
            format!("--format {} writes one answer: give one statement, not {}", args.format.api_format(), statements.len()),
        ));
    }
    let base = args.url.trim_end_matches('/');
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| Failure::new(EXIT_FAILURE, format!("HTTP client: {e}")))?;
    let token = login(&http, base, &args.user, &args.password).await?;
    let mut out: Box<dyn Write + Send> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|e| Failure::new(EXIT_FAILURE, format!("creating {}: {e}", path.display())))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    for (i, statement) in statements.iter().enumerate() {
        let answer = query(&http, base, &token, statement, args.format).await?;
        let written = match args.format {
            OutputFormat::Table => {
                if i > 0 {
                    writeln!(out).map_err(write_failure)?;
                }
                let table = render_table(&answer)?;
                out.write_all(table.as_bytes())
            }
            OutputFormat::Json => out.write_all(&answer).and_then(|()| writeln!(out)),
            _ => out.write_all(&answer),
        };
        written.and_then(|()| out.flush()).map_err(write_failure)?;
    }
    Ok(())
}

fn write_failure(e: std::io::Error) -> Failure {
    Failure::new(EXIT_FAILURE, format!("writing the answer: {e}"))
}

/// Signs in; returns the access token.
async fn login(http: &reqwest::Client, base: &str, user: &str, password: &str) -> Result<String, Failure> {
    let request = http.post(format!("{base}/api/auth/login")).json(&json!({"username": user, "password": password}));
    let body = send(request, base, |message| Failure::new(EXIT_LOGIN, format!("login as {user} failed: {message}"))).await?;
    let answer: Value = serde_json::from_slice(&body)
        .map_err(|_| Failure::new(EXIT_LOGIN, format!("login as {user}: {base} did not answer as a Thinglake platform")))?;
    answer["token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| Failure::new(EXIT_LOGIN, format!("login as {user}: no token in the answer of {base}")))
}

/// Runs one statement; returns the answer's bytes in the API format of `format`.
async fn query(http: &reqwest::Client, base: &str, token: &str, statement: &str, format: OutputFormat) -> Result<Vec<u8>, Failure> {
    let request = http
        .post(format!("{base}/api/sql?format={}", format.api_format()))
        .header("X-Authorization", format!("Bearer {token}"))
        .json(&json!({"query": statement}));
    send(request, base, |message| Failure::new(EXIT_SQL, message)).await
}

/// Sends `request`; the answer's body on success, else `refused` with the API's message (an
/// unreachable platform is a request failure).
async fn send(
    request: reqwest::RequestBuilder,
    base: &str,
    refused: impl FnOnce(String) -> Failure,
) -> Result<Vec<u8>, Failure> {
    let res = request.send().await.map_err(|e| request_failure(base, e))?;
    let status = res.status();
    let body = res.bytes().await.map_err(|e| request_failure(base, e))?;
    if !status.is_success() {
        return Err(refused(api_message(status, &body)));
    }
    Ok(body.to_vec())
}

/// A request that got no answer: the platform is not reachable (or went away mid-answer).
fn request_failure(base: &str, e: reqwest::Error) -> Failure {
    // reqwest's own message is terse ("error sending request"); the innermost cause says why.
    let mut cause = String::new();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    let cause = if cause.is_empty() { e.to_string() } else { cause };
    let what = if e.is_connect() {
        "cannot connect to the platform at"
    } else if e.is_timeout() {
        "timed out talking to the platform at"
    } else if e.is_builder() {
        return Failure::new(EXIT_FAILURE, format!("invalid --url {base}: {cause}"));
    } else {
        "no answer from the platform at"
    };
    Failure::new(EXIT_CONNECTION, format!("{what} {base}: {cause} (is it running? see --url or THINGLAKE_URL)"))
}

/// The API's error message (`{"message": …}`), else the status and the body's text.
fn api_message(status: reqwest::StatusCode, body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body).ok().and_then(|v| v["message"].as_str().map(str::to_string)) {
        Some(message) => message,
        None => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {text}") }
        }
    }
}

/// The aligned text table of an Arrow IPC stream and its row count: `(N rows)`.
fn render_table(stream: &[u8]) -> Result<String, Failure> {
    let broken = |e: &dyn fmt::Display| Failure::new(EXIT_FAILURE, format!("reading the Arrow answer: {e}"));
    let reader = StreamReader::try_new(std::io::Cursor::new(stream), None).map_err(|e| broken(&e))?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>().map_err(|e| broken(&e))?;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let table = pretty_format_batches_with_schema(schema, &batches).map_err(|e| broken(&e))?;
    Ok(format!("{table}\n({rows} {})\n", if rows == 1 { "row" } else { "rows" }))
}

/// Statements of a script: each ends with a `;` at the end of a line (the `;` dropped); text after
/// the last one is a statement too. Blank statements and those of only `--` comments are skipped.
fn split_statements(input: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut push = |current: &mut String| {
        let statement = std::mem::take(current);
        let only_comments = statement.lines().map(str::trim).all(|l| l.is_empty() || l.starts_with("--"));
        if !only_comments {
            statements.push(statement.trim().to_string());
        }
    };
    for line in input.lines() {
        let trimmed = line.trim_end();
        match trimmed.strip_suffix(';') {
            Some(head) => {
                current.push_str(head);
                push(&mut current);
            }
            None => {
                current.push_str(line);
                current.push('\n');
            }
        }
    }
    push(&mut current);
    statements
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_end_with_a_semicolon_at_a_line_end() {
        let script = "SELECT 1;\n\nSELECT key,\n  count(*)\nFROM telemetry GROUP BY key ;  \n-- only a comment\n;\nSELECT 'a;b'\n";
        assert_eq!(split_statements(script), vec!["SELECT 1", "SELECT key,\n  count(*)\nFROM telemetry GROUP BY key", "SELECT 'a;b'"]);
        assert_eq!(split_statements("SELECT 'x;'\n, 2;"), vec!["SELECT 'x;'\n, 2"]);
        assert!(split_statements("\n  \n-- nothing\n").is_empty());
    }

    #[test]
    fn the_api_message_is_shown_else_the_status_and_text() {
        let bad = reqwest::StatusCode::BAD_REQUEST;
        assert_eq!(api_message(bad, br#"{"status":400,"message":"Only SELECT is allowed"}"#), "Only SELECT is allowed");
        assert_eq!(api_message(bad, b"<html>gateway</html>"), "HTTP 400 Bad Request: <html>gateway</html>");
        assert_eq!(api_message(bad, b""), "HTTP 400 Bad Request");
    }
}
