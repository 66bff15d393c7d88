"""The price table of a region: data (``prices/<region>.json``), not code, and its refresh from the AWS Price List API.

Each item is one billed unit of one service (``sagemaker.training.ml.m5.xlarge`` per instance-hour,
``glue.etl.dpu_hour``, ``kinesis.shard_hour``, ...) with its price in USD, the page the figure comes
from, the date it was compiled, and whether it was confirmed. Items that carry a ``price_list`` filter
(the SageMaker instance types, Glue DPUs, EMR Serverless) can be read again from the Price List API's
GetProducts (``refresh_from_price_list``, on the aws target: it needs AWS credentials with
``pricing:GetProducts``); the result is a new table to review and write over the file, never a silent
change of the figures a ledger was priced with.

Spot training has no price of its own: SageMaker bills managed spot training at the instance type's
training rate over the job's measured ``BillableTimeInSeconds`` (the saving is 1 - billable/training time).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any

# The Price List API answers from a few regions only; us-east-1 serves every region's prices.
PRICING_API_REGION = "us-east-1"
PRICES_FOLDER = "prices"
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class UnknownPriceItem(KeyError):
    """An item the region's price table does not have; the message names the item and the file to add it to."""

    def __str__(self) -> str:  # KeyError would print the message quoted, as a key
        return str(self.args[0])


@dataclass(frozen=True)
class PriceItem:
    """One billed unit: ``usd`` per ``unit`` (an instance-hour, a DPU-hour, a GB-month, ...)."""

    name: str
    usd: float
    unit: str
    source: str
    as_of: str
    description: str = ""
    confirmed: bool = False
    note: str = ""
    price_list: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"usd": self.usd, "unit": self.unit, "description": self.description,
                                 "source": self.source, "as_of": self.as_of, "confirmed": self.confirmed, "note": self.note}
        if self.price_list:
            entry["price_list"] = {"service_code": self.price_list["service_code"],
                                   "filters": dict(self.price_list["filters"])}
        return entry


@dataclass(frozen=True)
class PriceTable:
    """The items of one region, read from ``path``."""

    region: str
    path: str
    items: Mapping[str, PriceItem] = field(default_factory=dict)
    currency: str = "USD"
    about: str = ""

    def item(self, name: str) -> PriceItem:
        try:
            return self.items[name]
        except KeyError:
            raise UnknownPriceItem(
                f"no price for item {name!r} in {self.path}: add an entry for it under \"items\" there "
                "(usd, unit, source: the AWS pricing page, as_of: the date of the figure)") from None

    def __contains__(self, name: object) -> bool:
        return name in self.items

    def __iter__(self) -> Iterator[PriceItem]:
        return iter(self.items[name] for name in sorted(self.items))

    def to_dict(self) -> dict[str, Any]:
        """The table in its file's shape (``json.dumps(table.to_dict(), indent=1)`` is what the file holds)."""
        return {"region": self.region, "currency": self.currency, "about": self.about,
                "items": {name: self.items[name].to_dict() for name in sorted(self.items)}}


def _folder():
    return resources.files("churn_ml.cost").joinpath(PRICES_FOLDER)


def available_regions() -> list[str]:
    """The regions that have a price table (``prices/<region>.json``)."""
    folder = _folder()
    return sorted(entry.name[: -len(".json")] for entry in folder.iterdir() if entry.name.endswith(".json"))


def table_path(region: str) -> str:
    """Where the region's table is (or would be): ``.../churn_ml/cost/prices/<region>.json``."""
    return str(_folder().joinpath(f"{region}.json"))


def load_prices(region: str = "us-east-1") -> PriceTable:
    """The price table of ``region``; FileNotFoundError naming the file and the regions that have one."""
    entry = _folder().joinpath(f"{region}.json")
    if not entry.is_file():
        raise FileNotFoundError(
            f"no price table for region {region!r}: expected {table_path(region)}. Regions with one: "
            f"{', '.join(available_regions()) or 'none'}. Copy one of them, with the figures of {region}'s pricing pages")
    try:
        data = json.loads(entry.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{table_path(region)} is not valid JSON ({err}): fix the file") from err
    return parse_table(data, table_path(region), region)


def parse_table(data: Mapping[str, Any], path: str, region: str | None = None) -> PriceTable:
    """Check a table's shape and build it; ValueError naming the file, the item and the field that is wrong."""
    if not isinstance(data, Mapping) or not isinstance(data.get("items"), Mapping):
        raise ValueError(f"{path}: expected an object with \"items\": {{item name: {{usd, unit, source, as_of}}}}")
    if region is not None and data.get("region") != region:
        raise ValueError(f"{path}: its \"region\" is {data.get('region')!r}, expected {region!r}")
    items = {}
    for name, entry in data["items"].items():
        where = f"{path}, item {name!r}"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where}: expected an object with usd, unit, source and as_of")
        missing = [key for key in ("usd", "unit", "source", "as_of") if key not in entry]
        if missing:
            raise ValueError(f"{where}: missing {', '.join(missing)} (every price says what it costs per which unit, "
                             "where the figure comes from and when)")
        usd = entry["usd"]
        if isinstance(usd, bool) or not isinstance(usd, int | float) or usd < 0:
            raise ValueError(f"{where}: usd must be a number >= 0, got {usd!r}")
        if not _DATE.match(str(entry["as_of"])):
            raise ValueError(f"{where}: as_of must be a date YYYY-MM-DD, got {entry['as_of']!r}")
        price_list = entry.get("price_list")
        if price_list is not None and not (isinstance(price_list, Mapping) and price_list.get("service_code")
                                           and isinstance(price_list.get("filters"), Mapping) and price_list["filters"]):
            raise ValueError(f"{where}: price_list must be {{\"service_code\": ..., \"filters\": {{field: value}}}}")
        items[name] = PriceItem(name=name, usd=float(usd), unit=str(entry["unit"]), source=str(entry["source"]),
                                as_of=str(entry["as_of"]), description=str(entry.get("description", "")),
                                confirmed=bool(entry.get("confirmed", False)), note=str(entry.get("note", "")),
                                price_list=price_list)
    return PriceTable(region=str(data.get("region", region or "")), path=path, items=items,
                      currency=str(data.get("currency", "USD")), about=str(data.get("about", "")))


# ------------------------------------------------------------------------------------------ Price List API

def _products(client, service_code: str, filters: Mapping[str, str]) -> list[dict]:
    """Every product GetProducts returns for the filters (all pages), each parsed from its JSON string."""
    request = {"ServiceCode": service_code, "FormatVersion": "aws_v1", "MaxResults": 100,
               "Filters": [{"Type": "TERM_MATCH", "Field": key, "Value": value} for key, value in sorted(filters.items())]}
    products: list[dict] = []
    while True:
        answer = client.get_products(**request)
        for entry in answer.get("PriceList", []):
            products.append(json.loads(entry) if isinstance(entry, str) else dict(entry))
        token = answer.get("NextToken")
        if not token:
            return products
        request["NextToken"] = token


def on_demand_price(product: Mapping[str, Any]) -> tuple[float, str, str]:
    """(USD per unit, the price list's unit, effective date) of a product's on-demand first tier.

    The shape is GetProducts' ``PriceList`` entry: ``terms.OnDemand.<sku.offerTermCode>.priceDimensions.
    <rateCode>`` with ``unit``, ``beginRange`` and ``pricePerUnit.USD`` (a decimal string).
    """
    sku = (product.get("product") or {}).get("sku", "?")
    terms = (product.get("terms") or {}).get("OnDemand") or {}
    for term in terms.values():
        dimensions = sorted((term.get("priceDimensions") or {}).values(),
                            key=lambda d: float(d.get("beginRange") or 0))
        for dimension in dimensions:
            if float(dimension.get("beginRange") or 0) == 0 and "USD" in (dimension.get("pricePerUnit") or {}):
                return (float(dimension["pricePerUnit"]["USD"]), str(dimension.get("unit", "")),
                        str(term.get("effectiveDate", ""))[:10])
    raise ValueError(f"product {sku} has no on-demand USD price (terms.OnDemand...priceDimensions...pricePerUnit.USD)")


def refresh_from_price_list(region: str = "us-east-1", *, client=None, table: PriceTable | None = None,
                            as_of: str | None = None) -> PriceTable:
    """The region's table with every item that has a ``price_list`` filter read again from GetProducts.

    ``client`` is a boto3 ``pricing`` client (made for the API's us-east-1 endpoint when not given). An item
    whose filters match no product, or products of different prices, raises ValueError naming the item and
    the file whose filters to fix: a figure is never guessed. Items without a filter are kept as they are.
    """
    table = table or load_prices(region)
    if client is None:
        import boto3

        client = boto3.client("pricing", region_name=PRICING_API_REGION)
    today = as_of or dt.datetime.now(dt.UTC).date().isoformat()
    updated = dict(table.items)
    for item in table:
        if not item.price_list:
            continue
        service, filters = item.price_list["service_code"], dict(item.price_list["filters"])
        wanted = ", ".join(f"{k}={v}" for k, v in sorted(filters.items()))
        products = _products(client, service, filters)
        if not products:
            raise ValueError(f"the Price List API has no {service} product for {item.name} ({wanted}): fix the item's "
                             f"price_list filters in {table.path}")
        found = {}
        for product in products:
            usd, unit, effective = on_demand_price(product)
            found.setdefault(usd, []).append(((product.get("product") or {}).get("sku", "?"), unit, effective))
        if len(found) > 1:
            listed = "; ".join(f"${usd} ({', '.join(sku for sku, _, _ in skus)})" for usd, skus in sorted(found.items()))
            raise ValueError(f"{item.name}: the {service} products matching {wanted} have different prices ({listed}): "
                             f"narrow the item's price_list filters in {table.path}")
        [(usd, matches)] = found.items()
        sku, unit, effective = matches[0]
        updated[item.name] = replace(
            item, usd=usd, as_of=today, confirmed=True,
            note=f"read from the AWS Price List API (GetProducts {service} {wanted}): SKU {sku}, {usd} USD per "
                 f"{unit or 'unit'}, effective {effective or 'unknown'}")
    return replace(table, items=updated)
