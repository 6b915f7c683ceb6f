"""Checks what the Kubernetes schemas cannot: that each rendered variant agrees with the pit
spec it carries (deploy/kubernetes/README.md explains the arithmetic).

Usage: python3 .ci/kubernetes-invariants.py RENDERED.yaml...

For every Deployment: pitd runs with a spec from a ConfigMap of the same render, and
  - the grace period exceeds shutdown_delay + shutdown_timeout (+ the 2 s pitd allows
    itself to reap workers), plus the application's own share when pitd is a sidecar
    (the application stops first: its preStop sleep and its longest call);
  - shutdown_timeout is at least every call-serving pool's drain_timeout and
    request_timeout (a call may run that long; a graceful stop should not cut it short);
  - pitd's memory limit covers size x hard_rss of every pool, and equals its request;
  - every pool has hard_rss (else nothing bounds the sum);
  - pitd is either a main container or a native sidecar (restartPolicy: Always), and its
    three probes run `pitctl probe startup|ready|live`.
Prints one line per Deployment; exits 1 with the reasons when one fails.
"""

import re
import sys
import tomllib

import yaml

REAP_GRACE_S = 2.0
UNITS = {"": 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3}
QUANTITY = {"": 1, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "k": 1000, "M": 1000**2, "G": 1000**3}
DURATION = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def size(value):
    if isinstance(value, int):
        return value
    m = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", value)
    return int(m.group(1)) * UNITS[m.group(2).upper()]


def quantity(value):
    m = re.fullmatch(r"(\d+)([A-Za-z]*)", str(value))
    return int(m.group(1)) * QUANTITY[m.group(2)]


def seconds(value, default=0.0):
    if value is None:
        return default
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", value)
    return int(m.group(1)) * DURATION[m.group(2)]


def check(deployment, configmaps):
    errors = []
    pod = deployment["spec"]["template"]["spec"]
    mains = pod.get("containers", [])
    sidecars = [c for c in pod.get("initContainers", []) if c.get("restartPolicy") == "Always"]
    pitd = [c for c in mains + sidecars if c["name"] == "pitd"]
    if len(pitd) != 1:
        return ["no pitd container (main, or init container with restartPolicy: Always)"]
    pitd = pitd[0]
    as_sidecar = pitd in sidecars

    for probe, answer in (("startupProbe", "startup"), ("readinessProbe", "ready"), ("livenessProbe", "live")):
        command = pitd.get(probe, {}).get("exec", {}).get("command", [])
        if command[:3] != ["pitctl", "probe", answer]:
            errors.append(f"pitd's {probe} is not `pitctl probe {answer}`: {command}")

    volume = next(v for v in pod["volumes"] if v["name"] == "spec")
    spec = tomllib.loads(configmaps[volume["configMap"]["name"]]["pitd.toml"])
    daemon = spec.get("daemon", {})
    delay = seconds(daemon.get("shutdown_delay"))
    timeout = seconds(daemon.get("shutdown_timeout"), 30.0)
    pools = spec.get("pools", {})

    for name, pool in pools.items():
        for key, default in (("drain_timeout", 30.0), ("request_timeout", 60.0)):
            value = seconds(pool.get(key), default)
            if value > timeout and pool.get("protocol", "pit") == "pit":
                errors.append(f"pool {name}: {key} {value:g}s > shutdown_timeout {timeout:g}s")
        if "hard_rss" not in pool:
            errors.append(f"pool {name}: no hard_rss, so no memory limit can be computed")

    needed = delay + timeout + REAP_GRACE_S
    if as_sidecar:
        # The application is stopped first; pitd gets SIGTERM only once it has exited.
        for app in mains:
            pre_stop = app.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
            env = {e["name"]: e.get("value") for e in app.get("env", [])}
            needed += pre_stop + float(env.get("APP_CALL_TIMEOUT", 0))
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if grace <= needed:
        errors.append(f"terminationGracePeriodSeconds {grace} <= {needed:g} s of shutdown")

    hard = sum(pool.get("size", 1) * size(pool.get("hard_rss", 0)) for pool in pools.values())
    resources = pitd.get("resources", {})
    limit = quantity(resources.get("limits", {}).get("memory", 0))
    request = quantity(resources.get("requests", {}).get("memory", 0))
    if limit < hard:
        errors.append(f"pitd's memory limit {limit >> 20} MiB < sum of size x hard_rss {hard >> 20} MiB")
    if request != limit:
        errors.append(f"pitd's memory request {request >> 20} MiB != its limit {limit >> 20} MiB")

    if errors:
        return errors
    role = "native sidecar" if as_sidecar else "main container"
    print(
        f"  {deployment['metadata']['name']}: pitd as {role}; grace {grace} s > {needed:g} s; "
        f"memory limit {limit >> 20} MiB >= size x hard_rss {hard >> 20} MiB"
    )
    return errors


def main(paths):
    failed = False
    for path in paths:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
        deployments = [d for d in docs if d["kind"] == "Deployment"]
        if not deployments:
            print(f"{path}: no Deployment", file=sys.stderr)
            failed = True
        for deployment in deployments:
            for error in check(deployment, configmaps):
                print(f"{path}: {deployment['metadata']['name']}: {error}", file=sys.stderr)
                failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
