//! SQL functions whose output can be far larger than their input (`repeat`, `lpad`, `rpad`,
//! `replace`, `regexp_replace`, `concat`, `concat_ws`, `range`, `generate_series`,
//! `array_repeat`, `array_resize`), registered in every SQL session in place of DataFusion's
//! own: each call first bounds from its arguments how many bytes it would build for the batch,
//! and refuses past [`QueryConfig::max_function_bytes`](crate::QueryConfig) before allocating.
//!
//! Such values are built outside the memory pool, so without the bound one statement
//! (`SELECT repeat('x', 200000) FROM range(100000)`) takes the node's memory. The wrapped
//! functions are declared volatile, so the optimiser never folds a call on literals into one
//! value that each batch would then copy row by row unchecked.

use deltalake_core::arrow::array::{Array, ArrayRef, AsArray};
use deltalake_core::arrow::compute::cast;
use deltalake_core::arrow::datatypes::{DataType, FieldRef, Int64Type, IntervalMonthDayNanoType, IntervalUnit, TimeUnit};
use deltalake_core::datafusion::common::{DataFusionError, ScalarValue};
use deltalake_core::datafusion::execution::FunctionRegistry as _;
use deltalake_core::datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use deltalake_core::datafusion::prelude::SessionContext;

/// How a function's output size follows from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// `repeat(text, n)`: the text `n` times.
    Repeat,
    /// `lpad`/`rpad(text, n [, fill])`: `n` characters.
    Pad,
    /// `replace(text, from, to)`: every `from` replaced by `to`.
    Replace,
    /// `regexp_replace(text, pattern, replacement [, flags])`: every match replaced, group
    /// references expanded.
    RegexpReplace,
    /// `concat(a, b, …)`, `concat_ws(sep, a, b, …)`: the arguments joined (a column named many
    /// times multiplies its values).
    Concat,
    /// `range`/`generate_series([start,] stop [, step])`: a list of the steps.
    Series,
    /// `array_repeat(element, n)`: a list of `n` elements.
    ArrayRepeat,
    /// `array_resize(list, n [, fill])`: a list of `n` elements.
    ArrayResize,
}

/// The functions wrapped, by their name in DataFusion.
const BOUNDED: [(&str, Growth); 12] = [
    ("repeat", Growth::Repeat),
    ("lpad", Growth::Pad),
    ("rpad", Growth::Pad),
    ("replace", Growth::Replace),
    ("regexp_replace", Growth::RegexpReplace),
    ("concat", Growth::Concat),
    ("concat_ws", Growth::Concat),
    ("range", Growth::Series),
    ("generate_series", Growth::Series),
    ("array_repeat", Growth::ArrayRepeat),
    ("array_resize", Growth::ArrayResize),
    ("list_resize", Growth::ArrayResize),
];

/// Replaces the session's amplifying functions (and their aliases) by bounded versions that
/// refuse to build more than `limit` bytes in one call.
pub(crate) fn register_bounded_functions(ctx: &SessionContext, limit: usize) {
    for (name, growth) in BOUNDED {
        if let Ok(inner) = ctx.udf(name) {
            // An alias names the same function: it is wrapped once, under its own name.
            if inner.name() != name {
                continue;
            }
            let signature = Signature { volatility: Volatility::Volatile, ..inner.signature().clone() };
            ctx.register_udf(ScalarUDF::new_from_impl(Bounded { inner: inner.as_ref().clone(), signature, growth, limit }));
        }
    }
}

/// A function that refuses calls whose output would pass `limit` bytes.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: ScalarUDF,
    /// The inner function's signature, volatile.
    signature: Signature,
    growth: Growth,
    limit: usize,
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> deltalake_core::datafusion::common::Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs<'_>) -> deltalake_core::datafusion::common::Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> deltalake_core::datafusion::common::Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> deltalake_core::datafusion::common::Result<ColumnarValue> {
        let bytes = output_bound(self.growth, &args.args, args.number_rows)?;
        if bytes > self.limit as u128 {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{}() would build {} for {} rows, past the limit of {} one function call may build \
                 (query_max_function_bytes): use smaller arguments or fewer rows",
                self.inner.name(),
                human_bytes(bytes),
                args.number_rows,
                human_bytes(self.limit as u128),
            )));
        }
        self.inner.invoke_with_args(args)
    }
}

/// `n` bytes as people read them.
pub(crate) fn human_bytes(n: u128) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} bytes") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// One argument's numbers per row: a scalar's for every row, an array's row by row.
enum PerRow {
    Same(i128),
    Each(Vec<i128>),
}

impl PerRow {
    fn at(&self, row: usize) -> i128 {
        match self {
            PerRow::Same(v) => *v,
            PerRow::Each(values) => values.get(row).copied().unwrap_or(0),
        }
    }

    fn from_array(array: &ArrayRef, scalar: bool, value: impl Fn(&ArrayRef, usize) -> i128) -> Self {
        if scalar {
            PerRow::Same(if array.is_empty() { 0 } else { value(array, 0) })
        } else {
            PerRow::Each((0..array.len()).map(|row| value(array, row)).collect())
        }
    }
}

type DfResult<T> = deltalake_core::datafusion::common::Result<T>;

/// The argument as an array (a scalar as one row) and whether it was a scalar.
fn as_array(arg: &ColumnarValue) -> DfResult<(ArrayRef, bool)> {
    match arg {
        ColumnarValue::Array(array) => Ok((array.clone(), false)),
        ColumnarValue::Scalar(value) => Ok((value.to_array_of_size(1)?, true)),
    }
}

/// Byte length of each row's text or binary value (0 when null); element bytes for anything
/// else.
fn lengths(arg: &ColumnarValue) -> DfResult<PerRow> {
    if let ColumnarValue::Scalar(value) = arg {
        return Ok(PerRow::Same(scalar_len(value)));
    }
    let (array, scalar) = as_array(arg)?;
    let per_row: fn(&ArrayRef, usize) -> i128 = match array.data_type() {
        DataType::Utf8 => |a, i| if a.is_null(i) { 0 } else { a.as_string::<i32>().value(i).len() as i128 },
        DataType::LargeUtf8 => |a, i| if a.is_null(i) { 0 } else { a.as_string::<i64>().value(i).len() as i128 },
        DataType::Utf8View => |a, i| if a.is_null(i) { 0 } else { a.as_string_view().value(i).len() as i128 },
        DataType::Binary => |a, i| if a.is_null(i) { 0 } else { a.as_binary::<i32>().value(i).len() as i128 },
        DataType::LargeBinary => |a, i| if a.is_null(i) { 0 } else { a.as_binary::<i64>().value(i).len() as i128 },
        DataType::BinaryView => |a, i| if a.is_null(i) { 0 } else { a.as_binary_view().value(i).len() as i128 },
        _ => {
            // Any other value: its share of the array's memory.
            let share = array.get_array_memory_size().div_ceil(array.len().max(1)) as i128;
            return Ok(PerRow::Same(share.max(1)));
        }
    };
    Ok(PerRow::from_array(&array, scalar, per_row))
}

/// Bytes of a scalar's value: its text's length, else its size in memory.
fn scalar_len(value: &ScalarValue) -> i128 {
    match value {
        ScalarValue::Utf8(s) | ScalarValue::LargeUtf8(s) | ScalarValue::Utf8View(s) => s.as_ref().map_or(0, |s| s.len() as i128),
        ScalarValue::Binary(b) | ScalarValue::LargeBinary(b) | ScalarValue::BinaryView(b) => b.as_ref().map_or(0, |b| b.len() as i128),
        other => other.size() as i128,
    }
}

/// Each row's integer (0 when null or not an integer).
fn integers(arg: &ColumnarValue) -> DfResult<PerRow> {
    let (array, scalar) = as_array(arg)?;
    let ints = cast(&array, &DataType::Int64)?;
    Ok(PerRow::from_array(&ints, scalar, |a, i| if a.is_null(i) { 0 } else { i128::from(a.as_primitive::<Int64Type>().value(i)) }))
}

/// Each row's point in time as nanoseconds (dates and timestamps), or integer as such.
fn points(arg: &ColumnarValue) -> DfResult<PerRow> {
    let (array, scalar) = as_array(arg)?;
    let array = match array.data_type() {
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(..) => cast(&array, &DataType::Timestamp(TimeUnit::Nanosecond, None))?,
        _ => array,
    };
    let ints = cast(&array, &DataType::Int64)?;
    Ok(PerRow::from_array(&ints, scalar, |a, i| if a.is_null(i) { 0 } else { i128::from(a.as_primitive::<Int64Type>().value(i)) }))
}

/// Each row's step: an integer as such, an interval as its shortest length in nanoseconds (a
/// month as 28 days).
fn steps(arg: &ColumnarValue) -> DfResult<PerRow> {
    let (array, scalar) = as_array(arg)?;
    let array = match array.data_type() {
        DataType::Interval(IntervalUnit::MonthDayNano) => array,
        DataType::Interval(_) => cast(&array, &DataType::Interval(IntervalUnit::MonthDayNano))?,
        _ => return integers(arg),
    };
    const DAY: i128 = 86_400_000_000_000;
    Ok(PerRow::from_array(&array, scalar, |a, i| {
        if a.is_null(i) {
            return 0;
        }
        let v = a.as_primitive::<IntervalMonthDayNanoType>().value(i);
        i128::from(v.months) * 28 * DAY + i128::from(v.days) * DAY + i128::from(v.nanoseconds)
    }))
}

/// An upper bound of the bytes a call over `rows` rows builds.
fn output_bound(growth: Growth, args: &[ColumnarValue], rows: usize) -> DfResult<u128> {
    let arg = |i: usize| args.get(i);
    let sum = |each: &dyn Fn(usize) -> i128| -> u128 { (0..rows).map(|row| each(row).max(0) as u128).fold(0u128, u128::saturating_add) };
    Ok(match growth {
        Growth::Repeat => match (arg(0), arg(1)) {
            (Some(text), Some(n)) => {
                let (len, n) = (lengths(text)?, integers(n)?);
                sum(&|row| len.at(row).saturating_mul(n.at(row)))
            }
            _ => 0,
        },
        Growth::Pad => match arg(1) {
            // Up to four bytes a character.
            Some(n) => {
                let n = integers(n)?;
                sum(&|row| n.at(row).saturating_mul(4))
            }
            None => 0,
        },
        Growth::Replace => match (arg(0), arg(1), arg(2)) {
            (Some(text), Some(from), Some(to)) => {
                let (text, from, to) = (lengths(text)?, lengths(from)?, lengths(to)?);
                sum(&|row| {
                    let matches = text.at(row) / from.at(row).max(1) + 1;
                    text.at(row).saturating_add(matches.saturating_mul(to.at(row)))
                })
            }
            _ => 0,
        },
        Growth::RegexpReplace => match (arg(0), arg(2)) {
            (Some(text), Some(replacement)) => {
                let references = match replacement {
                    ColumnarValue::Scalar(value) => {
                        let text = value.to_string();
                        text.chars().filter(|c| matches!(c, '\\' | '$')).count() as i128
                    }
                    // Every character could be a group reference.
                    ColumnarValue::Array(_) => -1,
                };
                let (text, replacement) = (lengths(text)?, lengths(replacement)?);
                sum(&|row| {
                    let refs = if references < 0 { replacement.at(row) } else { references };
                    let each_match = replacement.at(row).saturating_add(refs.saturating_mul(text.at(row)));
                    text.at(row).saturating_add((text.at(row) + 1).saturating_mul(each_match))
                })
            }
            _ => 0,
        },
        Growth::Concat => {
            let lengths = args.iter().map(lengths).collect::<DfResult<Vec<_>>>()?;
            sum(&|row| lengths.iter().map(|l| l.at(row)).fold(0i128, i128::saturating_add))
        }
        Growth::Series => {
            let (start, stop, step) = match args.len() {
                1 => (None, &args[0], None),
                2 => (Some(&args[0]), &args[1], None),
                _ => (Some(&args[0]), &args[1], Some(&args[2])),
            };
            let start = start.map(points).transpose()?;
            let stop = points(stop)?;
            let step = step.map(steps).transpose()?;
            // Eight bytes an element, and the list's offset.
            sum(&|row| {
                let span = stop.at(row) - start.as_ref().map_or(0, |s| s.at(row));
                let step = step.as_ref().map_or(1, |s| s.at(row)).abs().max(1);
                (span.abs() / step + 1).saturating_mul(8)
            }) + rows as u128 * 8
        }
        Growth::ArrayRepeat => match (arg(0), arg(1)) {
            (Some(element), Some(n)) => {
                let (size, n) = (lengths(element)?, integers(n)?);
                sum(&|row| size.at(row).max(8).saturating_mul(n.at(row)))
            }
            _ => 0,
        },
        Growth::ArrayResize => match arg(1) {
            Some(n) => {
                let n = integers(n)?;
                let fill = arg(2).map(lengths).transpose()?;
                sum(&|row| fill.as_ref().map_or(16, |f| f.at(row).max(16)).saturating_mul(n.at(row)))
            }
            None => 0,
        },
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn text(s: &str) -> ColumnarValue {
        ColumnarValue::Scalar(ScalarValue::Utf8(Some(s.to_string())))
    }

    fn int(n: i64) -> ColumnarValue {
        ColumnarValue::Scalar(ScalarValue::Int64(Some(n)))
    }

    #[test]
    fn a_scalar_call_counts_every_row_it_will_fill() {
        assert_eq!(output_bound(Growth::Repeat, &[text("ab"), int(1000)], 10).expect("bound"), 20_000);
        assert_eq!(output_bound(Growth::Pad, &[text("ab"), int(10)], 2).expect("bound"), 80);
        assert_eq!(output_bound(Growth::Series, &[int(0), int(99)], 1).expect("bound"), 808);
        assert_eq!(output_bound(Growth::Repeat, &[text("ab"), int(-5)], 10).expect("bound"), 0);
    }

    #[test]
    fn an_array_argument_counts_row_by_row() {
        let counts: ArrayRef = Arc::new(deltalake_core::arrow::array::Int64Array::from(vec![Some(1), None, Some(3)]));
        let bound = output_bound(Growth::ArrayRepeat, &[int(7), ColumnarValue::Array(counts)], 3).expect("bound");
        let element = ScalarValue::Int64(Some(7)).size().max(8) as u128;
        assert_eq!(bound, 4 * element);
    }
}
