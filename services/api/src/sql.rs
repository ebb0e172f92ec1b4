//! `POST /api/sql` `{"query": "SELECT …"}`: read-only SQL over the caller's tenant views, answered
//! as JSON (`{"columns": [...], "rows": [[...]]}`, the default), CSV, an Arrow IPC stream or a
//! Parquet file: chosen by `?format=json|csv|arrow|parquet`, else by the `Accept` header
//! (`text/csv`, `application/vnd.apache.arrow.stream`, `application/vnd.apache.parquet`).

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::Value;
use thinglake_queries::{SqlFormat, SqlResult};

use crate::ApiState;
use crate::error::{ApiError, Result};
use crate::extract::{Auth, Json, Query};

pub(crate) fn routes() -> Router<ApiState> {
    Router::new().route("/api/sql", post(sql))
}

#[derive(Debug, Deserialize)]
struct SqlRequest {
    query: String,
}

#[derive(Debug, Deserialize)]
struct FormatParams {
    format: Option<String>,
}

/// The media types of the answer formats.
const CSV: &str = "text/csv";
const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";
const PARQUET: &str = "application/vnd.apache.parquet";

/// How the client asked to be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
    Arrow,
    Parquet,
}

impl Format {
    /// `?format=` wins; else the first type of `Accept` we serve; else JSON.
    fn negotiate(param: Option<&str>, accept: Option<&str>) -> Result<Self> {
        if let Some(name) = param {
            return match name.to_ascii_lowercase().as_str() {
                "json" => Ok(Format::Json),
                "csv" => Ok(Format::Csv),
                "arrow" => Ok(Format::Arrow),
                "parquet" => Ok(Format::Parquet),
                _ => Err(ApiError::bad_request(format!("Unknown format {name}: json, csv, arrow or parquet"))),
            };
        }
        let served = accept.into_iter().flat_map(|a| a.split(',')).find_map(|t| {
            let media = t.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
            match media.as_str() {
                CSV => Some(Format::Csv),
                ARROW_STREAM => Some(Format::Arrow),
                PARQUET => Some(Format::Parquet),
                "application/json" => Some(Format::Json),
                _ => None,
            }
        });
        Ok(served.unwrap_or(Format::Json))
    }
}

async fn sql(
    State(state): State<ApiState>,
    Auth(p): Auth,
    headers: HeaderMap,
    Query(params): Query<FormatParams>,
    Json(request): Json<SqlRequest>,
) -> Result<Response> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (binary, content_type) = match Format::negotiate(params.format.as_deref(), accept)? {
        Format::Json => return Ok(axum::Json(state.platform.sql(&p, &request.query).await?).into_response()),
        Format::Csv => {
            let result = state.platform.sql(&p, &request.query).await?;
            return Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"))], to_csv(&result)).into_response());
        }
        Format::Arrow => (SqlFormat::ArrowIpc, ARROW_STREAM),
        Format::Parquet => (SqlFormat::Parquet, PARQUET),
    };
    let bytes = state.platform.sql_encoded(&p, &request.query, binary).await?;
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], bytes).into_response())
}

/// RFC 4180: a header line, then one line per row; fields with separators, quotes or line breaks
/// quoted; NULL as an empty field.
fn to_csv(result: &SqlResult) -> String {
    let mut out = String::new();
    let line = |out: &mut String, fields: Vec<String>| {
        let quoted: Vec<String> = fields.into_iter().map(|f| csv_field(&f)).collect();
        out.push_str(&quoted.join(","));
        out.push_str("\r\n");
    };
    line(&mut out, result.columns.clone());
    for row in &result.rows {
        line(
            &mut out,
            row.iter()
                .map(|v| match v {
                    Value::Null => String::new(),
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect(),
        );
    }
    out
}

fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) { format!("\"{}\"", field.replace('"', "\"\"")) } else { field.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_format_parameter_wins_over_accept() {
        let negotiate = |param, accept| Format::negotiate(param, accept).expect("known format");
        assert_eq!(negotiate(None, None), Format::Json);
        assert_eq!(negotiate(None, Some("text/csv")), Format::Csv);
        assert_eq!(negotiate(None, Some("application/vnd.apache.arrow.stream")), Format::Arrow);
        assert_eq!(negotiate(None, Some("text/html, application/vnd.apache.parquet;q=0.9")), Format::Parquet);
        assert_eq!(negotiate(None, Some("*/*")), Format::Json);
        assert_eq!(negotiate(Some("ARROW"), Some("text/csv")), Format::Arrow);
        assert_eq!(negotiate(Some("parquet"), None), Format::Parquet);
        assert!(Format::negotiate(Some("xml"), None).is_err());
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let result = SqlResult {
            columns: vec!["key".into(), "n".into()],
            rows: vec![vec![json!("a,b"), json!(1)], vec![json!("say \"hi\""), Value::Null]],
        };
        assert_eq!(to_csv(&result), "key,n\r\n\"a,b\",1\r\n\"say \"\"hi\"\"\",\r\n");
    }
}
