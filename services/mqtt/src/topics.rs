//! ThingsBoard's MQTT topics: what a device may publish to ([`Route`]) and subscribe to
//! ([`Subscription`]), and the topics the platform answers on.

pub(crate) const TELEMETRY: &str = "v1/devices/me/telemetry";
pub(crate) const ATTRIBUTES: &str = "v1/devices/me/attributes";
pub(crate) const ATTRIBUTES_REQUEST: &str = "v1/devices/me/attributes/request/";
pub(crate) const ATTRIBUTES_RESPONSE: &str = "v1/devices/me/attributes/response/";
pub(crate) const RPC_REQUEST: &str = "v1/devices/me/rpc/request/";
pub(crate) const RPC_RESPONSE: &str = "v1/devices/me/rpc/response/";
pub(crate) const GATEWAY_CONNECT: &str = "v1/gateway/connect";
pub(crate) const GATEWAY_DISCONNECT: &str = "v1/gateway/disconnect";
pub(crate) const GATEWAY_TELEMETRY: &str = "v1/gateway/telemetry";
pub(crate) const GATEWAY_ATTRIBUTES: &str = "v1/gateway/attributes";
pub(crate) const GATEWAY_ATTRIBUTES_REQUEST: &str = "v1/gateway/attributes/request";
pub(crate) const GATEWAY_ATTRIBUTES_RESPONSE: &str = "v1/gateway/attributes/response";
pub(crate) const GATEWAY_RPC: &str = "v1/gateway/rpc";

/// What a publish on a topic asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    Telemetry,
    Attributes,
    /// `v1/devices/me/attributes/request/{n}`: answered on `…/response/{n}`.
    AttributesRequest(String),
    /// `v1/devices/me/rpc/request/{n}`: a client-side RPC, answered on `…/rpc/response/{n}`.
    RpcRequest(String),
    /// `v1/devices/me/rpc/response/{id}`: the device's answer to a server-side RPC.
    RpcResponse(String),
    Gateway(GatewayRoute),
}

/// The gateway API's topics (only for devices with `additionalInfo.gateway`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GatewayRoute {
    Connect,
    Disconnect,
    Telemetry,
    Attributes,
    AttributesRequest,
    Rpc,
}

/// A request id: what follows the prefix, one topic level, not empty.
fn id_after<'a>(topic: &'a str, prefix: &str) -> Option<&'a str> {
    topic.strip_prefix(prefix).filter(|id| !id.is_empty() && !id.contains('/'))
}

impl Route {
    /// The route of a publish topic; `None` for a topic the platform does not serve.
    pub(crate) fn of(topic: &str) -> Option<Route> {
        Some(match topic {
            TELEMETRY => Route::Telemetry,
            ATTRIBUTES => Route::Attributes,
            GATEWAY_CONNECT => Route::Gateway(GatewayRoute::Connect),
            GATEWAY_DISCONNECT => Route::Gateway(GatewayRoute::Disconnect),
            GATEWAY_TELEMETRY => Route::Gateway(GatewayRoute::Telemetry),
            GATEWAY_ATTRIBUTES => Route::Gateway(GatewayRoute::Attributes),
            GATEWAY_ATTRIBUTES_REQUEST => Route::Gateway(GatewayRoute::AttributesRequest),
            GATEWAY_RPC => Route::Gateway(GatewayRoute::Rpc),
            _ => {
                if let Some(id) = id_after(topic, ATTRIBUTES_REQUEST) {
                    Route::AttributesRequest(id.to_string())
                } else if let Some(id) = id_after(topic, RPC_REQUEST) {
                    Route::RpcRequest(id.to_string())
                } else if let Some(id) = id_after(topic, RPC_RESPONSE) {
                    Route::RpcResponse(id.to_string())
                } else {
                    return None;
                }
            }
        })
    }
}

/// What a device subscribes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Subscription {
    /// Shared-attribute updates of the device itself.
    SharedAttributes,
    /// Answers to attribute requests.
    AttributeResponses,
    /// Server-side RPC requests (accepted; delivering them is later work).
    RpcRequests,
    /// Answers to client-side RPC.
    RpcResponses,
    /// Shared-attribute updates of a gateway's sub-devices.
    GatewayAttributes,
    /// Answers to a gateway's attribute requests.
    GatewayAttributeResponses,
    /// Server-side RPC to a gateway's sub-devices (accepted; delivery is later work).
    GatewayRpc,
    /// Server-initiated sub-device disconnects.
    GatewayDisconnect,
}

impl Subscription {
    /// The subscription a topic filter asks for; `None` for a filter the platform never
    /// publishes on. Request ids may be given or wildcarded (`+`, `#`).
    pub(crate) fn of(filter: &str) -> Option<Subscription> {
        let any_id = |prefix: &str| {
            filter.strip_prefix(prefix).is_some_and(|rest| !rest.is_empty() && (rest == "#" || !rest.contains('/')))
        };
        Some(match filter {
            ATTRIBUTES => Subscription::SharedAttributes,
            GATEWAY_ATTRIBUTES => Subscription::GatewayAttributes,
            GATEWAY_ATTRIBUTES_RESPONSE => Subscription::GatewayAttributeResponses,
            GATEWAY_RPC => Subscription::GatewayRpc,
            GATEWAY_DISCONNECT => Subscription::GatewayDisconnect,
            _ if any_id(ATTRIBUTES_RESPONSE) => Subscription::AttributeResponses,
            _ if any_id(RPC_REQUEST) => Subscription::RpcRequests,
            _ if any_id(RPC_RESPONSE) => Subscription::RpcResponses,
            _ => return None,
        })
    }

    /// Whether only a gateway may subscribe.
    pub(crate) fn is_gateway(self) -> bool {
        matches!(
            self,
            Subscription::GatewayAttributes
                | Subscription::GatewayAttributeResponses
                | Subscription::GatewayRpc
                | Subscription::GatewayDisconnect
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_topics_route_to_their_use_case() {
        assert_eq!(Route::of("v1/devices/me/telemetry"), Some(Route::Telemetry));
        assert_eq!(Route::of("v1/devices/me/attributes"), Some(Route::Attributes));
        assert_eq!(Route::of("v1/devices/me/attributes/request/7"), Some(Route::AttributesRequest("7".into())));
        assert_eq!(Route::of("v1/devices/me/rpc/request/12"), Some(Route::RpcRequest("12".into())));
        assert_eq!(Route::of("v1/gateway/telemetry"), Some(Route::Gateway(GatewayRoute::Telemetry)));
    }

    #[test]
    fn unknown_or_malformed_topics_have_no_route() {
        for topic in ["v1/devices/me/other", "v1/devices/me/attributes/request/", "v1/devices/me/rpc/request/1/2", "x", ""] {
            assert_eq!(Route::of(topic), None, "{topic}");
        }
    }

    #[test]
    fn the_sdks_subscriptions_are_understood() {
        assert_eq!(Subscription::of("v1/devices/me/attributes"), Some(Subscription::SharedAttributes));
        assert_eq!(Subscription::of("v1/devices/me/attributes/response/+"), Some(Subscription::AttributeResponses));
        assert_eq!(Subscription::of("v1/devices/me/rpc/request/+"), Some(Subscription::RpcRequests));
        assert_eq!(Subscription::of("v1/devices/me/rpc/response/+"), Some(Subscription::RpcResponses));
        assert_eq!(Subscription::of("v1/devices/me/attributes/response/3"), Some(Subscription::AttributeResponses));
        assert_eq!(Subscription::of("v1/gateway/attributes"), Some(Subscription::GatewayAttributes));
        assert_eq!(Subscription::of("#"), None);
        assert_eq!(Subscription::of("v1/devices/me/telemetry"), None);
    }
}
