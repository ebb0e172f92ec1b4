//! Black-box tests of the platform over HTTP, against a real nats-server.

mod assets;
mod attributes;
mod auth;
mod customers;
mod dashboards;
mod demo;
mod device_http;
mod clients;
mod cluster;
mod devices;
mod harness;
mod history;
mod isolation;
mod mqtt;
mod mqtt_crash;
mod mqtt_gateway;
mod nats_ingress;
mod process;
mod profiles;
mod relations;
mod simulate;
mod telemetry;
mod tenants;
mod ui;
mod users;
mod ws;
