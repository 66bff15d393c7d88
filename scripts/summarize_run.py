"""Print what the local batch chain produced: holdout metrics, predictions, quarantine, timings."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

from churn_ml import lake  # noqa: E402
from churn_ml.settings import settings  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ds", required=True)
    parser.add_argument("--timings", type=Path)
    args = parser.parse_args()
    model = lake.read_json(f"{settings.lake}/models/churn/latest.json")
    features = lake.read_json(f"{settings.lake}/_runs/churn_features/ds={args.ds}/summary.json")
    marker = lake.read_json(f"{settings.lake}/predictions/dt={args.ds}/_SUCCESS")
    m = model["metrics"]
    print("\n=== churn batch chain on the local target: done ===")
    print(f"model            {model['training_job_name']}  ({model['model_data_url']})")
    print(
        f"holdout          AUC {m['holdout:auc']:.4f}  PR-AUC {m['holdout:pr_auc']:.4f}  "
        f"logloss {m['holdout:logloss']:.4f}  (best single feature AUC {m['holdout:best_single_feature_auc']:.4f})"
    )
    print(f"predictions      {marker['rows']} customers scored for {args.ds} in {marker['objects']} file(s)")
    print(f"                 {lake.local_path(f'{settings.lake}/predictions/dt={args.ds}/')}")
    quarantined = {e: s["quarantined"] for e, s in features["entities"].items()}
    print(f"quarantined      {quarantined} (reasons in {lake.local_path(f'{settings.lake}/errors/')})")
    if args.timings and args.timings.exists():
        rows = [line.split("\t") for line in args.timings.read_text().splitlines() if line]
        print("wall time        " + ", ".join(f"{name} {secs}s" for name, secs in rows)
              + f"; total {sum(int(s) for _, s in rows)}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
