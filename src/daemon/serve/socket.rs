//! Binding pitd's Unix sockets safely and checking who connects.
//!
//! The socket is bound inside a fresh private directory, given its mode and group there,
//! then renamed into place: at no instant does the final path carry wider permissions than
//! asked (no umask games, which would race with other threads). An existing file at the
//! path is probed: a live daemon answering there is an error, a stale socket is replaced,
//! anything that is not a socket is left alone and refused.

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("another pitd is already listening on {0}; stop it first or choose another socket path")]
    InUse(PathBuf),
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    #[error("binding socket {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Binds a listening socket at `path` with `mode`, owned by `gid` when given.
pub fn bind(path: &Path, mode: u32, gid: Option<u32>) -> Result<UnixListener, BindError> {
    let io_err = |source: io::Error| BindError::Io {
        path: path.to_path_buf(),
        source,
    };
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.exists() {
        // Others may need to traverse a root-owned runtime dir (socket_group); a user's
        // own runtime dir stays private.
        let dir_mode = if nix::unistd::geteuid().is_root() { 0o755 } else { 0o700 };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(dir_mode)
            .create(parent)
            .map_err(io_err)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match UnixStream::connect(path) {
            Ok(_) => return Err(BindError::InUse(path.to_path_buf())),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                tracing::info!("replacing stale socket {}", path.display());
            }
            Err(e) => return Err(io_err(e)),
        },
        Ok(_) => return Err(BindError::NotASocket(path.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    let staging = parent.join(format!(".pitd-bind-{}-{:x}", std::process::id(), fastrand::u64(..)));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .map_err(io_err)?;
    let result = (|| {
        let tmp = staging.join("s");
        let listener = UnixListener::bind(&tmp)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
        if let Some(gid) = gid {
            std::os::unix::fs::chown(&tmp, None, Some(gid))?;
        }
        std::fs::rename(&tmp, path)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&staging);
    result.map_err(io_err)
}

/// Accepts connections until `stop`, handing each to `serve` on a task of its own. A failed
/// accept (out of fds, say) is logged and retried after a pause rather than spinning.
pub async fn accept_loop<F, Fut>(
    listener: tokio::net::UnixListener,
    what: &str,
    stop: tokio_util::sync::CancellationToken,
    serve: F,
) where
    F: Fn(tokio::net::UnixStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        let conn = tokio::select! {
            c = listener.accept() => c,
            _ = stop.cancelled() => return,
        };
        match conn {
            Ok((stream, _)) => {
                tokio::spawn(serve(stream));
            }
            Err(e) => {
                tracing::warn!("{what} accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Who may use a socket: root, pitd's own user, and members of `group` when configured.
#[derive(Debug, Clone, Copy)]
pub struct Access {
    pub uid: u32,
    pub group: Option<u32>,
}

impl Access {
    pub fn allows(&self, peer_uid: u32, peer_gid: u32, peer_pid: Option<i32>) -> bool {
        if peer_uid == 0 || peer_uid == self.uid {
            return true;
        }
        let Some(group) = self.group else { return false };
        peer_gid == group || peer_pid.is_some_and(|pid| supplementary_groups(pid).contains(&group))
    }
}

/// The peer's supplementary groups, from /proc (SO_PEERCRED carries only the primary gid).
fn supplementary_groups(pid: i32) -> Vec<u32> {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    text.lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| g.split_whitespace().filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_sets_mode_and_replaces_a_stale_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/ctl.sock");
        let first = bind(&path, 0o600, None).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(bind(&path, 0o600, None), Err(BindError::InUse(_))));
        drop(first);
        bind(&path, 0o660, None).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
    }

    #[test]
    fn bind_refuses_to_replace_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl.sock");
        std::fs::write(&path, "precious").unwrap();
        assert!(matches!(bind(&path, 0o600, None), Err(BindError::NotASocket(_))));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    }

    #[test]
    fn access_allows_root_owner_and_group_only() {
        let a = Access {
            uid: 1000,
            group: Some(50),
        };
        assert!(a.allows(0, 0, None));
        assert!(a.allows(1000, 1000, None));
        assert!(a.allows(1001, 50, None));
        assert!(!a.allows(1001, 1001, None));
        assert!(!Access { uid: 1000, group: None }.allows(1001, 50, None));
    }
}
