"""The raw data contract: entities, their fields and the allowed values.

One definition used by the generator (what it writes), the quality rules (what they accept) and
the feature encodings (category codes), so the three can never drift apart.
"""

from __future__ import annotations

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
