//! Integration tests of `thinglake-infra`, gathered into one binary (link time dominates).

mod nats_server;
