"""``python -m churn_ml.cost.cli``: price a month of the pipelines, or list the price table (docs/cost.md).

    python -m churn_ml.cost.cli project                                   # the reference scenario, itemised
    python -m churn_ml.cost.cli project --gb-per-day 500 --spark-backend emr-serverless --json
    python -m churn_ml.cost.cli project --from-ledger s3://churn-lake/_costs/records/ --measured-gb-per-day 0.05 --target-gb-per-day 100
    python -m churn_ml.cost.cli prices                                    # the us-east-1 table, as docs/cost.md shows it
    python -m churn_ml.cost.cli prices --refresh --json                   # read again from the AWS Price List API

``--from-ledger`` takes a folder of ledger records (``*.json``, searched recursively) or an ``s3://`` prefix,
read through the AWS connection (source scripts/env.sh on the local target).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from churn_ml.cost.ledger import check_record
from churn_ml.cost.prices import PriceTable, load_prices, refresh_from_price_list
from churn_ml.cost.project import Scenario, project, project_from_ledger, render

LEDGER_OPTIONS = ("retrain_every_days", "hours_per_month")


def load_records(source: str) -> list[dict]:
    """Every ledger record under ``source``: an s3:// prefix (through the AWS connection) or a local folder."""
    if source.startswith("s3://"):
        from churn_ml import lake

        return [check_record(lake.read_json(uri), uri) for uri in lake.list_keys(source) if uri.endswith(".json")]
    folder = Path(source)
    if not folder.is_dir():
        raise SystemExit(f"--from-ledger {source}: expected an s3:// prefix or a folder of ledger records (*.json)")
    return [check_record(json.loads(path.read_text(encoding="utf-8")), str(path)) for path in sorted(folder.rglob("*.json"))]


def price_table_markdown(table: PriceTable) -> str:
    """The table as docs/cost.md shows it: one row per item."""
    out = ["| item | USD | unit | source | as of | confirmed | note |", "|---|---:|---|---|---|---|---|"]
    for item in table:
        note = item.note.replace("|", "\\|")
        out.append(f"| {item.name} | {item.usd!r} | {item.unit} | {item.source} | {item.as_of} | "
                   f"{'yes' if item.confirmed else 'no'} | {note} |")
    return "\n".join(out)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m churn_ml.cost.cli", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    proj = commands.add_parser("project", help="price a month of a scenario (or of the ledger's measured usage), itemised")
    for f in fields(Scenario):
        default = f.default
        kind = {"int": int, "float": float, "str": str}.get(type(default).__name__, float)
        proj.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=kind, default=None,
                          help=f"default: {default}")
    proj.add_argument("--region", default="us-east-1", help="the price table to use (plugins/churn_ml/cost/prices/<region>.json)")
    proj.add_argument("--from-ledger", help="project the usage measured in these ledger records (folder or s3:// prefix)")
    proj.add_argument("--measured-gb-per-day", type=float, help="with --from-ledger: the volume a day the measured runs processed")
    proj.add_argument("--target-gb-per-day", type=float, help="with --from-ledger: the volume a day to project to")
    proj.add_argument("--training-dag", default="churn_training", help="with --from-ledger: the DAG whose usage is per retraining run")
    proj.add_argument("--json", action="store_true", help="print the projection as JSON")
    prices = commands.add_parser("prices", help="the price table of a region")
    prices.add_argument("--region", default="us-east-1")
    prices.add_argument("--refresh", action="store_true",
                        help="read the items with a price_list filter from the AWS Price List API (needs AWS credentials)")
    prices.add_argument("--json", action="store_true", help="print the table in its file's JSON shape (to review and write over the file)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "prices":
        table = refresh_from_price_list(args.region) if args.refresh else load_prices(args.region)
        print(json.dumps(table.to_dict(), indent=1) if args.json else price_table_markdown(table))
        return 0
    given = {f.name: getattr(args, f.name) for f in fields(Scenario) if getattr(args, f.name) is not None}
    try:
        table = load_prices(args.region)
        if args.from_ledger:
            if args.measured_gb_per_day is None or args.target_gb_per_day is None:
                parser.error("--from-ledger needs --measured-gb-per-day (what the runs processed) and --target-gb-per-day")
            other = sorted(set(given) - set(LEDGER_OPTIONS))
            if other:
                parser.error(f"with --from-ledger the usage is measured: --{other[0].replace('_', '-')} does not apply "
                             f"(only --{' and --'.join(o.replace('_', '-') for o in LEDGER_OPTIONS)} do)")
            if args.from_ledger.startswith("s3://"):
                from churn_ml import lake

                lake.quiet_logs()  # the output is the projection, without the S3 hook's log lines
            defaults = Scenario()
            result = project_from_ledger(
                load_records(args.from_ledger), table, measured_gb_per_day=args.measured_gb_per_day,
                target_gb_per_day=args.target_gb_per_day, training_dag=args.training_dag,
                retrain_every_days=given.get("retrain_every_days", defaults.retrain_every_days),
                hours_per_month=given.get("hours_per_month", defaults.hours_per_month))
        else:
            if args.measured_gb_per_day is not None or args.target_gb_per_day is not None:
                parser.error("--measured-gb-per-day and --target-gb-per-day go with --from-ledger; a scenario's volume is --gb-per-day")
            result = project(Scenario(**given), table)
    except (ValueError, KeyError, FileNotFoundError) as err:
        print(f"cannot project: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result.to_dict(), indent=1) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
