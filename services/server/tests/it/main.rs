//! Black-box tests of the platform over HTTP, against a real nats-server.

mod devices;
mod harness;
mod process;
