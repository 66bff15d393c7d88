"""The CloudFormation template as data, for the infrastructure tests (not a test module itself)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The loader is the control plane's, which defines the Glue jobs from the same template.
from local_aws.template import TEMPLATE, Tagged, load, sub_text  # noqa: E402,F401


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def role_statements(template: dict, role: str) -> list[dict]:
    return [statement for policy in template["Resources"][role]["Properties"].get("Policies", [])
            for statement in policy["PolicyDocument"]["Statement"]]
