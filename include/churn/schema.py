"""The raw data contract: entities, their fields and the allowed values.

One definition used by the generator (what it writes), the quality rules (what they accept) and
the feature encodings (category codes), so the three can never drift apart.
"""

from __future__ import annotations

import re

PLANS = ("basic", "standard", "premium")
CONTRACTS = ("monthly", "annual")
REGIONS = ("north", "south", "east", "west", "central")
PAYMENT_METHODS = ("card", "bank_transfer", "paypal", "invoice")
EVENT_TYPES = ("usage", "support_ticket", "payment_failure", "plan_change", "cancellation")

RAW_FIELDS: dict[str, tuple[str, ...]] = {
    "customers": ("customer_id", "signup_date", "plan", "monthly_charge", "contract", "region", "payment_method"),
    "events": ("event_id", "customer_id", "event_ts", "event_type", "value"),
}
ENTITIES = tuple(RAW_FIELDS)

MAX_MONTHLY_CHARGE = 1000.0

MAX_USAGE_MINUTES = 1440.0  # one usage event is at most a day of minutes

# Ids (event_id, customer_id): letters, digits, "_", "." and "-", 1 to 64 of them. They travel in CSV
# request bodies (the endpoint's id column), Kinesis partition keys and file names, so nothing that
# needs quoting or escaping there, and no surrounding blanks that one reader strips and another keeps.
MAX_ID_LENGTH = 64
ID_PATTERN = rf"[A-Za-z0-9_.-]{{1,{MAX_ID_LENGTH}}}"
_ID = re.compile(ID_PATTERN)

# A raw record (one JSON line, one stream record) longer than this is quarantined unparsed; the
# errors file keeps its first RECORD_PREFIX_CHARS characters. An event is about 150 bytes.
MAX_RECORD_BYTES = 16 * 1024
RECORD_PREFIX_CHARS = 1024


def valid_id(value: object) -> bool:
    """Whether ``value`` is an id the pipeline accepts (``ID_PATTERN``, the whole string)."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None
