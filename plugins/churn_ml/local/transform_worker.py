"""The local batch-transform "container": loads the inference handlers and scores the input objects.

Run by the transform runner as ``python -m churn_ml.local.transform_worker SPEC RESULT`` with the
model's source bundle first on PYTHONPATH. Writes each ``.out`` to a temporary name and renames it
only when the whole object succeeded; writes RESULT (JSON) with record counts or the error.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import time
from pathlib import Path

from churn_ml.local.transform import apply_csv_filter, parse_csv_filter

log = logging.getLogger("transform_worker")


def _batches(records: list[str], strategy: str, max_bytes: int):
    if strategy == "SingleRecord":
        for record in records:
            yield [record]
        return
    batch: list[str] = []
    size = 0
    for record in records:
        record_size = len(record.encode("utf-8")) + 1
        if record_size > max_bytes:
            raise ValueError(f"a record of {record_size} bytes is larger than MaxPayloadInMB allows ({max_bytes} bytes)")
        if batch and size + record_size > max_bytes:
            yield batch
            batch, size = [], 0
        batch.append(record)
        size += record_size
    if batch:
        yield batch


def score_object(spec: dict, handlers, model, source: Path, target: Path) -> int:
    text = source.read_text(encoding="utf-8")
    records = [line for line in text.splitlines() if line.strip()] if spec["split_type"] == "Line" else (
        [text] if text.strip() else []
    )
    in_filter = parse_csv_filter(spec["input_filter"])
    out_filter = parse_csv_filter(spec["output_filter"])
    lines: list[str] = []
    for batch in _batches(records, spec["batch_strategy"], spec["max_payload_bytes"]):
        filtered = [",".join(apply_csv_filter(r.split(","), in_filter)) for r in batch]
        body = "\n".join(filtered) + "\n"
        data = handlers.input_fn(body, spec["content_type"])
        prediction = handlers.predict_fn(data, model)
        output, _ = handlers.output_fn(prediction, spec["accept"])
        scores = [line for line in output.splitlines() if line.strip()]
        if len(scores) != len(batch):
            raise ValueError(f"{source.name}: {len(batch)} records in, {len(scores)} predictions out")
        for record, score in zip(batch, scores):
            joined = record.split(",") + score.split(",") if spec["join_source"] == "Input" else score.split(",")
            lines.append(",".join(apply_csv_filter(joined, out_filter)))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    os.replace(tmp, target)
    return len(lines)


def main(spec_path: str, result_path: str) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    spec = json.loads(Path(spec_path).read_text())
    result: dict = {"records": {}}
    started = time.monotonic()
    try:
        module = Path(spec["program"]).stem
        handlers = importlib.import_module(module)
        model = handlers.model_fn(spec["model_dir"])
        for item in spec["objects"]:
            count = score_object(spec, handlers, model, Path(item["input"]), Path(item["output"]))
            result["records"][item["output"]] = count
            log.info("%s: %d records", Path(item["input"]).name, count)
    except Exception as err:  # noqa: BLE001 - report any handler failure as the job's FailureReason
        result["error"] = f"{type(err).__name__}: {err}"
        log.exception("transform failed")
        Path(result_path).write_text(json.dumps(result))
        return 1
    result["seconds"] = round(time.monotonic() - started, 3)
    Path(result_path).write_text(json.dumps(result))
    log.info("scored %d records in %.1fs", sum(result["records"].values()), result["seconds"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:3]))
