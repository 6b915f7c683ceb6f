//! The HTTP front door (INTERFACE section 10), real pitd and real workers
//! (`tests/workers/apps/stream_app.py`), spoken to by curl and by raw TCP: calls and
//! streams over HTTP/1.1 and HTTP/2, with and without TLS (certificates made here with
//! rcgen); tokens and principals; quotas; client certificates; body limits; a slow request
//! head among a thousand idle connections; a client hanging up mid-stream; tokens re-read
//! on SIGHUP; what `pitd --check` refuses.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use serde_json::{Value, json};

use crate::harness::{TestDaemon, python, wait_until, worker};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn sha256_hex(token: &str) -> String {
    let out = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(token.as_bytes())?;
            c.wait_with_output()
        })
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn pools() -> String {
    let python_dir = format!("{}/python", env!("CARGO_MANIFEST_DIR"));
    format!(
        "[pools.app]\napp = \"stream_app\"\npython = \"{py}\"\nsize = 1\nconcurrency = 4\ncwd = \"{cwd}\"\n\
         env = {{ PYTHONPATH = \"{python_dir}\" }}\nkill_timeout = \"2s\"\n\
         [pools.other]\napp = \"stream_app\"\npython = \"{py}\"\nsize = 1\ncwd = \"{cwd}\"\n\
         env = {{ PYTHONPATH = \"{python_dir}\" }}\n",
        py = python(),
        cwd = worker("apps")
    )
}

/// A daemon with a door of these `[http]` keys (besides `listen`), ready to call.
struct Door {
    d: TestDaemon,
    url: String,
}

impl Door {
    fn start(http: &str, scheme: &str) -> Door {
        Door::with_tokens(http, scheme, &[])
    }

    /// A door with a tokens file of these principals (name, token, pools, max_in_flight)
    /// in the daemon's own directory, when there are any.
    fn with_tokens(http: &str, scheme: &str, principals: &[(&str, &str, &str, Option<u32>)]) -> Door {
        let port = free_port();
        let mut body = format!("[http]\nlisten = \"127.0.0.1:{port}\"\n{http}\n");
        let d = TestDaemon::configure("");
        if !principals.is_empty() {
            let path = tokens_file(d.dir.path(), principals);
            body.push_str(&format!("tokens = \"{}\"\n", path.display()));
        }
        let spec = std::fs::read_to_string(&d.config).unwrap();
        std::fs::write(&d.config, format!("{spec}{body}{}", pools())).unwrap();
        let d = d.launch();
        d.wait_pool("a ready worker", "app", |p| {
            p.workers.iter().any(|w| w.state.as_str() == "idle")
        });
        d.wait_pool("a ready worker", "other", |p| {
            p.workers.iter().any(|w| w.state.as_str() == "idle")
        });
        Door {
            url: format!("{scheme}://127.0.0.1:{port}"),
            d,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.d.dir.path().join(name)
    }

    /// `curl` with these arguments against `path`: (status code, body).
    fn curl(&self, path: &str, args: &[&str]) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-s", "-S", "-o", "-", "-w", "\n%{http_code}", "--max-time", "20"])
            .args(args)
            .arg(format!("{}{path}", self.url))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        let code = code.trim().parse().unwrap_or(0);
        // No HTTP status at all: curl's own error says why.
        let body = match code {
            0 => format!("{body}{}", String::from_utf8_lossy(&out.stderr)),
            _ => body.to_string(),
        };
        (code, body)
    }

    fn requests(&self, pool: &str) -> u64 {
        self.d.pool(pool).requests
    }
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{body:?} is not JSON: {e}"))
}

/// SSE events of a body: (event, data).
fn events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut name = String::new();
            let mut data = Value::Null;
            for line in e.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_string();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = json_of(d);
                }
            }
            (name, data)
        })
        .collect()
}

#[test]
fn calls_and_streams_over_http_1_1_and_http_2_without_tls() {
    let door = Door::start("", "http");
    for version in ["--http1.1", "--http2-prior-knowledge"] {
        let (code, body) = door.curl("/v1/call/app/pid", &[version, "-X", "POST"]);
        assert_eq!(code, 200, "{version}: {body}");
        assert!(json_of(&body).is_number());
        let (code, body) = door.curl(
            "/v1/call/app/tokens",
            &[
                version,
                "-N",
                "-H",
                "Accept: text/event-stream",
                "-d",
                r#"{"count": 3}"#,
            ],
        );
        assert_eq!(code, 200, "{version}: {body}");
        let evs = events(&body);
        let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["chunk", "chunk", "chunk", "end"], "{body}");
        assert_eq!(evs[2].1["i"], json!(2));
    }
    // Errors carry their kind and the status of section 10.
    let (code, body) = door.curl("/v1/call/nope/pid", &["-X", "POST"]);
    assert_eq!(
        (code, json_of(&body)["error"]["kind"].clone()),
        (404, json!("no_such_pool"))
    );
    let (code, body) = door.curl("/v1/call/app/tokens", &["-X", "POST"]);
    assert_eq!(
        (code, json_of(&body)["error"]["kind"].clone()),
        (400, json!("bad_request")),
        "{body}"
    );
    let (code, body) = door.curl("/v1/call/app/pid", &["-d", "{not json"]);
    assert_eq!(code, 400, "{body}");
    let (code, _) = door.curl("/v1/ready", &[]);
    assert_eq!(code, 200);
    let status = door.d.status().http.expect("the door in status");
    assert!(!status.tls && status.principals.is_empty());
}

fn tokens_file(door_dir: &Path, principals: &[(&str, &str, &str, Option<u32>)]) -> PathBuf {
    let mut text = String::new();
    for (name, token, pools, max) in principals {
        text.push_str(&format!(
            "[principals.{name}]\ntoken_sha256 = \"{}\"\npools = {pools}\n",
            sha256_hex(token)
        ));
        if let Some(m) = max {
            text.push_str(&format!("max_in_flight = {m}\n"));
        }
    }
    let path = door_dir.join("tokens.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A door with a tokens file: `front` may call `app` (one call at a time), `ops` anything.
fn door_with_tokens() -> Door {
    Door::with_tokens(
        "",
        "http",
        &[
            ("front", "front-token", "[\"app\"]", Some(1)),
            ("ops", "ops-token", "[\"*\"]", None),
        ],
    )
}

#[test]
fn without_a_known_token_or_beyond_its_pools_nothing_reaches_a_worker() {
    let door = door_with_tokens();
    let before = (door.requests("app"), door.requests("other"));
    let (code, body) = door.curl("/v1/call/app/pid", &["-X", "POST"]);
    assert_eq!(
        (code, json_of(&body)["error"]["kind"].clone()),
        (401, json!("unauthenticated"))
    );
    let (code, _) = door.curl("/v1/call/app/pid", &["-X", "POST", "-H", "Authorization: Bearer wrong"]);
    assert_eq!(code, 401);
    // Refused with its body unread, over HTTP/2 too: the client gets the status, not a reset.
    let body = format!("\"{}\"", "x".repeat(64 * 1024));
    for _ in 0..20 {
        let (code, out) = door.curl("/v1/call/app/pid", &["--http2-prior-knowledge", "-d", &body]);
        assert_eq!(code, 401, "{out}");
    }
    let (code, body) = door.curl(
        "/v1/call/other/pid",
        &["-X", "POST", "-H", "Authorization: Bearer front-token"],
    );
    assert_eq!(
        (code, json_of(&body)["error"]["kind"].clone()),
        (403, json!("forbidden"))
    );
    assert_eq!(
        (door.requests("app"), door.requests("other")),
        before,
        "no worker saw them"
    );
    let (code, _) = door.curl(
        "/v1/call/app/pid",
        &["-X", "POST", "-H", "Authorization: Bearer front-token"],
    );
    assert_eq!(code, 200);
    let (code, _) = door.curl(
        "/v1/call/other/pid",
        &["-X", "POST", "-H", "Authorization: Bearer ops-token"],
    );
    assert_eq!(code, 200);
    // Probes need no token.
    assert_eq!(door.curl("/v1/live", &[]).0, 200);
    let metrics = String::from_utf8_lossy(&door.d.pitctl(&["metrics"]).stdout).into_owned();
    assert!(
        metrics.contains(r#"pit_http_requests_total{principal="front",pool="other",code="403"} 1"#),
        "{metrics}"
    );
}

/// A `curl -N` stream left running in the background.
struct Streaming(Child);

impl Streaming {
    fn start(door: &Door, token: &str, args: &str) -> Streaming {
        let child = Command::new("curl")
            .args(["-s", "-N", "--max-time", "30", "-H", "Accept: text/event-stream"])
            .args(["-H", &format!("Authorization: Bearer {token}"), "-d", args])
            .arg(format!("{}/v1/call/app/tokens", door.url))
            .stdout(Stdio::piped())
            .spawn()
            .expect("curl");
        Streaming(child)
    }

    /// Reads until the first event has arrived.
    fn first_event(&mut self) {
        let mut out = self.0.stdout.take().unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while !seen.windows(2).any(|w| w == b"\n\n") {
            let n = out.read(&mut buf).expect("curl's output");
            assert!(n > 0, "the stream ended before its first event");
            seen.extend_from_slice(&buf[..n]);
        }
        self.0.stdout = Some(out);
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_principal_past_its_max_in_flight_gets_429_with_retry_after() {
    let door = door_with_tokens();
    let mut held = Streaming::start(&door, "front-token", r#"{"count": 200, "interval": 0.1}"#);
    held.first_event();
    let out = Command::new("curl")
        .args(["-s", "-i", "-X", "POST", "-H", "Authorization: Bearer front-token"])
        .arg(format!("{}/v1/call/app/pid", door.url))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(text.starts_with("http/1.1 429"), "{text}");
    assert!(
        text.contains("retry-after: 1") && text.contains(r#""kind":"quota""#),
        "{text}"
    );
    // Another principal is not held back.
    assert_eq!(
        door.curl(
            "/v1/call/app/pid",
            &["-X", "POST", "-H", "Authorization: Bearer ops-token"]
        )
        .0,
        200
    );
    drop(held);
    wait_until("front's stream to end", || {
        let (code, _) = door.curl(
            "/v1/call/app/pid",
            &["-X", "POST", "-H", "Authorization: Bearer front-token"],
        );
        (code == 200).then_some(()).ok_or(format!("{code}"))
    });
}

#[test]
fn a_client_hanging_up_mid_stream_closes_the_generator() {
    let door = Door::start("", "http");
    let done = door.path("closed");
    let args = json!({"count": 1000, "interval": 0.05, "marker": done}).to_string();
    let mut s = Streaming::start(&door, "-", &args);
    s.first_event();
    drop(s);
    wait_until("the generator's finally", || {
        done.exists().then_some(()).ok_or_else(|| "not yet".to_string())
    });
    door.d
        .wait_pool("the slot freed", "app", |p| p.in_flight == 0 && p.streams_open == 0);
}

#[test]
fn a_body_over_max_body_gets_413_and_reaches_no_worker() {
    let door = Door::start("max_body = \"1KiB\"", "http");
    let big = format!("\"{}\"", "x".repeat(4096));
    let (code, body) = door.curl("/v1/call/app/pid", &["-d", &big]);
    assert_eq!(
        (code, json_of(&body)["error"]["kind"].clone()),
        (413, json!("too_large"))
    );
    assert_eq!(door.requests("app"), 0);
}

#[test]
fn a_slow_request_head_is_closed_while_a_thousand_idle_connections_do_not_stop_a_call() {
    let door = Door::start("header_timeout = \"1s\"", "http");
    let addr = door.url.trim_start_matches("http://").to_string();
    let idle: Vec<TcpStream> = (0..1000).map(|_| TcpStream::connect(&addr).expect("connect")).collect();
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(b"POST /v1/call/app/pid HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // A call goes through meanwhile.
    let (code, _) = door.curl("/v1/call/app/pid", &["-X", "POST"]);
    assert_eq!(code, 200);
    slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 512];
    let closed = loop {
        match slow.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    assert!(closed, "the slow request head was not closed within 10 s");
    drop(idle);
}

#[test]
fn sighup_takes_a_new_tokens_file_without_dropping_a_call_in_flight() {
    let door = door_with_tokens();
    let mut s = Streaming::start(&door, "ops-token", r#"{"count": 10, "interval": 0.2}"#);
    s.first_event();
    tokens_file(door.d.dir.path(), &[("ops2", "new-token", "[\"*\"]", None)]);
    let pid = nix::unistd::Pid::from_raw(door.d.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    wait_until("the new token to be taken", || {
        let (code, _) = door.curl(
            "/v1/call/app/pid",
            &["-X", "POST", "-H", "Authorization: Bearer new-token"],
        );
        (code == 200).then_some(()).ok_or(format!("{code}"))
    });
    assert_eq!(
        door.curl(
            "/v1/call/app/pid",
            &["-X", "POST", "-H", "Authorization: Bearer ops-token"]
        )
        .0,
        401
    );
    // The stream started with the old token ran to its end.
    let out = s.0.stdout.take().unwrap();
    let mut rest = String::new();
    std::io::BufReader::new(out).read_to_string(&mut rest).unwrap();
    assert!(rest.contains("event: end"), "{rest}");
    // A bad file keeps the loaded tokens.
    std::fs::write(door.path("tokens.toml"), "[principals.x]\ntoken_sha256 = \"nope\"\n").unwrap();
    let out = door.d.pitctl(&["reload"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("tokens not reloaded"),
        "{out:?}"
    );
    assert_eq!(
        door.curl(
            "/v1/call/app/pid",
            &["-X", "POST", "-H", "Authorization: Bearer new-token"]
        )
        .0,
        200
    );
}

/// A CA and what it signs.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `name`: a server's (for localhost and 127.0.0.1) or a client's.
    fn sign(&self, name: &str, client: bool) -> (String, String) {
        let names = if client {
            vec![]
        } else {
            vec!["localhost".to_string(), "127.0.0.1".to_string()]
        };
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![match client {
            true => ExtendedKeyUsagePurpose::ClientAuth,
            false => ExtendedKeyUsagePurpose::ServerAuth,
        }];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn over_tls_calls_and_streams_speak_http_2_and_client_certificates_of_another_ca_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = Ca::new("pit test server CA");
    let client_ca = Ca::new("pit test client CA");
    let stranger_ca = Ca::new("someone else");
    let (cert, key) = server_ca.sign("localhost", false);
    let (good_cert, good_key) = client_ca.sign("frontend", true);
    let (bad_cert, bad_key) = stranger_ca.sign("frontend", true);
    let ca_file = write(dir.path(), "server-ca.pem", &server_ca.pem);
    let keys = format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"\nclient_ca = \"{}\"",
        write(dir.path(), "cert.pem", &cert),
        write(dir.path(), "key.pem", &key),
        write(dir.path(), "clients.pem", &client_ca.pem)
    );
    let door = Door::start(&keys, "https");
    let good = [
        "--cacert",
        &ca_file,
        "--cert",
        &write(dir.path(), "good.pem", &good_cert),
        "--key",
        &write(dir.path(), "good.key", &good_key),
    ];
    for version in ["--http1.1", "--http2"] {
        let mut args = good.to_vec();
        args.extend([version, "-X", "POST"]);
        let (code, body) = door.curl("/v1/call/app/pid", &args);
        assert_eq!(code, 200, "{version}: {body}");
        let mut args = good.to_vec();
        args.extend([
            version,
            "-N",
            "-H",
            "Accept: text/event-stream",
            "-d",
            r#"{"count": 2}"#,
        ]);
        let (code, body) = door.curl("/v1/call/app/tokens", &args);
        assert_eq!(code, 200);
        assert_eq!(events(&body).len(), 3, "{body}");
    }
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version}",
            "--http2",
            "-X",
            "POST",
        ])
        .args(good)
        .arg(format!("{}/v1/call/app/pid", door.url))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2", "ALPN chose HTTP/2");
    let bad = [
        "--cacert",
        &ca_file,
        "--cert",
        &write(dir.path(), "bad.pem", &bad_cert),
        "--key",
        &write(dir.path(), "bad.key", &bad_key),
        "-X",
        "POST",
    ];
    let (code, _) = door.curl("/v1/call/app/pid", &bad);
    assert_eq!(code, 0, "a certificate of another CA is refused in the handshake");
    let (code, _) = door.curl("/v1/call/app/pid", &["--cacert", &ca_file, "-X", "POST"]);
    assert_eq!(code, 0, "no certificate at all is refused too");
    assert_eq!(door.requests("app"), 5, "the refused ones reached no worker");
    assert!(door.d.status().http.unwrap().tls);
}

#[test]
fn check_refuses_a_reachable_door_without_tls_and_tokens_and_a_key_of_another_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let run = |spec: &str| {
        let path = write(dir.path(), "pitd.toml", spec);
        let out = Command::new(env!("CARGO_BIN_EXE_pitd"))
            .args(["--check", "--config", &path])
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, err) = run("[http]\nlisten = \"0.0.0.0:8443\"\n");
    assert!(
        !ok && err.contains("is not a loopback address") && err.contains("TLS"),
        "{err}"
    );
    let ca = Ca::new("ca");
    let (cert, _) = ca.sign("localhost", false);
    let (_, other_key) = ca.sign("localhost", false);
    let spec = format!(
        "[http]\nlisten = \"127.0.0.1:8443\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        write(dir.path(), "cert.pem", &cert),
        write(dir.path(), "key.pem", &other_key)
    );
    let (ok, err) = run(&spec);
    assert!(!ok && err.contains("does not match"), "{err}");
    let spec = format!(
        "[http]\nlisten = \"127.0.0.1:8443\"\ntokens = \"{}\"\n",
        write(
            dir.path(),
            "tokens.toml",
            "[principals.a]\ntoken_sha256 = \"abc\"\npools = [\"*\"]\n"
        )
    );
    let (ok, err) = run(&spec);
    assert!(!ok && err.contains("token_sha256"), "{err}");
}
