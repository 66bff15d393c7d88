"""One naming scheme for every dataset the pipelines' lineage names (docs/lineage.md).

A reference is a string, the way the DAGs already spell what they touch:

- ``s3://<bucket>/<key>``: an object or a prefix of the lake (or of the artifacts bucket). The
  OpenLineage dataset is the S3 location, as the spec's Naming.md names it: namespace ``s3://<bucket>``,
  name the key without a leading or trailing ``/``. A partition is its own dataset
  (``predictions/dt=2026-07-02``), so a question about one date gets that date's answer. When the
  location is (a partition of) a Glue Data Catalog table, the dataset carries a ``symlinks`` facet
  naming the table the way the spec names Glue tables: namespace ``arn:aws:glue:<region>:<account>``,
  name ``table/<database>/<table>``, type ``TABLE``. The S3 location is the dataset, the table its
  symlink, everywhere (the Spark integration's choice too).
- ``arn:aws:<service>:<region>:<account>:<resource>``: a resource that is not a location (a model
  package version, an endpoint config, an endpoint, a tuning job). Namespace: the ARN up to the
  account; name: the resource (``model-package/churn/3``, ``endpoint/churn-xgboost``), the form the
  spec uses for Glue.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from openlineage.client.event_v2 import Dataset, InputDataset, OutputDataset
from openlineage.client.facet_v2 import symlinks_dataset

_ARN = re.compile(r"arn:(?P<partition>aws[\w-]*):(?P<service>[\w-]+):(?P<region>[\w-]*):(?P<account>\d*):(?P<resource>.+)")
_PARTITION = re.compile(r"/(?:dt|ds)=[^/]+$")


class LineageNameError(ValueError):
    """A reference that is neither an s3:// URI nor an ARN: lineage cannot name it."""


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b/`` -> ``("bucket", "a/b")``."""
    from churn_ml import lake

    try:
        bucket, key = lake.split_uri(uri)
    except ValueError as error:
        raise LineageNameError(str(error)) from None
    return bucket, key.strip("/")


def identify(ref: str) -> tuple[str, str]:
    """The (namespace, name) of a reference (module docstring)."""
    if ref.startswith("s3://"):
        bucket, key = split_s3(ref)
        return f"s3://{bucket}", key
    match = _ARN.fullmatch(ref)
    if match is None:
        raise LineageNameError(
            f"lineage names lake locations (s3://bucket/key) and AWS resources (arn:aws:...), got {ref!r}")
    namespace = f"arn:{match['partition']}:{match['service']}:{match['region']}:{match['account']}"
    return namespace, match["resource"]


def table_root(key: str) -> str:
    """The key of the table a partition key belongs to (``predictions/dt=D`` -> ``predictions``)."""
    while _PARTITION.search(f"/{key}"):
        key = _PARTITION.sub("", f"/{key}").lstrip("/")
    return key


@functools.lru_cache(maxsize=1)
def aws_location() -> tuple[str, str]:
    """(region, account) of the deployment: the AWS connection's region, the account of its roles."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    from churn_ml.settings import settings

    region = AwsBaseHook(aws_conn_id=settings.aws_conn_id).region_name or ""
    return region, settings.sagemaker_role_arn.split(":")[4]


def _catalog() -> tuple[str, str, dict[str, str]]:
    """The Glue namespace (``arn:aws:glue:<region>:<account>``), the database, and its tables by the
    lake key they live under (no slashes): ``dag_support.TABLES``, declared in the template."""
    from churn_ml.dag_support import TABLES
    from churn_ml.settings import settings

    region, account = aws_location()
    return (f"arn:aws:glue:{region}:{account}", settings.glue_database,
            {prefix.strip("/"): table for table, prefix in TABLES.items()})


def glue_symlink(namespace: str, key: str) -> symlinks_dataset.Identifier | None:
    """The Glue table a lake location is (a partition of), or None."""
    from churn_ml.settings import settings

    if namespace != f"s3://{settings.lake_bucket}":
        return None
    glue_namespace, database, tables = _catalog()
    table = tables.get(table_root(key))
    if table is None:
        return None
    return symlinks_dataset.Identifier(namespace=glue_namespace, name=f"table/{database}/{table}", type="TABLE")


def dataset(ref: str, kind: type[Dataset] = Dataset) -> Dataset:
    namespace, name = identify(ref)
    facets = {}
    link = glue_symlink(namespace, name) if namespace.startswith("s3://") else None
    if link is not None:
        facets["symlinks"] = symlinks_dataset.SymlinksDatasetFacet(identifiers=[link])
    return kind(namespace=namespace, name=name, facets=facets)


def datasets(refs: Iterable[str], kind: type[Dataset]) -> list[Dataset]:
    """One dataset per distinct reference, in the order given."""
    seen: dict[tuple[str, str], Dataset] = {}
    for ref in refs:
        found = dataset(ref, kind)
        seen.setdefault((found.namespace, found.name), found)
    return list(seen.values())


def inputs(refs: Iterable[str]) -> list[InputDataset]:
    return datasets(refs, InputDataset)  # type: ignore[return-value]


def outputs(refs: Iterable[str]) -> list[OutputDataset]:
    return datasets(refs, OutputDataset)  # type: ignore[return-value]
