//! What pitd logs, emits (`template_warning`) and shows in status about a template that is
//! ready: what it still holds after its preload and warm-up that every forked worker would
//! get wrong. Threads: fork copies none of them, and a lock one held stays locked in every
//! worker. Sockets: fork copies each one into every worker, so they all share it and their
//! traffic crosses on it (a warm-up that made a real call to a model server left the
//! client's keep-alive connection open: every worker then wrote its requests into that
//! one connection and read the others' replies, or waited forever). The GIL turned back
//! on by an extension of a free-threaded build.

use crate::proto::template::OpenSocket;

/// Sockets named in one warning; the rest are counted.
const SOCKETS_NAMED: usize = 16;
/// Threads named in one warning; the rest are elided.
const THREADS_NAMED: usize = 5;

/// The warnings of a ready template, in the order shown: threads, sockets, the GIL.
pub fn ready_warnings(threads: &[String], sockets: &[OpenSocket], warmed_up: bool, gil_reenabled: bool) -> Vec<String> {
    let after = if warmed_up {
        "its imports and warm-up"
    } else {
        "its imports"
    };
    let mut warnings = Vec::new();
    if !threads.is_empty() {
        warnings.push(threads_warning(threads, after));
    }
    if !sockets.is_empty() {
        warnings.push(sockets_warning(sockets, after));
    }
    if gil_reenabled {
        warnings.push(GIL_REENABLED.to_string());
    }
    warnings
}

/// When a free-threaded build's GIL is on again after the preload.
const GIL_REENABLED: &str = "GIL_REENABLED: the GIL is enabled again after the preload imports (an extension module of this \
     free-threaded build needs it): workers run with the GIL, so threads of a concurrent pool do not run in parallel";

fn threads_warning(threads: &[String], after: &str) -> String {
    let shown: Vec<&str> = threads.iter().take(THREADS_NAMED).map(String::as_str).collect();
    let more = if threads.len() > shown.len() { ", ..." } else { "" };
    format!(
        "{} thread(s) running in the preload template after {after} ({}{more}): forked workers \
         get none of them, and a lock one of them held stays locked in every worker",
        threads.len(),
        shown.join(", ")
    )
}

fn sockets_warning(sockets: &[OpenSocket], after: &str) -> String {
    let shown: Vec<String> = sockets.iter().take(SOCKETS_NAMED).map(OpenSocket::to_string).collect();
    let more = match sockets.len() - shown.len() {
        0 => String::new(),
        n => format!(", and {n} more"),
    };
    format!(
        "{} socket(s) open in the preload template after {after} ({}{more}): every forked worker \
         shares each one, so what one worker sends or reads on it mixes with the others' traffic; \
         close them before the template forks (at the end of the warm-up)",
        sockets.len(),
        shown.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(fd: i32, peer: &str) -> OpenSocket {
        OpenSocket {
            fd,
            kind: "tcp".into(),
            local: Some("127.0.0.1:41234".into()),
            peer: Some(peer.into()),
            listening: false,
        }
    }

    #[test]
    fn a_ready_template_is_warned_about_each_thread_and_socket_it_holds() {
        assert!(ready_warnings(&[], &[], true, false).is_empty());
        let warnings = ready_warnings(&["poller".into()], &[tcp(7, "127.0.0.1:8080")], true, false);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0]
                .starts_with("1 thread(s) running in the preload template after its imports and warm-up (poller)"),
            "{warnings:?}"
        );
        assert!(
            warnings[1].starts_with(
                "1 socket(s) open in the preload template after its imports and warm-up \
                 (tcp to 127.0.0.1:8080 from 127.0.0.1:41234 (fd 7)): every forked worker shares each one"
            ),
            "{warnings:?}"
        );
        let without_warmup = ready_warnings(&[], &[tcp(7, "10.0.0.1:5432")], false, true);
        assert!(
            without_warmup[0].contains("after its imports (tcp to 10.0.0.1:5432"),
            "{without_warmup:?}"
        );
        assert!(
            without_warmup[1].starts_with("GIL_REENABLED: the GIL is enabled again"),
            "{without_warmup:?}"
        );
    }

    #[test]
    fn many_sockets_are_named_up_to_a_bound_and_the_rest_counted() {
        let sockets: Vec<OpenSocket> = (0..20)
            .map(|i| tcp(10 + i, &format!("127.0.0.1:{}", 9000 + i)))
            .collect();
        let warning = &ready_warnings(&[], &sockets, true, false)[0];
        assert!(warning.starts_with("20 socket(s)"), "{warning}");
        assert!(
            warning.contains("127.0.0.1:9015") && !warning.contains("127.0.0.1:9016"),
            "{warning}"
        );
        assert!(warning.contains(", and 4 more)"), "{warning}");
    }
}
