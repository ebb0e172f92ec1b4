//! Arrow columns as PostgreSQL columns and values, and bound parameters as DataFusion values.
//!
//! Numbers, booleans, text, bytes, dates and timestamps keep their type (`int8`, `float8`,
//! `bool`, `text`, `bytea`, `date`, `timestamp`, `timestamptz`); every other Arrow type
//! (decimals, intervals, lists, structs, …) is sent as `text` in its display form, which every
//! client reads in both the text and the binary format.

use std::sync::Arc;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, Utc};
use pgwire::api::Type;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use thinglake_queries::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use thinglake_queries::arrow::compute::cast;
use thinglake_queries::arrow::datatypes::{
    DataType, Date32Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Schema, TimeUnit, TimestampMicrosecondType,
};
use thinglake_queries::arrow::util::display::{ArrayFormatter, FormatOptions};
use thinglake_queries::{ScalarValue, SqlBatches};

use crate::error::{sqlstate, user_error};

/// The PostgreSQL type a column of `data_type` is sent as.
pub fn pg_type(data_type: &DataType) -> Type {
    match data_type {
        DataType::Boolean => Type::BOOL,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => Type::INT2,
        DataType::Int32 | DataType::UInt16 => Type::INT4,
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => Type::INT8,
        DataType::Float16 | DataType::Float32 => Type::FLOAT4,
        DataType::Float64 => Type::FLOAT8,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => Type::BYTEA,
        DataType::Date32 | DataType::Date64 => Type::DATE,
        DataType::Timestamp(_, None) => Type::TIMESTAMP,
        DataType::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        _ => Type::TEXT,
    }
}

/// The row description of `schema`, each column in the format the client asked for (`None`:
/// text, as in the simple protocol).
pub fn fields(schema: &Schema, format: Option<&Format>) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let format = format.map_or(FieldFormat::Text, |format| format.format_for(i));
            FieldInfo::new(f.name().clone(), None, None, pg_type(f.data_type()), format)
        })
        .collect()
}

/// Every row of `answer` as data rows of `fields`.
pub fn data_rows(answer: &SqlBatches, fields: &Arc<Vec<FieldInfo>>) -> PgWireResult<Vec<DataRow>> {
    let mut rows = Vec::with_capacity(answer.num_rows());
    for batch in &answer.batches {
        encode_batch(batch, fields, &mut rows)?;
    }
    Ok(rows)
}

/// A column made ready to be read row by row as its PostgreSQL type.
enum Column {
    Bool(ArrayRef),
    Int2(ArrayRef),
    Int4(ArrayRef),
    Int8(ArrayRef),
    Float4(ArrayRef),
    Float8(ArrayRef),
    Bytes(ArrayRef),
    Date(ArrayRef),
    Timestamp(ArrayRef),
    TimestampTz(ArrayRef),
    Text(Vec<Option<String>>),
}

fn encoding_failed(e: impl std::fmt::Display) -> PgWireError {
    user_error(sqlstate::INTERNAL_ERROR, format!("encoding a column: {e}"))
}

fn prepare(array: &ArrayRef, pg: &Type) -> PgWireResult<Column> {
    let to = |data_type: DataType| cast(array, &data_type).map_err(encoding_failed);
    let column = match *pg {
        Type::BOOL => Column::Bool(array.clone()),
        Type::INT2 => Column::Int2(to(DataType::Int16)?),
        Type::INT4 => Column::Int4(to(DataType::Int32)?),
        Type::INT8 => Column::Int8(to(DataType::Int64)?),
        Type::FLOAT4 => Column::Float4(to(DataType::Float32)?),
        Type::FLOAT8 => Column::Float8(to(DataType::Float64)?),
        Type::BYTEA => Column::Bytes(to(DataType::Binary)?),
        Type::DATE => Column::Date(to(DataType::Date32)?),
        Type::TIMESTAMP => Column::Timestamp(to(DataType::Timestamp(TimeUnit::Microsecond, None))?),
        Type::TIMESTAMPTZ => Column::TimestampTz(to(DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())))?),
        _ => {
            let formatter = ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default()).map_err(encoding_failed)?;
            Column::Text((0..array.len()).map(|row| (!array.is_null(row)).then(|| formatter.value(row).to_string())).collect())
        }
    };
    Ok(column)
}

fn encode_batch(batch: &RecordBatch, fields: &Arc<Vec<FieldInfo>>, rows: &mut Vec<DataRow>) -> PgWireResult<()> {
    let columns = batch
        .columns()
        .iter()
        .zip(fields.iter())
        .map(|(array, field)| prepare(array, field.datatype()))
        .collect::<PgWireResult<Vec<_>>>()?;
    let mut encoder = DataRowEncoder::new(fields.clone());
    for row in 0..batch.num_rows() {
        for column in &columns {
            let valid = |a: &ArrayRef| a.is_valid(row);
            match column {
                Column::Bool(a) => encoder.encode_field(&valid(a).then(|| a.as_boolean().value(row)))?,
                Column::Int2(a) => encoder.encode_field(&valid(a).then(|| a.as_primitive::<Int16Type>().value(row)))?,
                Column::Int4(a) => encoder.encode_field(&valid(a).then(|| a.as_primitive::<Int32Type>().value(row)))?,
                Column::Int8(a) => encoder.encode_field(&valid(a).then(|| a.as_primitive::<Int64Type>().value(row)))?,
                Column::Float4(a) => encoder.encode_field(&valid(a).then(|| a.as_primitive::<Float32Type>().value(row)))?,
                Column::Float8(a) => encoder.encode_field(&valid(a).then(|| a.as_primitive::<Float64Type>().value(row)))?,
                Column::Bytes(a) => encoder.encode_field(&valid(a).then(|| a.as_binary::<i32>().value(row)))?,
                Column::Date(a) => {
                    encoder.encode_field(&valid(a).then(|| a.as_primitive::<Date32Type>().value_as_date(row)).flatten())?
                }
                Column::Timestamp(a) => encoder
                    .encode_field(&valid(a).then(|| a.as_primitive::<TimestampMicrosecondType>().value_as_datetime(row)).flatten())?,
                Column::TimestampTz(a) => encoder.encode_field(
                    &valid(a)
                        .then(|| DateTime::<Utc>::from_timestamp_micros(a.as_primitive::<TimestampMicrosecondType>().value(row)))
                        .flatten(),
                )?,
                Column::Text(values) => encoder.encode_field(&values[row].as_deref())?,
            }
        }
        rows.push(encoder.take_row());
    }
    Ok(())
}

/// The bound values of a portal's `$n` parameters, as the types the statement's plan expects
/// (`expected`; the client's declared types decide how the bytes are read).
pub fn parameters<S: Clone>(portal: &Portal<S>, declared: &[Option<Type>], expected: &[Option<DataType>]) -> PgWireResult<Vec<ScalarValue>> {
    if portal.parameter_len() != expected.len() {
        return Err(user_error(
            "08P01",
            format!("bind message supplies {} parameters, but the statement requires {}", portal.parameter_len(), expected.len()),
        ));
    }
    (0..portal.parameter_len())
        .map(|i| {
            let wanted = expected[i].as_ref();
            let pg = declared.get(i).cloned().flatten().unwrap_or_else(|| wanted.map_or(Type::TEXT, pg_type));
            let value = parameter(portal, i, &pg)?;
            match wanted {
                Some(data_type) if value.data_type() != *data_type => value.cast_to(data_type).map_err(|e| {
                    user_error(sqlstate::INVALID_PARAMETER, format!("parameter ${}: {e}", i + 1))
                }),
                _ => Ok(value),
            }
        })
        .collect()
}

fn parameter<S: Clone>(portal: &Portal<S>, i: usize, pg: &Type) -> PgWireResult<ScalarValue> {
    let value = match *pg {
        Type::BOOL => ScalarValue::Boolean(portal.parameter::<bool>(i, pg)?),
        Type::INT2 => ScalarValue::Int16(portal.parameter::<i16>(i, pg)?),
        Type::INT4 => ScalarValue::Int32(portal.parameter::<i32>(i, pg)?),
        Type::INT8 => ScalarValue::Int64(portal.parameter::<i64>(i, pg)?),
        Type::FLOAT4 => ScalarValue::Float32(portal.parameter::<f32>(i, pg)?),
        Type::FLOAT8 => ScalarValue::Float64(portal.parameter::<f64>(i, pg)?),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            ScalarValue::Utf8(portal.parameter::<String>(i, pg)?)
        }
        Type::BYTEA => ScalarValue::Binary(portal.parameter::<Vec<u8>>(i, pg)?),
        Type::DATE => ScalarValue::Date32(
            portal.parameter::<NaiveDate>(i, pg)?.map(Date32Type::from_naive_date),
        ),
        Type::TIMESTAMP => ScalarValue::TimestampMicrosecond(
            portal.parameter::<NaiveDateTime>(i, pg)?.map(|t| t.and_utc().timestamp_micros()),
            None,
        ),
        Type::TIMESTAMPTZ => ScalarValue::TimestampMicrosecond(
            portal.parameter::<DateTime<FixedOffset>>(i, pg)?.map(|t| t.timestamp_micros()),
            Some("UTC".into()),
        ),
        ref other => {
            return Err(user_error(sqlstate::FEATURE_NOT_SUPPORTED, format!("parameter ${} of type {other} is not supported", i + 1)));
        }
    };
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrow_types_map_to_postgres_types() {
        assert_eq!(pg_type(&DataType::Int64), Type::INT8);
        assert_eq!(pg_type(&DataType::Float64), Type::FLOAT8);
        assert_eq!(pg_type(&DataType::Utf8), Type::TEXT);
        assert_eq!(pg_type(&DataType::Boolean), Type::BOOL);
        assert_eq!(pg_type(&DataType::Date32), Type::DATE);
        assert_eq!(pg_type(&DataType::Timestamp(TimeUnit::Millisecond, None)), Type::TIMESTAMP);
        assert_eq!(pg_type(&DataType::Timestamp(TimeUnit::Nanosecond, Some("+02:00".into()))), Type::TIMESTAMPTZ);
        assert_eq!(pg_type(&DataType::Decimal128(10, 2)), Type::TEXT);
    }
}
