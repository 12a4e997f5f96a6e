//! `steplake ui`: the dashboard of the local data directory in the browser,
//! as `tensorboard --logdir` does.
//!
//! The local server Python's `steplake.init()` starts (`python/steplake/_local.py`)
//! runs with no dashboard and records itself in `local-server.json` of the
//! data directory, under the file lock `local-server.lock`. `ui` takes the
//! same lock, stops that server if one runs (SIGTERM: it flushes), and runs
//! `steplake serve` in its place on the same gRPC port, now with the
//! dashboard, recorded in the same file so that trainers keep finding it.
//! It serves until Ctrl-C, like `serve`.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;

use crate::CliError;

/// Flags of `steplake ui`.
#[derive(Args)]
pub(crate) struct UiArgs {
    /// The local data directory (default: `~/.local/share/steplake`, the
    /// one `steplake.init()` uses with no server configured).
    #[arg(long, env = "STEPLAKE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Dashboard address.
    #[arg(long, default_value = "127.0.0.1:6006")]
    http: SocketAddr,
    /// Print the dashboard's address without opening a browser.
    #[arg(long)]
    no_browser: bool,
}

/// The local data directory: `STEPLAKE_DATA_DIR`, `$XDG_DATA_HOME/steplake`
/// or `~/.local/share/steplake`, as Python's `steplake._local.data_dir`.
fn local_data_dir(given: Option<PathBuf>) -> Result<PathBuf, CliError> {
    if let Some(dir) = given {
        return Ok(dir);
    }
    if let Some(base) = std::env::var_os("XDG_DATA_HOME").filter(|b| !b.is_empty()) {
        return Ok(PathBuf::from(base).join("steplake"));
    }
    let home = std::env::var_os("HOME")
        .ok_or_else(|| CliError::Input("HOME is not set: pass --data-dir".into()))?;
    Ok(PathBuf::from(home).join(".local/share/steplake"))
}

fn accepting(address: &str) -> bool {
    address
        .parse::<SocketAddr>()
        .is_ok_and(|a| TcpStream::connect_timeout(&a, Duration::from_millis(250)).is_ok())
}

/// Stops the recorded local server, if one runs, and waits until it has
/// flushed and let go of its port. Returns its port, to serve on again.
fn stop_recorded(dir: &Path) -> Result<Option<u16>, CliError> {
    let Ok(text) = std::fs::read_to_string(dir.join("local-server.json")) else {
        return Ok(None);
    };
    let recorded: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let port = recorded["port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok());
    let (Some(address), Some(pid)) = (recorded["address"].as_str(), recorded["pid"].as_u64())
    else {
        return Ok(port);
    };
    if !accepting(address) {
        return Ok(port);
    }
    eprintln!("stopping the local server (pid {pid}) to serve it again with the dashboard");
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(120);
    while accepting(address) || Path::new(&format!("/proc/{pid}")).exists() {
        if Instant::now() > deadline {
            return Err(CliError::Failure(format!(
                "the local server (pid {pid}) did not stop within 2 minutes"
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(port)
}

/// Runs `steplake ui`.
pub(crate) async fn run(args: UiArgs) -> Result<(), CliError> {
    let dir = local_data_dir(args.data_dir)?;
    let cannot = |e: std::io::Error| CliError::Failure(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(&dir).map_err(cannot)?;
    let lock = File::options()
        .create(true)
        .append(true)
        .open(dir.join("local-server.lock"))
        .map_err(cannot)?;
    lock.lock().map_err(cannot)?;
    let port = stop_recorded(&dir)?.unwrap_or(0);
    let program = std::env::current_exe().map_err(cannot)?;
    let mut server = Command::new(program)
        .arg("serve")
        .arg("--data-dir")
        .arg(&dir)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--http")
        .arg(args.http.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| CliError::Failure(format!("cannot start the server: {e}")))?;
    let stdout = server
        .stdout
        .take()
        .ok_or_else(|| CliError::Failure("the server gave no output".into()))?;
    let mut first = String::new();
    let _ = BufReader::new(stdout).read_line(&mut first);
    let Some(address) = first
        .strip_prefix("steplake listening on ")
        .and_then(|rest| rest.split_whitespace().next())
    else {
        let status = server.wait().map_err(cannot)?;
        return Err(CliError::Failure(format!(
            "the server did not start ({status}); its messages are above"
        )));
    };
    let port = address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or_default();
    let record = serde_json::json!({
        "address": address,
        "port": port,
        "pid": server.id(),
        "dashboard": format!("http://{}/", args.http),
    });
    std::fs::write(dir.join("local-server.json"), record.to_string()).map_err(cannot)?;
    drop(lock);
    let url = format!("http://{}/", args.http);
    println!(
        "steplake dashboard of {} at {url} (gRPC {address}); Ctrl-C stops it",
        dir.display()
    );
    if !args.no_browser {
        let opened = Command::new("xdg-open")
            .arg(&url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if opened.is_err() {
            println!("open {url} in a browser");
        }
    }
    // Ctrl-C or SIGTERM: the server gets SIGTERM, flushes and exits, and
    // so does this.
    let stopping = tokio::task::spawn_blocking(move || server.wait());
    let pid = record["pid"].to_string();
    tokio::pin!(stopping);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = signal(SignalKind::terminate()).map_err(cannot)?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
            _ = &mut stopping => {}
        }
    }
    let _ = Command::new("kill").arg("-TERM").arg(&pid).status();
    let status = stopping
        .await
        .map_err(|e| CliError::Failure(format!("waiting for the server: {e}")))?
        .map_err(cannot)?;
    if status.success() {
        Ok(())
    } else {
        Err(CliError::Failure(format!("the server stopped: {status}")))
    }
}
