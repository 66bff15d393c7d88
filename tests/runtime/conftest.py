"""The AWS runtimes of infra/runtimes.toml as virtualenvs (scripts/runtime_venvs.py), for tests/runtime/.

The tests here run the repository's AWS-side scripts in subprocesses with the runtime venv's own
interpreter, never in the test process: the test process is the local stack (Python 3.12,
pandas 3, Spark 4), the venvs are what SageMaker, Glue and EMR run (docs/runtimes.md).
"""

from __future__ import annotations

import json
import sys
import tarfile
from pathlib import Path

import pytest
from runtime_support import BUILD_TIMEOUT, REPO, run, runtime_env


@pytest.fixture(scope="session")
def runtime_venvs() -> dict:
    """Every runtime venv, built or reused by scripts/runtime_venvs.py: name -> what it holds."""
    done = run([sys.executable, REPO / "scripts" / "runtime_venvs.py", "--json"], timeout=BUILD_TIMEOUT,
               env=runtime_env())
    sys.stderr.write(done.stderr)  # which venvs were built, and how long it took (shown with -s or on failure)
    return json.loads(done.stdout)


@pytest.fixture(scope="session")
def deployed(tmp_path_factory) -> Path:
    """The artifacts exactly as the deployment uploads them (jobs/, lib/churn.zip, sagemaker/sourcedir.tar.gz)."""
    from churn_ml import artifacts

    out = tmp_path_factory.mktemp("artifacts") / "artifacts"
    artifacts.build(REPO / "include", out)
    return out


@pytest.fixture(scope="session")
def sourcedir(deployed, tmp_path_factory) -> Path:
    """sagemaker/sourcedir.tar.gz unpacked, as the framework container unpacks it into /opt/ml/code."""
    code = tmp_path_factory.mktemp("opt-ml-code")
    with tarfile.open(deployed / "sagemaker" / "sourcedir.tar.gz") as archive:
        archive.extractall(code, filter="data")
    return code
