"""Build the artifacts that run outside Airflow from include/, in the layout of the artifacts bucket.

| object | from | used by |
|---|---|---|
| `jobs/<name>.py` | include/jobs/ | EMR Serverless entryPoint / Glue ScriptLocation |
| `lib/churn.zip` | include/churn/ | `--py-files` / `--extra-py-files` |
| `sagemaker/sourcedir.tar.gz` | include/sagemaker/ | training (`sagemaker_submit_directory`) and inference (`SAGEMAKER_SUBMIT_DIRECTORY`) |

The MWAA deploy step uploads the built folder to ``s3://<artifacts bucket>/``; the local target
builds it into its lake before each local job (only when include/ changed), so both targets run
exactly the same files.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
import zipfile
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


def build(include: Path, out: Path) -> str:
    """Write the artifacts of ``include`` into ``out``; returns the source fingerprint."""
    include, out = Path(include), Path(out)
    staging = out.with_name(f".{out.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "jobs").mkdir(parents=True)
    for job in sorted((include / "jobs").glob("*.py")):
        shutil.copy2(job, staging / "jobs" / job.name)
    (staging / "lib").mkdir()
    with zipfile.ZipFile(staging / SPARK_LIB, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted((include / "churn").rglob("*.py")):
            if "__pycache__" not in path.parts:
                archive.write(path, path.relative_to(include).as_posix())
    (staging / "sagemaker").mkdir()
    (staging / SAGEMAKER_SOURCEDIR).write_bytes(_deterministic_tar(include / "sagemaker"))
    stamp = fingerprint(include)
    (staging / STAMP).write_text(stamp)
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(out)
    return stamp


def ensure_built(include: Path, out: Path) -> str:
    """Build only when include/ changed since the last build into ``out``."""
    current = fingerprint(include)
    stamp = Path(out) / STAMP
    if stamp.exists() and stamp.read_text() == current:
        return current
    return build(include, out)
