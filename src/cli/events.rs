//! `pitctl events [-f] [--json]`.

use std::io::Write;

use super::follow::{print_json, print_stream};
use super::{Failure, unexpected};
use crate::client::ControlClient;
use crate::proto::control::{Reply, Request};
use crate::proto::event::Event;

pub fn run(client: &mut ControlClient, follow: bool, json: bool) -> Result<(), Failure> {
    let reply = client.request(&Request::Events { follow })?;
    let Reply::Events { events } = reply else {
        return Err(unexpected(&reply));
    };
    let stream_item = |reply| match reply {
        Reply::Event(ev) => Ok(ev),
        other => Err(Box::new(other)),
    };
    print_stream(client, events, follow, stream_item, |out, ev| {
        print_event(out, ev, json)
    })
}

fn print_event(out: &mut dyn Write, ev: &Event, json: bool) -> std::io::Result<()> {
    if json {
        return print_json(out, ev);
    }
    writeln!(out, "{}", line(ev))
}

/// One readable line: `2026-... pool echo worker-3 (pid 42) worker_exited: reason crash, exit code 1`.
pub fn line(ev: &Event) -> String {
    let kind = serde_json::to_value(ev.event)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut text = format!("{} pool {}", ev.ts, ev.pool);
    if let Some(w) = ev.worker {
        text.push_str(&format!(" {w}"));
    }
    if let Some(pid) = ev.pid {
        text.push_str(&format!(" (pid {pid})"));
    }
    text.push_str(&format!(" {kind}"));
    let details: Vec<String> = [
        ev.reason.map(|r| format!("reason {r}")),
        ev.exit_status.clone(),
        ev.message.clone(),
        ev.replaces.map(|w| format!("replaces {w}")),
        ev.backoff_ms.map(|ms| format!("restart in {ms} ms")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !details.is_empty() {
        text.push_str(&format!(": {}", details.join(", ")));
    }
    text
}
