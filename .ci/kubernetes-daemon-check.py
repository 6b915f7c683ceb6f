"""Runs each rendered variant's pit spec with the pitd of this checkout and checks the names
the manifests and the monitoring rules rely on against the real daemon
(deploy/kubernetes/README.md):

  - pitd's three probes, run as the Deployment says, pass once the pools have started:
    an exec probe's command as written; an httpGet probe as a request for its path at the
    door's port, over HTTPS when its scheme says so, the door's certificate verified
    against the CA that signed it (the kubelet does not verify it; a caller does);
  - with an HTTP door: a call without a token is refused (401), and with a token of the
    tokens file `echo` of a pool of pit.examples.echo answers its arguments through it;
  - every pit_* metric the recording rules read exists, per pool (label `pool`), in
    `pitctl metrics`, as does the daemon-wide pit_shutting_down;
  - after SIGTERM, the readiness probe says no within a second (its command exits 1, or
    its request answers 503; at once, but for the instant pitd takes to handle the signal;
    or pitd is gone already, pitctl exiting 3 or the door refusing the connection, when the
    spec has no shutdown_delay), pit_shutting_down is 1, and pitd exits 0.

Usage: python3 .ci/kubernetes-daemon-check.py RULES.yml RENDERED.yaml...

The spec is the ConfigMap's, with the image's paths made local so it runs here: the
sockets go to a temporary directory, metrics_listen is dropped (the metrics are read over
the control socket), /usr/share/pit/examples is config/examples, and PYTHONPATH points at
python/ for the `pit` package the image pip-installs. A door listens on a free port of
127.0.0.1 instead of its own (which may be taken here, and need not be open to the
network), and its Secret-mounted files are throwaway ones (.ci/kubernetes-door-files.py:
a CA and the certificate it signs, a key, a tokens file). Needs target/debug/pitd and
pitctl, and openssl for a door.
"""

import http.client
import importlib.util
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / "target" / "debug"
WAIT_S = 90.0
# How soon after SIGTERM the readiness probe must say no (pitd: under a millisecond idle;
# the kubelet probes readiness every 5 s).
NOT_READY_S = 1.0

_files = importlib.util.spec_from_file_location("door_files", Path(__file__).with_name("kubernetes-door-files.py"))
door_files = importlib.util.module_from_spec(_files)
_files.loader.exec_module(door_files)


def local_spec(text, tmp, door=None):
    text = text.replace("/usr/share/pit/examples", str(REPO / "config" / "examples"))
    text = re.sub(r'(?m)^(control_socket\s*=\s*)".*"', lambda m: f'{m.group(1)}"{tmp}/control.sock"', text)
    text = re.sub(r'(?m)^(call_socket\s*=\s*)".*"', lambda m: f'{m.group(1)}"{tmp}/call.sock"', text)
    if door is not None:
        text = door_files.with_files(text, door["files"])
        text = re.sub(r'(?m)^(listen\s*=\s*)".*"', lambda m: f'{m.group(1)}"127.0.0.1:{door["port"]}"', text)
    return re.sub(r"(?m)^metrics_listen\s*=.*$", "", text)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pitd_container(pod):
    for c in pod.get("containers", []) + pod.get("initContainers", []):
        if c["name"] == "pitd":
            return c
    raise SystemExit("no pitd container")


def run(argv, env):
    """A probe command from the manifest: its first word is pitctl, found in target/debug."""
    assert argv[0] == "pitctl", argv
    return subprocess.run([str(BIN / "pitctl"), *argv[1:]], env=env, capture_output=True, text=True, timeout=30)


def request(door, method, path, scheme="HTTPS", headers=None, body=None, timeout=5.0):
    """One request to the door (where it listens here); returns (status, body text)."""
    if scheme == "HTTPS":
        context = ssl.create_default_context(cafile=str(door["files"]["ca"]))
        conn = http.client.HTTPSConnection("127.0.0.1", door["port"], context=context, timeout=timeout)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", door["port"], timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


def probe(pitd, name, env, door):
    """Runs pitd's probe `name` as the kubelet would; returns (answer, what it said). The
    answer is "yes" (exit 0, or a 2xx/3xx status: the kubelet's success), "no" (pitctl's
    exit 1, the door's 503), "gone" (no pitd: pitctl's exit 3, a refused connection) or
    "other"."""
    spec = pitd[name]
    if "exec" in spec:
        out = run(spec["exec"]["command"], env)
        answer = {0: "yes", 1: "no", 3: "gone"}.get(out.returncode, "other")
        return answer, f"exit {out.returncode}: {out.stderr.strip()}"
    get = spec["httpGet"]
    port = get["port"]
    if not isinstance(port, int):
        port = next(p["containerPort"] for p in pitd.get("ports", []) if p.get("name") == port)
    if door is None or port != door["listen_port"]:
        return "other", f"port {get['port']} is not the door's ({door and door['listen_port']})"
    headers = {h["name"]: h["value"] for h in get.get("httpHeaders", [])}
    try:
        timeout = spec.get("timeoutSeconds", 1)
        status, text = request(door, "GET", get["path"], get.get("scheme", "HTTP"), headers, None, timeout)
    except ConnectionRefusedError as e:
        return "gone", f"{get.get('scheme', 'HTTP')} GET {get['path']}: {e}"
    except (OSError, http.client.HTTPException) as e:
        return "other", f"{get.get('scheme', 'HTTP')} GET {get['path']}: {type(e).__name__} {e}"
    answer = "yes" if 200 <= status < 400 else "no" if status == 503 else "other"
    return answer, f"{status}: {text.strip()}"


def describe(pitd, name):
    spec = pitd[name]
    if "exec" in spec:
        return " ".join(spec["exec"]["command"][1:])
    return f"{spec['httpGet'].get('scheme', 'HTTP')} GET {spec['httpGet']['path']}"


def door_calls(door, spec):
    """Calls through the door as a caller in another pod makes them: refused without a token
    (when the door has a tokens file), answered with one; `echo` of the first pool of
    pit.examples.echo, else a method no pool has (a 404 then shows the call got through)."""
    http_spec, pools = spec["http"], spec["pools"]
    if "client_ca" in http_spec:
        return ["the door requires client certificates: this check makes none"]
    scheme = "HTTPS" if "tls_cert" in http_spec else "HTTP"
    pool = next((n for n, p in pools.items() if p.get("app") == "pit.examples.echo"), None)
    path, want = (f"/v1/call/{pool}/echo", (200, '"hi"')) if pool else (f"/v1/call/{next(iter(pools))}/-", None)
    errors = []
    if "tokens" in http_spec:
        status, text = request(door, "POST", path, scheme, body=b'"hi"')
        if status != 401:
            errors.append(f"POST {path} without a token answered {status}, not 401: {text}")
    token = door["files"]["token"].read_text()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    status, text = request(door, "POST", path, scheme, headers, b'"hi"')
    if (status, text.strip()) != want and not (want is None and status == 404):
        errors.append(f"POST {path} with a token of the tokens file answered {status}: {text}")
    return errors


def check(name, deployment, configmaps, rule_metrics):
    errors = []
    pod = deployment["spec"]["template"]["spec"]
    pitd = pitd_container(pod)
    volume = next(v for v in pod["volumes"] if v["name"] == "spec")
    spec_text = configmaps[volume["configMap"]["name"]]["pitd.toml"]
    spec = tomllib.loads(spec_text)
    tmp = tempfile.mkdtemp(prefix="pit-k8s-")
    try:
        door = None
        if "http" in spec:
            door = {
                "files": door_files.generate(Path(tmp, "door")),
                "port": free_port(),
                "listen_port": int(spec["http"]["listen"].rpartition(":")[2]),
            }
        Path(tmp, "pitd.toml").write_text(local_spec(spec_text, tmp, door))
        env = dict(os.environ, PITD_SOCKET=f"{tmp}/control.sock", PYTHONPATH=str(REPO / "python"))
        log = open(Path(tmp, "pitd.log"), "wb")
        proc = subprocess.Popen([str(BIN / "pitd"), "--config", f"{tmp}/pitd.toml"], env=env, stderr=log)
        probes = ("startupProbe", "readinessProbe", "livenessProbe")
        try:
            deadline = time.monotonic() + WAIT_S
            while probe(pitd, "startupProbe", env, door)[0] != "yes":
                if time.monotonic() > deadline or proc.poll() is not None:
                    return [f"startup probe never passed; pitd log:\n{Path(tmp, 'pitd.log').read_text()[-2000:]}"]
                time.sleep(0.2)
            for name_ in probes[1:]:
                answer, said = probe(pitd, name_, env, door)
                if answer != "yes":
                    errors.append(f"{name_} ({describe(pitd, name_)}) did not pass: {said}")
            if door is not None:
                errors += door_calls(door, spec)
            metrics = run(["pitctl", "metrics"], env).stdout
            pools = list(spec["pools"])
            for metric in sorted(rule_metrics):
                for pool in pools:
                    if not re.search(rf'(?m)^{metric}\{{[^}}]*pool="{pool}"', metrics):
                        errors.append(f"{metric} (read by the recording rules) has no series for pool {pool}")
            if not re.search(r"(?m)^pit_shutting_down 0$", metrics):
                errors.append("pit_shutting_down is not 0 before SIGTERM")
            proc.send_signal(signal.SIGTERM)
            # pitd takes the signal on a task of its own: on a loaded machine a probe sent in
            # the same instant can be answered before it. The first answer that is not yes,
            # within NOT_READY_S (well inside a probe period), must be no.
            signalled = time.monotonic()
            while (said := probe(pitd, "readinessProbe", env, door))[0] == "yes":
                if time.monotonic() - signalled > NOT_READY_S:
                    break
                time.sleep(0.02)
            # Without shutdown_delay pitd may be gone already (it stops workers in a few ms when
            # they are idle), which the kubelet counts as not ready too.
            gone_ok = re.fullmatch(r"0+(ms|s|m|h)?", spec.get("daemon", {}).get("shutdown_delay", "0s"))
            if said[0] != "no" and not (said[0] == "gone" and gone_ok):
                errors.append(
                    f"within {NOT_READY_S:g} s of SIGTERM the readiness probe ({describe(pitd, 'readinessProbe')}) "
                    f"did not say no: {said[1]}"
                )
            metrics = run(["pitctl", "metrics"], env)
            if metrics.returncode == 0 and not re.search(r"(?m)^pit_shutting_down 1$", metrics.stdout):
                errors.append("pit_shutting_down is not 1 after SIGTERM")
            code = proc.wait(WAIT_S)
            if code != 0:
                errors.append(f"pitd exited {code} after SIGTERM")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
        if not errors:
            door_said = ""
            if door is not None:
                door_said = "; through the door: 401 without a token, echo with one"
            print(
                f"  {name}: probes {' / '.join(describe(pitd, p) for p in probes)} pass{door_said}; "
                f"{', '.join(sorted(rule_metrics))} per pool ({len(pools)}); "
                f"not ready within {NOT_READY_S:g} s of SIGTERM, exit 0"
            )
        return errors
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(rules_path, paths):
    with open(rules_path) as f:
        rules = yaml.safe_load(f)
    exprs = " ".join(r["expr"] for g in rules["groups"] for r in g["rules"])
    # Raw metrics only: recording rules' own names have colons.
    rule_metrics = set(re.findall(r"(?<![:\w])(pit_[a-z_]+)\b(?!:)", exprs))
    failed = False
    for path in paths:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
        for deployment in (d for d in docs if d["kind"] == "Deployment"):
            for error in check(deployment["metadata"]["name"], deployment, configmaps, rule_metrics):
                print(f"{path}: {deployment['metadata']['name']}: {error}", file=sys.stderr)
                failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
