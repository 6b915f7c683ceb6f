//! `pitctl logs TARGET [-n N] [-f] [--json]`.

use std::io::Write;

use super::{Failure, unexpected};
use crate::client::ControlClient;
use crate::proto::control::{LogLine, Reply, Request, Stream};

pub fn run(client: &mut ControlClient, target: String, lines: usize, follow: bool, json: bool) -> Result<(), Failure> {
    let reply = client.request(&Request::Logs { target, lines, follow })?;
    let Reply::Logs { lines } = reply else {
        return Err(unexpected(&reply));
    };
    let mut out = std::io::stdout().lock();
    for line in &lines {
        print_line(&mut out, line, json)?;
    }
    out.flush()?;
    if follow {
        while let Some(reply) = client.next_reply()? {
            match reply {
                Reply::LogLine(line) => {
                    print_line(&mut out, &line, json)?;
                    out.flush()?;
                }
                other => return Err(unexpected(&other)),
            }
        }
    }
    Ok(())
}

fn print_line(out: &mut impl Write, line: &LogLine, json: bool) -> std::io::Result<()> {
    if json {
        let text = serde_json::to_string(line).map_err(std::io::Error::other)?;
        return writeln!(out, "{text}");
    }
    let stream = match line.stream {
        Stream::Stdout => "out",
        Stream::Stderr => "err",
    };
    writeln!(out, "{} {} {stream} | {}", line.ts, line.worker, line.line)
}
