//! Read-only SQL for a tenant: one `SELECT`, `WITH … SELECT` or `EXPLAIN` of one, over the
//! tenant's views only, within the engine's time, memory and row limits.
//!
//! Everything else is refused before planning: DDL (`CREATE`, `DROP`, `CREATE EXTERNAL TABLE`),
//! DML (`INSERT`, `UPDATE`, `DELETE`), `COPY`, `SET`/`RESET`, several statements at once. The
//! session knows no file-reading table function and no URL tables, so a query can reach nothing
//! but its views.

use std::sync::Arc;

use deltalake_core::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use deltalake_core::arrow::compute::cast;
use deltalake_core::arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, SchemaRef, UInt64Type};
use deltalake_core::arrow::ipc::writer::StreamWriter;
use deltalake_core::arrow::util::display::{ArrayFormatter, FormatOptions};
use deltalake_core::datafusion::execution::context::SQLOptions;
use deltalake_core::datafusion::logical_expr::LogicalPlan;
use deltalake_core::datafusion::physical_plan::execute_stream;
use deltalake_core::datafusion::sql::sqlparser::dialect::GenericDialect;
use deltalake_core::datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use futures::StreamExt as _;
use deltalake_core::datafusion::scalar::ScalarValue;
use deltalake_core::datafusion::sql::parser::{DFParser, Statement};
use deltalake_core::datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use deltalake_core::parquet::arrow::ArrowWriter;
use deltalake_core::parquet::basic::{Compression, ZstdLevel};
use deltalake_core::parquet::file::properties::WriterProperties;
use serde::Serialize;
use serde_json::Value;
use thinglake_domain::TenantId;

use crate::bounded_functions::human_bytes;
use crate::engine::{Lane, QueryEngine};
use crate::error::{QueryError, Result};
use crate::views::TenantViews;

/// A query's result: column names and rows of JSON values (numbers, booleans and strings as
/// such; dates, timestamps and nested values as their text).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SqlResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

/// A query's result as Arrow: its schema and record batches (no batch when no row). String and
/// binary views are plain `Utf8`/`Binary`, so every Arrow and Parquet reader takes them.
#[derive(Debug, Clone)]
pub struct SqlBatches {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

/// How a SQL answer is encoded for a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlFormat {
    /// `{"columns": [...], "rows": [[...]]}` ([`SqlResult`]).
    Json,
    /// Arrow IPC stream format (`application/vnd.apache.arrow.stream`).
    ArrowIpc,
    /// One Parquet file (`application/vnd.apache.parquet`), zstd-compressed.
    Parquet,
}

/// A statement planned but not run: the types DataFusion infers for its `$1`, `$2`, …
/// placeholders (`None` where nothing tells) and its result columns.
#[derive(Debug, Clone)]
pub struct SqlDescription {
    pub parameters: Vec<Option<DataType>>,
    pub schema: SchemaRef,
}

impl QueryEngine {
    /// Runs a read-only statement over `tenant`'s views (the caller has checked the role;
    /// `views` holds the tenant's read-model rows) and answers rows of JSON values.
    pub async fn sql(&self, tenant: TenantId, text: &str, views: TenantViews) -> Result<SqlResult> {
        self.sql_then(tenant, text, views, Vec::new(), |batches| batches.to_json()).await
    }

    /// The same statement's answer as Arrow schema and batches; `params` are the values of its
    /// `$1`, `$2`, … placeholders, in order.
    pub async fn sql_batches(&self, tenant: TenantId, text: &str, views: TenantViews, params: Vec<ScalarValue>) -> Result<SqlBatches> {
        self.sql_then(tenant, text, views, params, Ok).await
    }

    /// Checks and plans the statement without running it: its placeholders' types and result
    /// schema.
    pub async fn sql_describe(&self, tenant: TenantId, text: &str, views: TenantViews) -> Result<SqlDescription> {
        check_read_only(text)?;
        let engine = self.clone();
        let text = text.to_string();
        self.run(Lane::Sql, async move {
            let ctx = engine.tenant_session(tenant, &views).await?;
            let df = ctx.sql_with_options(&text, read_only()).await.map_err(QueryError::from_datafusion)?;
            let types = df.logical_plan().get_parameter_types().map_err(QueryError::from_datafusion)?;
            let count = types.keys().filter_map(|name| placeholder_index(name)).max().unwrap_or(0);
            let parameters = (1..=count)
                .map(|i| types.get(&format!("${i}")).cloned().flatten().map(|t| plain_type(&t)))
                .collect();
            Ok(SqlDescription { parameters, schema: plain_schema(df.schema().as_arrow()) })
        })
        .await
    }

    /// The same statement's answer encoded as `format` (the encoding runs on the query runtime,
    /// within the time limit, like the query).
    pub async fn sql_encoded(&self, tenant: TenantId, text: &str, views: TenantViews, format: SqlFormat) -> Result<Vec<u8>> {
        self.sql_then(tenant, text, views, Vec::new(), move |batches| batches.encode(format)).await
    }

    /// Checks, plans and runs `text`, then hands the batches to `then`, all on the query runtime.
    async fn sql_then<T, F>(&self, tenant: TenantId, text: &str, views: TenantViews, params: Vec<ScalarValue>, then: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(SqlBatches) -> Result<T> + Send + 'static,
    {
        check_read_only(text)?;
        let engine = self.clone();
        let text = text.to_string();
        let (max_rows, max_bytes) = (self.config().max_rows, self.config().max_result_bytes);
        self.run(Lane::Sql, async move {
            let ctx = engine.tenant_session(tenant, &views).await?;
            let mut df = ctx.sql_with_options(&text, read_only()).await.map_err(QueryError::from_datafusion)?;
            if !params.is_empty() {
                df = df.with_param_values(params).map_err(QueryError::from_datafusion)?;
            }
            // An EXPLAIN must stay the plan's root (its few rows need no limit).
            let limited = if matches!(df.logical_plan(), LogicalPlan::Explain(_)) {
                df
            } else {
                df.limit(0, Some(max_rows.saturating_add(1))).map_err(QueryError::from_datafusion)?
            };
            let plan = limited.create_physical_plan().await.map_err(QueryError::from_datafusion)?;
            let schema = plain_schema(&plan.schema());
            // Counted as the answer streams: a statement over the limits stops at the batch that
            // passes them, not once the whole answer is held.
            let mut stream = execute_stream(plan, ctx.task_ctx()).map_err(QueryError::from_datafusion)?;
            let (mut batches, mut rows, mut bytes) = (Vec::new(), 0usize, 0usize);
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(QueryError::from_datafusion)?;
                if batch.num_rows() == 0 {
                    continue;
                }
                rows += batch.num_rows();
                if rows > max_rows {
                    return Err(QueryError::TooManyRows { limit: max_rows });
                }
                let batch = plain_batch(&batch, &schema)?;
                bytes = bytes.saturating_add(answer_bytes(&batch));
                if bytes > max_bytes {
                    return Err(QueryError::ResultTooLarge { limit: human_bytes(max_bytes as u128) });
                }
                batches.push(batch);
            }
            then(SqlBatches { schema, batches })
        })
        .await
    }
}

impl SqlBatches {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// Column names and rows of JSON values.
    pub fn to_json(&self) -> Result<SqlResult> {
        let columns = self.schema.fields().iter().map(|f| f.name().clone()).collect();
        let mut rows = Vec::with_capacity(self.num_rows());
        for batch in &self.batches {
            rows.extend(json_rows(batch)?);
        }
        Ok(SqlResult { columns, rows })
    }

    /// The answer in `format`: JSON as [`SqlResult`] serialises, Arrow IPC stream or Parquet.
    pub fn encode(&self, format: SqlFormat) -> Result<Vec<u8>> {
        fn failed<E: std::error::Error + Send + Sync + 'static>(format: &'static str) -> impl FnOnce(E) -> QueryError {
            move |e| QueryError::Encode { format, source: Box::new(e) }
        }
        match format {
            SqlFormat::Json => serde_json::to_vec(&self.to_json()?).map_err(failed("JSON")),
            SqlFormat::ArrowIpc => {
                let mut writer = StreamWriter::try_new(Vec::new(), &self.schema).map_err(failed("Arrow IPC"))?;
                for batch in &self.batches {
                    writer.write(batch).map_err(failed("Arrow IPC"))?;
                }
                writer.into_inner().map_err(failed("Arrow IPC"))
            }
            SqlFormat::Parquet => {
                let level = ZstdLevel::try_new(3).map_err(failed("Parquet"))?;
                let properties = WriterProperties::builder().set_compression(Compression::ZSTD(level)).build();
                let mut writer =
                    ArrowWriter::try_new(Vec::new(), self.schema.clone(), Some(properties)).map_err(failed("Parquet"))?;
                for batch in &self.batches {
                    writer.write(batch).map_err(failed("Parquet"))?;
                }
                writer.into_inner().map_err(failed("Parquet"))
            }
        }
    }
}

/// The bytes a batch of the answer holds: its rows' share of its buffers (a slice counts only its
/// rows).
fn answer_bytes(batch: &RecordBatch) -> usize {
    batch.columns().iter().map(|c| c.to_data().get_slice_memory_size().unwrap_or_else(|_| c.get_array_memory_size())).sum()
}

/// DataFusion's guard behind [`check_read_only`]: no DDL, DML or `SET`.
fn read_only() -> SQLOptions {
    SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false)
}

/// `3` of the placeholder `$3`.
fn placeholder_index(name: &str) -> Option<usize> {
    name.strip_prefix('$')?.parse().ok()
}

/// The type a client sees for a column: string and binary views (DataFusion's scans produce
/// them) as plain strings and binaries, which older Arrow readers and every Parquet reader know.
fn plain_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        other => other.clone(),
    }
}

fn plain_schema(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> =
        schema.fields().iter().map(|f| f.as_ref().clone().with_data_type(plain_type(f.data_type()))).collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `batch` with the columns cast to `schema`'s plain types.
fn plain_batch(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() { Ok(column.clone()) } else { cast(column, field.data_type()).map_err(QueryError::arrow("rendering a column")) }
        })
        .collect::<Result<Vec<ArrayRef>>>()?;
    RecordBatch::try_new(schema.clone(), columns).map_err(QueryError::arrow("rendering a column"))
}

/// Longest string literal a statement may have, in bytes: a literal is copied into every row of
/// every batch that selects it, so a long one is a way to fill the memory.
pub const MAX_LITERAL_BYTES: usize = 4096;

/// Refuses anything but a single query (or `EXPLAIN` of one), and string literals longer than
/// [`MAX_LITERAL_BYTES`].
pub fn check_read_only(text: &str) -> Result<()> {
    check_literals(text)?;
    let statements = DFParser::parse_sql(text).map_err(|e| QueryError::Invalid { source: Box::new(e) })?;
    if statements.len() != 1 {
        return Err(QueryError::refused(format!("exactly one statement is accepted, got {}", statements.len())));
    }
    let statement = statements.into_iter().next().expect("one statement");
    if is_query(&statement) {
        Ok(())
    } else {
        Err(QueryError::refused(format!("only SELECT, WITH and EXPLAIN are accepted: {}", kind(&statement))))
    }
}

/// Refuses a statement with a literal longer than [`MAX_LITERAL_BYTES`].
fn check_literals(text: &str) -> Result<()> {
    // What does not tokenize is refused by the parser, with its own message.
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, text).tokenize() else { return Ok(()) };
    let longest = tokens
        .iter()
        // Names and white space (comments) build no values; every literal's text is measured.
        .map(|token| match token {
            Token::Word(_) | Token::Whitespace(_) => 0,
            literal => literal.to_string().len().saturating_sub(2),
        })
        .max()
        .unwrap_or(0);
    if longest > MAX_LITERAL_BYTES {
        return Err(QueryError::refused(format!("a literal of {longest} bytes is longer than the limit of {MAX_LITERAL_BYTES} bytes")));
    }
    Ok(())
}

fn is_query(statement: &Statement) -> bool {
    match statement {
        Statement::Statement(s) => match s.as_ref() {
            SqlStatement::Query(_) => true,
            SqlStatement::Explain { statement, analyze: false, .. } => matches!(statement.as_ref(), SqlStatement::Query(_)),
            _ => false,
        },
        Statement::Explain(explain) => !explain.options.analyze && is_query(&explain.statement),
        Statement::CreateExternalTable(_) | Statement::CopyTo(_) | Statement::Reset(_) => false,
    }
}

/// The statement's first words, for the refusal message.
fn kind(statement: &Statement) -> String {
    match statement {
        Statement::CreateExternalTable(_) => "CREATE EXTERNAL TABLE".to_string(),
        Statement::CopyTo(_) => "COPY".to_string(),
        Statement::Reset(_) => "RESET".to_string(),
        Statement::Explain(_) => "EXPLAIN ANALYZE".to_string(),
        Statement::Statement(s) => s.to_string().split_whitespace().take(2).collect::<Vec<_>>().join(" "),
    }
}

/// A batch's rows as JSON values.
fn json_rows(batch: &RecordBatch) -> Result<Vec<Vec<Value>>> {
    let columns: Vec<Vec<Value>> = batch.columns().iter().map(json_column).collect::<Result<_>>()?;
    Ok((0..batch.num_rows()).map(|row| columns.iter().map(|c| c[row].clone()).collect()).collect())
}

fn json_column(array: &ArrayRef) -> Result<Vec<Value>> {
    let cast_to = |to: &DataType| cast(array, to).map_err(QueryError::arrow("rendering a column"));
    let values = match array.data_type() {
        DataType::Null => vec![Value::Null; array.len()],
        DataType::Boolean => array.as_boolean().iter().map(|v| v.map_or(Value::Null, Value::Bool)).collect(),
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::UInt8 | DataType::UInt16 | DataType::UInt32 => {
            cast_to(&DataType::Int64)?.as_primitive::<Int64Type>().iter().map(|v| v.map_or(Value::Null, Value::from)).collect()
        }
        DataType::UInt64 => array.as_primitive::<UInt64Type>().iter().map(|v| v.map_or(Value::Null, Value::from)).collect(),
        DataType::Float16 | DataType::Float32 | DataType::Float64 => cast_to(&DataType::Float64)?
            .as_primitive::<Float64Type>()
            .iter()
            .map(|v| v.and_then(serde_json::Number::from_f64).map_or(Value::Null, Value::Number))
            .collect(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(..) => cast_to(&DataType::Utf8)?
            .as_string::<i32>()
            .iter()
            .map(|v| v.map_or(Value::Null, |s| Value::String(s.to_string())))
            .collect(),
        _ => {
            let formatter = ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default())
                .map_err(QueryError::arrow("rendering a column"))?;
            (0..array.len())
                .map(|row| if array.is_null(row) { Value::Null } else { Value::String(formatter.value(row).to_string()) })
                .collect()
        }
    };
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_single_queries_pass() {
        for ok in [
            "SELECT 1",
            "select key, avg(dbl_v) from telemetry group by key",
            "WITH t AS (SELECT * FROM telemetry) SELECT count(*) FROM t",
            "EXPLAIN SELECT * FROM telemetry",
        ] {
            assert!(check_read_only(ok).is_ok(), "{ok}");
        }
        for refused in [
            "CREATE TABLE x (a int)",
            "CREATE VIEW v AS SELECT 1",
            "DROP TABLE telemetry",
            "INSERT INTO telemetry VALUES (1)",
            "DELETE FROM telemetry",
            "UPDATE telemetry SET key = 'x'",
            "COPY telemetry TO '/tmp/x.parquet'",
            "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '/etc'",
            "SET datafusion.execution.batch_size = 1",
            "SELECT 1; SELECT 2",
            "EXPLAIN ANALYZE SELECT 1",
            "EXPLAIN COPY telemetry TO '/tmp/x'",
        ] {
            assert!(matches!(check_read_only(refused), Err(QueryError::Refused { .. } | QueryError::Invalid { .. })), "{refused}");
        }
        let long = format!("SELECT '{}' FROM range(100000)", "x".repeat(MAX_LITERAL_BYTES + 1));
        assert!(matches!(check_read_only(&long), Err(QueryError::Refused { .. })));
        assert!(check_read_only(&format!("SELECT '{}'", "x".repeat(MAX_LITERAL_BYTES))).is_ok());
    }
}
