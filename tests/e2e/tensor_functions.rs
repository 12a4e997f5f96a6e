//! Every SQL tensor function against numpy on the same tensors, through the
//! server.

use std::process::{Command, Stdio};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, Int64Type};
use steplake_client::Client;

use crate::e2e_test;
use crate::harness::TestServer;

fn python() -> String {
    std::env::var("STEPLAKE_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Deterministic f32 values in (-1, 1).
fn values(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn close(ours: f64, theirs: f64, what: &str) {
    let tolerance = 1e-9 * theirs.abs().max(1.0);
    assert!(
        (ours - theirs).abs() <= tolerance,
        "{what}: steplake {ours}, numpy {theirs}"
    );
}

e2e_test! {
    async fn tensor_functions_match_numpy() {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(dir.path(), &[]);
        let client = Client::connect(&server.url).await.unwrap();
        client.ensure_run("f", "default").await.unwrap();
        let tensors = [("a", vec![24i64, 16], 1u64), ("b", vec![24, 16], 2), ("x", vec![32, 8], 3), ("y", vec![32, 5], 4)];
        let mut writer = client.writer("f").await.unwrap();
        let mut input = serde_json::Map::new();
        for (name, shape, seed) in &tensors {
            let n = shape.iter().product::<i64>() as usize;
            let v = values(*seed, n);
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            writer.send_tensor(name, 0, "f32", shape, &bytes).await.unwrap();
            input.insert(name.to_string(), serde_json::json!({"shape": shape, "values": v}));
        }
        writer.finish().await.unwrap();

        let mut child = Command::new(python())
            .arg(crate::harness::repo_file("tests/python/tensor_reference.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run python3 (scripts/test.sh installs numpy)");
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), serde_json::Value::Object(input).to_string().as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "tensor_reference.py failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let numpy: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

        let pair = "FROM tensors a, tensors b WHERE a.name = 'a' AND b.name = 'b'";
        let scalars = [
            ("l2_norm", format!("SELECT l2_norm(a.tensor) {pair}")),
            ("linf_norm", format!("SELECT linf_norm(a.tensor) {pair}")),
            ("rms", format!("SELECT rms(a.tensor) {pair}")),
            ("t_mean", format!("SELECT t_mean(a.tensor) {pair}")),
            ("t_std", format!("SELECT t_std(a.tensor) {pair}")),
            ("cosine_sim", format!("SELECT cosine_sim(a.tensor, b.tensor) {pair}")),
            ("l2_dist", format!("SELECT l2_dist(a.tensor, b.tensor) {pair}")),
            ("rel_change", format!("SELECT rel_change(a.tensor, b.tensor) {pair}")),
            ("spectral_norm", format!("SELECT spectral_norm(a.tensor, a.shape) {pair}")),
            ("stable_rank", format!("SELECT stable_rank(a.tensor, a.shape) {pair}")),
            ("effective_rank", format!("SELECT effective_rank(a.tensor, a.shape) {pair}")),
            ("linear_cka", "SELECT linear_cka(x.tensor, x.shape, y.tensor, y.shape) FROM tensors x, tensors y WHERE x.name = 'x' AND y.name = 'y'".to_string()),
        ];
        for (function, sql) in scalars {
            let (_, batches) = client.sql(&sql).await.unwrap();
            let ours = batches[0].column(0).as_primitive::<Float64Type>().value(0);
            close(ours, numpy[function].as_f64().unwrap(), function);
        }
        let lists = [
            ("histogram", "SELECT histogram(tensor, 10, -1.0, 1.0) FROM tensors WHERE name = 'a'"),
            ("quantiles", "SELECT quantiles(tensor, [0.1, 0.5, 0.9]) FROM tensors WHERE name = 'a'"),
            ("tensor_slice", "SELECT tensor_slice(tensor, shape, 1, 3) FROM tensors WHERE name = 'a'"),
        ];
        for (function, sql) in lists {
            let (_, batches) = client.sql(sql).await.unwrap();
            let list = batches[0].column(0).as_list::<i32>().value(0);
            let theirs = numpy[function].as_array().unwrap();
            assert_eq!(list.len(), theirs.len(), "{function} length");
            for (i, t) in theirs.iter().enumerate() {
                let ours = match list.data_type() {
                    arrow::datatypes::DataType::Int64 => list.as_primitive::<Int64Type>().value(i) as f64,
                    _ => list.as_primitive::<Float64Type>().value(i),
                };
                close(ours, t.as_f64().unwrap(), &format!("{function}[{i}]"));
            }
        }
        // Bad input names the function and the problem.
        let err = client
            .sql("SELECT cosine_sim(a.tensor, x.tensor) FROM tensors a, tensors x WHERE a.name = 'a' AND x.name = 'x'")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("cosine_sim") && err.contains("same number"), "{err}");
    }
}
