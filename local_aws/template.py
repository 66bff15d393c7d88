"""The CloudFormation template (infra/cloudformation/churn.yaml) as data.

The control plane defines the Glue jobs the way the stack does, from the template's own
``AWS::Glue::Job`` resources, so the local target runs the same script, DefaultArguments and
ExecutionProperty as a deployment, creates the template's SNS topics by their names and its Glue
Data Catalog database and tables (``glue_catalog``) with their columns, formats and locations; the
infrastructure tests read the template with the same loader.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

TEMPLATE = Path(__file__).resolve().parents[1] / "infra" / "cloudformation" / "churn.yaml"


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


def load(path: Path = TEMPLATE) -> dict:
    return yaml.load(path.read_text(), Loader=_Loader)


def sub_text(value) -> str | None:
    """The string of a plain scalar or of a ``!Sub "..."`` (the first item of a list-form !Sub)."""
    if isinstance(value, str):
        return value
    if isinstance(value, Tagged) and "!Sub" in value:
        sub = value["!Sub"]
        return sub if isinstance(sub, str) else sub[0]
    return None


def glue_jobs(template: dict) -> dict[str, dict]:
    """Job name (Project = churn) -> the template's job properties."""
    return {sub_text(r["Properties"]["Name"]).replace("${Project}", "churn"): r["Properties"]
            for r in template["Resources"].values() if r["Type"] == "AWS::Glue::Job"}


def resolve(value, refs: dict[str, str]):
    """``value`` with ``!Sub``/``!Ref``/``!GetAtt`` replaced from ``refs`` (``Name`` or ``Name.Attr``);
    an intrinsic ``refs`` does not know raises KeyError."""
    if isinstance(value, Tagged):
        (tag, inner), = value.items()
        if tag == "!Sub":
            text = inner if isinstance(inner, str) else inner[0]
            return re.sub(r"\$\{([^}]+)\}", lambda m: refs[m.group(1)], text)
        if tag == "!Ref":
            return refs[inner]
        if tag == "!GetAtt":
            return refs[inner if isinstance(inner, str) else ".".join(inner)]
        raise KeyError(f"{tag} is not resolved locally")
    if isinstance(value, dict):
        return {k: resolve(v, refs) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, refs) for v in value]
    return value


def glue_job_requests(refs: dict[str, str]) -> list[dict]:
    """CreateJob requests for the template's Glue jobs, intrinsics resolved from ``refs`` (the
    security configuration is left out: the local target encrypts nothing)."""
    jobs = []
    for properties in glue_jobs(load()).values():
        request = resolve({k: v for k, v in properties.items() if k != "SecurityConfiguration"}, refs)
        jobs.append(request)
    return jobs


def glue_catalog(refs: dict[str, str]) -> tuple[list[dict], list[tuple[str, dict]]]:
    """The template's Data Catalog, resolved from ``refs``: the ``DatabaseInput`` of each ``AWS::Glue::Database``
    and (database name, ``TableInput``) of each ``AWS::Glue::Table`` (the lake's tables)."""
    resources = load()["Resources"].values()
    databases = [resolve(r["Properties"]["DatabaseInput"], refs) for r in resources if r["Type"] == "AWS::Glue::Database"]
    tables = [(resolve(r["Properties"]["DatabaseName"], refs), resolve(r["Properties"]["TableInput"], refs))
              for r in resources if r["Type"] == "AWS::Glue::Table"]
    return databases, tables


def athena_work_group(refs: dict[str, str]) -> dict:
    """The template's ``AWS::Athena::WorkGroup`` properties (Name, WorkGroupConfiguration with its results
    location and encryption), resolved from ``refs``."""
    found = [r["Properties"] for r in load()["Resources"].values() if r["Type"] == "AWS::Athena::WorkGroup"]
    if len(found) != 1:
        raise ValueError(f"the template must define one AWS::Athena::WorkGroup (the lake's queries), found {len(found)}")
    return resolve(found[0], refs)


def sns_topic_names(refs: dict[str, str]) -> list[str]:
    """The names of the template's ``AWS::SNS::Topic`` resources (the model alerts), resolved from ``refs``."""
    return [resolve(r["Properties"]["TopicName"], refs)
            for r in load()["Resources"].values() if r["Type"] == "AWS::SNS::Topic"]


MWAA_ENVIRONMENT_PROPERTIES = ("AirflowVersion", "EnvironmentClass", "MaxWorkers", "WebserverAccessMode",
                               "ExecutionRoleArn", "DagS3Path", "PluginsS3Path", "RequirementsS3Path",
                               "StartupScriptS3Path")


def mwaa_environment(refs: dict[str, str]) -> dict:
    """The template's ``AWS::MWAA::Environment`` properties that GetEnvironment shows and the local target has
    (``MWAA_ENVIRONMENT_PROPERTIES``), resolved from ``refs`` and the template's parameter defaults (its name is
    the local one: ``local_aws.settings.airflow_env_name``)."""
    template = load()
    found = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::MWAA::Environment"]
    if len(found) != 1:
        raise ValueError(f"the template must define one AWS::MWAA::Environment, found {len(found)}")
    defaults = {name: str(p["Default"]) for name, p in template.get("Parameters", {}).items() if "Default" in p}
    properties = resolve({k: v for k, v in found[0].items() if k in MWAA_ENVIRONMENT_PROPERTIES}, {**defaults, **refs})
    if "MaxWorkers" in properties:
        properties["MaxWorkers"] = int(properties["MaxWorkers"])
    return properties
