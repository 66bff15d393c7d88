"""``python -m churn_ml.lineage.cli``: ask the lineage events in the lake what produced a dataset or what it reached.

    python -m churn_ml.lineage.cli trace predictions/dt=2026-07-02            # upstream: raw partitions, code, model
    python -m churn_ml.lineage.cli trace raw/events/dt=2026-07-01 --down      # downstream: what it reached
    python -m churn_ml.lineage.cli trace arn:aws:sagemaker:us-east-1:000000000000:model-package/churn-xgboost/1
    python -m churn_ml.lineage.cli summary                                    # events, runs, datasets, connected parts

A dataset is an ``s3://`` URI, a key of the lake (``predictions/dt=2026-07-02``) or an ARN
(docs/lineage.md names them). The events are read from ``<lake>/_lineage/`` through the AWS connection
(source scripts/env.sh on the local target), or from ``--events`` (an s3:// prefix or a local folder of
``.json`` files).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from churn_ml.lineage import names
from churn_ml.lineage.graph import Graph, parse_lines, render


def events_uri() -> str:
    from churn_ml.dag_support import LINEAGE_EVENTS
    from churn_ml.settings import settings

    return f"{settings.lake}/{LINEAGE_EVENTS}"


def load(source: str) -> list[dict]:
    """Every event under ``source`` (an s3:// prefix, or a local folder of the transport's objects)."""
    if source.startswith("s3://"):
        from churn_ml import lake

        return [e for uri in lake.list_keys(source) if uri.endswith(".json") for e in parse_lines(lake.read_text(uri))]
    folder = Path(source)
    if not folder.is_dir():
        raise SystemExit(f"--events {source}: expected an s3:// prefix or a folder of lineage event files")
    return [e for path in sorted(folder.rglob("*.json")) for e in parse_lines(path.read_text())]


def resolve(ref: str) -> tuple[str, str]:
    """A dataset the way the events name it: s3:// URI, ARN, or a key of the lake."""
    from churn_ml.settings import settings

    if not ref.startswith(("s3://", "arn:")):
        ref = f"{settings.lake}/{ref.lstrip('/')}"
    return names.identify(ref)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m churn_ml.lineage.cli", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", help="where the events are (default: <lake>/_lineage/)")
    commands = parser.add_subparsers(dest="command", required=True)
    trace = commands.add_parser("trace", help="what produced a dataset (or, with --down, what it reached)")
    trace.add_argument("dataset")
    trace.add_argument("--down", action="store_true", help="downstream: the runs that read it and what they wrote")
    trace.add_argument("--json", action="store_true", help="print the trace as JSON")
    commands.add_parser("summary", help="events, runs, datasets and connected parts of the graph")
    args = parser.parse_args(argv)
    from churn_ml import lake

    lake.quiet_logs()  # the output is the trace (or JSON), without the S3 hook's log lines

    graph = Graph.of(load(args.events or events_uri()))
    if args.command == "summary":
        parts = graph.components()
        print(json.dumps({"events": graph.events, "runs": len(graph.runs), "datasets": len(graph.datasets()),
                          "components": [len(p) for p in parts]}, indent=2))
        return 0
    node = resolve(args.dataset)
    if node not in graph.datasets():
        print(f"{node[0]}/{node[1]}: no lineage event names this dataset (as an input or an output). Name a partition "
              "the way the events do, e.g. predictions/dt=2026-07-02, or list them with --json on a known one",
              file=sys.stderr)
        return 2
    found = graph.downstream(node) if args.down else graph.upstream(node)
    print(json.dumps(found.to_dict(), indent=2) if args.json else render(found, "down" if args.down else "up"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
