//! `POST /api/sql` `{"query": "SELECT …"}`: read-only SQL over the caller's tenant views, answered
//! as JSON (`{"columns": [...], "rows": [[...]]}`) or as CSV (`Accept: text/csv` or
//! `?format=csv`).

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::Value;
use thinglake_queries::SqlResult;

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

async fn sql(
    State(state): State<ApiState>,
    Auth(p): Auth,
    headers: HeaderMap,
    Query(params): Query<FormatParams>,
    Json(request): Json<SqlRequest>,
) -> Result<Response> {
    let csv = match params.format.as_deref() {
        Some(f) if f.eq_ignore_ascii_case("csv") => true,
        Some(f) if f.eq_ignore_ascii_case("json") => false,
        Some(other) => return Err(ApiError::bad_request(format!("Unknown format {other}: json or csv"))),
        None => headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.split(',').any(|t| t.trim().starts_with("text/csv"))),
    };
    let result = state.platform.sql(&p, &request.query).await?;
    if csv {
        let mut response = to_csv(&result).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
        Ok(response)
    } else {
        Ok(axum::Json(result).into_response())
    }
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
    fn csv_quotes_what_needs_quoting() {
        let result = SqlResult {
            columns: vec!["key".into(), "n".into()],
            rows: vec![vec![json!("a,b"), json!(1)], vec![json!("say \"hi\""), Value::Null]],
        };
        assert_eq!(to_csv(&result), "key,n\r\n\"a,b\",1\r\n\"say \"\"hi\"\"\",\r\n");
    }
}
