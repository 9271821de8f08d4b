//! End-to-end tests: the real `ducktail` binary on real and generated OpenCode trees. All
//! integration tests build into this one binary.

mod agents;
mod dashboard;
mod deploy;
mod events;
mod expected;
mod export;
mod hostile;
mod index;
mod live;
mod metrics;
mod model;
mod paths;
mod read_api;
mod release;
mod security;
mod spans;
mod sqlite;
mod support;
mod tidy;
