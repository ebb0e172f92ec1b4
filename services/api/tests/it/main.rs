//! The REST API in process: [`thinglake_api::router`] over a platform on the in-memory logs and
//! claims of `thinglake-test-support`, called without a socket and without a nats-server.
//! Behaviour that needs JetStream, the lake or the real transports is tested end to end in
//! `services/server/tests`.

mod router;
