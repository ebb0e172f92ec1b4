//! An optimizer rule: aggregate the many side of an inner join before the join.
//!
//! A fleet query (`telemetry JOIN devices … GROUP BY d.type, t.key, t.day`) joins millions of
//! telemetry rows with a few device rows only to fold them into a few thousand groups. When every
//! aggregate reads one side of the join (the *fact* side) and is decomposable (`count`, `sum`,
//! `min`, `max`, `avg`), that side can first be aggregated by its join keys and its own grouping
//! columns; the join then sees one row per (device, key, day) instead of one per point, and a
//! final aggregate combines the partial results (counts and sums added, extremes of extremes,
//! averages as total sum over total count). An inner join repeats a fact row once per matching
//! row of the other side, and repeats the partial row the same number of times, so the answer
//! is the same. DataFusion 55 has no such rule (DuckDB does the equivalent).

use std::sync::Arc;

use deltalake_core::arrow::datatypes::DataType;
use deltalake_core::datafusion::common::tree_node::Transformed;
use deltalake_core::datafusion::common::{Column, DFSchema, Result};
use deltalake_core::datafusion::functions_aggregate::expr_fn::{count, max, min, sum};
use deltalake_core::datafusion::logical_expr::expr::AggregateFunction;
use deltalake_core::datafusion::logical_expr::{
    Aggregate, Expr, ExprSchemable as _, Join, JoinType, LogicalPlan, Projection, cast, col,
};
use deltalake_core::datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

/// Prefix of the partial results' column names.
const PARTIAL: &str = "__eager_partial_";

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct EagerAggregate;

/// How one aggregate is split into partial aggregates (below the join) and their combination.
enum Split {
    /// `count`: partial count, summed.
    Count,
    /// `sum`: partial sum, summed.
    Sum,
    /// `min`: partial minimum, minimum of them.
    Min,
    /// `max`: partial maximum, maximum of them.
    Max,
    /// `avg` of a double: partial sum and count, total sum / total count.
    Avg,
}

impl OptimizerRule for EagerAggregate {
    fn name(&self) -> &str {
        "eager_aggregate"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn rewrite(&self, plan: LogicalPlan, _config: &dyn OptimizerConfig) -> Result<Transformed<LogicalPlan>> {
        match rewritten(&plan)? {
            Some(new) => Ok(Transformed::yes(new)),
            None => Ok(Transformed::no(plan)),
        }
    }
}

/// The plan with the aggregate moved below its join, or `None` when the rule does not apply.
fn rewritten(plan: &LogicalPlan) -> Result<Option<LogicalPlan>> {
    let LogicalPlan::Aggregate(aggregate) = plan else { return Ok(None) };
    let join = match aggregate.input.as_ref() {
        LogicalPlan::Join(join) => join,
        LogicalPlan::Projection(p) if p.expr.iter().all(|e| matches!(e, Expr::Column(_))) => match p.input.as_ref() {
            LogicalPlan::Join(join) => join,
            _ => return Ok(None),
        },
        _ => return Ok(None),
    };
    if join.join_type != JoinType::Inner || join.filter.is_some() || join.on.is_empty() || join.null_aware {
        return Ok(None);
    }
    // Grouping sets, or group expressions that are not plain columns: not handled.
    let group_columns: Vec<&Column> = match aggregate.group_expr.iter().map(|e| if let Expr::Column(c) = e { Some(c) } else { None }).collect() {
        Some(columns) => columns,
        None => return Ok(None),
    };
    let (left, right) = (join.left.schema(), join.right.schema());
    // The fact side: the one every aggregate argument reads.
    let mut reads_left = false;
    let mut reads_right = false;
    let mut splits = Vec::with_capacity(aggregate.aggr_expr.len());
    for expr in &aggregate.aggr_expr {
        let Some((function, split)) = decomposable(expr, aggregate.input.schema())? else { return Ok(None) };
        for c in function.params.args.iter().flat_map(Expr::column_refs) {
            match (left.has_column(c), right.has_column(c)) {
                (true, false) => reads_left = true,
                (false, true) => reads_right = true,
                _ => return Ok(None),
            }
        }
        splits.push((function, split));
    }
    let fact_is_left = match (reads_left, reads_right) {
        (true, false) => true,
        (false, true) => false,
        _ => return Ok(None),
    };
    let (fact, fact_schema) = if fact_is_left { (&join.left, left) } else { (&join.right, right) };
    if is_aggregated(fact) {
        return Ok(None);
    }
    // Below the join: grouped by the fact side's join keys and grouping columns.
    let mut fact_groups: Vec<Expr> = Vec::new();
    for (l, r) in &join.on {
        let Expr::Column(key) = (if fact_is_left { l } else { r }) else { return Ok(None) };
        push_unique(&mut fact_groups, key);
    }
    for column in &group_columns {
        if fact_schema.has_column(column) {
            push_unique(&mut fact_groups, column);
        }
    }
    let mut partials = Vec::new();
    let mut finals = Vec::new();
    for (i, (function, split)) in splits.iter().enumerate() {
        let args = &function.params.args;
        let partial = |n: usize| format!("{PARTIAL}{i}_{n}");
        let arg = || args.first().cloned().unwrap_or_else(|| deltalake_core::datafusion::prelude::lit(1));
        let combined = match split {
            Split::Count => {
                partials.push(count(arg()).alias(partial(0)));
                sum(col(partial(0)))
            }
            Split::Sum => {
                partials.push(sum(arg()).alias(partial(0)));
                sum(col(partial(0)))
            }
            Split::Min => {
                partials.push(min(arg()).alias(partial(0)));
                min(col(partial(0)))
            }
            Split::Max => {
                partials.push(max(arg()).alias(partial(0)));
                max(col(partial(0)))
            }
            Split::Avg => {
                partials.push(sum(arg()).alias(partial(0)));
                partials.push(count(arg()).alias(partial(1)));
                finals.push(sum(col(partial(0))).alias(format!("{PARTIAL}{i}_total")));
                sum(col(partial(1)))
            }
        };
        finals.push(combined.alias(format!("{PARTIAL}{i}_combined")));
    }
    let pre = LogicalPlan::Aggregate(Aggregate::try_new(Arc::clone(fact), fact_groups, partials)?);
    let (new_left, new_right) =
        if fact_is_left { (Arc::new(pre), Arc::clone(&join.right)) } else { (Arc::clone(&join.left), Arc::new(pre)) };
    let new_join = Join::try_new(
        new_left,
        new_right,
        join.on.clone(),
        None,
        JoinType::Inner,
        join.join_constraint,
        join.null_equality,
        false,
    )?;
    let last = LogicalPlan::Aggregate(Aggregate::try_new(
        Arc::new(LogicalPlan::Join(new_join)),
        aggregate.group_expr.clone(),
        finals,
    )?);
    // On top: the original output columns, names and types.
    let mut outputs: Vec<Expr> = group_columns.iter().map(|c| Expr::Column((*c).clone())).collect();
    for (i, ((_, split), (_, field))) in splits.iter().zip(aggregate.schema.iter().skip(group_columns.len())).enumerate() {
        let combined = col(format!("{PARTIAL}{i}_combined"));
        let value = match split {
            Split::Avg => cast(col(format!("{PARTIAL}{i}_total")), DataType::Float64) / cast(combined, DataType::Float64),
            _ => combined,
        };
        outputs.push(value.alias(field.name()));
    }
    Ok(Some(LogicalPlan::Projection(Projection::try_new(outputs, Arc::new(last))?)))
}

/// The aggregate function behind `expr` and how it splits, if it does (no DISTINCT, FILTER or
/// ORDER BY; sums and averages only of types whose sum of sums keeps the type).
fn decomposable<'a>(expr: &'a Expr, schema: &DFSchema) -> Result<Option<(&'a AggregateFunction, Split)>> {
    let expr = match expr {
        Expr::Alias(alias) => alias.expr.as_ref(),
        other => other,
    };
    let Expr::AggregateFunction(function) = expr else { return Ok(None) };
    let params = &function.params;
    if params.distinct || params.filter.is_some() || !params.order_by.is_empty() || params.args.len() > 1 {
        return Ok(None);
    }
    let arg_type = match params.args.first() {
        Some(arg) => Some(arg.get_type(schema)?),
        None => None,
    };
    let summable = matches!(arg_type, Some(DataType::Int64 | DataType::UInt64 | DataType::Float64));
    let split = match function.func.name() {
        "count" => Split::Count,
        "sum" if summable => Split::Sum,
        "min" if arg_type.is_some() => Split::Min,
        "max" if arg_type.is_some() => Split::Max,
        "avg" if arg_type == Some(DataType::Float64) => Split::Avg,
        _ => return Ok(None),
    };
    Ok(Some((function, split)))
}

/// Whether `plan` is (under projections, filters and aliases) an aggregate already: the rule
/// then applied before, or the side is small anyway.
fn is_aggregated(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Aggregate(_) => true,
        LogicalPlan::Projection(p) => is_aggregated(&p.input),
        LogicalPlan::Filter(f) => is_aggregated(&f.input),
        LogicalPlan::SubqueryAlias(s) => is_aggregated(&s.input),
        _ => false,
    }
}

fn push_unique(exprs: &mut Vec<Expr>, column: &Column) {
    let expr = Expr::Column(column.clone());
    if !exprs.contains(&expr) {
        exprs.push(expr);
    }
}
