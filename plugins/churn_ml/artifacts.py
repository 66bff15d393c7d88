"""Build the artifacts that run outside Airflow from include/, in the layout of the artifacts bucket.

| object | from | used by |
|---|---|---|
| `jobs/<name>.py` | include/jobs/ | EMR Serverless entryPoint / Glue ScriptLocation |
| `lib/churn.zip` | include/churn/ | `--py-files` / `--extra-py-files` |
| `sagemaker/sourcedir.tar.gz` | include/sagemaker/ | training (`sagemaker_submit_directory`) and inference (`SAGEMAKER_SUBMIT_DIRECTORY`) |

The MWAA deploy step uploads the built folder to ``s3://<artifacts bucket>/``; the local target
builds it into its lake before each local job (only when include/ changed), so both targets run
exactly the same files.

Publishing: several processes build and read the same folder at once (Airflow tasks under the
LocalExecutor, parallel tuning trials, Spark and SageMaker-shaped subprocesses reading it). So:

- builds are serialised by an OS file lock (``flock``) on ``.<name>.lock`` beside the folder,
  held around the "is it current? else build" check, so two tasks never build at the same time
  and the second one finds the first one's build current;
- a build never writes into the published folder: it writes a new version folder under
  ``.<name>.builds/`` and then points ``<name>`` (a relative symlink) at it with one
  ``rename(2)``, which is atomic. A reader opening ``<name>/lib/churn.zip`` gets the old or the
  new file, never a missing or half-written one. The previous version is kept until the next
  build, so a reader that resolved the old link a moment ago can still finish; older versions
  are removed under the lock.

Why a symlink and not "rename the old folder aside, rename the new one in": between those two
renames the folder does not exist, and a Spark or training process starting in that moment fails
with "no such file". The window is short but real whenever include/ changes while jobs run, and
the swap through a symlink costs nothing more. A folder left by the earlier layout (a real
directory at ``<name>``) is moved aside once, with that short window, the first time it is
rebuilt.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import shutil
import tarfile
import tempfile
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

SPARK_LIB = "lib/churn.zip"
SAGEMAKER_SOURCEDIR = "sagemaker/sourcedir.tar.gz"
STAMP = ".build-fingerprint"


def _is_source(path: Path) -> bool:
    """Python files, and requirements.txt (the SageMaker container pip-installs it from the bundle)."""
    return (
        (path.suffix == ".py" or path.name == "requirements.txt")
        and "__pycache__" not in path.parts and not path.name.startswith(".")
    )


def _sources(include: Path) -> list[Path]:
    return sorted(p for p in include.rglob("*") if p.is_file() and _is_source(p))


def fingerprint(include: Path) -> str:
    digest = hashlib.sha256()
    for path in _sources(include):
        digest.update(path.relative_to(include).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _deterministic_tar(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or not _is_source(path):
                continue
            info = tar.gettarinfo(path, arcname=path.relative_to(folder).as_posix())
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            with path.open("rb") as handle:
                tar.addfile(info, handle)
    return buffer.getvalue()


def _lock_file(out: Path) -> Path:
    return out.with_name(f".{out.name}.lock")


def _builds_dir(out: Path) -> Path:
    return out.with_name(f".{out.name}.builds")


@contextlib.contextmanager
def build_lock(out: Path) -> Iterator[None]:
    """Hold the exclusive build lock of ``out`` (``flock`` on ``.<name>.lock`` beside it).

    Each call opens its own descriptor, and flock locks belong to the open file description, so
    this serialises threads of one process as well as separate processes. Not reentrant: do not
    call it again while holding it. The lock file is never deleted (deleting it would let two
    holders lock two different files).
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with _lock_file(out).open("a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _write(include: Path, folder: Path, stamp: str) -> None:
    """Write the artifacts of ``include`` into the empty ``folder``, the fingerprint last."""
    (folder / "jobs").mkdir(parents=True)
    for job in sorted((include / "jobs").glob("*.py")):
        shutil.copy2(job, folder / "jobs" / job.name)
    (folder / "lib").mkdir()
    with zipfile.ZipFile(folder / SPARK_LIB, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted((include / "churn").rglob("*.py")):
            if "__pycache__" not in path.parts:
                archive.write(path, path.relative_to(include).as_posix())
    (folder / "sagemaker").mkdir()
    (folder / SAGEMAKER_SOURCEDIR).write_bytes(_deterministic_tar(include / "sagemaker"))
    (folder / STAMP).write_text(stamp)


def _swap_in(version: Path, out: Path) -> str | None:
    """Point ``out`` at ``version`` atomically (a new relative symlink renamed over the old one).

    Returns the name of the version folder it replaced, if any, for the caller to keep one build.
    """
    previous = None
    link = out.with_name(f".{out.name}.link-{uuid.uuid4().hex}")
    os.symlink(os.path.relpath(version, out.parent), link)
    try:
        if out.is_symlink():
            previous = Path(os.readlink(out)).name
        elif out.is_dir():
            # A real folder from before the symlink layout: rename(2) cannot put a link over a
            # directory, so it goes aside first (the one non-atomic step, once per lake).
            previous = f"legacy-{uuid.uuid4().hex}"
            out.rename(_builds_dir(out) / previous)
        os.replace(link, out)
    except BaseException:
        link.unlink(missing_ok=True)
        raise
    return previous


def _prune(builds: Path, keep: set[str]) -> None:
    """Remove versions other than ``keep`` (and leftovers of interrupted builds). Under the lock."""
    for entry in builds.iterdir():
        if entry.name not in keep:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def _build_locked(include: Path, out: Path) -> str:
    builds = _builds_dir(out)
    builds.mkdir(parents=True, exist_ok=True)
    # Fingerprint first: if include/ changes during the build, the stamp is older than the files
    # and the next ensure_built rebuilds (the other order could hide a change forever).
    stamp = fingerprint(include)
    version = Path(tempfile.mkdtemp(prefix=f"{stamp}-", dir=builds))
    try:
        version.chmod(0o755)  # mkdtemp makes it private; the published folder is an ordinary one
        _write(include, version, stamp)
        previous = _swap_in(version, out)
    except BaseException:
        shutil.rmtree(version, ignore_errors=True)
        raise
    _prune(builds, {version.name, *filter(None, [previous])})
    return stamp


def build(include: Path, out: Path) -> str:
    """Write the artifacts of ``include`` to ``out`` (replacing what it held); returns the fingerprint.

    ``out`` becomes a symlink to a version folder beside it, swapped in atomically under the build
    lock (see the module docstring), so readers in other processes never see it missing or partial.
    """
    include, out = Path(include), Path(out)
    with build_lock(out):
        return _build_locked(include, out)


def ensure_built(include: Path, out: Path) -> str:
    """Build only when include/ changed since the last build into ``out``.

    The check and the build happen under the build lock: of several processes calling this at once
    one builds, the others wait and then find the build current.
    """
    include, out = Path(include), Path(out)
    current = fingerprint(include)
    if _stamp(out) == current:  # the usual case, without waiting for the lock
        return current
    with build_lock(out):
        if _stamp(out) == current:  # another process built it while this one waited
            return current
        return _build_locked(include, out)


def _stamp(out: Path) -> str | None:
    try:
        return (out / STAMP).read_text()
    except FileNotFoundError:
        return None
