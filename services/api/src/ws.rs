//! ThingsBoard's WebSocket API for live dashboards: `/api/ws` (commands in `{"cmds": [...]}` with
//! a `type`) and the legacy `/api/ws/plugins/telemetry` (`tsSubCmds`, `attrSubCmds`,
//! `historyCmds`).
//!
//! A session authenticates with `?token=JWT` on the URL or a first message
//! `{"authCmd": {"cmdId", "token"}}`, and is closed if it has not within [`AUTH_TIMEOUT`]; a first
//! message without `authCmd` is refused (error 3) and closes the session, its commands unread.
//! A client message larger than the configured limit closes the session (1009). Each
//! subscription (`cmdId`) answers the current values at once — for a `TIMESERIES` command with a
//! `timeWindow`, the points of `[startTs, startTs + timeWindow)` instead (with `interval`, `agg`
//! and `limit`, as ThingsBoard does) — then every change of its entity's keys as the
//! latest-values follower applies it ([`thinglake_platform::subscriptions`]). A
//! `TIMESERIES_HISTORY` command (`historyCmds`) answers the points of `[startTs, endTs)` once and
//! subscribes to nothing. Range reads go through the query engine like the REST range queries. Updates
//! are `{"subscriptionId", "errorCode", "errorMsg", "data": {"k": [[ts, "v"]]}, "latestValues":
//! {"k": ts}}`; error codes: 1 internal, 2 bad request, 3 unauthorized. A subscriber that falls
//! behind the bounded update channel gets error 1 and its subscription is dropped. The session
//! runs in its connection's task (no task of its own) and ends when the platform shuts down.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use thinglake_domain::telemetry::{AttributeScope, TelemetryMessage};
use thinglake_domain::{EntityId, EntityType};
use thinglake_platform::Principal;
use thinglake_platform::subscriptions::{Subscription, SubscriptionKind, UpdateData, add_latest_to_window};
use thinglake_queries::timeseries::DEFAULT_LIMIT;
use thinglake_queries::{Aggregation, Order, TimeseriesQuery};
use tokio_stream::StreamMap;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::debug;
use uuid::Uuid;

use crate::ApiState;
use crate::error::ApiError;
use crate::extract::authenticate;

/// How long a session may stay unauthenticated before it is closed.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(10);

/// Subscriptions one session may hold at once.
const MAX_SUBSCRIPTIONS: usize = 256;

/// ThingsBoard's WebSocket error codes.
mod code {
    pub(super) const INTERNAL: u8 = 1;
    pub(super) const BAD_REQUEST: u8 = 2;
    pub(super) const UNAUTHORIZED: u8 = 3;
}

#[derive(Debug, Clone)]
struct WsState {
    api: ApiState,
    shutdown: CancellationToken,
    /// Largest message (and frame) a client may send; a larger one ends the session.
    max_message_bytes: usize,
}

/// The WebSocket routes. Sessions end when `shutdown` is cancelled, so a graceful HTTP shutdown
/// does not wait for open dashboards. A client message larger than `max_message_bytes` closes
/// its session.
pub fn routes(api: ApiState, shutdown: CancellationToken, max_message_bytes: usize) -> Router {
    Router::new()
        .route("/api/ws", get(|s, q, ws| upgrade(s, q, ws, false)))
        .route("/api/ws/plugins/telemetry", get(|s, q, ws| upgrade(s, q, ws, true)))
        .with_state(WsState { api, shutdown, max_message_bytes })
}

#[derive(Debug, Deserialize)]
struct TokenParam {
    token: Option<String>,
}

async fn upgrade(State(state): State<WsState>, Query(params): Query<TokenParam>, ws: WebSocketUpgrade, legacy: bool) -> Response {
    let limit = state.max_message_bytes;
    ws.max_message_size(limit).max_frame_size(limit).on_upgrade(move |socket| Session::new(state, socket, legacy).run(params.token))
}

/// One command, in either dialect.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Cmd {
    #[serde(rename = "type")]
    kind: Option<String>,
    cmd_id: i64,
    entity_type: Option<String>,
    entity_id: Option<String>,
    keys: Option<String>,
    scope: Option<String>,
    unsubscribe: bool,
    start_ts: Option<i64>,
    end_ts: Option<i64>,
    time_window: Option<i64>,
    interval: Option<i64>,
    limit: Option<i64>,
    agg: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct AuthCmd {
    cmd_id: i64,
    token: Option<String>,
}

/// What an unauthenticated session reads of a message: its auth command only.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct AuthOnly {
    auth_cmd: Option<AuthCmd>,
}

/// What a client sends: either dialect, and an optional auth command first.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Envelope {
    auth_cmd: Option<AuthCmd>,
    cmds: Vec<Value>,
    ts_sub_cmds: Vec<Value>,
    attr_sub_cmds: Vec<Value>,
    history_cmds: Vec<Value>,
}

/// What a command of one dialect asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
enum CmdKind {
    Timeseries,
    Attributes,
    History,
}

struct Session {
    state: WsState,
    socket: WebSocket,
    legacy: bool,
    principal: Option<Principal>,
    subscriptions: HashMap<i64, Subscription>,
    updates: StreamMap<i64, BroadcastStream<Arc<TelemetryMessage>>>,
    /// Moves when a tenant, user or device changes: the session then rechecks its user.
    access: watch::Receiver<u64>,
}

/// Why a session ends.
enum End {
    Closed,
    Close(u16, &'static str),
}

impl Session {
    fn new(state: WsState, socket: WebSocket, legacy: bool) -> Self {
        let access = state.api.platform.view().access_changes();
        Self { state, socket, legacy, principal: None, subscriptions: HashMap::new(), updates: StreamMap::new(), access }
    }

    async fn run(mut self, url_token: Option<String>) {
        let end = self.serve(url_token).await;
        if let End::Close(code, reason) = end {
            let frame = CloseFrame { code, reason: Utf8Bytes::from_static(reason) };
            let _ = self.socket.send(Message::Close(Some(frame))).await;
        }
    }

    async fn serve(&mut self, url_token: Option<String>) -> End {
        if let Some(token) = url_token
            && !self.authenticate(0, &token).await
        {
            return End::Close(close_code::POLICY, "unauthorized");
        }
        let auth_deadline = tokio::time::sleep(AUTH_TIMEOUT);
        tokio::pin!(auth_deadline);
        let shutdown = self.state.shutdown.clone();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return End::Close(close_code::AWAY, "server shutting down"),
                () = &mut auth_deadline, if self.principal.is_none() => {
                    return End::Close(close_code::POLICY, "authentication timeout");
                }
                Ok(()) = self.access.changed(), if self.principal.is_some() => {
                    if let Some(end) = self.session_ended().await {
                        return end;
                    }
                }
                incoming = self.socket.recv() => match incoming {
                    Some(Ok(Message::Text(text))) => {
                        if let Some(end) = self.session_ended().await {
                            return end;
                        }
                        if let Some(end) = self.on_text(text.as_str()).await {
                            return end;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None => return End::Closed,
                    // A message past the size limit, or a broken frame.
                    Some(Err(e)) => {
                        debug!(error = %e, "websocket session ended by a bad or oversized message");
                        return End::Close(close_code::SIZE, "message too big or malformed");
                    }
                    Some(Ok(_)) => {}
                },
                Some((id, item)) = self.updates.next(), if !self.updates.is_empty() => {
                    if let Some(end) = self.session_ended().await {
                        return end;
                    }
                    if !self.on_update(id, item).await {
                        return End::Closed;
                    }
                }
            }
        }
    }

    /// Handles one client message; returns how the session ends, if it does. Until the session
    /// is authenticated only an `authCmd` is read: a message without one is refused (error 3)
    /// and the session closed, its commands neither parsed nor answered.
    async fn on_text(&mut self, text: &str) -> Option<End> {
        let authenticated_before = self.principal.is_some();
        if !authenticated_before {
            let auth = serde_json::from_str::<AuthOnly>(text).ok().and_then(|a| a.auth_cmd);
            let Some(auth) = auth else {
                self.send_error(0, code::UNAUTHORIZED, "Unauthorized: the first message must be an authCmd").await;
                return Some(End::Close(close_code::POLICY, "authentication required"));
            };
            if !self.authenticate(auth.cmd_id, &auth.token.unwrap_or_default()).await {
                return Some(End::Close(close_code::POLICY, "unauthorized"));
            }
        }
        let envelope: Envelope = match serde_json::from_str(text) {
            Ok(e) => e,
            Err(e) => {
                self.send_error(0, code::BAD_REQUEST, &format!("Failed to parse the command: {e}")).await;
                return None;
            }
        };
        if let Some(auth) = envelope.auth_cmd.filter(|_| authenticated_before) {
            let token = auth.token.unwrap_or_default();
            if !self.authenticate(auth.cmd_id, &token).await {
                return Some(End::Close(close_code::POLICY, "unauthorized"));
            }
        }
        let typed = envelope.cmds.into_iter().map(|c| (None, c));
        let legacy = envelope
            .ts_sub_cmds
            .into_iter()
            .map(|c| (Some(CmdKind::Timeseries), c))
            .chain(envelope.attr_sub_cmds.into_iter().map(|c| (Some(CmdKind::Attributes), c)))
            .chain(envelope.history_cmds.into_iter().map(|c| (Some(CmdKind::History), c)));
        let commands: Vec<(Option<CmdKind>, Value)> = typed.chain(legacy).collect();
        for (kind, raw) in commands {
            let cmd_id = raw.get("cmdId").and_then(Value::as_i64).unwrap_or(0);
            let cmd: Cmd = match serde_json::from_value(raw) {
                Ok(c) => c,
                Err(e) => {
                    self.send_error(cmd_id, code::BAD_REQUEST, &format!("Invalid command: {e}")).await;
                    continue;
                }
            };
            if !self.on_cmd(kind, cmd).await {
                return Some(End::Closed);
            }
        }
        None
    }

    /// Whether the signed-in user's session has ended (user deleted, signed out, password
    /// changed, tenant deleted): then the client is told (error 3) and the session closes.
    async fn session_ended(&mut self) -> Option<End> {
        let ended = self.principal.as_ref().and_then(|p| self.state.api.platform.check_session(p).err())?;
        let e = ApiError::from(ended);
        debug!(reason = %e.message, "websocket session ended");
        self.subscriptions.clear();
        self.updates.clear();
        self.send_error(0, code::UNAUTHORIZED, &e.message).await;
        Some(End::Close(close_code::POLICY, "session ended"))
    }

    /// Verifies a token; on failure tells the client (error 3) and the session closes.
    async fn authenticate(&mut self, cmd_id: i64, token: &str) -> bool {
        match authenticate(&self.state.api, token) {
            Ok(p) => {
                self.principal = Some(p);
                true
            }
            Err(e) => {
                debug!(reason = %e.message, "websocket authentication refused");
                self.send_error(cmd_id, code::UNAUTHORIZED, &e.message).await;
                false
            }
        }
    }

    /// Handles one command; false when the socket is gone.
    async fn on_cmd(&mut self, dialect_kind: Option<CmdKind>, cmd: Cmd) -> bool {
        let Some(principal) = self.principal.clone() else {
            return self.send_error(cmd.cmd_id, code::UNAUTHORIZED, "Unauthorized: authenticate first (authCmd)").await;
        };
        if cmd.unsubscribe {
            self.subscriptions.remove(&cmd.cmd_id);
            self.updates.remove(&cmd.cmd_id);
            return true;
        }
        let kind = match dialect_kind {
            Some(k) if self.legacy || cmd.kind.is_none() => k,
            _ => match cmd.kind.as_deref().map(str::to_ascii_uppercase).as_deref() {
                Some("TIMESERIES") => CmdKind::Timeseries,
                Some("ATTRIBUTES") => CmdKind::Attributes,
                Some("TIMESERIES_HISTORY") => CmdKind::History,
                other => {
                    let msg = format!("Unsupported command type: {}", other.unwrap_or("none"));
                    return self.send_error(cmd.cmd_id, code::BAD_REQUEST, &msg).await;
                }
            },
        };
        let subscription = match subscription_of(kind, &cmd) {
            Ok(s) => s,
            Err(msg) => return self.send_error(cmd.cmd_id, code::BAD_REQUEST, &msg).await,
        };
        let range = match range_of(kind, &cmd, &subscription) {
            Ok(r) => r,
            Err(msg) => return self.send_error(cmd.cmd_id, code::BAD_REQUEST, &msg).await,
        };
        // A history command reads its range once and subscribes to nothing.
        let range = match (kind, range) {
            (CmdKind::History, Some(query)) => {
                return match self.state.api.platform.timeseries_update(&principal, subscription.entity, query).await {
                    Ok(data) => self.send(update_json(cmd.cmd_id, &data)).await,
                    Err(e) => {
                        let e = ApiError::from(e);
                        self.send_error(cmd.cmd_id, error_code(&e), &e.message).await
                    }
                };
            }
            (_, range) => range,
        };
        if !self.subscriptions.contains_key(&cmd.cmd_id) && self.subscriptions.len() >= MAX_SUBSCRIPTIONS {
            let msg = format!("Too many subscriptions: at most {MAX_SUBSCRIPTIONS} per session");
            return self.send_error(cmd.cmd_id, code::BAD_REQUEST, &msg).await;
        }
        let platform = self.state.api.platform.clone();
        // The receiver exists before the window is read: a point arriving meanwhile may come
        // twice (in the window and as an update), never not at all.
        let started = platform.subscribe(&principal, &subscription);
        let started = match (started, range) {
            (Ok(live), Some(query)) => {
                let (start_ts, end_ts, limit, raw) = (query.start_ts, query.end_ts, query.limit, query.effective_agg() == Aggregation::None);
                platform.timeseries_update(&principal, subscription.entity, query).await.map(|mut window| {
                    if raw {
                        add_latest_to_window(&mut window, &live.initial, start_ts, end_ts, limit);
                    }
                    (window, live.updates)
                })
            }
            (Ok(live), None) => Ok((live.initial, live.updates)),
            (Err(e), _) => Err(e),
        };
        match started {
            Ok((initial, updates)) => {
                self.updates.insert(cmd.cmd_id, BroadcastStream::new(updates));
                self.subscriptions.insert(cmd.cmd_id, subscription);
                self.send(update_json(cmd.cmd_id, &initial)).await
            }
            Err(e) => {
                self.drop_subscription(cmd.cmd_id);
                let e = ApiError::from(e);
                self.send_error(cmd.cmd_id, error_code(&e), &e.message).await
            }
        }
    }

    /// Forwards one message of a subscribed entity; false when the socket is gone.
    async fn on_update(&mut self, id: i64, item: Result<Arc<TelemetryMessage>, BroadcastStreamRecvError>) -> bool {
        let Some(subscription) = self.subscriptions.get(&id) else { return true };
        let message = match item {
            Ok(m) => m,
            Err(BroadcastStreamRecvError::Lagged(missed)) => {
                self.drop_subscription(id);
                let msg = format!("Subscription fell behind by {missed} updates and was closed: subscribe again");
                return self.send_error(id, code::INTERNAL, &msg).await;
            }
        };
        let data = subscription.data_of(&message);
        if data.is_empty() {
            return true;
        }
        let entity = subscription.entity;
        let allowed = self.principal.as_ref().map(|p| self.state.api.platform.may_read_values(p, entity));
        match allowed {
            Some(Ok(())) => self.send(update_json(id, &data)).await,
            Some(Err(e)) => {
                self.drop_subscription(id);
                let e = ApiError::from(e);
                self.send_error(id, error_code(&e), &e.message).await
            }
            None => true,
        }
    }

    fn drop_subscription(&mut self, id: i64) {
        self.subscriptions.remove(&id);
        self.updates.remove(&id);
    }

    async fn send_error(&mut self, id: i64, code: u8, message: &str) -> bool {
        let body = json!({"subscriptionId": id, "errorCode": code, "errorMsg": message, "data": {}, "latestValues": {}});
        self.send(body).await
    }

    async fn send(&mut self, body: Value) -> bool {
        self.socket.send(Message::Text(body.to_string().into())).await.is_ok()
    }
}

/// Reads a subscription out of a command.
fn subscription_of(kind: CmdKind, cmd: &Cmd) -> Result<Subscription, String> {
    let entity_type: EntityType = cmd
        .entity_type
        .as_deref()
        .ok_or("entityType is required")?
        .parse()
        .map_err(|e: thinglake_domain::UnknownEntityType| e.to_string())?;
    let raw_id = cmd.entity_id.as_deref().ok_or("entityId is required")?;
    let id = Uuid::parse_str(raw_id).map_err(|_| format!("Invalid UUID string: {raw_id} (entityId)"))?;
    let keys: Option<Vec<String>> = cmd.keys.as_deref().map(|k| {
        k.split(',').map(str::trim).filter(|k| !k.is_empty()).map(String::from).collect::<Vec<_>>()
    });
    let keys = keys.filter(|k| !k.is_empty());
    let kind = match kind {
        CmdKind::Attributes => {
            let scope = match cmd.scope.as_deref().filter(|s| !s.is_empty()) {
                Some(s) => Some(s.parse::<AttributeScope>().map_err(|_| format!("Invalid attribute scope: {s}"))?),
                None => None,
            };
            SubscriptionKind::Attributes { scope }
        }
        _ => SubscriptionKind::Timeseries,
    };
    Ok(Subscription { entity: EntityId::new(entity_type, id), kind, keys })
}

/// The time range a command reads, if any: a `TIMESERIES` subscription with `timeWindow` > 0
/// reads `[startTs, startTs + timeWindow)`, a `TIMESERIES_HISTORY` command (keys required)
/// `[startTs, endTs)`; both with `interval`, `agg` (default NONE) and `limit` (0 or none: 100).
fn range_of(kind: CmdKind, cmd: &Cmd, subscription: &Subscription) -> Result<Option<TimeseriesQuery>, String> {
    let (start_ts, end_ts) = match kind {
        CmdKind::Attributes => return Ok(None),
        CmdKind::Timeseries => match cmd.time_window.filter(|w| *w > 0) {
            None => return Ok(None),
            Some(window) => {
                let start = cmd.start_ts.unwrap_or(0);
                (start, start.saturating_add(window))
            }
        },
        CmdKind::History => {
            if subscription.keys.is_none() {
                return Err("keys are required for a history command".into());
            }
            (cmd.start_ts.ok_or("startTs is required for a history command")?, cmd.end_ts.ok_or("endTs is required for a history command")?)
        }
    };
    let agg = match cmd.agg.as_deref().filter(|a| !a.is_empty()) {
        Some(a) => a.parse::<Aggregation>().map_err(|e| e.to_string())?,
        None => Aggregation::None,
    };
    let limit = match cmd.limit.unwrap_or(0) {
        0 => DEFAULT_LIMIT,
        n => usize::try_from(n).map_err(|_| format!("limit must not be negative, got {n}"))?,
    };
    Ok(Some(TimeseriesQuery {
        keys: subscription.keys.clone().unwrap_or_default(),
        start_ts,
        end_ts,
        interval: cmd.interval.unwrap_or(0),
        agg,
        limit,
        order: Order::Desc,
        calendar: None,
    }))
}

/// ThingsBoard's update JSON: values as text, and the latest timestamp of each key.
fn update_json(id: i64, data: &UpdateData) -> Value {
    let mut values = Map::new();
    let mut latest = Map::new();
    for (key, points) in data {
        let rows: Vec<Value> = points.iter().map(|(ts, v)| json!([ts, v.to_text()])).collect();
        values.insert(key.clone(), Value::Array(rows));
        if let Some(ts) = points.iter().map(|(ts, _)| *ts).max() {
            latest.insert(key.clone(), json!(ts));
        }
    }
    json!({"subscriptionId": id, "errorCode": 0, "errorMsg": null, "data": values, "latestValues": latest})
}

/// The WebSocket error code of a refused command, from the status REST would answer.
fn error_code(e: &ApiError) -> u8 {
    match e.status.as_u16() {
        401 | 403 => code::UNAUTHORIZED,
        s if s >= 500 => code::INTERNAL,
        _ => code::BAD_REQUEST,
    }
}
