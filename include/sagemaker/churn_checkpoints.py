"""XGBoost training checkpoints in SageMaker's ``CheckpointConfig.LocalPath``.

SageMaker copies ``CheckpointConfig.S3Uri`` into the local path before the script starts and syncs
the folder back to S3 while it runs, so after a spot interruption the restarted job finds the
checkpoints its previous attempt wrote. Each checkpoint is one UBJSON model file named by the number
of rounds it holds (``churn-xgb-000120.ubj``); the training loop's own state (best round and score
for early stopping) rides in the model's attributes, so model and state can never disagree.
Files are written to a temporary name and renamed, so a kill mid-write leaves the previous
checkpoint intact; a file that does not load is skipped with a warning.

This is our own naming on purpose: the SageMaker XGBoost container's ``xgboost-checkpoint.N`` files
and its resume regex belong to its built-in algorithm mode, not to script mode.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import xgboost as xgb

DEFAULT_DIR = "/opt/ml/checkpoints"
STATE_ATTRIBUTE = "churn_training_state"
_NAME = re.compile(r"^churn-xgb-(\d{6})\.ubj$")

log = logging.getLogger("train.checkpoints")


@dataclass
class TrainingState:
    """Where the boosting loop is: rounds done and the early-stopping bookkeeping."""

    rounds: int = 0
    best_iteration: int = -1
    best_score: float = float("-inf")

    def to_attribute(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_attribute(cls, text: str | None, rounds: int) -> TrainingState:
        if not text:
            return cls(rounds=rounds)
        state = cls(**json.loads(text))
        state.rounds = rounds  # the model itself is the truth on how many rounds it holds
        return state


class CheckpointStore:
    def __init__(self, folder: str | os.PathLike, keep: int = 2) -> None:
        self.folder = Path(folder)
        self.keep = keep

    def _files(self) -> list[tuple[int, Path]]:
        if not self.folder.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.folder.iterdir() if (m := _NAME.match(p.name))]
        return sorted(found, reverse=True)

    def save(self, booster: xgb.Booster, state: TrainingState) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        booster.set_attr(**{STATE_ATTRIBUTE: state.to_attribute()})
        target = self.folder / f"churn-xgb-{state.rounds:06d}.ubj"
        tmp = self.folder / f".{target.name}.tmp"
        tmp.write_bytes(booster.save_raw("ubj"))
        os.replace(tmp, target)
        for _, old in self._files()[self.keep:]:
            old.unlink(missing_ok=True)
        return target

    def latest(self) -> tuple[bytearray, TrainingState] | None:
        """The newest checkpoint that loads, as raw model bytes and loop state; None to start fresh."""
        for rounds, path in self._files():
            raw = bytearray(path.read_bytes())
            try:
                booster = xgb.Booster(model_file=raw)
            except xgb.core.XGBoostError as err:
                log.warning("checkpoint %s does not load (%s); trying an older one", path.name, err)
                continue
            if booster.num_boosted_rounds() != rounds:
                log.warning("checkpoint %s holds %d rounds, not %d; skipped", path.name, booster.num_boosted_rounds(), rounds)
                continue
            return raw, TrainingState.from_attribute(booster.attr(STATE_ATTRIBUTE), rounds)
        return None
