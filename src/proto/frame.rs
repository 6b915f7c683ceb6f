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

/// Bytes read from a stream and the complete frames among them: the one buffered frame
/// reader of every socket and pipe. Fill it from any reader (`read_from`, or `spare` then
/// `filled` for an async one); take frames with `next_frame`. A frame's length is checked
/// against the limit as soon as its header is in, before its body is waited for, and room
/// for the whole frame is made at once so a large frame costs one allocation.
#[derive(Debug)]
pub struct FrameBuf {
    buf: Vec<u8>,
    /// Where the first byte not yet taken as a frame is.
    start: usize,
    /// Bytes read; the rest of `buf` (initialized) is room handed out by `spare`.
    valid: usize,
    max: usize,
    /// Bytes of a refused frame still to be dropped as they arrive (`skip_frame`).
    skip: usize,
}

/// Bytes asked of the reader at least, per read.
const READ_CHUNK: usize = 16 * 1024;

impl FrameBuf {
    /// A reader of frames of at most `max` bytes.
    pub fn new(max: usize) -> FrameBuf {
        FrameBuf {
            buf: Vec::new(),
            start: 0,
            valid: 0,
            max,
            skip: 0,
        }
    }

    /// The body of the next complete frame, taken; `Ok(None)` until one is in.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        match decode(&self.buf[self.start..self.valid], self.max)? {
            Some((range, used)) => {
                let at = self.start;
                self.start += used;
                Ok(Some(&self.buf[at + range.start..at + range.end]))
            }
            None => Ok(None),
        }
    }

    /// The body bytes read so far of the frame at the front (one `next_frame` refused as
    /// too large: its first bytes may say whose it was).
    pub fn partial_body(&self) -> &[u8] {
        self.buf[self.start..self.valid].get(4..).unwrap_or_default()
    }

    /// Drops the frame at the front, of `len` body bytes, as its bytes arrive, so a peer
    /// that sent one frame too large can go on with the next.
    pub fn skip_frame(&mut self, len: usize) {
        self.skip = 4 + len;
        self.apply_skip();
    }

    fn apply_skip(&mut self) {
        let k = self.skip.min(self.valid - self.start);
        self.start += k;
        self.skip -= k;
    }

    /// Whether bytes of a frame not complete yet are held (an end of stream now cuts it).
    pub fn is_partial(&self) -> bool {
        self.start < self.valid
    }

    /// Room to read into: what is left of the frame being read, and at least `READ_CHUNK`.
    /// Frames already taken are dropped first. Report what was read with `filled`.
    ///
    /// The room is zeroed once, when the buffer grows, and reused from then on: zeroing
    /// a chunk at every read would cost more than the read of a small frame.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.valid, 0);
            self.valid -= self.start;
            self.start = 0;
        }
        if self.valid == 0 && self.buf.len() > 4 * READ_CHUNK {
            // A large frame has passed: give its memory back.
            self.buf = Vec::new();
        }
        let mut want = READ_CHUNK;
        if let Ok(head) = <[u8; 4]>::try_from(self.buf[..self.valid].get(..4).unwrap_or_default()) {
            let len = u32::from_be_bytes(head) as usize;
            if len <= self.max {
                want = want.max((4 + len).saturating_sub(self.valid));
            }
        }
        if self.buf.len() < self.valid + want {
            self.buf.resize(self.valid + want, 0);
        }
        &mut self.buf[self.valid..]
    }

    /// `n` bytes were read into the last `spare`.
    pub fn filled(&mut self, n: usize) {
        self.valid += n;
        self.apply_skip();
    }

    /// One read from a blocking reader; `Ok(0)` at its end. Retries an interrupted read.
    pub fn read_from(&mut self, r: &mut impl io::Read) -> io::Result<usize> {
        loop {
            let room = self.spare();
            match r.read(room) {
                Ok(n) => {
                    self.filled(n);
                    return Ok(n);
                }
                Err(e) => {
                    self.filled(0);
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// One read from an async reader; `Ok(0)` at its end.
    pub async fn read_from_async<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> io::Result<usize> {
        let result = r.read(self.spare()).await;
        self.filled(*result.as_ref().unwrap_or(&0));
        result
    }
}

/// Appends one frame holding `body` to `out`.
pub fn encode_into(out: &mut Vec<u8>, body: &[u8]) {
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
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

    #[test]
    fn a_frame_buf_takes_frames_as_they_complete_and_refuses_oversized_ones() {
        let mut wire = Vec::new();
        encode_into(&mut wire, b"hello");
        encode_into(&mut wire, &[7; 40_000]);
        let mut fb = FrameBuf::new(50_000);
        let mut got = Vec::new();
        // Three bytes a read: headers and bodies split everywhere.
        for chunk in wire.chunks(3) {
            let mut r: &[u8] = chunk;
            assert_eq!(fb.read_from(&mut r).unwrap(), chunk.len());
            while let Some(body) = fb.next_frame().unwrap() {
                got.push(body.to_vec());
            }
        }
        assert_eq!(got, [b"hello".to_vec(), vec![7; 40_000]]);
        assert!(!fb.is_partial());
        let mut r: &[u8] = &[0, 0, 0, 2, b'a'];
        fb.read_from(&mut r).unwrap();
        assert_eq!(fb.next_frame().unwrap(), None);
        assert!(fb.is_partial(), "half a frame is held");
        let mut big = FrameBuf::new(4);
        let mut r: &[u8] = &[0, 0, 0, 5];
        big.read_from(&mut r).unwrap();
        assert!(matches!(big.next_frame(), Err(FrameError::TooLarge { len: 5, max: 4 })));
    }

    #[test]
    fn a_frame_refused_as_too_large_is_skipped_as_it_arrives() {
        let mut wire = Vec::new();
        encode_into(&mut wire, &[b'x'; 100]);
        encode_into(&mut wire, b"next");
        let mut fb = FrameBuf::new(50);
        let mut r: &[u8] = &wire[..20];
        fb.read_from(&mut r).unwrap();
        assert!(matches!(fb.next_frame(), Err(FrameError::TooLarge { len: 100, .. })));
        assert_eq!(fb.partial_body(), &[b'x'; 16]);
        fb.skip_frame(100);
        for chunk in wire[20..].chunks(7) {
            let mut r: &[u8] = chunk;
            fb.read_from(&mut r).unwrap();
        }
        assert_eq!(fb.next_frame().unwrap(), Some(&b"next"[..]));
    }

    #[tokio::test]
    async fn a_frame_buf_reads_from_async_readers_to_their_end() {
        let mut wire = Vec::new();
        encode_into(&mut wire, b"one");
        encode_into(&mut wire, b"two");
        let mut r: &[u8] = &wire;
        let mut fb = FrameBuf::new(16);
        let mut got = Vec::new();
        while fb.read_from_async(&mut r).await.unwrap() > 0 {
            while let Some(body) = fb.next_frame().unwrap() {
                got.push(body.to_vec());
            }
        }
        assert_eq!(got, [b"one".to_vec(), b"two".to_vec()]);
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
