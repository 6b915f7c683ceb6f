//! `pitctl logs TARGET [-n N] [-f] [--json]`.

use std::io::Write;

use super::follow::{print_json, print_stream};
use super::{Failure, unexpected};
use crate::client::ControlClient;
use crate::proto::control::{LogLine, Reply, Request, Stream};

pub fn run(client: &mut ControlClient, target: String, lines: usize, follow: bool, json: bool) -> Result<(), Failure> {
    let reply = client.request(&Request::Logs { target, lines, follow })?;
    let Reply::Logs { lines } = reply else {
        return Err(unexpected(&reply));
    };
    let stream_item = |reply| match reply {
        Reply::LogLine(line) => Ok(line),
        other => Err(Box::new(other)),
    };
    print_stream(client, lines, follow, stream_item, |out, line| {
        print_line(out, line, json)
    })
}

fn print_line(out: &mut dyn Write, line: &LogLine, json: bool) -> std::io::Result<()> {
    if json {
        return print_json(out, line);
    }
    let stream = match line.stream {
        Stream::Stdout => "out",
        Stream::Stderr => "err",
    };
    writeln!(out, "{} {} {stream} | {}", line.ts, line.source(), line.line)
}
