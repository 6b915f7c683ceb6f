//! The Prometheus endpoint on `metrics_listen`: `GET /metrics`, the same exposition as
//! `pitctl metrics`.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::daemon::supervisor::Supervisor;

/// Serves `GET /metrics` on `metrics_listen` until `stop`. A deliberately tiny HTTP/1.1
/// responder: one request per connection, bounded request size and time.
pub async fn serve_http(listener: tokio::net::TcpListener, sup: Arc<Supervisor>, stop: CancellationToken) {
    loop {
        let (mut conn, _) = tokio::select! {
            c = listener.accept() => match c {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("metrics listener accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let sup = sup.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            let mut len = 0;
            let read = async {
                while len < buf.len() {
                    match conn.read(&mut buf[len..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => len += n,
                    }
                    if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            };
            if tokio::time::timeout(Duration::from_secs(5), read).await.is_err() {
                return;
            }
            let head = String::from_utf8_lossy(&buf[..len]);
            let target = head.split_whitespace().nth(1).unwrap_or("");
            // OpenMetrics for scrapers that ask for it, the Prometheus text format otherwise.
            let openmetrics = head
                .lines()
                .any(|l| l.to_ascii_lowercase().starts_with("accept:") && l.contains("application/openmetrics-text"));
            let is_metrics = head.starts_with("GET ") && (target == "/metrics" || target.starts_with("/metrics?"));
            let (status, ctype, body) = match (is_metrics, openmetrics) {
                (true, true) => (
                    "200 OK",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    sup.metrics_text().await,
                ),
                (true, false) => (
                    "200 OK",
                    "text/plain; version=0.0.4; charset=utf-8",
                    crate::proto::exposition::to_prometheus_text(&sup.metrics_text().await),
                ),
                (false, _) => ("404 Not Found", "text/plain", "try /metrics\n".to_string()),
            };
            let reply = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(reply.as_bytes()).await;
            let _ = conn.shutdown().await;
        });
    }
}
