"""The monitoring report a person opens: one self-contained HTML page per monitored date.

``monitoring/reports/dt=<ds>/report.html`` (plots embedded as PNG, no other file needed) shows the
decision and why, each source's drift of the day per feature with the threshold, the score's drift
over the last ``HISTORY_DAYS`` days, and the realized AUC over time per model version with the
gate's floor. ``decision.json`` beside it is the decision the ``decide`` task made, which later
decisions read (``decay.decide``).

A daily file that is not JSON (``MalformedDailyFileError``) is read the same on every retry: the
decide and write_report tasks fail on their first try with the file to look at (``failing_fast``).
A daily file that is not there is no error: that day was not monitored.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json

from churn_ml.decay import Thresholds, day_findings, window
from churn_ml.errors import CannotSucceedOnRetry, failing_fast

HISTORY_DAYS = 120
CONTENT_TYPE = "text/html; charset=utf-8"  # the report's Content-Type on S3: a browser renders it as the page it is
SOURCE_COLOURS = {"batch": "#1f77b4", "capture": "#ff7f0e", "stream": "#2ca02c"}


class MalformedDailyFileError(CannotSucceedOnRetry, ValueError):
    """A daily summary or decision that is not a JSON object: it reads the same on every retry."""


@failing_fast
def read_daily(root_uri: str, ds: str, days: int, name: str) -> dict[str, dict]:
    """``<root>/dt=<d>/<name>`` (JSON) of the ``days`` dates ending with ``ds`` that have one."""
    from churn_ml import lake

    found = {}
    for d in window(ds, days):
        uri = f"{root_uri.rstrip('/')}/dt={d}/{name}"
        if not lake.exists(uri):
            continue
        try:
            found[d] = lake.read_json(uri)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise MalformedDailyFileError(
                f"{uri} is not JSON ({err}): rerun that date's churn_monitoring (its monitor task rewrites the "
                f"summary, its decide and write_report tasks the decision), or delete the file") from err
        if not isinstance(found[d], dict):
            raise MalformedDailyFileError(f"{uri} holds a {type(found[d]).__name__}, not a JSON object: rerun that "
                                          "date's churn_monitoring, or delete the file")
    return found


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _plots(ds: str, summaries: dict[str, dict], t: Thresholds) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = {}
    today = summaries[ds]
    present = [s for s, found in today["sources"].items() if found.get("rows")]
    if present:
        names = list(today["sources"][present[0]]["features"]) + ["score"]
        fig, ax = plt.subplots(figsize=(8, 0.28 * len(names) + 1.2))
        height = 0.8 / len(present)
        for i, source in enumerate(present):
            found = today["sources"][source]
            values = [found["features"][n]["psi"] for n in names[:-1]] + [found["score"]["psi"]]
            ax.barh([y + i * height for y in range(len(names))], values, height=height,
                    color=SOURCE_COLOURS.get(source), label=f"{source} ({found['rows']} rows)")
        ax.axvline(t.psi_threshold, color="red", linestyle="--", label=f"threshold {t.psi_threshold}")
        ax.set_yticks([y + 0.4 - height / 2 for y in range(len(names))], names)
        ax.invert_yaxis()
        ax.set_xlabel("PSI against the training baseline")
        ax.set_title(f"Drift on {ds}")
        ax.legend(loc="lower right", fontsize="small")
        plots["drift"] = _png(fig)
        plt.close(fig)

    days = sorted(d for d in summaries if d <= ds)[-HISTORY_DAYS:]
    fig, ax = plt.subplots(figsize=(8, 3))
    for source, colour in SOURCE_COLOURS.items():
        points = [(dt.date.fromisoformat(d), summaries[d]["sources"].get(source, {})) for d in days]
        points = [(d, f["score"]["psi"]) for d, f in points if f.get("rows")]
        if points:
            ax.plot(*zip(*points), marker=".", color=colour, label=source)
    decayed = [dt.date.fromisoformat(d) for d in days if day_findings(summaries[d], t)]
    for d in decayed:
        ax.axvspan(d - dt.timedelta(hours=12), d + dt.timedelta(hours=12), color="red", alpha=0.12, lw=0)
    ax.axhline(t.psi_threshold, color="red", linestyle="--", label="threshold")
    ax.set_ylabel("score PSI")
    ax.set_title("Score drift per day (red: decayed days)")
    ax.legend(fontsize="small")
    fig.autofmt_xdate()
    plots["score_drift"] = _png(fig)
    plt.close(fig)

    closed = [summaries[d]["quality"] for d in days if summaries[d]["quality"].get("status") == "closed"]
    closed = [q for q in closed if q.get("auc") is not None]
    if closed:
        fig, ax = plt.subplots(figsize=(8, 3))
        for version in sorted({str(q.get("model_version")) for q in closed}):
            points = [(dt.date.fromisoformat(q["prediction_date"]), q["auc"]) for q in closed
                      if str(q.get("model_version")) == version]
            ax.plot(*zip(*points), marker="o", label=f"model v{version}")
        ax.axhline(t.auc_floor, color="red", linestyle="--", label=f"gate floor {t.auc_floor:.2f}")
        ax.set_ylabel("realized AUC")
        ax.set_xlabel("prediction date (labels 30 days later)")
        ax.set_title("Realized quality over time")
        ax.legend(fontsize="small")
        fig.autofmt_xdate()
        plots["quality"] = _png(fig)
        plt.close(fig)
    return plots


def _figure(plots: dict[str, str], key: str, alt: str) -> str:
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{plots[key]}"></p>' if key in plots else ""


COST_DAYS = 7  # the days of the cost section


def cost_figures(records: list[dict], summaries: dict[str, dict]) -> dict:
    """The cost section's figures from the ledger's records of the days shown: USD per day by DAG, per model
    version (the records that name one: batch scoring, the endpoint's days), and per 1,000 predictions per day of
    batch scoring (its runs' USD / the day's scored rows) and of the stream (the streaming job's day / the day's
    stream predictions); the endpoint's invocations are not counted (the capture is sampled), so none is given."""
    by_day: dict[str, dict[str, float]] = {}
    by_version: dict[str, float] = {}
    batch: dict[str, float] = {}
    stream: dict[str, float] = {}
    for record in records:
        day, usd = record["ds"], float(record["usd"])
        by_day.setdefault(day, {})
        by_day[day][record["dag_id"]] = by_day[day].get(record["dag_id"], 0.0) + usd
        line_versions = [(line.get("detail") or {}).get("model_version") for line in record.get("lines", [])]
        if any(line_versions):  # an endpoint's day: each fleet's lines name the version it served
            for line, version in zip(record["lines"], line_versions, strict=True):
                if version:
                    by_version[str(version)] = by_version.get(str(version), 0.0) + float(line["usd"])
        elif record.get("model_version"):
            by_version[str(record["model_version"])] = by_version.get(str(record["model_version"]), 0.0) + usd
        if record["dag_id"] == "churn_batch_scoring":
            batch[day] = batch.get(day, 0.0) + usd
        if record["service"] == "glue" and record["task_id"] == "record_costs":
            stream[day] = stream.get(day, 0.0) + usd
    per_1000 = {}
    for day in sorted(by_day):
        sources = (summaries.get(day) or {}).get("sources", {})
        rows = {name: (sources.get(name) or {}).get("rows") or 0 for name in ("batch", "stream")}
        per_1000[day] = {"batch": batch[day] / rows["batch"] * 1000 if day in batch and rows["batch"] else None,
                         "stream": stream[day] / rows["stream"] * 1000 if day in stream and rows["stream"] else None}
    return {"by_day": dict(sorted(by_day.items())), "by_model_version": dict(sorted(by_version.items())),
            "per_1000": per_1000}


def _cost_html(cost: dict | None) -> str:
    esc = html.escape
    if not cost or not cost["by_day"]:
        return "<p id=\"cost\">No ledger records for these days.</p>"
    dags = sorted({dag for found in cost["by_day"].values() for dag in found})
    head = "".join(f"<th>{esc(dag)}</th>" for dag in dags)
    rows = []
    for day, found in cost["by_day"].items():
        cells = "".join(f"<td>{found[dag]:.4f}</td>" if dag in found else "<td></td>" for dag in dags)
        per = cost["per_1000"].get(day, {})
        figures = "".join(f"<td>{per[k]:.6f}</td>" if per.get(k) is not None else "<td>n/a</td>" for k in ("batch", "stream"))
        rows.append(f"<tr><td>{esc(day)}</td>{cells}<td>{sum(found.values()):.4f}</td>{figures}</tr>")
    versions = "".join(f"<li>v{esc(v)}: {usd:.4f} USD</li>" for v, usd in cost["by_model_version"].items())
    return (f"<table id=\"cost\"><tr><th>day</th>{head}<th>total</th><th>batch per 1,000 predictions</th>"
            f"<th>stream per 1,000 predictions</th></tr>{''.join(rows)}</table>"
            f"<p>By model version (batch scoring and the endpoint's days): </p><ul>{versions or '<li>none named</li>'}</ul>"
            "<p>USD from the cost ledger's records (<code>_costs/records/</code>, docs/cost.md); the endpoint's "
            "invocations are not counted, so it has no figure per 1,000 predictions.</p>")


def render(ds: str, summaries: dict[str, dict], decision: dict, t: Thresholds, cost: dict | None = None) -> str:
    """The report of ``ds`` as one HTML page, from the summaries up to ``ds`` and the day's decision.

    Every value from the summaries, the decision or the params is HTML-escaped: they come from data
    (feature names, sources, dates) and a page a person opens must not run what they contain. The
    numbers formatted with a format spec (``:.3f``) can only be digits.
    """
    from churn_ml.dag_support import MODEL_POINTER_KEY, MONITORING
    from churn_ml.lineage import trace_command
    from churn_ml.settings import settings

    today = summaries[ds]
    plots = _plots(ds, summaries, t)
    esc = html.escape
    rows = []
    for source, found in today["sources"].items():
        if not found.get("rows"):
            rows.append(f"<tr><td>{esc(str(source))}</td><td>0</td><td colspan=4>no scored data this day</td></tr>")
            continue
        top = sorted(found["features"].items(), key=lambda item: -item[1]["psi"])[:3]
        top_text = ", ".join(f"{name} {figures['psi']:.3f}" for name, figures in top)
        rows.append(
            f"<tr><td>{esc(str(source))}</td><td>{esc(str(found['rows']))}</td><td>{found['score']['psi']:.3f}</td>"
            f"<td>{found['score']['js']:.3f}</td><td>{found['score']['mean']:.4f} (baseline "
            f"{found['score'].get('baseline_mean') or float('nan'):.4f})</td>"
            f"<td>{esc(top_text)}</td></tr>"
        )
    quality = today["quality"]
    if quality.get("status") == "closed":
        q = quality
        auc = "n/a" if q["auc"] is None else f"{q['auc']:.3f}"
        pr_auc = "n/a" if q["pr_auc"] is None else f"{q['pr_auc']:.3f}"
        quality_text = (f"predictions of {esc(str(q['prediction_date']))} (model v{esc(str(q.get('model_version')))}), "
                        f"{esc(str(q['rows']))} customers, {esc(str(q['positives']))} churned: AUC {auc}, PR-AUC {pr_auc}, "
                        f"Brier {q['brier']:.4f}, calibration error {q['ece']:.4f}, lift in the top 10 % "
                        f"{q['lift_at_10'] or 0:.2f}")
    else:
        quality_text = (f"predictions of {esc(str(quality['prediction_date']))}: "
                        f"{esc(str(quality['status']).replace('_', ' '))}")
    verdict = "RETRAINING TRIGGERED" if decision["retrain"] else "no retraining"
    days = "".join(f"<li>{esc(str(d['ds']))}: {'decayed' if d['decayed'] else 'ok'}"
                   f"{' (' + esc('; '.join(d['reasons'])) + ')' if d['reasons'] else ''}</li>" for d in decision["days"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Churn model monitoring {esc(ds)}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:1em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px}}.retrain{{color:#b00;font-weight:bold}}</style></head>
<body>
<h1>Churn model monitoring: {esc(ds)}</h1>
<p>Production model v{esc(str(today['model_version']))}; baseline {esc(str(today['baseline_uri']))}</p>
<h2 class="{'retrain' if decision['retrain'] else 'ok'}">Decision: {verdict}</h2>
<p id="reason">{esc(str(decision['reason']))}</p>
<ul>{days}</ul>
<h2>Drift of the day's scored data</h2>
<table><tr><th>source</th><th>rows</th><th>score PSI</th><th>score JS</th><th>mean score</th>
<th>most drifted features (PSI)</th></tr>{''.join(rows)}</table>
<p>Thresholds: PSI {esc(str(t.psi_threshold))}, JS {esc(str(t.js_threshold))}, {esc(str(t.min_drifted_features))}
features, {esc(str(t.min_rows))} rows per source, realized AUC floor {esc(str(t.auc_floor))},
{esc(str(t.consecutive_days))} consecutive days.
Rejected inputs: {esc(str(today.get('rejected', {})))}.</p>
{_figure(plots, 'drift', 'PSI per feature and source')}
{_figure(plots, 'score_drift', 'score PSI per day')}
<h2>Realized quality</h2>
<p id="quality">{quality_text}</p>
{_figure(plots, 'quality', 'realized AUC per prediction date')}
<h2>Lineage</h2>
<p id="lineage">What produced this day's results (the predictions, features and raw partitions, the model version
and the code): <code>{esc(trace_command(f"{settings.lake}/{MONITORING}dt={ds}"))}</code>; the production model's:
<code>{esc(trace_command(f"{settings.lake}/{MODEL_POINTER_KEY}"))}</code>.</p>
<h2>Cost (USD)</h2>
{_cost_html(cost)}
</body></html>
"""
