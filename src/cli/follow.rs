//! What `logs` and `events` print: a snapshot, then (following) each item as it comes.

use super::{Failure, unexpected};
use crate::client::ControlClient;
use crate::proto::control::Reply;

/// Prints the items of a snapshot reply, then, when following, each streamed item as it
/// arrives (`logs -f`, `events -f`). `stream_item` picks the item out of a streamed reply.
pub fn print_stream<T>(
    client: &mut ControlClient,
    snapshot: Vec<T>,
    follow: bool,
    stream_item: impl Fn(Reply) -> Result<T, Box<Reply>>,
    print: impl Fn(&mut dyn std::io::Write, &T) -> std::io::Result<()>,
) -> Result<(), Failure> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for item in &snapshot {
        print(&mut out, item)?;
    }
    out.flush()?;
    if follow {
        // A quiet stream is not a wedged daemon.
        client.set_timeout(None);
        while let Some(reply) = client.next_reply()? {
            let item = stream_item(reply).map_err(|other| unexpected(&other))?;
            print(&mut out, &item)?;
            out.flush()?;
        }
    }
    Ok(())
}

/// One JSON object per line.
pub fn print_json(out: &mut dyn std::io::Write, item: &impl serde::Serialize) -> std::io::Result<()> {
    let text = serde_json::to_string(item).map_err(std::io::Error::other)?;
    writeln!(out, "{text}")
}
