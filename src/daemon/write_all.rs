//! Writing a batch to a non-blocking socket or pipe from a task: wait until the kernel
//! takes more, write what it takes, until the batch is out. Shared by the writer tasks of
//! callers' connections and of workers' pipes.

use std::future::Future;
use std::io;

use tokio::net::unix::{OwnedWriteHalf, pipe};

/// A non-blocking fd that tokio can wait on for writability.
pub trait TryWrite {
    fn writable(&self) -> impl Future<Output = io::Result<()>>;
    fn try_write(&self, bytes: &[u8]) -> io::Result<usize>;
}

impl TryWrite for OwnedWriteHalf {
    fn writable(&self) -> impl Future<Output = io::Result<()>> {
        OwnedWriteHalf::writable(self)
    }
    fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        OwnedWriteHalf::try_write(self, bytes)
    }
}

impl TryWrite for pipe::Sender {
    fn writable(&self) -> impl Future<Output = io::Result<()>> {
        pipe::Sender::writable(self)
    }
    fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        pipe::Sender::try_write(self, bytes)
    }
}

/// Writes all of `bytes`; an error means the peer is gone (or closed its end).
pub async fn write_all(to: &impl TryWrite, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        to.writable().await?;
        match to.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_batch_larger_than_the_pipe_arrives_whole_and_a_closed_pipe_is_an_error() {
        let (tx, mut rx) = pipe::pipe().expect("a pipe");
        let batch: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut rx, &mut got)
                .await
                .map(|_| got)
        });
        write_all(&tx, &batch).await.expect("written");
        drop(tx);
        assert_eq!(reader.await.unwrap().unwrap(), batch);

        let (tx, rx) = pipe::pipe().expect("a pipe");
        drop(rx);
        assert!(write_all(&tx, b"nobody reads").await.is_err());
    }
}
