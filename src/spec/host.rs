//! The facts about the running pitd that validation depends on: who it runs as, where its
//! sockets go by default, and its own hard resource limits. `Host::current` reads them from
//! the process; tests build a `Host` by hand so their results do not depend on the machine.

use std::path::PathBuf;

use nix::sys::resource::{Resource, getrlimit, rlim_t};
use nix::unistd::{geteuid, getuid};

use super::defaults;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub euid: u32,
    /// Where sockets go when the spec does not say.
    pub socket_dir: PathBuf,
    pub hard_limits: HardLimits,
}

/// pitd's own hard limits (`None` = unlimited). A child inherits them and, without
/// privileges, cannot go above them, so a spec asking for more is refused up front.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HardLimits {
    pub nofile: Option<u64>,
    pub nproc: Option<u64>,
    /// Seconds.
    pub cpu: Option<u64>,
    /// Bytes.
    pub core: Option<u64>,
    /// Bytes.
    pub address_space: Option<u64>,
}

impl Host {
    pub fn current() -> Self {
        let euid = geteuid().as_raw();
        Host {
            euid,
            socket_dir: socket_dir_now(euid, getuid().as_raw()),
            hard_limits: HardLimits::current(),
        }
    }
}

/// The default socket directory for this process.
pub fn socket_dir_now(euid: u32, uid: u32) -> PathBuf {
    defaults::socket_dir(euid, uid, std::env::var_os("XDG_RUNTIME_DIR"))
}

impl HardLimits {
    pub fn current() -> Self {
        HardLimits {
            nofile: hard(Resource::RLIMIT_NOFILE),
            nproc: hard(Resource::RLIMIT_NPROC),
            cpu: hard(Resource::RLIMIT_CPU),
            core: hard(Resource::RLIMIT_CORE),
            address_space: hard(Resource::RLIMIT_AS),
        }
    }
}

/// The hard limit, or `None` when unlimited. A failed query also gives `None`: the limit is
/// then enforced by the kernel when the worker starts, with its own error.
fn hard(resource: Resource) -> Option<u64> {
    const INFINITY: rlim_t = libc::RLIM_INFINITY;
    match getrlimit(resource) {
        Ok((_, hard)) if hard != INFINITY => Some(hard),
        _ => None,
    }
}
