//! End-to-end tests: the real `steplake` binary, real clients, loopback only.

mod auth;
mod cluster;
mod crash_trials;
mod dashboard;
mod data_dir_tools;
mod deletion;
mod flight_sql;
mod gpu;
mod harness;
mod import;
mod ingest;
mod object_store;
mod python_clients;
mod query_limits;
mod shutdown;
#[path = "../../crates/steplake-query/tests/slt_support/mod.rs"]
mod slt_support;
mod sql;
mod tensor_functions;
mod tensors;
mod tls;
mod watch;

/// Always multi-threaded: the client's ack task runs beside the test body.
#[macro_export]
macro_rules! e2e_test {
    ($(#[$m:meta])* async fn $name:ident() $body:block) => {
        $(#[$m])*
        #[test]
        fn $name() {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(async move $body)
        }
    };
}
