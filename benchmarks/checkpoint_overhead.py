"""Checkpoint overhead of churn_train.py: the same rounds trained without checkpoints and with a
checkpoint every N rounds (each interval restarts from the saved model; see
include/sagemaker/churn_checkpoints.py), on the sample training set, median of several repeats.

    .venv/bin/python benchmarks/checkpoint_overhead.py [--rounds 300] [--repeats 3]   (after `make run`)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
import time

from _training_data import args_for, matrices, train, training_set

from churn_checkpoints import CheckpointStore

HYPERPARAMETERS = {"max_depth": 5, "eta": 0.05, "subsample": 0.8, "colsample_bytree": 0.8, "min_child_weight": 5,
                   "early_stopping_rounds": 0, "seed": 42, "nthread": 2}


def timed(path, data, rounds: int, every: int | None) -> float:
    args = args_for(path, {**HYPERPARAMETERS, "num_round": rounds, "checkpoint_every": every or 1})
    with tempfile.TemporaryDirectory() as folder, contextlib.redirect_stdout(io.StringIO()):
        store = CheckpointStore(folder) if every else None
        started = time.perf_counter()
        booster, _ = train.boost(train.xgb_params(args), *data, args, store=store)
        elapsed = time.perf_counter() - started
    assert booster.num_boosted_rounds() == rounds
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lake-root")
    opts = parser.parse_args()
    path = training_set(opts.lake_root)
    data = matrices(path)
    rows = data[0].num_row()
    modes = [None, 100, 50, 25, 10]
    results = {m: statistics.median(timed(path, data, opts.rounds, m) for _ in range(opts.repeats)) for m in modes}
    base = results[None]
    print(f"\ntrain.py, {opts.rounds} rounds on {rows} training rows, median of {opts.repeats}:\n")
    print("| checkpoints | seconds | overhead |")
    print("|---|---|---|")
    for mode, seconds in results.items():
        label = "none" if mode is None else f"every {mode} rounds"
        print(f"| {label} | {seconds:.2f} | {'-' if mode is None else f'{100 * (seconds / base - 1):+.0f}%'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
