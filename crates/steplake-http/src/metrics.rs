//! `GET /metrics`: Prometheus text exposition of the store and the query
//! engine. Counters are totals since start; Prometheus' `rate()` turns
//! `steplake_points_written_total` into the ingest rate.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::Dashboard;

/// Appends one metric with its HELP and TYPE lines.
fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "{name} {value}");
}

/// The metrics text.
pub fn render(dashboard: &Dashboard) -> String {
    let stats = dashboard.store.stats();
    let mut out = String::new();
    metric(
        &mut out,
        "steplake_points_written_total",
        "counter",
        "Scalar points acknowledged since start (rate() of it is the ingest rate).",
        stats.points_written.load(Ordering::Relaxed),
    );
    metric(
        &mut out,
        "steplake_batches_written_total",
        "counter",
        "Write batches acknowledged since start, duplicates included.",
        stats.batches_written.load(Ordering::Relaxed),
    );
    metric(
        &mut out,
        "steplake_files_flushed_total",
        "counter",
        "Parquet files written by flushes since start.",
        stats.files_flushed.load(Ordering::Relaxed),
    );
    metric(
        &mut out,
        "steplake_flush_seconds_total",
        "counter",
        "Seconds spent writing Parquet files since start (divide by files for the mean).",
        stats.flush_millis.load(Ordering::Relaxed) as f64 / 1000.0,
    );
    let _ = writeln!(
        out,
        "# HELP steplake_data_files Parquet data files the manifest lists, by table.\n# TYPE steplake_data_files gauge"
    );
    for (table, count) in dashboard.store.data_file_counts() {
        let _ = writeln!(out, "steplake_data_files{{table=\"{table}\"}} {count}");
    }
    metric(
        &mut out,
        "steplake_compactions_total",
        "counter",
        "Compaction passes since start (each merges small files into one).",
        stats.compactions.load(Ordering::Relaxed),
    );
    metric(
        &mut out,
        "steplake_files_compacted_total",
        "counter",
        "Data files merged away by compaction since start.",
        stats.files_compacted.load(Ordering::Relaxed),
    );
    metric(
        &mut out,
        "steplake_bytes_compacted_total",
        "counter",
        "Bytes of the data files merged by compaction since start.",
        stats.bytes_compacted.load(Ordering::Relaxed),
    );
    metric(
        &mut out,
        "steplake_manifest_writes_total",
        "counter",
        "Manifest writes since start (each appends one change to the manifest log).",
        stats.manifest_writes.load(Ordering::Relaxed),
    );
    metric(
        &mut out,
        "steplake_manifest_checkpoints_total",
        "counter",
        "Manifest writes since start that also wrote the whole manifest as a checkpoint.",
        stats.manifest_checkpoints.load(Ordering::Relaxed),
    );
    metric(
        &mut out,
        "steplake_wal_bytes",
        "gauge",
        "Bytes in write-ahead log segments.",
        dashboard.store.wal_bytes(),
    );
    metric(
        &mut out,
        "steplake_buffered_rows",
        "gauge",
        "Points in memory, not yet in Parquet files.",
        dashboard.store.buffered_rows(),
    );
    metric(
        &mut out,
        "steplake_queries_total",
        "counter",
        "SQL statements planned since start (Flight SQL, dashboard, CLI).",
        dashboard.engine.queries_planned(),
    );
    metric(
        &mut out,
        "steplake_http_requests_total",
        "counter",
        "Dashboard API requests since start.",
        dashboard.api_requests.load(Ordering::Relaxed),
    );
    let _ = writeln!(
        out,
        "# HELP steplake_tensor_codec_info The tensor codec in use."
    );
    let _ = writeln!(out, "# TYPE steplake_tensor_codec_info gauge");
    let _ = writeln!(
        out,
        "steplake_tensor_codec_info{{path=\"{}\"}} 1",
        dashboard.codec.replace('\\', "\\\\").replace('"', "\\\"")
    );
    out
}

/// `GET /metrics`.
pub async fn metrics(State(dashboard): State<Dashboard>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&dashboard),
    )
}
