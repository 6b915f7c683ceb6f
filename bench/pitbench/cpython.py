"""CPython 3.13 built from source into ``target/``, twice from the same tree: the
free-threaded build (``--disable-gil``, ``target/python-ft/bin/python3.13t``) and the
default build with the GIL (``target/python-gil/bin/python3.13``), for the free-threading
benchmark and for running the integration tests' workers on a free-threaded interpreter.

The source is Debian's source package ``python3.13`` (trixie's): this machine's own Debian
mirror, from its apt sources, with a ``deb-src`` line of our own in a private apt state
under ``target/python-src/apt`` (the machine's apt configuration and lists are left as they
are). ``apt-get source --download-only`` fetches it, checked against the archive's signed
index, and the upstream tarball it carries (``python3.13_<version>.orig.tar.xz``, CPython as
released) is unpacked without Debian's patches, which adapt the install layout to Debian's
packaging. Without apt, or without a ``deb-src`` for python3.13 there, the same version's
tarball is fetched from python.org, when the network allows; when neither can be had,
:class:`Unavailable` says why.

Each build is ``configure --prefix=target/python-<name> --without-ensurepip [--disable-gil]``
in its own directory outside the source tree, ``make -j<cores>`` and ``make install``: no
tests, no PGO or LTO (about 3 to 12 minutes each on 2 cores). A marker file in the prefix,
written last, makes a build reused: ``ensure()`` builds only what is missing. Nothing is
installed into the interpreters (no pip): pit needs no package, and its workers find it
on ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .paths import REPO

#: Where the source, the build directories and the installed interpreters go.
TARGET = REPO / "target"
SOURCE_DIR = TARGET / "python-src"
BUILD_DIR = TARGET / "python-build"
#: The Debian source package, and the Debian release whose version of it is built.
PACKAGE = "python3.13"
SUITE = "trixie"
#: The version fetched from python.org when Debian's source package cannot be had.
FALLBACK_VERSION = "3.13.5"
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
MARKER = ".pit-build.json"
#: A module that a free-threaded build loads only with the GIL back on, and the test
#: extension of CPython's that holds it (``make`` builds it, ``make install`` installs it in
#: ``lib-dynload``): ``_testsinglephase``'s own module declares it runs without the GIL, the
#: single-phase-init module ``_testsinglephase_check_cache_first`` in the same file does not,
#: so loading it under that name turns the GIL back on with a RuntimeWarning naming it.
GIL_MODULE = "_testsinglephase_check_cache_first"
GIL_MODULE_FILE = "_testsinglephase"


class Unavailable(Exception):
    """The interpreter cannot be built here; the message says why."""


@dataclass(frozen=True)
class Build:
    """One build of the source: its name, its configure options and its interpreter."""

    name: str
    configure: tuple[str, ...]
    executable: str

    @property
    def prefix(self) -> Path:
        return TARGET / f"python-{self.name}"

    @property
    def python(self) -> Path:
        return self.prefix / "bin" / self.executable

    @property
    def marker(self) -> Path:
        return self.prefix / MARKER


FREE_THREADED = Build("ft", ("--disable-gil",), "python3.13t")
WITH_GIL = Build("gil", (), "python3.13")
BUILDS = {b.name: b for b in (FREE_THREADED, WITH_GIL)}


def progress(message: str) -> None:
    print(f"[pythons] {message}", file=sys.stderr, flush=True)


def built(build: Build) -> Path | None:
    """The build's interpreter when it has been built with its current options, else None."""
    try:
        marker = json.loads(build.marker.read_text())
    except (OSError, ValueError):
        return None
    if marker.get("configure") != list(build.configure) or not os.access(build.python, os.X_OK):
        return None
    return build.python


def built_version(build: Build) -> str | None:
    """The CPython version of a finished build, from its marker."""
    try:
        version = json.loads(build.marker.read_text()).get("version")
    except (OSError, ValueError):
        return None
    return str(version) if version else None


def ensure(build: Build, jobs: int | None = None) -> Path:
    """The build's interpreter, built first when it is not there yet."""
    python = built(build)
    if python is not None:
        return python
    source, origin = fetch_source()
    version = source.name.removeprefix("Python-")
    jobs = jobs or max(1, len(os.sched_getaffinity(0)))
    workdir = BUILD_DIR / build.name
    log = BUILD_DIR / f"{build.name}.log"
    shutil.rmtree(workdir, ignore_errors=True)
    shutil.rmtree(build.prefix, ignore_errors=True)  # a half-done install of an earlier try
    workdir.mkdir(parents=True)
    configure = [
        str(source / "configure"),
        f"--prefix={build.prefix}",
        "--without-ensurepip",
        *build.configure,
    ]
    started = time.monotonic()
    progress(f"building CPython {version} ({build.name}: {' '.join(build.configure) or 'default'}) ...")
    progress(f"  log: {log}")
    with open(log, "wb") as out:
        for step in (configure, ["make", f"-j{jobs}"], ["make", "install"]):
            out.write(f"\n$ {' '.join(step)}\n".encode())
            out.flush()
            done = subprocess.run(step, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, check=False)
            if done.returncode != 0:
                tail = log.read_text(errors="replace").strip().splitlines()[-15:]
                raise Unavailable(
                    f"`{' '.join(step[:2])}` failed for the {build.name} build "
                    f"(exit {done.returncode}); the end of {log}:\n" + "\n".join(tail)
                )
    if not os.access(build.python, os.X_OK):
        raise Unavailable(f"the {build.name} build installed no {build.python}")
    seconds = time.monotonic() - started
    build.marker.write_text(
        json.dumps(
            {
                "version": version,
                "source": origin,
                "configure": list(build.configure),
                "build_seconds": round(seconds),
            },
            indent=1,
        )
        + "\n"
    )
    shutil.rmtree(workdir, ignore_errors=True)
    progress(f"built {build.python} in {seconds / 60:.1f} min")
    return build.python


# --- the source ---------------------------------------------------------------------------


def fetch_source() -> tuple[Path, str]:
    """The unpacked CPython source tree (fetched once) and where it came from."""
    done = SOURCE_DIR / "source.json"
    try:
        known = json.loads(done.read_text())
        tree = SOURCE_DIR / known["tree"]
        if (tree / "configure").exists():
            return tree, str(known["origin"])
    except (OSError, ValueError, KeyError):
        pass
    SOURCE_DIR.mkdir(parents=True, exist_ok=True)
    try:
        tarball, origin = debian_source()
    except Unavailable as debian:
        progress(f"Debian's source package: {debian}; trying python.org")
        try:
            tarball, origin = python_org_source()
        except Unavailable as upstream:
            raise Unavailable(
                f"no CPython source: Debian's source package {PACKAGE}: {debian}; python.org: {upstream}"
            ) from None
    tree = unpack(tarball)
    done.write_text(json.dumps({"tree": tree.name, "origin": origin}) + "\n")
    return tree, origin


def debian_mirror() -> tuple[str, str]:
    """The URI of the Debian archive in this machine's apt sources, and its keyring."""
    release = Path("/etc/os-release")
    codename = ""
    if release.exists():
        found = re.search(r"^VERSION_CODENAME=\"?([a-z]+)", release.read_text(), re.M)
        codename = found.group(1) if found else ""
    lists = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in lists:
        try:
            text = path.read_text()
        except OSError:
            continue
        if path.suffix == ".sources":  # deb822 paragraphs
            for paragraph in re.split(r"\n\s*\n", text):
                fields = {
                    m.group(1).lower(): m.group(2).strip()
                    for m in re.finditer(r"^([A-Za-z-]+):\s*(.*)$", paragraph, re.M)
                }
                suites = fields.get("suites", "").split()
                if "deb" in fields.get("types", "").split() and codename in suites:
                    for uri in fields.get("uris", "").split():
                        return uri, fields.get("signed-by", DEBIAN_KEYRING)
        elif path.name == "sources.list" or path.suffix == ".list":
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] == "deb" and words[2] == codename:
                    signed = re.search(r"signed-by=(\S+?)[\s\]]", line)
                    return words[1], signed.group(1) if signed else DEBIAN_KEYRING
    raise Unavailable(f"no Debian archive for {codename or 'this release'} in this machine's apt sources")


def debian_source() -> tuple[Path, str]:
    """Debian's source package, fetched with apt-get into ``SOURCE_DIR``: its upstream
    tarball and a description of it."""
    if shutil.which("apt-get") is None:
        raise Unavailable("no apt-get on this machine")
    uri, keyring = debian_mirror()
    apt = SOURCE_DIR / "apt"
    for d in (apt / "lists" / "partial", apt / "cache" / "archives" / "partial", apt / "parts"):
        d.mkdir(parents=True, exist_ok=True)
    signed = f" [signed-by={keyring}]" if Path(keyring).exists() else ""
    (apt / "sources.list").write_text(f"deb-src{signed} {uri} {SUITE} main\n")
    options = [
        "-o",
        f"Dir::Etc::SourceList={apt / 'sources.list'}",
        "-o",
        f"Dir::Etc::SourceParts={apt / 'parts'}",
        "-o",
        f"Dir::State::Lists={apt / 'lists'}",
        "-o",
        f"Dir::Cache={apt / 'cache'}",
    ]
    if os.geteuid() == 0:
        options += ["-o", "APT::Sandbox::User=root"]  # it writes into target/, not apt's own dirs

    def apt_get(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["apt-get", "-q", *options, *args],
            cwd=SOURCE_DIR,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    progress(f"fetching Debian's source package {PACKAGE} ({SUITE}) with apt-get ...")
    update = apt_get("update")
    if update.returncode != 0 or "Err:" in update.stdout:
        raise Unavailable(f"apt-get update of deb-src {uri} {SUITE} failed: {last_lines(update)}")
    got = apt_get("source", "--download-only", PACKAGE)
    if got.returncode != 0:
        raise Unavailable(f"apt-get source {PACKAGE} failed: {last_lines(got)}")
    origs = sorted(SOURCE_DIR.glob(f"{PACKAGE}_*.orig.tar.*"))
    origs = [p for p in origs if not p.name.endswith(".asc")]
    if not origs:
        raise Unavailable(f"apt-get source {PACKAGE} gave no upstream tarball")
    dsc = sorted(SOURCE_DIR.glob(f"{PACKAGE}_*.dsc"))
    name = dsc[-1].name.removesuffix(".dsc") if dsc else origs[-1].name
    return origs[-1], f"Debian source package {name} ({SUITE}), upstream tarball without Debian's patches"


def python_org_source() -> tuple[Path, str]:
    """The upstream tarball of ``FALLBACK_VERSION`` from python.org."""
    name = f"Python-{FALLBACK_VERSION}.tar.xz"
    url = f"https://www.python.org/ftp/python/{FALLBACK_VERSION}/{name}"
    dest = SOURCE_DIR / name
    try:
        with urllib.request.urlopen(url, timeout=30) as r, open(dest, "wb") as out:
            shutil.copyfileobj(r, out)
    except OSError as e:
        dest.unlink(missing_ok=True)
        raise Unavailable(f"{url}: {e}") from None
    return dest, f"python.org {name}"


def unpack(tarball: Path) -> Path:
    """Unpacks a CPython source tarball into ``SOURCE_DIR``; its top directory."""
    progress(f"unpacking {tarball.name} ...")
    with tarfile.open(tarball) as tar:
        tops = {m.name.split("/", 1)[0] for m in tar.getmembers()}
        if len(tops) != 1:
            raise Unavailable(f"{tarball.name} is not one source tree ({len(tops)} top-level entries)")
        tree = SOURCE_DIR / tops.pop()
        shutil.rmtree(tree, ignore_errors=True)
        if hasattr(tarfile, "data_filter"):
            tar.extractall(SOURCE_DIR, filter="data")
        else:  # Python before 3.12 without the backport: a release tarball of CPython itself
            tar.extractall(SOURCE_DIR)
    if not (tree / "configure").exists():
        raise Unavailable(f"{tarball.name} has no configure script")
    return tree


def last_lines(done: subprocess.CompletedProcess[str], n: int = 3) -> str:
    lines = [line for line in (done.stderr + done.stdout).strip().splitlines() if line.strip()]
    return " / ".join(lines[-n:]) or f"exit status {done.returncode}"
