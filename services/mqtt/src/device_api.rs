//! The device topics served for a device itself: telemetry, client attributes and attribute
//! requests (`v1/devices/me/...`), each handled by a platform use case.

use bytes::Bytes;
use serde_json::{Map, Value, json};
use thinglake_domain::device::Device;
use thinglake_platform::Platform;

use crate::codec::Outbound;
use crate::step::{Handled, Step};
use crate::topics::{self, Route};

/// Handles a publish on a device topic; returns once JetStream has acknowledged what it stored.
pub(crate) async fn handle(platform: &Platform, device: &Device, route: Route, payload: &[u8]) -> Handled {
    match route {
        Route::Telemetry => {
            platform.publish_telemetry(device, payload).await?;
            Ok(Step::default())
        }
        Route::Attributes => {
            platform.publish_client_attributes(device, payload).await?;
            Ok(Step::default())
        }
        Route::AttributesRequest(id) => {
            platform.admit_device_message(device, 0)?;
            let request = parse_object(payload)?;
            let client = keys(&request, "clientKeys");
            let shared = keys(&request, "sharedKeys");
            let (client, shared) = platform.device_attributes(device, client.as_deref(), shared.as_deref());
            let answer = attributes_answer(client, shared);
            Ok(Step::packets(vec![Outbound::Publish {
                topic: format!("{}{id}", topics::ATTRIBUTES_RESPONSE),
                payload: Bytes::from(answer.to_string()),
            }]))
        }
        // The device's answer to a server-side RPC: accepted; routing it to the caller is later
        // work together with server-side RPC.
        Route::RpcResponse(_) => {
            platform.admit_device_message(device, 0)?;
            parse_object(payload)?;
            Ok(Step::default())
        }
        Route::RpcRequest(_) | Route::Gateway(_) => Ok(Step::default()),
    }
}

/// A request body: a JSON object; an empty payload counts as `{}`.
pub(crate) fn parse_object(payload: &[u8]) -> Result<Map<String, Value>, thinglake_platform::Error> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(payload) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(thinglake_platform::Error::bad_payload("request must be a JSON object")),
        Err(e) => Err(thinglake_platform::Error::bad_payload(e.to_string())),
    }
}

/// ThingsBoard's comma-separated key list (`"a,b"`); a JSON array is accepted too.
fn keys(request: &Map<String, Value>, field: &str) -> Option<Vec<String>> {
    let list: Vec<String> = match request.get(field)? {
        Value::String(s) => s.split(',').map(str::trim).filter(|k| !k.is_empty()).map(String::from).collect(),
        Value::Array(items) => items.iter().filter_map(Value::as_str).map(String::from).collect(),
        _ => return None,
    };
    (!list.is_empty()).then_some(list)
}

/// `{"client": {…}, "shared": {…}}`, a scope with nothing left out.
pub(crate) fn attributes_answer(client: Map<String, Value>, shared: Map<String, Value>) -> Value {
    let mut answer = json!({});
    if !client.is_empty() {
        answer["client"] = Value::Object(client);
    }
    if !shared.is_empty() {
        answer["shared"] = Value::Object(shared);
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_lists_are_comma_separated_strings() {
        let request = parse_object(br#"{"clientKeys": "a, b,", "sharedKeys": ""}"#).expect("object");
        assert_eq!(keys(&request, "clientKeys"), Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(keys(&request, "sharedKeys"), None);
        assert_eq!(keys(&request, "missing"), None);
    }

    #[test]
    fn an_empty_request_asks_for_everything_and_bad_json_is_refused() {
        assert!(parse_object(b"").expect("empty").is_empty());
        assert!(parse_object(b"{").is_err());
        assert!(parse_object(b"[1]").is_err());
    }

    #[test]
    fn empty_scopes_are_left_out_of_the_answer() {
        let mut client = Map::new();
        client.insert("a".into(), json!(1));
        assert_eq!(attributes_answer(client, Map::new()), json!({"client": {"a": 1}}));
    }
}
