//! Tokens on the gRPC port: what each service needs before a call runs.
//!
//! - Flight SQL only reads, so [`ReadGate`] refuses any call whose token
//!   may not read (the handshake included: a driver that logs in with a
//!   write token learns at once that it cannot query).
//! - Ingest needs to know the project first, so [`IngestGate`] only finds
//!   out who is calling and leaves the [`Principal`] in the request's
//!   extensions; [`crate::ingest`] then authorizes each run it touches, and
//!   each batch of a write stream (so a revoked token stops a stream).

use steplake_auth::{Access, Action, Principal};
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::status::auth_status;

/// The `authorization` metadata of a call, if it has any.
pub(crate) fn authorization<T>(request: &Request<T>) -> Option<&str> {
    request
        .metadata()
        .get("authorization")
        .map(|v| v.to_str().unwrap_or(""))
}

/// Admits calls whose token may read.
#[derive(Clone)]
pub(crate) struct ReadGate(pub(crate) Access);

impl Interceptor for ReadGate {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        self.0
            .check(authorization(&request), Action::Read)
            .map_err(auth_status)?;
        Ok(request)
    }
}

/// Authenticates calls and records who made them.
#[derive(Clone)]
pub(crate) struct IngestGate(pub(crate) Access);

impl Interceptor for IngestGate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let principal = self
            .0
            .authenticate(authorization(&request))
            .map_err(auth_status)?;
        request.extensions_mut().insert(principal);
        Ok(request)
    }
}

/// Who made a call that passed [`IngestGate`] ([`Principal::Open`] if it
/// did not pass one, which [`Access::authorize`] refuses unless the server
/// is open).
pub(crate) fn principal<T>(request: &Request<T>) -> Principal {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .unwrap_or(Principal::Open)
}
