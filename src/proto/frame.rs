//! Length-prefixed frames: a 4-byte big-endian length, then that many bytes. Used on the
//! control socket, the call socket and the worker pipes, each with its own size limit so a
//! hostile or broken peer cannot make pitd allocate without bound.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest control request or reply body pitd accepts (status of hundreds of workers and
/// log tails fit comfortably).
pub const CONTROL_MAX: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Decodes one frame from the front of `buf`. `Ok(None)` means "not enough bytes yet".
/// On success returns the body's range and the total bytes consumed.
pub fn decode(buf: &[u8], max: usize) -> Result<Option<(std::ops::Range<usize>, usize)>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    Ok(Some((4..4 + len, 4 + len)))
}

/// Appends one frame holding `body` to `out`.
pub fn encode_into(out: &mut Vec<u8>, body: &[u8]) {
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
}

/// Reads one whole frame. `Ok(None)` on a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> Result<Option<Vec<u8>>, FrameError> {
    let mut head = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut head[got..]).await?;
        if n == 0 {
            return if got == 0 { Ok(None) } else { Err(FrameError::Truncated) };
        }
        got += n;
    }
    let len = u32::from_be_bytes(head) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => FrameError::Truncated,
        _ => FrameError::Io(e),
    })?;
    Ok(Some(body))
}

/// Writes one frame (header and body in one buffer: one syscall for small frames).
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, body: &[u8]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(4 + body.len());
    encode_into(&mut buf, body);
    w.write_all(&buf).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn partial_header_and_body_need_more_bytes() {
        assert!(decode(&[0, 0], 10).unwrap().is_none());
        assert!(decode(&[0, 0, 0, 3, b'a'], 10).unwrap().is_none());
    }

    #[test]
    fn oversized_length_is_refused_before_reading_the_body() {
        let err = decode(&[0, 0, 1, 0], 255).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { len: 256, max: 255 }));
    }

    #[tokio::test]
    async fn truncated_stream_is_an_error_and_clean_eof_is_none() {
        let mut empty: &[u8] = &[];
        assert!(read_frame(&mut empty, 10).await.unwrap().is_none());
        let mut cut: &[u8] = &[0, 0, 0, 5, b'a'];
        assert!(matches!(read_frame(&mut cut, 10).await, Err(FrameError::Truncated)));
        let mut half_head: &[u8] = &[0, 0];
        assert!(matches!(
            read_frame(&mut half_head, 10).await,
            Err(FrameError::Truncated)
        ));
    }

    proptest! {
        #[test]
        fn frames_round_trip_in_any_split(bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8)) {
            let mut wire = Vec::new();
            for b in &bodies { encode_into(&mut wire, b); }
            let mut got = Vec::new();
            let mut at = 0;
            while let Some((range, used)) = decode(&wire[at..], 64).unwrap() {
                got.push(wire[at..][range].to_vec());
                at += used;
            }
            prop_assert_eq!(at, wire.len());
            prop_assert_eq!(got, bodies);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
            let _ = decode(&bytes, 16);
        }
    }
}
