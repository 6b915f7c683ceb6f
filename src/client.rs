//! `ControlClient`: a blocking client of the control socket, used by pitctl, top and tests.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::proto::control::{ControlErrorKind, Reply, Request};
use crate::proto::frame::{CONTROL_MAX, FrameBuf};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens at the socket (exit code 3).
    #[error("no pitd reachable at {path}: {source}")]
    Unreachable { path: PathBuf, source: io::Error },
    /// pitd answered with an error (exit code 1).
    #[error("{message}")]
    Refused { kind: ControlErrorKind, message: String },
    /// The connection broke or carried something unreadable (exit code 1).
    #[error("talking to pitd at {path}: {message}")]
    Protocol { path: PathBuf, message: String },
}

/// The control socket path: `--socket`, else `PITD_SOCKET` (both resolved by clap), else
/// the default runtime directory.
pub fn default_control_socket() -> PathBuf {
    crate::spec::default_socket_dir().join("control.sock")
}

/// A wedged daemon must not wedge its client: pitctl gives up on a reply after this.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct ControlClient {
    stream: UnixStream,
    path: PathBuf,
    frames: FrameBuf,
}

impl ControlClient {
    pub fn connect(path: &Path) -> Result<ControlClient, ClientError> {
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Unreachable {
            path: path.to_path_buf(),
            source,
        })?;
        let client = ControlClient {
            stream,
            path: path.to_path_buf(),
            frames: FrameBuf::new(CONTROL_MAX),
        };
        client.set_timeout(Some(REPLY_TIMEOUT));
        Ok(client)
    }

    /// The pid of the process serving the socket (pitd), as this pid namespace sees it;
    /// `None` when the kernel cannot tell (a pitd in a pid namespace we cannot see).
    pub fn peer_pid(&self) -> Option<u32> {
        let cred = nix::sys::socket::getsockopt(&self.stream, nix::sys::socket::sockopt::PeerCredentials).ok()?;
        u32::try_from(cred.pid()).ok().filter(|&pid| pid > 0)
    }

    /// How long to wait for a reply; `None` waits forever (a followed stream).
    pub fn set_timeout(&self, timeout: Option<Duration>) {
        let _ = self.stream.set_read_timeout(timeout);
        let _ = self.stream.set_write_timeout(timeout);
    }

    /// Sends one request and reads its (first) reply; an error reply becomes `Refused`.
    pub fn request(&mut self, req: &Request) -> Result<Reply, ClientError> {
        let body = serde_json::to_vec(req).map_err(|e| self.protocol(e))?;
        let mut buf = Vec::with_capacity(4 + body.len());
        crate::proto::frame::encode_into(&mut buf, &body);
        self.stream.write_all(&buf).map_err(|e| self.protocol(e))?;
        match self.next_reply()? {
            Some(reply) => Ok(reply),
            None => Err(self.protocol("pitd closed the connection without replying")),
        }
    }

    /// The next reply of a stream; `None` when pitd closed the connection.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, ClientError> {
        let body = loop {
            if let Some(body) = self.frames.next_frame().map_err(|e| protocol(&self.path, e))? {
                break body;
            }
            match self.frames.read_from(&mut self.stream) {
                Ok(0) if self.frames.is_partial() => {
                    return Err(protocol(
                        &self.path,
                        "pitd closed the connection in the middle of a reply",
                    ));
                }
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(e) => return Err(protocol(&self.path, e)),
            }
        };
        match serde_json::from_slice::<Reply>(body).map_err(|e| protocol(&self.path, e))? {
            Reply::Error { kind, message } => Err(ClientError::Refused { kind, message }),
            reply => Ok(Some(reply)),
        }
    }

    fn protocol(&self, e: impl std::fmt::Display) -> ClientError {
        protocol(&self.path, e)
    }
}

/// The error of a connection that broke or carried what is not a reply.
fn protocol(path: &Path, e: impl std::fmt::Display) -> ClientError {
    ClientError::Protocol {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}
