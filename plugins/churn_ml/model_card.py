"""The model card of a registry version, and the training output it is made from.

A final training job leaves ``output.tar.gz`` beside its ``model.tar.gz`` (SageMaker packs the job's
``/opt/ml/output/data``): churn_train.py writes ``evaluation.json`` there (features, rounds, metrics,
the canary rows the endpoint deployment is checked against) and, when it had a holdout,
``model_card.png`` (ROC of challenger and champion, gain importance) and ``baseline.json`` (the
monitoring baseline: bins and counts per feature on the train split, and of the final model's scores
on the holdout; include/sagemaker/churn_baseline.py). ``extract_training_output`` takes them out and
publishes ``evaluation.json`` beside the tarball, where the registry's ``ModelMetrics`` and the
deployment read it; the registry stores the baseline with the version.

The card itself (``build``) says what a reviewer needs before trusting the model: data range per
split, hyperparameters, features, challenger vs champion metrics, spot seconds, and a summary of
the monitoring baseline (bins and missing rate per feature, the score's deciles). The registry adds
the version, the gate's decision and reason, and ``write`` stores it as ``card.json``, ``card.md``
and ``model_card.png`` under the version's prefix, on both targets.

A training output that is missing or malformed stays so: the training job is finished, and a retry of
the task that reads it reads the same files. ``TrainingOutputError`` (a ``CannotSucceedOnRetry``) fails
register_model on its first try; the message names the file and the job to look at.
"""

from __future__ import annotations

import html
import io
import json
import re
import tarfile
from dataclasses import dataclass

from churn_ml import lake
from churn_ml.errors import CannotSucceedOnRetry, failing_fast
from churn_ml.lineage import trace_command

# The names churn_train.py (include/sagemaker/) writes: EVALUATION_FILE_NAME, CARD_PLOT_NAME and
# churn_baseline.FILE_NAME.
EVALUATION = "evaluation.json"
PLOT = "model_card.png"
BASELINE = "baseline.json"
OUTPUT_TAR = "output.tar.gz"
EVALUATION_KEYS = ("features", "rounds")  # what the card (build) reads of evaluation.json


class TrainingOutputError(CannotSucceedOnRetry, ValueError):
    """A finished training job's output that is missing or malformed: the same on every retry."""


@dataclass(frozen=True)
class TrainingOutput:
    evaluation: dict
    plot: bytes | None
    evaluation_uri: str
    # None for a job that wrote none (trained before baselines were stored, or without a holdout).
    baseline: dict | None = None


@failing_fast
def extract_training_output(model_data_url: str) -> TrainingOutput:
    """``evaluation.json``, the plot and the baseline from the job's ``output.tar.gz`` (beside
    ``model_data_url``); ``evaluation.json`` is also written beside the tarball, where ``evaluation_uri`` says."""
    output_tar = f"{model_data_url.rsplit('/', 1)[0]}/{OUTPUT_TAR}"
    look = ("churn_train.py writes it to /opt/ml/output/data, which SageMaker packs as output.tar.gz: see the "
            "training job's log, fix the script, and train again")
    if not lake.exists(output_tar):
        raise TrainingOutputError(f"the training job left no {output_tar} beside its model: {look}")
    try:
        with tarfile.open(fileobj=io.BytesIO(lake.read_bytes(output_tar))) as tar:
            names = tar.getnames()
            if EVALUATION not in names:
                raise TrainingOutputError(f"{output_tar} has no {EVALUATION} (it has {sorted(names)}): {look}")
            evaluation = json.load(tar.extractfile(EVALUATION))
            plot = tar.extractfile(PLOT).read() if PLOT in names else None
            baseline = json.load(tar.extractfile(BASELINE)) if BASELINE in names else None
    except (tarfile.TarError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TrainingOutputError(f"{output_tar} is not a readable training output ({err}): {look}") from err
    missing = [k for k in EVALUATION_KEYS if not isinstance(evaluation, dict) or k not in evaluation]
    if missing:
        raise TrainingOutputError(f"{EVALUATION} in {output_tar} has no {', '.join(missing)}: {look}")
    evaluation_uri = f"{output_tar.rsplit('/', 1)[0]}/{EVALUATION}"
    lake.write_json(evaluation_uri, evaluation)
    return TrainingOutput(evaluation=evaluation, plot=plot, evaluation_uri=evaluation_uri, baseline=baseline)


def _rate(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def baseline_summary(baseline: dict | None) -> dict | None:
    """What the card shows of a monitoring baseline (``baseline.json``; None without one): per feature
    its bins, its lowest and highest edge and its missing rate; the score's edges (deciles) and mean."""
    if baseline is None:
        return None
    score = baseline["score"]
    return {
        "rows": baseline["rows"],
        "features": [{"feature": name, "bins": len(h["counts"]),
                      "edge_range": [h["edges"][0], h["edges"][-1]] if h["edges"] else [],
                      "missing_rate": _rate(h["missing"], h["rows"])} for name, h in baseline["features"].items()],
        "score": {"deciles": score["edges"], "mean": score.get("mean"), "missing_rate": _rate(score["missing"], score["rows"])},
    }


def build(
    job: dict, *, ds: str, training_set: str, splits: dict, evaluation: dict, metrics: dict[str, float],
    tuning_job_name: str, baseline: dict | None = None, cost: dict | None = None,
) -> dict:
    """The card of the training job ``job`` (a DescribeTrainingJob answer) trained on ``training_set``
    for ``ds``: ``metrics`` are the gate's (the challenger's and, prefixed ``champion:``, the
    champion's on the same holdout), ``splits`` the training set manifest's, ``baseline`` the job's
    monitoring baseline (None when it wrote none), ``cost`` what training and tuning cost
    (``churn_ml.cost.recorder.training_cost``, from the run's ledger records)."""
    return {
        "ds": ds,
        "training_set": training_set,
        "splits": splits,
        # What the search chose and the fixed ones; not the container's plumbing or the data's fingerprint.
        "hyperparameters": {k: v for k, v in job["HyperParameters"].items()
                            if not k.startswith("sagemaker_") and k != "training_set_fingerprint"},
        "features": evaluation["features"],
        "rounds": evaluation["rounds"],
        "metrics": {k: v for k, v in metrics.items() if not k.startswith("champion:")},
        "champion_metrics": {k: v for k, v in metrics.items() if k.startswith("champion:")},
        "tuning_job_name": tuning_job_name,
        "spot": {"training_seconds": job.get("TrainingTimeInSeconds"),
                 "billable_seconds": job.get("BillableTimeInSeconds")},
        "baseline": baseline_summary(baseline),
        "cost": cost,
    }


def write(prefix: str, card: dict, plot: bytes | None) -> dict:
    """Store the card of a version under ``prefix``: the plot (if any), ``card.json`` and ``card.md``.

    Returns the card as stored (with ``plot``, the plot's URI, when there is one).
    """
    card = dict(card)
    if plot:
        lake.write_bytes(f"{prefix}/{PLOT}", plot)
        card["plot"] = f"{prefix}/{PLOT}"
    lake.write_json(f"{prefix}/card.json", card)
    lake.write_bytes(f"{prefix}/card.md", render(card).encode("utf-8"))
    return card


# What starts markup inside a line of Markdown (GFM): emphasis, code, links and images, table cells,
# strikethrough, math; "<" and "&" are HTML-escaped instead. Line starts ("#", "-", "1.") cannot occur:
# every value is inserted after text of the card's own.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|!~$])")


def _text(value) -> str:
    """``value`` as literal text on one line of Markdown, in a paragraph or a table cell: HTML escaped
    (a ``<script>`` in a feature name or a reason stays text wherever the card is rendered), Markdown
    specials backslash-escaped (no emphasis, code, link, image or ``|`` cell break), line breaks as spaces."""
    one_line = " ".join(str(value).splitlines())
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(one_line, quote=False))


def _code(value) -> str:
    """``value`` as a code span (names, URIs: shown as they are, HTML in them is not markup there): on one
    line, delimited by one backtick more than its longest run of them, so none of them closes it. Not for
    table cells: GFM splits a cell at a ``|`` even inside a code span."""
    text = " ".join(str(value).splitlines())
    ticks = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _fenced(text: str, info: str) -> list[str]:
    """A fenced code block of ``text``: its fence is longer than any backtick run inside, so nothing closes it early."""
    fence = "`" * max(3, max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    return [f"{fence}{info}", text, fence]


def render(card: dict) -> str:
    """The model card as Markdown: what a reviewer reads before trusting the model.

    What it inserts comes from data and people (feature names, the gate's or a person's reason, URIs):
    text is escaped (``_text``), names and URIs are code spans (``_code``), so none of it becomes
    markup, HTML or a broken table."""
    metrics, champion = card.get("metrics", {}), card.get("champion_metrics", {})
    lines = [
        f"# Churn model v{_text(card['version'])}: {_text(card['status'])}", "",
        f"**Decision:** {_text(card['reason'])}", "",
        *([f"**Publication:** {_text(card['publication'])}", ""] if card.get("publication") else []),
        f"- training job: {_code(card['training_job_name'])}",
        f"- model: {_code(card['model_data_url'])}",
        f"- training set: {_code(card.get('training_set', ''))} (built for {_text(card.get('ds', ''))})",
        f"- lineage (raw partitions, code version, runs): {_code(trace_command(card['model_data_url']))}", "",
        "## Data", "", "| split | rows | churn rate | snapshots |", "|---|---|---|---|",
    ]
    for split, stats in card.get("splits", {}).items():
        snaps = stats.get("snapshots", [])
        lines.append(f"| {_text(split)} | {_text(stats['rows'])} | {100 * stats['positive_rate']:.2f}% | "
                     f"{_text(snaps[0]) if snaps else ''} .. {_text(snaps[-1]) if snaps else ''} |")
    lines += ["", "## Holdout metrics", "", "| metric | this model | champion |", "|---|---|---|"]
    for name in sorted(k for k in metrics if k.startswith("holdout:")):
        other = champion.get(f"champion:{name}")
        lines.append(f"| {_text(name)} | {metrics[name]:.4f} | {'' if other is None else f'{other:.4f}'} |")
    lines += ["", "## Hyperparameters", "",
              *_fenced(json.dumps(card.get("hyperparameters", {}), indent=1, sort_keys=True), "json"),
              "", "## Features", "", ", ".join(_code(f) for f in card.get("features", [])), ""]
    if card.get("plot"):
        lines += ["## ROC and feature importance", "", f"![ROC and feature importance]({PLOT})", ""]
    return "\n".join(lines + _render_cost(card.get("cost")) + _render_baseline(card.get("baseline"), card.get("baseline_uri")))


def _render_cost(cost: dict | None) -> list[str]:
    """What training and tuning cost (the ledger's records of the run), with the spot saving measured."""
    if not cost:
        return []
    lines = ["## Cost", "", "| job | USD | training jobs | billable s | training s | spot saving |",
             "|---|---:|---:|---:|---:|---:|"]
    for label, part in (("tuning", cost.get("tuning")), ("final training", cost.get("training"))):
        if part:
            saving = part.get("spot_saving")
            lines.append(f"| {_text(label)} | {part['usd']:.4f} | {_text(part['training_jobs'])} | "
                         f"{part['billable_seconds']:.0f} | {part['training_seconds']:.0f} | "
                         f"{'' if saving is None else f'{100 * saving:.1f}%'} |")
    lines += ["", f"Total: {cost.get('usd', 0.0):.4f} USD, priced from the cost ledger (docs/cost.md).", ""]
    return lines


def _render_baseline(summary: dict | None, uri: str | None) -> list[str]:
    lines = ["## Monitoring baseline", ""]
    if not summary:
        return lines + ["None: the training job wrote no baseline.json (trained before baselines were stored), so "
                        "the monitoring job has nothing to compare this version's data with.", ""]
    rows, score = summary["rows"], summary["score"]
    lines += [f"What the monitoring job compares each day's data with{f' ({_code(uri)})' if uri else ''}: the bins of "
              f"each feature on the train split ({_text(rows['train'])} rows) and of this model's scores on the holdout "
              f"({_text(rows['holdout'])} rows).", "", "| feature | bins | edges | missing |", "|---|---|---|---|"]
    for stats in summary["features"]:
        edges = " .. ".join(f"{e:.4g}" for e in stats["edge_range"]) or "-"
        lines.append(f"| {_text(stats['feature'])} | {_text(stats['bins'])} | {edges} | {100 * stats['missing_rate']:.2f}% |")
    mean = "-" if score["mean"] is None else f"{score['mean']:.4f}"
    lines += ["", f"**Score:** mean {mean}, deciles {', '.join(f'{e:.4f}' for e in score['deciles']) or '-'}, "
                  f"missing {100 * score['missing_rate']:.2f}%.", ""]
    return lines
