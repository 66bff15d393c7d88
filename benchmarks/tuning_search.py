"""Bayesian (Optuna TPE, as the local tuning runner) vs random search at the same trial budget.

Same search space as the churn_training DAG, same objective (validation AUC at the early-stopping
best round, from churn_train.py's own training loop), several seeds each. Prints, per strategy and seed,
the best AUC found and the number of trials needed to come within 0.005 AUC of the best AUC any
run found.

    .venv/bin/python benchmarks/tuning_search.py [--trials 20] [--seeds 3]   (after `make run`)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import time

import optuna
from _training_data import args_for, matrices, train, training_set

from churn_ml.training_requests import STATIC_HYPERPARAMETERS, TUNING_RANGES
from local_aws.tuning import _sampler, distributions

TOLERANCE = 0.005


def search(strategy: str, seed: int, trials: int, data, path) -> list[float]:
    dtrain, dvalid = data
    dists = distributions(TUNING_RANGES)
    study = optuna.create_study(direction="maximize", sampler=_sampler(strategy, seed))
    values = []
    for _ in range(trials):
        trial = study.ask(dists)
        hps = {**STATIC_HYPERPARAMETERS, **trial.params, "nthread": 2}
        args = args_for(path, hps)
        with contextlib.redirect_stdout(io.StringIO()):  # churn_train.py's per-round metric lines
            _, state = train.boost(train.xgb_params(args), dtrain, dvalid, args, store=None)
        study.tell(trial, state.best_score)
        values.append(state.best_score)
    return values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--lake-root")
    opts = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = training_set(opts.lake_root)
    data = matrices(path)
    runs: dict[tuple[str, int], list[float]] = {}
    started = time.perf_counter()
    for seed in range(opts.seeds):
        for strategy in ("Bayesian", "Random"):
            runs[(strategy, seed)] = search(strategy, seed, opts.trials, data, path)
            print(f"  {strategy:8s} seed {seed}: best {max(runs[(strategy, seed)]):.4f}", flush=True)
    best = max(max(v) for v in runs.values())
    print(f"\nBayesian (TPE) vs random search, {opts.trials} trials each, {opts.seeds} seeds; "
          f"best validation AUC found by any run: {best:.4f}; target: within {TOLERANCE} of it "
          f"({time.perf_counter() - started:.0f} s)\n")
    print("| strategy | seed | best AUC | trials to reach target |")
    print("|---|---|---|---|")
    summary: dict[str, list[int]] = {"Bayesian": [], "Random": []}
    for (strategy, seed), values in sorted(runs.items()):
        reached = next((i + 1 for i, v in enumerate(values) if v >= best - TOLERANCE), None)
        summary[strategy].append(reached if reached is not None else opts.trials + 1)
        print(f"| {strategy} | {seed} | {max(values):.4f} | {reached if reached else f'not within {opts.trials}'} |")
    print()
    for strategy, counts in summary.items():
        hit = sum(c <= opts.trials for c in counts)
        print(f"{strategy:8s}: reached the target in {hit}/{len(counts)} runs; median trials "
              f"{statistics.median(counts):.1f} (a miss counts as {opts.trials + 1})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
