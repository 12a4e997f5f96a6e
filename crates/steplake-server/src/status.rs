//! The one place where steplake errors become gRPC status codes.

use steplake_auth::AuthError;
use steplake_query::QueryError;
use steplake_store::StoreError;
use tonic::Status;

/// Maps a storage error to the status a client sees.
pub fn store_status(error: StoreError) -> Status {
    let message = error.to_string();
    match error {
        StoreError::Invalid(_) => Status::invalid_argument(message),
        StoreError::RunNotFound { .. }
        | StoreError::NothingToDelete { .. }
        | StoreError::ConditionNotFound { .. } => Status::not_found(message),
        StoreError::Unavailable { .. } | StoreError::Bucket { .. } => Status::unavailable(message),
        StoreError::Overloaded { .. } => Status::resource_exhausted(message),
        StoreError::Locked { .. }
        | StoreError::ManifestMissing { .. }
        | StoreError::SequenceGap { .. }
        | StoreError::BucketOwned { .. }
        | StoreError::Fenced { .. } => Status::failed_precondition(message),
        StoreError::Io { .. } | StoreError::Parquet { .. } | StoreError::Corrupt { .. } => {
            Status::internal(message)
        }
    }
}

/// Maps a query error to the status a client sees.
pub fn query_status(error: QueryError) -> Status {
    let message = error.to_string();
    match error {
        QueryError::Plan(_) | QueryError::TooComplex(_) => Status::invalid_argument(message),
        QueryError::Forbidden(_) => Status::permission_denied(message),
        QueryError::Execution(_) => Status::internal(message),
        QueryError::Overloaded(_) => Status::resource_exhausted(message),
        QueryError::Timeout(_) => Status::deadline_exceeded(message),
    }
}

/// Maps an access-control error to the status a client sees.
pub fn auth_status(error: AuthError) -> Status {
    let message = error.to_string();
    match error {
        AuthError::Missing | AuthError::Malformed | AuthError::Unknown => {
            Status::unauthenticated(message)
        }
        AuthError::Denied { .. } => Status::permission_denied(message),
        AuthError::InvalidScope { .. } | AuthError::InvalidName { .. } => {
            Status::invalid_argument(message)
        }
        AuthError::NoSuchToken { .. } => Status::not_found(message),
        AuthError::File { .. } => Status::unavailable(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use steplake_core::CoreError;
    use tonic::Code;

    #[test]
    fn codes_follow_the_error_kind() {
        assert_eq!(
            store_status(StoreError::Invalid(CoreError::invalid(
                "scalars.steps[0]",
                "is -1"
            )))
            .code(),
            Code::InvalidArgument
        );
        assert_eq!(
            store_status(StoreError::RunNotFound { run_id: "x".into() }).code(),
            Code::NotFound
        );
        assert_eq!(
            query_status(QueryError::Forbidden("DDL".into())).code(),
            Code::PermissionDenied
        );
    }
}
