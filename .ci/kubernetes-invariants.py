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
  - pitd is either a main container or a native sidecar (restartPolicy: Always), and each
    of its three probes asks pitd the probe's question: `pitctl probe startup|ready|live`
    (exec), or for readiness and liveness the door's `GET /v1/ready` and `/v1/live`
    (httpGet; startup has no HTTP form): at the port of `[http] listen`, which must be on
    every interface (the kubelet probes the pod's IP), HTTPS when the door has TLS, and
    without client_ca (the kubelet presents no client certificate);
  - when the spec has a door not on loopback: pitd declares its port, a Service of the
    render sends to it, every Service port targets a port of the pod, and its files
    (tls_cert, tls_key, tokens, client_ca) lie in read-only volume mounts, the key and the
    tokens from Secrets, the certificate and key as the `tls.crt` and `tls.key` of one
    (the keys of a kubernetes.io/tls Secret).
Prints one line per Deployment; exits 1 with the reasons when one fails.
"""

import ipaddress
import re
import sys
import tomllib
from pathlib import PurePosixPath

import yaml

REAP_GRACE_S = 2.0
UNITS = {"": 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3}
QUANTITY = {"": 1, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "k": 1000, "M": 1000**2, "G": 1000**3}
DURATION = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")
PROBES = (("startupProbe", "startup"), ("readinessProbe", "ready"), ("livenessProbe", "live"))
# The door's HTTP form of `pitctl probe ready|live` (INTERFACE section 10); startup has none.
DOOR_PATHS = {"ready": "/v1/ready", "live": "/v1/live"}


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


def listen_address(listen):
    """[http] listen ("0.0.0.0:8443", "[::]:8443") as (IP address, port)."""
    host, _, port = listen.rpartition(":")
    return ipaddress.ip_address(host.strip("[]")), int(port)


def port_number(port, containers):
    """A probe's or a Service's port, a number or the name of a port of `containers`, as a
    number; None when no container has a port of that name."""
    if isinstance(port, int):
        return port
    names = {p.get("name"): p["containerPort"] for c in containers for p in c.get("ports", [])}
    return names.get(port)


def probe_errors(pitd, probe, answer, http):
    """Why pitd's `probe` does not ask pitd for `answer`, as the kubelet runs it."""
    spec = pitd.get(probe, {})
    handlers = [h for h in HANDLERS if h in spec]
    if handlers == ["exec"]:
        command = spec["exec"].get("command", [])
        if command[:3] != ["pitctl", "probe", answer]:
            return [f"pitd's {probe} is not `pitctl probe {answer}`: {command}"]
        return []
    if handlers == ["httpGet"] and answer in DOOR_PATHS:
        return door_probe_errors(pitd, probe, DOOR_PATHS[answer], spec["httpGet"], http)
    forms = f"`pitctl probe {answer}`"
    forms += f" or an httpGet of {DOOR_PATHS[answer]}" if answer in DOOR_PATHS else " (the door has no HTTP form)"
    return [f"pitd's {probe} is not {forms}: its handlers are {handlers}"]


def door_probe_errors(pitd, probe, path, get, http):
    if http is None:
        return [f"pitd's {probe} gets {get.get('path')}, but the spec has no [http] door to answer it"]
    errors = []
    ip, port = listen_address(http["listen"])
    if get.get("path") != path:
        errors.append(f"pitd's {probe} gets {get.get('path')}, not the door's {path}")
    if "host" in get:
        errors.append(f"pitd's {probe} sets host {get['host']}: the kubelet must probe the pod's own door")
    if not ip.is_unspecified:
        errors.append(
            f"pitd's {probe} cannot reach [http] listen {http['listen']}: the kubelet probes the pod's IP, "
            f"so the door must listen on 0.0.0.0 or [::]"
        )
    probed = port_number(get.get("port"), [pitd])
    if probed != port:
        errors.append(f"pitd's {probe} port {get.get('port')!r} is {probed}, not [http] listen's {port}")
    if "client_ca" in http:
        errors.append(f"pitd's {probe} cannot pass: the door requires client certificates (client_ca), "
                      f"and the kubelet presents none")
    scheme = "HTTPS" if "tls_cert" in http else "HTTP"
    if get.get("scheme", "HTTP") != scheme:
        errors.append(f"pitd's {probe} scheme is {get.get('scheme', 'HTTP')}, the door speaks {scheme}")
    return errors


def door_errors(pod, pitd, http, services):
    """Why callers in other pods could not reach the door, or its files not be Secrets
    mounted read-only. Returns (errors, the Service ports that reach it)."""
    ip, port = listen_address(http["listen"])
    if ip.is_loopback:
        return [], []  # the pod's own containers alone call it
    errors = []
    containers = pod.get("containers", []) + pod.get("initContainers", [])
    if not any(p.get("containerPort") == port for p in pitd.get("ports", [])):
        errors.append(f"pitd declares no containerPort {port} ([http] listen {http['listen']})")
    labels = pod.get("metadata", {}).get("labels", {})
    reached = []
    for service in services:
        selector = service["spec"].get("selector", {})
        if not selector or any(labels.get(k) != v for k, v in selector.items()):
            continue
        for sp in service["spec"].get("ports", []):
            target = port_number(sp.get("targetPort", sp["port"]), containers)
            if target is None:
                errors.append(f"Service {service['metadata']['name']} port {sp['port']}: no container port "
                              f"{sp.get('targetPort')!r} in the pod")
            elif target == port:
                reached.append(f"{service['metadata']['name']}:{sp['port']}")
    if not reached:
        errors.append(f"no Service of the render sends callers to the door (port {port})")

    mounts = {m["mountPath"].rstrip("/"): m for m in pitd.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    sources = {}
    for key in ("tls_cert", "tls_key", "tokens", "client_ca"):
        if key not in http:
            continue
        path = PurePosixPath(http[key])
        mount = mounts.get(str(path.parent))
        if mount is None or "subPath" in mount:
            errors.append(f"[http] {key} {path}: no volume is mounted (whole) at {path.parent}")
            continue
        volume = volumes.get(mount["name"], {})
        if not mount.get("readOnly"):
            errors.append(f"[http] {key} {path}: volume {mount['name']} is not mounted readOnly")
        secret = volume.get("secret")
        if secret is None and key != "client_ca":  # a CA bundle is public: a ConfigMap will do
            errors.append(f"[http] {key} {path}: volume {mount['name']} is not a Secret")
        items = (secret or volume.get("configMap") or {}).get("items")
        item = path.name if items is None else next((i["key"] for i in items if i["path"] == path.name), None)
        if item is None:
            errors.append(f"[http] {key} {path}: volume {mount['name']}'s items do not project {path.name}")
        sources[key] = (mount["name"], item)
    if "tls_cert" in sources and "tls_key" in sources:
        (cert_volume, cert), (key_volume, key) = sources["tls_cert"], sources["tls_key"]
        if cert_volume != key_volume or (cert, key) != ("tls.crt", "tls.key"):
            errors.append(
                f"[http] tls_cert and tls_key are {cert_volume}/{cert} and {key_volume}/{key}, not tls.crt and "
                f"tls.key of one Secret (a kubernetes.io/tls Secret, as kubectl create secret tls and "
                f"cert-manager make)"
            )
    return errors, reached


def check(deployment, configmaps, services):
    errors = []
    pod = deployment["spec"]["template"]["spec"]
    mains = pod.get("containers", [])
    sidecars = [c for c in pod.get("initContainers", []) if c.get("restartPolicy") == "Always"]
    pitd = [c for c in mains + sidecars if c["name"] == "pitd"]
    if len(pitd) != 1:
        return ["no pitd container (main, or init container with restartPolicy: Always)"]
    pitd = pitd[0]
    as_sidecar = pitd in sidecars

    volume = next(v for v in pod["volumes"] if v["name"] == "spec")
    spec = tomllib.loads(configmaps[volume["configMap"]["name"]]["pitd.toml"])
    http = spec.get("http")

    for probe, answer in PROBES:
        errors += probe_errors(pitd, probe, answer, http)
    door = ""
    if http is not None:
        template = dict(deployment["spec"]["template"]["spec"], metadata=deployment["spec"]["template"]["metadata"])
        door_problems, reached = door_errors(template, pitd, http, services)
        errors += door_problems
        gets = [pitd[p]["httpGet"] for p, _ in PROBES if "httpGet" in pitd.get(p, {})]
        door = (
            f"; door {http['listen']} {'HTTPS' if 'tls_cert' in http else 'HTTP'} via "
            f"{', '.join(reached) or 'no Service'}, probes "
            f"{', '.join(g.get('scheme', 'HTTP') + ' ' + g['path'] for g in gets) or 'exec'}"
        )
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
        f"memory limit {limit >> 20} MiB >= size x hard_rss {hard >> 20} MiB{door}"
    )
    return errors


def main(paths):
    failed = False
    for path in paths:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
        deployments = [d for d in docs if d["kind"] == "Deployment"]
        services = [d for d in docs if d["kind"] == "Service"]
        if not deployments:
            print(f"{path}: no Deployment", file=sys.stderr)
            failed = True
        for deployment in deployments:
            for error in check(deployment, configmaps, services):
                print(f"{path}: {deployment['metadata']['name']}: {error}", file=sys.stderr)
                failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
