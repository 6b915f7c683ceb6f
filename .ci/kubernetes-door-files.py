"""Throwaway files for checking a variant's HTTP door offline (deploy/kubernetes/README.md):
in a pod, the door's certificate, key and tokens file are Secrets mounted read-only; here
they are generated into a temporary directory, and a spec's `[http]` file keys are pointed
at them. Nothing generated here is ever kept: the directory is the caller's temporary one.

Usage: python3 .ci/kubernetes-door-files.py DIR SPEC...
  prints, one line per SPEC, the path to check: SPEC itself when its `[http]` names no
  file, else a copy in DIR with those files replaced by ones generated into DIR (once).

The certificate is made as the README tells a user to make one with openssl: a private CA,
and a server certificate it signs for the Service's names (and, here, 127.0.0.1 and
localhost, where the check calls the door). The tokens file holds one principal, `check`,
whose token is in DIR/token.
"""

import hashlib
import re
import secrets
import subprocess
import sys
from pathlib import Path

# The Service's names in the README's example (namespace `default`), plus where the check
# runs the door.
NAMES = [
    "DNS:pit-door",
    "DNS:pit-door.default.svc",
    "DNS:pit-door.default.svc.cluster.local",
    "DNS:localhost",
    "IP:127.0.0.1",
]
FILE_KEYS = ("tls_cert", "tls_key", "tokens", "client_ca")


def openssl(*args, cwd):
    try:
        subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise SystemExit("openssl is needed to make a throwaway certificate for the HTTP door's check") from None
    except subprocess.CalledProcessError as e:
        raise SystemExit(f"openssl {' '.join(args)} failed: {e.stderr.strip()}") from None


def generate(directory):
    """The CA, the door's certificate and key, a token and its tokens file, in `directory`.
    Returns the paths by role: ca, tls_cert, tls_key, tokens, token."""
    d = Path(directory)
    files = {
        "ca": d / "ca.crt",
        "tls_cert": d / "tls.crt",
        "tls_key": d / "tls.key",
        "tokens": d / "tokens.toml",
        "token": d / "token",
    }
    if all(p.exists() for p in files.values()):
        return files
    d.mkdir(parents=True, exist_ok=True)
    p256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    # The README's three commands, valid for two days.
    subject = "/CN=pit-door CA (validation only)"
    openssl("req", "-x509", *p256, "-days", "2", "-subj", subject, "-keyout", "ca.key", "-out", "ca.crt", cwd=d)
    openssl("req", *p256, "-subj", "/CN=pit-door", "-keyout", "tls.key", "-out", "tls.csr", cwd=d)
    (d / "tls.ext").write_text(f"subjectAltName = {', '.join(NAMES)}\nextendedKeyUsage = serverAuth\n")
    signed = ["-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", "-extfile", "tls.ext"]
    openssl("x509", "-req", "-in", "tls.csr", *signed, "-out", "tls.crt", cwd=d)
    token = secrets.token_urlsafe(32)
    files["token"].write_text(token)
    files["tokens"].write_text(
        "[principals.check]\n"
        f'token_sha256 = "{hashlib.sha256(token.encode()).hexdigest()}"\n'
        'pools = ["*"]\n'
        "max_in_flight = 4\n"
    )
    return files


def http_file_keys(text):
    """The lines of `text` that set a file key of its `[http]` table: (line number, key)."""
    table = None
    for number, line in enumerate(text.splitlines()):
        header = re.match(r"\s*\[([^\[\]]+)\]\s*(#.*)?$", line)
        if header:
            table = header.group(1).strip()
        key = re.match(rf"\s*({'|'.join(FILE_KEYS)})\s*=", line)
        if table == "http" and key:
            yield number, key.group(1)


def with_files(text, files):
    """The spec `text` with each file key of its `[http]` table naming the generated file of
    that role (client_ca: the CA). Nothing else changes."""
    role = {"tls_cert": "tls_cert", "tls_key": "tls_key", "tokens": "tokens", "client_ca": "ca"}
    lines = text.splitlines(keepends=True)
    for number, key in http_file_keys(text):
        lines[number] = f'{key} = "{files[role[key]]}"\n'
    return "".join(lines)


def main(directory, specs):
    for spec in specs:
        text = Path(spec).read_text()
        if not any(http_file_keys(text)):
            print(spec)
            continue
        copy = Path(directory) / f"{Path(spec).parent.name}-pitd.toml"
        copy.write_text(with_files(text, generate(directory)))
        print(copy)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
