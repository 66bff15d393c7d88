"""The infrastructure tests read the template and the DAGs, not a lake: the deployed code version is this
tree's (what ``code/CURRENT.json`` names after a deploy of it; reading the pointer is
tests/unit/test_code_versions_aws.py's)."""

from __future__ import annotations

import pytest
from built_dags import CODE_VERSION

from churn_ml import artifacts


@pytest.fixture(autouse=True)
def _deployed_code_version(monkeypatch):
    monkeypatch.setattr(artifacts, "current_version", lambda: CODE_VERSION)
