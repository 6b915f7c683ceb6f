//! `pitctl call POOL METHOD [JSON]`: one call through the call socket; with `--stream`,
//! each chunk of a stream printed as one JSON line as it comes.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::Failure;
use crate::call_client::{CallClient, CallClientError, CallOptions, Outcome};
use crate::client::ControlClient;
use crate::proto::control::{Reply, Request};

/// The call socket: `--call-socket`/`PITD_CALL_SOCKET` when given, else the one the daemon
/// reports on its control socket.
pub fn call_socket(explicit: Option<PathBuf>, control: &Path) -> Result<PathBuf, Failure> {
    if let Some(p) = explicit {
        return Ok(p);
    }
    let mut client = ControlClient::connect(control)?;
    match client.request(&Request::Status { pool: None })? {
        Reply::Status(s) => s
            .call_socket
            .map(PathBuf::from)
            .ok_or_else(|| Failure::Refused("pitd did not say where its call socket is; pass --call-socket".into())),
        other => Err(super::unexpected(&other)),
    }
}

pub fn connect(path: &Path) -> Result<CallClient, Failure> {
    CallClient::connect(path).map_err(|e| match e {
        CallClientError::Unreachable { .. } => Failure::Unreachable(e.to_string()),
        other => Failure::Refused(other.to_string()),
    })
}

/// Checks that a command-line argument is JSON, so a typo is a usage error, not a call.
pub fn parse_json(s: &str) -> Result<String, String> {
    serde_json::from_str::<serde_json::Value>(s)
        .map(|_| s.to_string())
        .map_err(|e| format!("expected JSON (e.g. '{{\"text\": \"hi\"}}', '[1, 2]', '\"a string\"'), found {s:?}: {e}"))
}

#[allow(clippy::too_many_arguments)]
pub fn run(socket: &Path, pool: &str, method: &str, args: &str, opts: CallOptions, json: bool) -> Result<(), Failure> {
    let mut client = connect(socket)?;
    let stream = opts.stream;
    let mut out = std::io::stdout().lock();
    let outcome = client
        .call_streaming(pool, method, args, &opts, |chunk| {
            // One line per chunk, as the worker wrote it, flushed at once: a reader piped
            // to another program sees each token as it comes.
            writeln!(out, "{}", chunk.get())?;
            out.flush()?;
            Ok(())
        })
        .map_err(|e| Failure::Refused(e.to_string()))?;
    drop(out);
    match outcome {
        // A stream's chunks were its output; its final result is null.
        Outcome::Ok { .. } if stream && !json => Ok(()),
        Outcome::Ok { result, worker } => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"ok": true, "result": result, "worker": worker})
                );
            } else {
                println!("{}", serde_json::to_string_pretty(&result).unwrap_or_default());
            }
            Ok(())
        }
        Outcome::Err {
            kind,
            message,
            traceback,
            worker,
        } => {
            if json {
                let error = serde_json::json!({"kind": kind, "message": message, "traceback": traceback});
                let mut reply = serde_json::json!({"ok": false, "error": error});
                if let Some(w) = &worker {
                    reply["worker"] = serde_json::json!(w);
                }
                println!("{reply}");
            }
            let from = worker.map(|w| format!(" from {w}")).unwrap_or_default();
            let mut text = format!("{kind}{from}: {message}");
            if let Some(tb) = traceback.filter(|t| !t.is_empty()) {
                text = format!("{text}\n{}", tb.trim_end());
            }
            Err(Failure::Refused(text))
        }
    }
}
