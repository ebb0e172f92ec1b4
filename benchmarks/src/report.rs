//! One JSON object per measured figure.

use serde_json::json;

/// Prints a measurement; with a baseline, the ratio value/baseline too.
pub(crate) fn emit(name: &str, value: f64, unit: &str, baseline: Option<f64>) {
    let mut line = json!({"name": name, "value": round(value), "unit": unit});
    if let Some(b) = baseline {
        line["baseline"] = json!(round(b));
        line["ratio"] = json!(if b > 0.0 { (value / b * 1000.0).round() / 1000.0 } else { 0.0 });
    }
    println!("{line}");
}

fn round(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}
