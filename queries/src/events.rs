//! The `events` view: every entity event of the tenant from the lake's `events` table and its hot
//! tail, with the payload's secrets (password and token hashes) removed by [`redacted_payload`];
//! and two SQL functions for auditors over it ([`payload_functions`]): `json_fold(payloads)`, an
//! entity's payload state after a list of its payloads (state as of a time), and
//! `json_changes(earlier_payloads, payload)`, what an event changed (the change list), both
//! folding as the domain does ([`thinglake_domain::fold_payload`]), so the SQL answers match the
//! HTTP history.

use std::sync::{Arc, LazyLock};

use deltalake_core::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use deltalake_core::arrow::compute::cast;
use deltalake_core::arrow::datatypes::{DataType, Field};
use deltalake_core::datafusion::error::DataFusionError;
use deltalake_core::datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, create_udf,
};
use deltalake_core::datafusion::prelude::Expr;
use deltalake_core::datafusion::scalar::ScalarValue;
use serde_json::{Map, Value};
use thinglake_domain::{SECRET_FIELDS, fold_payload, payload_changes, redact_secrets};

/// The payload without secrets; text that is not JSON (never written by the platform) passes as
/// it is.
fn redact_text(payload: &str) -> String {
    // Most payloads name no secret field: no parse for them.
    if !SECRET_FIELDS.iter().any(|f| payload.contains(f)) {
        return payload.to_string();
    }
    match serde_json::from_str::<Value>(payload) {
        Ok(mut value) => {
            redact_secrets(&mut value);
            value.to_string()
        }
        Err(_) => payload.to_string(),
    }
}

fn redact(args: &[ColumnarValue]) -> Result<ColumnarValue, DataFusionError> {
    let [arg] = args else { return Err(DataFusionError::Internal("redact_secrets takes one argument".into())) };
    Ok(match arg {
        ColumnarValue::Scalar(ScalarValue::Utf8(text)) => {
            ColumnarValue::Scalar(ScalarValue::Utf8(text.as_deref().map(redact_text)))
        }
        ColumnarValue::Scalar(other) => {
            return Err(DataFusionError::Internal(format!("redact_secrets expects text, got {}", other.data_type())));
        }
        ColumnarValue::Array(array) => {
            let texts = array.as_string_opt::<i32>().ok_or_else(|| {
                DataFusionError::Internal(format!("redact_secrets expects text, got {}", array.data_type()))
            })?;
            let redacted: StringArray = texts.iter().map(|t| t.map(redact_text)).collect();
            ColumnarValue::Array(Arc::new(redacted) as Arc<dyn Array>)
        }
    })
}

static REDACT: LazyLock<ScalarUDF> = LazyLock::new(|| {
    create_udf("redact_secrets", vec![DataType::Utf8], DataType::Utf8, Volatility::Immutable, Arc::new(redact))
});

/// `payload` (JSON text) without its secret fields.
pub(crate) fn redacted_payload(payload: Expr) -> Expr {
    REDACT.call(vec![payload])
}

/// `json_fold(list of payloads)` or `json_changes(list of earlier payloads, payload)`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PayloadFunction {
    changes: bool,
    signature: Signature,
}

impl PayloadFunction {
    fn new(changes: bool) -> Self {
        Self { changes, signature: Signature::user_defined(Volatility::Immutable) }
    }
}

fn plan_error(message: String) -> DataFusionError {
    DataFusionError::Plan(message)
}

/// The fold of a list of JSON payload texts (nulls and non-JSON skipped).
fn fold(payloads: Option<ArrayRef>) -> Result<Map<String, Value>, DataFusionError> {
    let mut state = Map::new();
    if let Some(payloads) = payloads {
        let texts = cast(&payloads, &DataType::Utf8)?;
        for text in texts.as_string::<i32>().iter().flatten() {
            if let Ok(payload) = serde_json::from_str::<Value>(text) {
                fold_payload(&mut state, &payload);
            }
        }
    }
    Ok(state)
}

impl ScalarUDFImpl for PayloadFunction {
    fn name(&self) -> &str {
        if self.changes { "json_changes" } else { "json_fold" }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>, DataFusionError> {
        let usage = if self.changes {
            "json_changes(array_agg(payload) OVER (… ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), payload)"
        } else {
            "json_fold(array_agg(payload ORDER BY version))"
        };
        let list = DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)));
        let is_list = |t: &DataType| matches!(t, DataType::List(_) | DataType::LargeList(_) | DataType::Null);
        match (self.changes, arg_types) {
            (false, [l]) if is_list(l) => Ok(vec![list]),
            (true, [l, _]) if is_list(l) => Ok(vec![list, DataType::Utf8]),
            _ => Err(plan_error(format!("{} takes a list of payloads: {usage}", self.name()))),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType, DataFusionError> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue, DataFusionError> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let lists = arrays[0].as_list_opt::<i32>().ok_or_else(|| plan_error(format!("{}: not a list", self.name())))?;
        let payloads = if self.changes { Some(cast(&arrays[1], &DataType::Utf8)?) } else { None };
        let mut out = Vec::with_capacity(lists.len());
        for row in 0..lists.len() {
            let earlier = (!lists.is_null(row)).then(|| lists.value(row));
            let state = fold(earlier)?;
            let answer = match &payloads {
                None => Some(Value::Object(state).to_string()),
                Some(payloads) => {
                    let payloads = payloads.as_string::<i32>();
                    (!payloads.is_null(row)).then(|| {
                        let payload = serde_json::from_str::<Value>(payloads.value(row)).unwrap_or(Value::Null);
                        Value::Object(payload_changes(&state, &payload)).to_string()
                    })
                }
            };
            out.push(answer);
        }
        Ok(ColumnarValue::Array(Arc::new(StringArray::from(out))))
    }
}

/// The auditor's SQL functions, registered in every SQL session.
pub(crate) fn payload_functions() -> [ScalarUDF; 2] {
    [ScalarUDF::new_from_impl(PayloadFunction::new(false)), ScalarUDF::new_from_impl(PayloadFunction::new(true))]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_fields_leave_the_payload_and_the_rest_stays() {
        let payload = r#"{"email":"a@b.io","password_hash":"$argon2id$x","nested":{"tokenHash":"t","keep":1}}"#;
        let redacted: Value = serde_json::from_str(&redact_text(payload)).expect("json");
        assert_eq!(redacted, serde_json::json!({"email": "a@b.io", "nested": {"keep": 1}}));
        assert_eq!(redact_text(r#"{"name":"d"}"#), r#"{"name":"d"}"#);
        assert_eq!(redact_text("not json password_hash"), "not json password_hash");
    }
}
