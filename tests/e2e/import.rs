//! `steplake import safetensors`: a real checkpoint (all-MiniLM-L6-v2) at two
//! steps, walked with `rel_change` and `LAG` from `steplake sql`; malformed
//! files are refused before anything is sent.

use std::path::PathBuf;

use crate::e2e_test;
use crate::harness::{steplake, TestServer};

/// all-MiniLM-L6-v2's fp32 weights, fetched by scripts/fetch-minilm.sh
/// (which scripts/test.sh runs).
fn minilm() -> PathBuf {
    let path = match std::env::var_os("STEPLAKE_MINILM") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/steplake/minilm/model.safetensors"),
    };
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-minilm.sh (scripts/test.sh does)",
        path.display()
    );
    path
}

/// The same checkpoint with every f32 weight multiplied by 1.01 (other
/// tensors, such as the i64 position ids, unchanged). Returns the names of
/// all tensors and of the scaled ones.
fn scaled_copy(original: &std::path::Path, out: &std::path::Path) -> (Vec<String>, Vec<String>) {
    let mut bytes = std::fs::read(original).unwrap();
    let entries = steplake_core::safetensors::parse_header(&bytes, bytes.len() as u64).unwrap();
    let all = entries.iter().map(|e| e.name.clone()).collect();
    let mut scaled = Vec::new();
    for entry in entries {
        if entry.dtype != steplake_core::DType::F32 {
            continue;
        }
        scaled.push(entry.name.clone());
        for value in bytes[entry.range].chunks_exact_mut(4) {
            let v = f32::from_le_bytes([value[0], value[1], value[2], value[3]]) * 1.01;
            value.copy_from_slice(&v.to_le_bytes());
        }
    }
    std::fs::write(out, bytes).unwrap();
    (all, scaled)
}

e2e_test! {
    async fn minilm_at_two_steps_gives_rel_change_per_layer() {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(dir.path(), &[]);
        let original = minilm();
        let scaled = dir.path().join("step-1000.safetensors");
        let (all, f32_names) = scaled_copy(&original, &scaled);
        for (step, file) in [("0", original.as_path()), ("1000", scaled.as_path())] {
            let out = steplake(
                &["import", "safetensors", "--server", &server.url, "--run", "minilm", "--step", step, file.to_str().unwrap()],
                None,
            );
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let expected = format!("imported {} tensors", all.len());
            assert!(String::from_utf8_lossy(&out.stderr).contains(&expected), "{}", String::from_utf8_lossy(&out.stderr));
        }
        let query = "SELECT name, step, LAG(l2) OVER (PARTITION BY name ORDER BY step) AS previous_l2, \
                     rel_change(tensor, LAG(tensor) OVER (PARTITION BY name ORDER BY step)) AS update_ratio \
                     FROM tensors WHERE run_id = 'minilm' ORDER BY name, step";
        let out = steplake(&["sql", "--server", &server.url, "--format", "csv", query], None);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let csv = String::from_utf8(out.stdout).unwrap();
        let rows: Vec<&str> = csv.lines().skip(1).collect();
        assert_eq!(rows.len(), 2 * all.len(), "every tensor at two steps");
        for row in rows.iter().filter(|r| r.contains(",1000,")) {
            let name = row.split(',').next().unwrap();
            let ratio = row.rsplit(',').next().unwrap();
            let previous_l2 = row.split(',').nth(2).unwrap();
            if previous_l2 == "0.0" || previous_l2 == "0" {
                // An all-zero tensor (a fresh bias): ‖a − b‖ / ‖b‖ is 0/0.
                assert_eq!(ratio, "NaN", "{row}");
            } else if f32_names.iter().any(|n| n == name) {
                let ratio: f64 = ratio.parse().unwrap();
                assert!((ratio - 0.01).abs() < 1e-4, "{row}");
            } else {
                // Integer tensors live in tensor_int: `tensor` is NULL.
                assert_eq!(ratio, "", "{row}");
            }
        }
        let stats = steplake(
            &["sql", "--server", &server.url, "--format", "csv",
              "SELECT count(*), sum(numel) FROM tensors WHERE step = 0 AND dtype = 'f32'"],
            None,
        );
        let stats = String::from_utf8(stats.stdout).unwrap();
        assert!(stats.contains(&format!("{},", f32_names.len())), "{stats}");
    }
}

e2e_test! {
    async fn malformed_checkpoints_are_refused_before_sending() {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(dir.path(), &[]);
        let truncated = dir.path().join("truncated.safetensors");
        let original = std::fs::read(minilm()).unwrap();
        std::fs::write(&truncated, &original[..original.len() / 2]).unwrap();
        let garbage = dir.path().join("garbage.safetensors");
        std::fs::write(&garbage, b"this is not a checkpoint").unwrap();
        for (file, reason) in [(&truncated, "past the"), (&garbage, "does not fit")] {
            let out = steplake(
                &["import", "safetensors", "--server", &server.url, "--run", "bad", "--step", "0", file.to_str().unwrap()],
                None,
            );
            assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains(reason), "{stderr}");
        }
        // A name the server would refuse (a control character), in a file
        // that is otherwise fine: refused before anything is sent.
        let header = br#"{"good":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"bad\nname":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
        let mut bad_name = (header.len() as u64).to_le_bytes().to_vec();
        bad_name.extend_from_slice(header);
        bad_name.extend_from_slice(&[0u8; 8]);
        let bad_name_path = dir.path().join("bad-name.safetensors");
        std::fs::write(&bad_name_path, bad_name).unwrap();
        let out = steplake(
            &["import", "safetensors", "--server", &server.url, "--run", "bad", "--step", "0", bad_name_path.to_str().unwrap()],
            None,
        );
        assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains("control character"), "{}", String::from_utf8_lossy(&out.stderr));
        let out = steplake(&["sql", "--server", &server.url, "--format", "csv", "SELECT count(*) FROM tensors"], None);
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "count(*)\n0\n");
    }
}
