"""The generator is deterministic, lays out daily partitions with markers and counts what it injects."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from churn.datagen import MANIFEST_NAME, GeneratorConfig, generate, injected_bad_records


def test_deterministic_partitions_and_manifest(tmp_path):
    cfg = dict(customers=60, start=dt.date(2026, 1, 1), days=5, seed=3, bad_fraction=0.05)
    first = generate(GeneratorConfig(out=tmp_path / "a", **cfg))
    second = generate(GeneratorConfig(out=tmp_path / "b", **cfg))
    assert first == second
    for entity in ("customers", "events"):
        for day in ("2026-01-01", "2026-01-05"):
            part = tmp_path / "a" / entity / f"dt={day}"
            assert (part / "_SUCCESS").exists()
            a = (part / "part-00000.jsonl").read_text()
            assert a == (tmp_path / "b" / entity / f"dt={day}" / "part-00000.jsonl").read_text()
    assert json.loads((tmp_path / "a" / MANIFEST_NAME).read_text()) == first
    events = injected_bad_records(first, "events", "2026-01-01", "2026-01-05")
    assert events > 0
    lines = sum(
        len((tmp_path / "a" / "events" / f"dt=2026-01-0{d}" / "part-00000.jsonl").read_text().splitlines())
        for d in range(1, 6)
    )
    assert lines == sum(p["records"] for p in first["partitions"]["events"].values())


def test_bad_knobs_are_refused(tmp_path):
    with pytest.raises(ValueError, match="--bad-fraction"):
        GeneratorConfig(out=tmp_path, bad_fraction=0.9)
    with pytest.raises(ValueError, match="--customers"):
        GeneratorConfig(out=tmp_path, customers=1)
