"""The local batch-transform "container": loads the inference handlers and scores the input objects.

Run by the transform runner as ``python -m local_aws.transform_worker SPEC RESULT`` with the
model's source bundle first on PYTHONPATH; the handlers are the file the spec's program names inside
the bundle, loaded by location (``sandbox.load_handlers``). Writes each ``.out`` to a temporary name and renames it
only when the whole object succeeded; writes RESULT (JSON) with record counts or the error.
"""

from __future__ import annotations

import json
import logging
import operator
import os
import sys
import time
from pathlib import Path

from churn.scoring import request_batches
from local_aws.sandbox import load_handlers
from local_aws.transform import apply_csv_filter, parse_csv_filter

log = logging.getLogger("transform_worker")


def _batches(records: list[str], strategy: str, max_bytes: int):
    if strategy == "SingleRecord":
        return ([record] for record in records)
    return request_batches(records, max_rows=None, max_bytes=max_bytes)


def _selector(selectors: list | None):
    """A function list -> selected fields for a parsed filter (None keeps all)."""
    if selectors is None:
        return None
    if len(selectors) == 1 and isinstance(selectors[0], slice):
        part = selectors[0]
        return lambda fields: fields[part]
    if all(isinstance(i, int) for i in selectors):
        pick = operator.itemgetter(*selectors)
        return (lambda fields: [pick(fields)]) if len(selectors) == 1 else (lambda fields: list(pick(fields)))
    return lambda fields: apply_csv_filter(fields, selectors)


def _id_passthrough(in_filter: list | None, out_filter: list | None, join: bool) -> int | None:
    """``a`` when the filters are the id pass-through pattern: InputFilter ``$[a:]`` and, with
    JoinSource Input, an OutputFilter of indexes that are either among the first ``a`` input fields
    or count back from the end into the score. Each record then needs one ``split(",", a)`` only."""
    if not (join and in_filter and len(in_filter) == 1 and isinstance(in_filter[0], slice)):
        return None
    part = in_filter[0]
    if part.step not in (None, 1) or part.stop is not None or not part.start or part.start < 0:
        return None
    if out_filter is None or not all(isinstance(i, int) and (0 <= i < part.start or i == -1) for i in out_filter):
        return None
    return part.start


def score_object(spec: dict, handlers, model, source: Path, target: Path) -> int:
    text = source.read_text(encoding="utf-8")
    records = [line for line in text.splitlines() if line.strip()] if spec["split_type"] == "Line" else (
        [text] if text.strip() else []
    )
    in_filter, out_filter = parse_csv_filter(spec["input_filter"]), parse_csv_filter(spec["output_filter"])
    join = spec["join_source"] == "Input"
    head = _id_passthrough(in_filter, out_filter, join)
    select_in, select_out = _selector(in_filter), _selector(out_filter)
    chunks: list[str] = []
    for batch in _batches(records, spec["batch_strategy"], spec["max_payload_bytes"]):
        if head is not None:
            parts = [r.split(",", head) for r in batch]
            body = "\n".join(p[head] for p in parts)
        else:
            fields = [r.split(",") for r in batch] if (select_in or (join and select_out)) else None
            body = "\n".join(",".join(select_in(f)) for f in fields) if select_in else "\n".join(batch)
        data = handlers.input_fn(body + "\n", spec["content_type"])
        prediction = handlers.predict_fn(data, model)
        output, _ = handlers.output_fn(prediction, spec["accept"])
        scores = output.splitlines()
        if len(scores) != len(batch):
            raise ValueError(f"{source.name}: {len(batch)} records in, {len(scores)} predictions out")
        if head is not None:  # index -1 is the prediction's last field, the others are input fields
            last = [s.rsplit(",", 1)[-1] for s in scores] if scores and "," in scores[0] else scores
            lines = [",".join(s if i == -1 else p[i] for i in out_filter) for p, s in zip(parts, last)]
        elif not join:
            lines = [",".join(select_out(s.split(","))) for s in scores] if select_out else scores
        elif select_out:
            lines = [",".join(select_out(f + s.split(","))) for f, s in zip(fields, scores)]
        else:
            lines = [f"{r},{s}" for r, s in zip(batch, scores)]
        chunks.append("\n".join(lines) + "\n")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text("".join(chunks), encoding="utf-8")
    os.replace(tmp, target)
    return sum(chunk.count("\n") for chunk in chunks)


def main(spec_path: str, result_path: str) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    spec = json.loads(Path(spec_path).read_text())
    result: dict = {"records": {}}
    started = time.monotonic()
    try:
        handlers = load_handlers(spec["code_dir"], spec["program"])
        model = handlers.model_fn(spec["model_dir"])
        result["startup_seconds"] = round(time.monotonic() - started, 3)  # imports and model load
        scoring = time.monotonic()
        for item in spec["objects"]:
            count = score_object(spec, handlers, model, Path(item["input"]), Path(item["output"]))
            result["records"][item["output"]] = count
            log.info("%s: %d records", Path(item["input"]).name, count)
    except Exception as err:
        result["error"] = f"{type(err).__name__}: {err}"
        log.exception("transform failed")
        Path(result_path).write_text(json.dumps(result))
        return 1
    result["seconds"] = round(time.monotonic() - started, 3)
    result["scoring_seconds"] = round(time.monotonic() - scoring, 3)
    Path(result_path).write_text(json.dumps(result))
    log.info("scored %d records in %.1fs (%.1fs to start and load the model)", sum(result["records"].values()),
             result["scoring_seconds"], result["startup_seconds"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:3]))
