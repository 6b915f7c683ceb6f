"""Runs each rendered variant's pit spec with the pitd of this checkout and checks the names
the manifests and the monitoring rules rely on against the real daemon
(deploy/kubernetes/README.md):

  - pitd's three probes, run exactly as the Deployment's exec commands say, exit 0 once
    the pools have started;
  - every pit_* metric the recording rules read exists, per pool (label `pool`), in
    `pitctl metrics`, as does the daemon-wide pit_shutting_down;
  - after SIGTERM, the readiness probe's command exits 1 within a second (at once, but
    for the instant pitd takes to handle the signal; or 3 when the spec has no
    shutdown_delay and pitd has stopped already), pit_shutting_down is 1, and pitd exits 0.

Usage: python3 .ci/kubernetes-daemon-check.py RULES.yml RENDERED.yaml...

The spec is the ConfigMap's, with the image's paths made local so it runs here: the
sockets go to a temporary directory, metrics_listen is dropped (the metrics are read over
the control socket), /usr/share/pit/examples is config/examples, and PYTHONPATH points at
python/ for the `pit` package the image pip-installs. Needs target/debug/pitd and pitctl.
"""

import os
import re
import shutil
import signal
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


def local_spec(text, tmp):
    text = text.replace("/usr/share/pit/examples", str(REPO / "config" / "examples"))
    text = re.sub(r'(?m)^(control_socket\s*=\s*)".*"', lambda m: f'{m.group(1)}"{tmp}/control.sock"', text)
    text = re.sub(r'(?m)^(call_socket\s*=\s*)".*"', lambda m: f'{m.group(1)}"{tmp}/call.sock"', text)
    return re.sub(r"(?m)^metrics_listen\s*=.*$", "", text)


def pitd_container(pod):
    for c in pod.get("containers", []) + pod.get("initContainers", []):
        if c["name"] == "pitd":
            return c
    raise SystemExit("no pitd container")


def run(argv, env):
    """A probe command from the manifest: its first word is pitctl, found in target/debug."""
    assert argv[0] == "pitctl", argv
    return subprocess.run([str(BIN / "pitctl"), *argv[1:]], env=env, capture_output=True, text=True, timeout=30)


def check(name, deployment, configmaps, rule_metrics):
    errors = []
    pod = deployment["spec"]["template"]["spec"]
    pitd = pitd_container(pod)
    volume = next(v for v in pod["volumes"] if v["name"] == "spec")
    spec_text = configmaps[volume["configMap"]["name"]]["pitd.toml"]
    tmp = tempfile.mkdtemp(prefix="pit-k8s-")
    try:
        Path(tmp, "pitd.toml").write_text(local_spec(spec_text, tmp))
        env = dict(os.environ, PITD_SOCKET=f"{tmp}/control.sock", PYTHONPATH=str(REPO / "python"))
        log = open(Path(tmp, "pitd.log"), "wb")
        proc = subprocess.Popen([str(BIN / "pitd"), "--config", f"{tmp}/pitd.toml"], env=env, stderr=log)
        try:
            probes = {p: pitd[p]["exec"]["command"] for p in ("startupProbe", "readinessProbe", "livenessProbe")}
            deadline = time.monotonic() + WAIT_S
            while run(probes["startupProbe"], env).returncode != 0:
                if time.monotonic() > deadline or proc.poll() is not None:
                    return [f"startup probe never passed; pitd log:\n{Path(tmp, 'pitd.log').read_text()[-2000:]}"]
                time.sleep(0.2)
            for probe in ("readinessProbe", "livenessProbe"):
                out = run(probes[probe], env)
                if out.returncode != 0:
                    errors.append(f"{probe} {probes[probe]} exited {out.returncode}: {out.stderr.strip()}")
            metrics = run(["pitctl", "metrics"], env).stdout
            pools = list(tomllib.loads(spec_text)["pools"])
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
            while (out := run(probes["readinessProbe"], env)).returncode == 0:
                if time.monotonic() - signalled > NOT_READY_S:
                    break
                time.sleep(0.02)
            # Without shutdown_delay pitd may be gone already (it stops workers in a few ms when
            # they are idle): pitctl then exits 3, which the kubelet counts as not ready too.
            delay = tomllib.loads(spec_text).get("daemon", {}).get("shutdown_delay", "0s")
            gone_ok = re.fullmatch(r"0+(ms|s|m|h)?", delay) is not None
            if out.returncode != 1 and not (out.returncode == 3 and gone_ok):
                errors.append(
                    f"within {NOT_READY_S:g} s of SIGTERM the readiness probe exited {out.returncode}, not 1: "
                    f"{out.stderr.strip()}"
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
            print(
                f"  {name}: probes {' / '.join(' '.join(c[1:]) for c in probes.values())} pass; "
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
