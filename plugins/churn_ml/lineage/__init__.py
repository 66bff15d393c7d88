"""Lineage of the churn pipelines: every task's inputs and outputs as OpenLineage events (docs/lineage.md).

- ``names``: the one naming scheme (S3 locations, partitions included, with their Glue table as a
  symlink; ARNs for the registry's versions and the endpoint);
- ``declared``: what each task of each DAG reads and writes;
- ``extractor``: the extractor the OpenLineage provider asks, for every task;
- ``transport``: events written into the lake (``_lineage/``), one object per event;
- ``graph`` and ``python -m churn_ml.lineage.cli``: what produced a dataset, what it reached.
"""


def trace_command(ref: str, *, down: bool = False) -> str:
    """The command that answers what produced ``ref`` (or, ``down``, what it reached), for a page or a card."""
    return f"python -m churn_ml.lineage.cli trace {ref}{' --down' if down else ''}"
