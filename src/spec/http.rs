//! `[http]`, the HTTP front door (INTERFACE section 10): its address, TLS files, tokens
//! file and limits. Secure by default: an address other machines can reach needs TLS, and
//! tokens or client certificates, or the spec is refused saying why.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::defaults as def;
use super::error::{Problem, Result};
use super::raw::{Opt, RawHttp};
use super::rules::{self, value_or};
use super::types::{HttpSpec, TlsFiles};

pub fn door(raw: &Spanned<RawHttp>, dir: &Path) -> Result<HttpSpec> {
    let table = raw.span();
    let raw = raw.get_ref();
    let Some(listen) = &raw.listen else {
        let mut p = Problem::key(
            table,
            "expected `listen`, the address to serve on, like \"127.0.0.1:8080\"",
        );
        p.key = Some("http".into());
        return Err(p);
    };
    let addr: SocketAddr = listen.get_ref().parse().map_err(|_| {
        let msg = format!(
            "expected host:port with an IP address, like \"127.0.0.1:8080\" or \"[::1]:8443\", found {:?}",
            listen.get_ref()
        );
        Problem::value(listen.span(), msg)
    })?;
    let tls = match (&raw.tls_cert, &raw.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: file(cert, dir)?,
            key: file(key, dir)?,
        }),
        (None, None) => None,
        (Some(given), None) => return Err(Problem::key(given.span(), "expected `tls_key` with `tls_cert`")),
        (None, Some(given)) => return Err(Problem::key(given.span(), "expected `tls_cert` with `tls_key`")),
    };
    let client_ca = optional_file(&raw.client_ca, dir)?;
    if let (Some(ca), None) = (&raw.client_ca, &tls) {
        let msg = "only allowed with TLS (`tls_cert` and `tls_key`): client certificates are part of the TLS handshake";
        return Err(Problem::key(ca.span(), msg));
    }
    let tokens = optional_file(&raw.tokens, dir)?;
    if !addr.ip().is_loopback() {
        let missing = match (tls.is_some(), tokens.is_some() || client_ca.is_some()) {
            (true, true) => None,
            (false, true) => Some("TLS (`tls_cert` and `tls_key`)"),
            (true, false) => Some("`tokens` or `client_ca`"),
            (false, false) => Some("TLS (`tls_cert` and `tls_key`) and `tokens` or `client_ca`"),
        };
        if let Some(missing) = missing {
            let msg = format!(
                "{addr} is not a loopback address: serving it needs {missing}, or anyone who can reach it could \
                 run your workers' code (use 127.0.0.1 or [::1] to serve this machine only)"
            );
            return Err(Problem::value(listen.span(), msg));
        }
    }
    Ok(HttpSpec {
        listen: addr,
        tls,
        client_ca,
        tokens,
        max_body: value_or(&raw.max_body, def::HTTP_MAX_BODY, |s| s.0),
        header_timeout: rules::positive(&raw.header_timeout, def::HTTP_HEADER_TIMEOUT)?,
        max_connections: rules::count(&raw.max_connections, 1, def::HTTP_MAX_CONNECTIONS)?,
    })
}

fn optional_file(raw: &Opt<String>, dir: &Path) -> Result<Option<PathBuf>> {
    raw.as_ref().map(|r| file(r, dir)).transpose()
}

/// A file the door reads (relative to the spec's directory), which must exist now.
fn file(raw: &Spanned<String>, dir: &Path) -> Result<PathBuf> {
    let path = dir.join(raw.get_ref());
    match path.is_file() {
        true => Ok(path),
        false => {
            let what = if path.exists() { "not a file" } else { "no such file" };
            let msg = format!("expected a readable file, found {what}: {}", path.display());
            Err(Problem::value(raw.span(), msg))
        }
    }
}
