//! Reading the telemetry stream's messages, shared by the projections of that stream: the
//! message checked for its schema version, each of its time-series points with where it comes
//! from, and a value written into the value columns of a row.

use thinglake_domain::telemetry::{KvEntry, KvValue, TelemetryData, TelemetryMessage};
use thinglake_lake::table::RowBuilder;

use super::contract::{LogMessage, seq};
use crate::error::DecodeError;

/// The telemetry message of a log message, or why it is none this build reads.
pub(crate) fn telemetry_message(message: &LogMessage) -> Result<TelemetryMessage, DecodeError> {
    let parsed: TelemetryMessage = serde_json::from_slice(&message.payload)
        .map_err(|source| DecodeError::NotA { what: "a telemetry message", source })?;
    if parsed.schema_version != TelemetryMessage::SCHEMA_VERSION {
        return Err(DecodeError::TelemetrySchemaVersion {
            version: parsed.schema_version,
            known: TelemetryMessage::SCHEMA_VERSION,
        });
    }
    Ok(parsed)
}

/// Appends a value to the value columns of a row (`bool`, `long`, `double`, `str`, `json`), each
/// null but the one of its kind (all null for no value).
pub(super) fn push_value(rows: &mut RowBuilder, value: Option<&KvValue>) {
    let json = match value {
        Some(KvValue::Json(j)) => Some(j.to_string()),
        _ => None,
    };
    rows.bool(match value {
        Some(KvValue::Bool(b)) => Some(*b),
        _ => None,
    })
    .i64(match value {
        Some(KvValue::Long(l)) => Some(*l),
        _ => None,
    })
    .f64(match value {
        Some(KvValue::Double(d)) => Some(*d),
        _ => None,
    })
    .str(match value {
        Some(KvValue::String(s)) => Some(s.as_str()),
        _ => None,
    })
    .str(json.as_deref());
}

/// Where a time-series point comes from: its message's tenant and entity as text.
pub(crate) struct PointSource {
    pub tenant: String,
    pub entity_type: String,
    pub entity_id: String,
    pub received_at: i64,
    pub seq: i64,
}

/// Calls `f` with every time-series point of a telemetry message (none for attribute messages).
pub(crate) fn each_point(message: &LogMessage, mut f: impl FnMut(&PointSource, i64, &KvEntry)) -> Result<(), DecodeError> {
    let parsed = telemetry_message(message)?;
    let TelemetryData::Timeseries { batches } = &parsed.data else { return Ok(()) };
    // Written before the parsers refused them, a point the lake cannot partition by day sends
    // its whole message to the dead letters (the point's row would fail the table's write).
    if let Some(e) = batches.iter().find_map(|b| thinglake_domain::telemetry::check_ts(b.ts).err()) {
        return Err(DecodeError::PointNotWritable { source: e });
    }
    let source = PointSource {
        tenant: parsed.tenant_id.to_string(),
        entity_type: parsed.entity_type.to_string(),
        entity_id: parsed.entity_id.to_string(),
        received_at: parsed.received_at,
        seq: seq(message),
    };
    for batch in batches {
        for kv in &batch.values {
            f(&source, batch.ts, kv);
        }
    }
    Ok(())
}
