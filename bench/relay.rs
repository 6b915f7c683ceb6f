//! The relay floor: the least any process in the middle of a call can cost. A blocking
//! loop that moves one length-prefixed frame from its caller to its child and the child's
//! reply back, with no parsing, routing, timers or event loop: what is left is the two
//! extra hops' system calls and wake-ups. `bench/calls.py` drives it.
//!
//! Its four pipe ends arrive as inherited fds: 3 (from the caller), 4 (to the caller),
//! 5 (to the child), 6 (from the child). They are opened through /dev/fd so that no
//! unsafe fd adoption is needed.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};

fn open(fd: u32, write: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(!write)
        .write(write)
        .open(format!("/dev/fd/{fd}"))
}

/// Reads one whole frame into `buf` (only one is ever in flight); false at end of input.
fn read_frame(from: &mut File, buf: &mut Vec<u8>) -> io::Result<bool> {
    buf.clear();
    let mut chunk = [0u8; 65536];
    loop {
        if buf.len() >= 4 {
            let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            if buf.len() >= 4 + len {
                return Ok(true);
            }
        }
        match from.read(&mut chunk)? {
            0 if buf.is_empty() => return Ok(false),
            0 => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "frame cut short")),
            n => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn main() -> io::Result<()> {
    let (mut up_in, mut up_out) = (open(3, false)?, open(4, true)?);
    let (mut down_out, mut down_in) = (open(5, true)?, open(6, false)?);
    let mut buf = Vec::with_capacity(65536);
    while read_frame(&mut up_in, &mut buf)? {
        down_out.write_all(&buf)?;
        if !read_frame(&mut down_in, &mut buf)? {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the child closed its pipe",
            ));
        }
        up_out.write_all(&buf)?;
    }
    Ok(())
}
