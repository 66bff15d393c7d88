"""The artifacts build under concurrency: Airflow tasks are separate processes, and several can
publish include/ into the same folder while jobs in other processes read it."""

from __future__ import annotations

import multiprocessing
import os
import tarfile
import time
import traceback
import zipfile
from pathlib import Path

import pytest

from churn_ml import artifacts

PROCESSES = 4


def _include(root: Path, variant: str) -> Path:
    """A small include/ tree; ``variant`` changes its fingerprint."""
    for rel, text in {
        "jobs/job_a.py": f"print('job a {variant}')\n",
        "jobs/job_b.py": "print('job b')\n",
        "churn/__init__.py": "",
        "churn/rules.py": f"VARIANT = {variant!r}\n" + "# padding\n" * 2000,
        "sagemaker/train.py": f"VARIANT = {variant!r}\n",
        "sagemaker/requirements.txt": "xgboost\n",
    }.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _check_complete(out: Path, stamps: set[str]) -> None:
    """What a job in another process relies on: every object there, whole and readable."""
    assert sorted(p.name for p in (out / "jobs").iterdir()) == ["job_a.py", "job_b.py"]
    with zipfile.ZipFile(out / artifacts.SPARK_LIB) as archive:
        assert archive.testzip() is None
        assert sorted(archive.namelist()) == ["churn/__init__.py", "churn/rules.py"]
    with tarfile.open(out / artifacts.SAGEMAKER_SOURCEDIR) as tar:
        assert sorted(tar.getnames()) == ["requirements.txt", "train.py"]
        tar.extractfile("train.py").read()
    assert (out / artifacts.STAMP).read_text() in stamps


def _wait_for(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


def _builder(includes: list[str], out: str, start: float, rounds: int) -> list[str]:
    """``ensure_built`` ``rounds`` times, cycling through ``includes`` (each change forces a rebuild)."""
    _wait_for(start)
    errors = []
    for i in range(rounds):
        try:
            artifacts.ensure_built(Path(includes[i % len(includes)]), Path(out))
        except Exception:
            errors.append(traceback.format_exc())
    return errors


def _reader(out: str, stamps: list[str], start: float, stop, ready) -> tuple[int, list[str]]:
    """Keep checking the published folder until told to stop; returns (checks made, errors)."""
    _wait_for(start)
    checks, errors = 0, []
    while not stop.is_set():
        if not ready.is_set():
            if Path(out, artifacts.STAMP).exists():
                ready.set()  # from the first complete build on, the folder must never be missing
            continue
        try:
            _check_complete(Path(out), set(stamps))
        except Exception:
            errors.append(traceback.format_exc())
        checks += 1
    return checks, errors


def _publisher(start: float) -> tuple[str, list[str]]:
    from local_aws.common import publish_artifacts

    _wait_for(start)
    try:
        return str(publish_artifacts()), []
    except Exception:
        return "", [traceback.format_exc()]


@pytest.fixture
def spawn():
    return multiprocessing.get_context("spawn")


def test_parallel_publishers_build_once_and_completely(tmp_path, lake_root, monkeypatch, spawn):
    include = _include(tmp_path / "include", "a")
    monkeypatch.setenv("CHURN_INCLUDE_DIR", str(include))
    start = time.time() + 3  # all processes up and importing done, then the same moment
    with spawn.Pool(PROCESSES) as pool:
        results = pool.map(_publisher, [start] * PROCESSES)
    errors = [e for _, found in results for e in found]
    assert not errors, "\n".join(errors)
    out = Path(results[0][0])
    assert {r[0] for r in results} == {str(out)}
    _check_complete(out, {artifacts.fingerprint(include)})
    # One build: its version folder is the only one (a second build would keep the first beside it).
    assert len(list(out.with_name(f".{out.name}.builds").iterdir())) == 1


def test_concurrent_rebuilds_never_leave_the_folder_missing_or_half_built(tmp_path, spawn):
    includes = [str(_include(tmp_path / f"include-{v}", v)) for v in ("a", "b", "c")]
    stamps = [artifacts.fingerprint(Path(i)) for i in includes]
    out = tmp_path / "lake" / "churn-artifacts"
    start = time.time() + 3
    with spawn.Manager() as manager:
        stop, ready = manager.Event(), manager.Event()
        with spawn.Pool(PROCESSES + 1) as pool:
            reader = pool.apply_async(_reader, (str(out), stamps, start, stop, ready))
            builders = [
                pool.apply_async(_builder, (includes[k:] + includes[:k], str(out), start, 12)) for k in range(PROCESSES)
            ]
            build_errors = [e for b in builders for e in b.get(timeout=300)]
            stop.set()
            checks, read_errors = reader.get(timeout=60)
    assert not build_errors, "\n".join(build_errors)
    assert not read_errors, f"{len(read_errors)} of {checks} checks failed; first:\n{read_errors[0]}"
    assert checks > 0
    _check_complete(out, set(stamps))
    versions = list(out.with_name(f".{out.name}.builds").iterdir())
    assert 1 <= len(versions) <= 2, versions  # the current build and the one before it
    assert not [p for p in out.parent.iterdir() if ".link-" in p.name or ".staging" in p.name]


def test_a_folder_of_the_earlier_layout_is_replaced(tmp_path):
    """A lake built before the symlink layout has a real folder there; a rebuild takes its place."""
    out = tmp_path / "churn-artifacts"
    (out / "jobs").mkdir(parents=True)
    (out / artifacts.STAMP).write_text("old")
    include = _include(tmp_path / "include", "a")
    stamp = artifacts.ensure_built(include, out)
    assert out.is_symlink()
    _check_complete(out, {stamp})
    assert artifacts.ensure_built(include, out) == stamp
    assert os.readlink(out).startswith(f".{out.name}.builds/")
