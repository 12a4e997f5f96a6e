//! Generated Rust types and gRPC stubs for steplake's wire API.
//!
//! The `.proto` files in `proto/steplake/v1/` are the single source of truth;
//! `build.rs` compiles them with protox at build time, so no `protoc` binary is
//! needed. The server (`steplake-server`) implements [`v1::ingest_server::Ingest`];
//! the client (`steplake-client`) uses [`v1::ingest_client::IngestClient`].

/// Version 1 of the steplake wire API (`package steplake.v1`).
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    tonic::include_proto!("steplake.v1");
}
