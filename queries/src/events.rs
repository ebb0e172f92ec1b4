//! The `events` view: every entity event of the tenant from the lake's `events` table and its hot
//! tail, with the payload's secrets (password and token hashes) removed by [`redacted_payload`].

use std::sync::{Arc, LazyLock};

use deltalake_core::arrow::array::{Array, AsArray, StringArray};
use deltalake_core::arrow::datatypes::DataType;
use deltalake_core::datafusion::error::DataFusionError;
use deltalake_core::datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use deltalake_core::datafusion::prelude::Expr;
use deltalake_core::datafusion::scalar::ScalarValue;
use serde_json::Value;
use thinglake_domain::{SECRET_FIELDS, redact_secrets};

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
