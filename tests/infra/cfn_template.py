"""The CloudFormation template as data, for the infrastructure tests (not a test module itself)."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "infra" / "cloudformation" / "churn.yaml"


class Tagged(dict):
    """A short-form intrinsic (!Sub, !GetAtt, !Ref, !FindInMap ...) kept with its tag: {"!Sub": value}."""


class _Loader(yaml.SafeLoader):
    pass


def _construct(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Tagged:
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return Tagged({f"!{suffix}": value})


_Loader.add_multi_constructor("!", _construct)


def load() -> dict:
    return yaml.load(TEMPLATE.read_text(), Loader=_Loader)


def sub_text(value) -> str | None:
    """The string of a plain scalar or of a ``!Sub "..."`` (the first item of a list-form !Sub)."""
    if isinstance(value, str):
        return value
    if isinstance(value, Tagged) and "!Sub" in value:
        sub = value["!Sub"]
        return sub if isinstance(sub, str) else sub[0]
    return None


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def role_statements(template: dict, role: str) -> list[dict]:
    return [statement for policy in template["Resources"][role]["Properties"].get("Policies", [])
            for statement in policy["PolicyDocument"]["Statement"]]
