"""The generator is deterministic, lays out daily partitions with markers and counts what it injects;
its drift knob changes behaviour from a date on and nothing before it."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest

from churn.datagen import MANIFEST_NAME, PLAN_PRICE, GeneratorConfig, generate, injected_bad_records, main


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


# --- the drift knob -------------------------------------------------------------------------------

SMALL = dict(customers=300, start=dt.date(2026, 1, 1), days=40, seed=7)
DRIFT_FROM = dt.date(2026, 1, 26)
# sha256 of every file (relative path and bytes) that the generator wrote for SMALL before the
# drift knob existed (commit e77e2e2): the knob-off output must stay exactly this.
SMALL_DIGEST = "cb7f249d6a5c4cb143b65c63b039aa040a4a82c5a770fbbfa4352ff69082b7cf"


def _digest(root: Path, files: list[Path] | None = None) -> str:
    h = hashlib.sha256()
    for path in sorted(files if files is not None else (p for p in root.rglob("*") if p.is_file())):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _partitions_before(root: Path, day: dt.date) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and p.parent.name.startswith("dt=")
            and p.parent.name < f"dt={day.isoformat()}"]


def test_knob_off_output_is_the_pre_knob_output(tmp_path):
    generate(GeneratorConfig(out=tmp_path / "off", **SMALL))
    assert _digest(tmp_path / "off") == SMALL_DIGEST
    # Drift set but of strength 0: the same partitions; only the manifest records the knob.
    manifest = generate(GeneratorConfig(out=tmp_path / "zero", drift_from=DRIFT_FROM, drift_strength=0.0, **SMALL))
    assert (manifest["drift_from"], manifest["drift_strength"]) == ("2026-01-26", 0.0)
    (tmp_path / "zero" / MANIFEST_NAME).unlink()
    (tmp_path / "off" / MANIFEST_NAME).unlink()
    assert _digest(tmp_path / "zero") == _digest(tmp_path / "off")


def _usage_per_active_customer(root: Path, days: list[dt.date]) -> list[float]:
    """Usage minutes per customer not yet cancelled, per day (read back from the raw partitions)."""
    def records(entity: str, day: dt.date) -> list[dict]:
        text = (root / entity / f"dt={day.isoformat()}" / "part-00000.jsonl").read_text()
        return [json.loads(line) for line in text.splitlines()]

    signed_up, cancelled, out = 0, 0, []
    for d in range((days[-1] - SMALL["start"]).days + 1):
        day = SMALL["start"] + dt.timedelta(days=d)
        signed_up += len(records("customers", day))
        events = records("events", day)
        if day in days:
            minutes = sum(e["value"] for e in events if e["event_type"] == "usage")
            out.append(minutes / (signed_up - cancelled))
        cancelled += sum(e["event_type"] == "cancellation" for e in events)
    return out


def test_drift_changes_behaviour_from_its_day_only(tmp_path):
    cfg = dict(SMALL, bad_fraction=0.0)
    generate(GeneratorConfig(out=tmp_path / "off", **cfg))
    manifest = generate(GeneratorConfig(out=tmp_path / "on", drift_from=DRIFT_FROM, drift_strength=1.0, **cfg))
    assert (manifest["drift_from"], manifest["drift_strength"]) == ("2026-01-26", 1.0)

    before = _partitions_before(tmp_path / "on", DRIFT_FROM)
    assert len(before) == 2 * 2 * (DRIFT_FROM - SMALL["start"]).days  # both entities, data + marker
    assert _digest(tmp_path / "on", before) == _digest(
        tmp_path / "off", [tmp_path / "off" / p.relative_to(tmp_path / "on") for p in before])

    days_before = [DRIFT_FROM - dt.timedelta(days=k) for k in (3, 2, 1)]
    days_after = [DRIFT_FROM + dt.timedelta(days=k) for k in (0, 1, 2)]
    off_before, on_before = (_usage_per_active_customer(tmp_path / r, days_before) for r in ("off", "on"))
    assert on_before == off_before
    off_after, on_after = (_usage_per_active_customer(tmp_path / r, days_after) for r in ("off", "on"))
    drop = 1.0 - sum(on_after) / sum(off_after)
    assert drop > 0.20, f"usage per active customer fell {drop:.0%} in the 3 days from the drift, expected > 20%"

    # Sign-ups from the drift date on pay 10 % more at strength 1.0: the list price x U(0.9, 1.1) x 1.1.
    def price_ratios(root: Path, days: range) -> list[float]:
        rows = [json.loads(line) for d in days
                for line in (root / "customers" / f"dt={(SMALL['start'] + dt.timedelta(days=d)).isoformat()}"
                             / "part-00000.jsonl").read_text().splitlines()]
        return [r["monthly_charge"] / PLAN_PRICE[r["plan"]] for r in rows]
    drift_day = (DRIFT_FROM - SMALL["start"]).days
    after = price_ratios(tmp_path / "on", range(drift_day, SMALL["days"]))
    before = price_ratios(tmp_path / "on", range(1, drift_day))
    assert len(after) >= 5 and len(before) >= 5
    assert 0.99 <= min(after) and max(after) <= 1.21 and sum(after) / len(after) > 1.05
    assert 0.9 <= min(before) and max(before) <= 1.1 and min(before) < 0.99

def test_drift_knobs_are_checked(tmp_path):
    with pytest.raises(ValueError, match="--drift-strength must be a finite number >= 0.*got -0.5"):
        GeneratorConfig(out=tmp_path, drift_from=dt.date(2026, 2, 1), drift_strength=-0.5)
    with pytest.raises(ValueError, match=r"--drift-from must be a generated day, 2026-01-01 to 2026-02-09.*got 2026-02-10"):
        GeneratorConfig(out=tmp_path, start=dt.date(2026, 1, 1), days=40, drift_from=dt.date(2026, 2, 10),
                        drift_strength=1.0)
    with pytest.raises(ValueError, match="--drift-from must be a generated day.*got 2025-12-31"):
        GeneratorConfig(out=tmp_path, start=dt.date(2026, 1, 1), days=40, drift_from=dt.date(2025, 12, 31))
    with pytest.raises(ValueError, match="needs --drift-from"):
        GeneratorConfig(out=tmp_path, drift_strength=1.0)
    # The CLI turns them into a usage error.
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--days", "10", "--drift-from", "2026-03-01", "--drift-strength", "1"])
    assert GeneratorConfig(out=tmp_path, days=40, drift_from=dt.date(2026, 2, 9), drift_strength=1.0).drifting(
        dt.date(2026, 2, 9))
