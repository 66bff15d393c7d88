"""The lineage graph of a set of OpenLineage events, and the questions a person asks of it.

Nodes are runs (a task's run: its job ``<dag_id>.<task_id>``, its run id, its facets) and datasets
(``namespace``, ``name``). A run's inputs point at it, its outputs away from it. ``upstream`` answers
"what produced this": from a dataset back through the run that last wrote it (the newest run that
completed with it as an output: a rerun of a date replaces what the earlier run wrote) to its inputs,
and so on to datasets nothing recorded wrote (the raw partitions, the upstream export). ``downstream``
answers "what did this reach": every run that read it, their outputs, and on.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

Node = tuple[str, str]  # (namespace, name)
FINAL = ("COMPLETE", "FAIL", "ABORT")


@dataclass
class RunNode:
    run_id: str
    job: Node
    state: str = ""
    time: str = ""
    inputs: set[Node] = field(default_factory=set)
    outputs: set[Node] = field(default_factory=set)
    facets: dict = field(default_factory=dict)
    parent: str | None = None
    final: bool = False

    @property
    def label(self) -> str:
        return self.job[1]

    @property
    def code_version(self) -> str | None:
        return (self.facets.get("churn_job") or {}).get("codeVersion")


@dataclass
class Graph:
    runs: dict[str, RunNode] = field(default_factory=dict)
    symlinks: dict[Node, list[Node]] = field(default_factory=dict)
    events: int = 0
    _index: tuple | None = field(default=None, repr=False)

    @classmethod
    def of(cls, events: Iterable[dict]) -> Graph:
        graph = cls()
        for event in sorted(events, key=lambda e: e.get("eventTime", "")):
            graph.add(event)
        return graph

    def add(self, event: dict) -> None:
        self.events += 1
        run, job = event.get("run") or {}, event.get("job") or {}
        run_id = run.get("runId")
        if not run_id:
            return
        node = self.runs.setdefault(run_id, RunNode(run_id, (job.get("namespace", ""), job.get("name", ""))))
        if event.get("eventType") in FINAL or node.state not in FINAL:
            node.state, node.time = event.get("eventType", node.state), event.get("eventTime", node.time)
        node.facets.update(run.get("facets") or {})
        parent = (run.get("facets") or {}).get("parent") or {}
        node.parent = (parent.get("run") or {}).get("runId", node.parent)
        # The run's datasets are its final event's (COMPLETE, FAIL, ABORT): a START names what was known before
        # the task ran (the provider fills it from the task's Assets), the end what it read and wrote.
        final = event.get("eventType") in FINAL
        if final and not node.final:
            node.inputs, node.outputs, node.final = set(), set(), True
        if final or not node.final:
            for key, into in (("inputs", node.inputs), ("outputs", node.outputs)):
                for ds in event.get(key) or []:
                    found = (ds["namespace"], ds["name"])
                    into.add(found)
                    links = ((ds.get("facets") or {}).get("symlinks") or {}).get("identifiers") or []
                    if links:
                        self.symlinks[found] = [(i["namespace"], i["name"]) for i in links]

    # ------------------------------------------------------------------ edges
    def _completed(self) -> list[RunNode]:
        return [r for r in self.runs.values() if r.state == "COMPLETE"]

    def _edges(self) -> tuple[dict[Node, list[RunNode]], dict[Node, list[RunNode]]]:
        """Per dataset, the completed runs that wrote it and those that read it, oldest first: built once per
        set of events (a trace asks for every dataset on its way; a scan of every run each time is quadratic)."""
        if self._index is None or self._index[0] != self.events:
            wrote: dict[Node, list[RunNode]] = defaultdict(list)
            read: dict[Node, list[RunNode]] = defaultdict(list)
            for run in sorted(self._completed(), key=lambda r: r.time):
                for found in run.outputs:
                    wrote[found].append(run)
                for found in run.inputs:
                    read[found].append(run)
            self._index = (self.events, wrote, read)
        return self._index[1], self._index[2]

    def producers(self, dataset: Node) -> list[RunNode]:
        return list(self._edges()[0].get(dataset, []))

    def consumers(self, dataset: Node) -> list[RunNode]:
        return list(self._edges()[1].get(dataset, []))

    def datasets(self) -> set[Node]:
        return {d for r in self.runs.values() for d in (*r.inputs, *r.outputs)}

    def upstream(self, dataset: Node) -> Trace:
        """Back from ``dataset`` through the newest completed producer of each dataset on the way."""
        trace, todo, seen, runs = Trace(dataset), deque([dataset]), {dataset}, set()
        while todo:
            current = todo.popleft()
            made = self.producers(current)
            if not made:
                trace.sources.add(current)
                continue
            run = made[-1]
            if run.run_id in runs:
                continue
            runs.add(run.run_id)
            trace.runs.append(run)
            for found in sorted(run.inputs):
                trace.datasets.add(found)
                if found not in seen:
                    seen.add(found)
                    todo.append(found)
        return trace

    def downstream(self, dataset: Node) -> Trace:
        """Forward from ``dataset`` through every completed run that read it."""
        trace, todo, seen, runs = Trace(dataset), deque([dataset]), {dataset}, set()
        while todo:
            current = todo.popleft()
            for run in self.consumers(current):
                if run.run_id in runs:
                    continue
                runs.add(run.run_id)
                trace.runs.append(run)
                for found in sorted(run.outputs):
                    trace.datasets.add(found)
                    if found not in seen:
                        seen.add(found)
                        todo.append(found)
        return trace

    def components(self) -> list[set[Node]]:
        """The connected parts of the graph (datasets joined through the runs that read or wrote them)."""
        parent: dict[Node, Node] = {}

        def root(node: Node) -> Node:
            while parent.setdefault(node, node) != node:
                parent[node] = parent[parent[node]]
                node = parent[node]
            return node

        for run in self._completed():
            if not (run.inputs or run.outputs):
                continue  # a DAG run, or a task that reads and writes nothing outside Airflow
            nodes = [("run", run.run_id), *run.inputs, *run.outputs]
            for node in nodes[1:]:
                parent[root(node)] = root(nodes[0])
            root(nodes[0])
        groups: dict[Node, set[Node]] = defaultdict(set)
        for node in list(parent):
            groups[root(node)].add(node)
        return sorted(groups.values(), key=len, reverse=True)


@dataclass
class Trace:
    start: Node
    runs: list[RunNode] = field(default_factory=list)
    datasets: set[Node] = field(default_factory=set)
    sources: set[Node] = field(default_factory=set)

    def code_versions(self) -> list[str]:
        return sorted({r.code_version for r in self.runs if r.code_version})

    def model_versions(self) -> list[str]:
        return sorted((n for _, n in self.datasets | {self.start} if n.startswith("model-package/")), key=_natural)

    def grouped(self, nodes: Iterable[Node]) -> dict[str, list[str]]:
        """Datasets by table (``raw/events``) with their partitions' values, others by their own name."""
        groups: dict[str, list[str]] = defaultdict(list)
        for namespace, name in nodes:
            match = _PARTITIONED.match(name)
            key = label((namespace, match["table"] if match else name))
            groups[key].append(match["value"] if match else "")
        return {k: sorted(v) for k, v in sorted(groups.items())}

    def to_dict(self) -> dict:
        return {
            "dataset": label(self.start),
            "runs": [{"job": r.label, "run_id": r.run_id, "time": r.time, "code_version": r.code_version} for r in self.runs],
            "sources": {k: v for k, v in self.grouped(self.sources).items()},
            "datasets": {k: v for k, v in self.grouped(self.datasets).items()},
            "code_versions": self.code_versions(),
            "model_versions": self.model_versions(),
        }


def label(node: Node) -> str:
    """A dataset as people write it: ``s3://bucket/key``, or the ARN."""
    namespace, name = node
    return f"{namespace}:{name}" if namespace.startswith("arn:") else f"{namespace}/{name}"


_PARTITIONED = re.compile(r"(?P<table>.+?)/(?P<value>(?:dt|ds)=[^/]+(?:/.*)?)$")


def _natural(name: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


def parse_lines(text: str) -> list[dict]:
    """The events of one object of the lake transport (one JSON event per line)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def ranges(values: list[str]) -> str:
    """``dt=2026-01-01 .. dt=2026-01-05 (5)`` for a run of partition values; the values as they are otherwise."""
    values = [v for v in values if v]
    if not values:
        return ""
    if len(values) <= 3:
        return ", ".join(values)
    return f"{values[0]} .. {values[-1]} ({len(values)})"


def render(trace: Trace, direction: str) -> str:
    """The trace as a person reads it."""
    head = "what produced" if direction == "up" else "what it reached"
    lines = [f"{head} {label(trace.start)}"]
    if direction == "up":
        lines.append("  sources (no recorded producer):")
        for table, values in trace.grouped(trace.sources).items():
            lines.append(f"    {table}  {ranges(values)}".rstrip())
    lines.append("  datasets:")
    for table, values in trace.grouped(trace.datasets).items():
        lines.append(f"    {table}  {ranges(values)}".rstrip())
    lines.append(f"  code versions: {', '.join(trace.code_versions()) or '-'}")
    lines.append(f"  model versions: {', '.join(trace.model_versions()) or '-'}")
    lines.append("  runs:")
    for run in sorted(trace.runs, key=lambda r: r.time):
        version = f"  code {run.code_version}" if run.code_version else ""
        lines.append(f"    {run.time[:19]}  {run.label}  {run.run_id}{version}")
    return "\n".join(lines)
