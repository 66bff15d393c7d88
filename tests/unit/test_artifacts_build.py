"""Code versions of include/ (churn_ml.artifacts): immutable, content-addressed, built safely while
other processes deploy and read the same bucket folder; the local deploy (local_aws.code_deploy) is
what the tasks read, through the control plane's S3."""

from __future__ import annotations

import hashlib
import json
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


def _check_complete(folder: Path) -> None:
    """What a job in another process relies on: every object of the version there, whole and readable."""
    assert sorted(p.name for p in (folder / "jobs").iterdir()) == ["job_a.py", "job_b.py"]
    with zipfile.ZipFile(folder / artifacts.SPARK_LIB) as archive:
        assert archive.testzip() is None
        assert sorted(archive.namelist()) == ["churn/__init__.py", "churn/rules.py"]
    with tarfile.open(folder / artifacts.SAGEMAKER_SOURCEDIR) as tar:
        assert sorted(tar.getnames()) == ["requirements.txt", "train.py"]
        tar.extractfile("train.py").read()


def _digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _wait_for(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


def _builder(includes: list[str], root: str, start: float, rounds: int) -> list[str]:
    """``publish_local`` ``rounds`` times, cycling through ``includes`` (each change is another version)."""
    _wait_for(start)
    errors = []
    for i in range(rounds):
        try:
            artifacts.publish_local(Path(includes[i % len(includes)]), Path(root), written_by="test")
        except Exception:
            errors.append(traceback.format_exc())
    return errors


def _reader(root: str, start: float, stop, ready) -> tuple[int, list[str]]:
    """Keep reading the version CURRENT.json names until told to stop; returns (checks made, errors)."""
    _wait_for(start)
    checks, errors = 0, []
    pointer = Path(root, artifacts.POINTER_KEY)
    while not stop.is_set():
        if not ready.is_set():
            if pointer.exists():
                ready.set()  # from the first publish on, the pointer and its version must always be readable
            continue
        try:
            _check_complete(artifacts.version_dir(Path(root), json.loads(pointer.read_text())["version"]))
        except Exception:
            errors.append(traceback.format_exc())
        checks += 1
    return checks, errors


def _publisher(start: float) -> tuple[str, list[str]]:
    from local_aws import code_deploy

    _wait_for(start)
    try:
        return str(artifacts.version_dir(code_deploy.bucket_folder(), code_deploy.deploy())), []
    except Exception:
        return "", [traceback.format_exc()]


@pytest.fixture
def spawn():
    return multiprocessing.get_context("spawn")


def test_a_changed_include_adds_a_version_and_leaves_the_old_one_byte_identical(tmp_path):
    root = tmp_path / "lake" / "churn-artifacts"
    old = artifacts.publish_local(_include(tmp_path / "include", "a"), root, written_by="test")
    old_folder = artifacts.version_dir(root, old)
    before = _digests(old_folder)
    mtimes = {p: p.stat().st_mtime_ns for p in old_folder.rglob("*")}
    # Building the same version again writes nothing.
    assert artifacts.build(tmp_path / "include", root) == old
    assert {p: p.stat().st_mtime_ns for p in old_folder.rglob("*")} == mtimes
    new = artifacts.publish_local(_include(tmp_path / "include", "b"), root, written_by="test")
    assert new != old and new == artifacts.fingerprint(tmp_path / "include")
    assert _digests(old_folder) == before, "a published version changed"
    assert sorted(p.name for p in (root / "code").iterdir()) == sorted(["CURRENT.json", old, new])
    pointer = json.loads((root / artifacts.POINTER_KEY).read_text())
    assert pointer["version"] == new and pointer["objects"] == artifacts.version_objects(artifacts.version_dir(root, new))
    assert set(pointer["objects"]) == {"jobs/job_a.py", "jobs/job_b.py", artifacts.SPARK_LIB, artifacts.SAGEMAKER_SOURCEDIR}
    # Going back to the old code points at the old version again, without rebuilding it.
    _include(tmp_path / "include", "a")
    assert artifacts.publish_local(tmp_path / "include", root, written_by="test") == old
    assert {p: p.stat().st_mtime_ns for p in old_folder.rglob("*")} == mtimes
    assert json.loads((root / artifacts.POINTER_KEY).read_text())["version"] == old


def test_code_uri_and_version_of(monkeypatch):
    monkeypatch.setenv("CHURN_ARTIFACTS_BUCKET", "bucket-x")
    uri = artifacts.code_uri("0123456789abcdef", "jobs/churn_features.py")
    assert uri == "s3://bucket-x/code/0123456789abcdef/jobs/churn_features.py"
    assert artifacts.code_uri("0123456789abcdef") == "s3://bucket-x/code/0123456789abcdef/"
    assert artifacts.version_of(uri) == "0123456789abcdef"
    assert artifacts.version_of("s3://bucket-x/jobs/churn_features.py") is None
    assert artifacts.version_of("s3://bucket-x/code/CURRENT.json") is None
    assert artifacts.glue_code_arguments("0123456789abcdef", "churn_features") == {
        "--scriptLocation": uri, "--extra-py-files": "s3://bucket-x/code/0123456789abcdef/lib/churn.zip"}
    with pytest.raises(ValueError, match="not a code version"):
        artifacts.code_uri("../../etc")


@pytest.fixture
def own_plane(lake_root, monkeypatch) -> str:
    """A control plane serving the test's lake (``lake_root``), the AWS connection pointed at it."""
    from local_aws import control_plane
    from support import free_port

    monkeypatch.setenv("CHURN_LOCAL_AWS_PORT", str(free_port()))
    monkeypatch.setenv("CHURN_LOCAL_RUNTIME_PORT", str(free_port()))
    url = control_plane.ensure_server()
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(control_plane.connection(url)))
    artifacts.clear_cache()
    try:
        yield url
    finally:
        control_plane.stop_server()
        artifacts.clear_cache()


def test_settings_code_is_the_deployed_version_read_through_the_control_planes_s3(tmp_path, lake_root, own_plane,
                                                                                 monkeypatch):
    from churn_ml.settings import SettingsError, settings
    from local_aws import code_deploy

    include = _include(tmp_path / "include", "a")
    monkeypatch.setenv("CHURN_INCLUDE_DIR", str(include))
    # Nothing builds on the way to a task: before a deploy there is no code to run, and the error says
    # which command deploys on either target.
    with pytest.raises(SettingsError, match=r"code/CURRENT.json does not exist.*python -m local_aws.code_deploy"):
        _ = settings.code
    assert not (lake_root / settings.artifacts_bucket / "code").exists()
    version = code_deploy.deploy()
    assert version == artifacts.fingerprint(include)
    assert settings.code == f"{settings.artifacts}/code/{version}"
    _check_complete(lake_root / settings.artifacts_bucket / "code" / version)
    pointer = json.loads((lake_root / settings.artifacts_bucket / artifacts.POINTER_KEY).read_text())
    assert pointer["written_by"] == f"local target: python -m local_aws.code_deploy from {include}"
    # An edit of include/ runs once it is deployed, as on AWS (infra/deploy_mwaa.py), not before.
    _include(include, "b")
    artifacts.clear_cache()
    assert artifacts.current_version() == version
    new = code_deploy.deploy()
    assert new != version and artifacts.current_version() == new  # the deploy forgets this process's pointer
    # A version whose objects are gone (on AWS: expired) fails fast, naming the object and the deploy.
    (artifacts.version_dir(lake_root / settings.artifacts_bucket, new) / artifacts.SPARK_LIB).unlink()
    artifacts.clear_cache()
    with pytest.raises(SettingsError, match=r"lib/churn.zip.*python -m local_aws.code_deploy"):
        artifacts.current_version()


def test_mark_used_refreshes_a_day_old_version_by_copies_onto_itself_through_the_control_planes_s3(
        tmp_path, lake_root, own_plane, monkeypatch):
    """The aws target's lifecycle refresh runs the same requests locally (ListObjectsV2, HeadObject,
    CopyObject onto itself with CopySourceIfMatch): objects older than a day get a new LastModified and
    the same bytes; a recent one is left alone; the same day again copies nothing."""
    from local_aws import code_deploy

    monkeypatch.setenv("CHURN_INCLUDE_DIR", str(_include(tmp_path / "include", "a")))
    version = code_deploy.deploy()
    bucket = lake_root / "churn-artifacts"
    folder = artifacts.version_dir(bucket, version)
    fresh = folder / artifacts.SPARK_LIB
    old = [p for p in folder.rglob("*") if p.is_file() and p != fresh] + [bucket / artifacts.POINTER_KEY]
    three_days_ago = time.time() - 3 * 86400
    for path in old:
        os.utime(path, (three_days_ago, three_days_ago))
    fresh_mtime, digests = fresh.stat().st_mtime_ns, _digests(folder)
    artifacts.mark_used(version)
    assert all(p.stat().st_mtime > time.time() - 3600 for p in old), "a day-old object was not refreshed"
    assert fresh.stat().st_mtime_ns == fresh_mtime, "a recent object was copied"
    assert _digests(folder) == digests
    refreshed = {p: p.stat().st_mtime_ns for p in old}
    artifacts.mark_used(version)  # the same day again: nothing to do
    assert {p: p.stat().st_mtime_ns for p in old} == refreshed


def test_the_deploy_command_deploys_include_and_refuses_what_is_not_one(tmp_path, lake_root, monkeypatch, capsys):
    from local_aws import code_deploy

    include = _include(tmp_path / "include", "a")
    assert code_deploy.main(["--include", str(include)]) == 0
    version = artifacts.fingerprint(include)
    assert f"code version {version} deployed: s3://churn-artifacts/code/{version}/" in capsys.readouterr().out
    assert json.loads((lake_root / "churn-artifacts" / artifacts.POINTER_KEY).read_text())["version"] == version
    with pytest.raises(FileNotFoundError, match="is not an include/ folder.*CHURN_INCLUDE_DIR"):
        code_deploy.deploy(tmp_path / "include" / "jobs")
    monkeypatch.setenv("ML_TARGET", "aws")
    with pytest.raises(SystemExit):
        code_deploy.main(["--include", str(include)])
    assert "on AWS, deploy with infra/deploy_mwaa.py" in capsys.readouterr().err


def test_a_lake_of_the_earlier_layout_is_moved_to_code_versions(tmp_path):
    """The earlier layout: the bucket folder a symlink to its one build, overwritten in place."""
    root = tmp_path / "lake" / "churn-artifacts"
    builds = root.with_name(f".{root.name}.builds")
    (builds / "abc-1" / "jobs").mkdir(parents=True)
    root.symlink_to(".churn-artifacts.builds/abc-1")
    version = artifacts.publish_local(_include(tmp_path / "include", "a"), root, written_by="test")
    assert root.is_dir() and not root.is_symlink() and not builds.exists()
    _check_complete(artifacts.version_dir(root, version))


def test_parallel_publishers_build_once_and_completely(tmp_path, lake_root, monkeypatch, spawn):
    include = _include(tmp_path / "include", "a")
    monkeypatch.setenv("CHURN_INCLUDE_DIR", str(include))
    start = time.time() + 3  # all processes up and importing done, then the same moment
    with spawn.Pool(PROCESSES) as pool:
        results = pool.map(_publisher, [start] * PROCESSES)
    errors = [e for _, found in results for e in found]
    assert not errors, "\n".join(errors)
    folder = Path(results[0][0])
    assert {r[0] for r in results} == {str(folder)}
    assert folder.name == artifacts.fingerprint(include)
    _check_complete(folder)
    staging = folder.parent.parent.with_name(f".{folder.parent.parent.name}.staging")
    assert not [p for p in staging.iterdir() if p.is_dir()], "a build left behind (more than one process built)"


def test_concurrent_publishes_never_show_a_missing_or_half_built_version(tmp_path, spawn):
    includes = [str(_include(tmp_path / f"include-{v}", v)) for v in ("a", "b", "c")]
    versions = {artifacts.fingerprint(Path(i)) for i in includes}
    root = tmp_path / "lake" / "churn-artifacts"
    start = time.time() + 3
    with spawn.Manager() as manager:
        stop, ready = manager.Event(), manager.Event()
        with spawn.Pool(PROCESSES + 1) as pool:
            reader = pool.apply_async(_reader, (str(root), start, stop, ready))
            builders = [
                pool.apply_async(_builder, (includes[k:] + includes[:k], str(root), start, 12)) for k in range(PROCESSES)
            ]
            build_errors = [e for b in builders for e in b.get(timeout=300)]
            stop.set()
            checks, read_errors = reader.get(timeout=60)
    assert not build_errors, "\n".join(build_errors)
    assert not read_errors, f"{len(read_errors)} of {checks} checks failed; first:\n{read_errors[0]}"
    assert checks > 0
    assert {p.name for p in (root / "code").iterdir() if p.is_dir()} == versions  # each built once, all kept
    for version in versions:
        _check_complete(artifacts.version_dir(root, version))
    staging = root.with_name(f".{root.name}.staging")
    assert not list(staging.iterdir()), "a staging folder or pointer left behind"
