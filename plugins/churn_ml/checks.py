"""The DAGs' data checks: SQL over the lake's Glue Data Catalog tables, the same on both targets.

Each check is one query for the common-sql check operators (``SQLCheckOperator``: every value of its one row
must be true) run through the Athena connection (``CHURN_ATHENA_CONN_ID``, conn_type ``athena``:
AthenaSQLHook, PyAthena): Athena on AWS, the control plane's DuckDB-backed Athena locally
(local_aws/athena.py). So the SQL keeps to what Trino (Athena engine 3) and DuckDB both read: CTEs, joins,
``count``, comparisons, string literals. Table names are unqualified: the connection's schema is the lake's
Glue database (CHURN_GLUE_DATABASE). A table sees only its registered partitions, which the task that swaps a
partition in registers (churn_ml.catalog).
"""

from __future__ import annotations

# One row per customer of the day's scoring input, no customer missing and none extra. Each column names what
# it checks, so the operator's failure ("Test failed. ... Results: ...") says which one failed.
PREDICTIONS_MATCH_SCORING_INPUT = """
WITH predicted AS (SELECT customer_id FROM predictions WHERE dt = '{{ ds }}'),
     scored AS (SELECT DISTINCT customer_id FROM scoring_input WHERE dt = '{{ ds }}')
SELECT
  (SELECT count(*) FROM scored) > 0 AS has_scoring_input,
  (SELECT count(*) FROM predicted) = (SELECT count(DISTINCT customer_id) FROM predicted) AS one_row_per_customer,
  (SELECT count(*) FROM scored s LEFT JOIN predicted p ON p.customer_id = s.customer_id
   WHERE p.customer_id IS NULL) = 0 AS no_customer_missing,
  (SELECT count(*) FROM predicted p LEFT JOIN scored s ON s.customer_id = p.customer_id
   WHERE s.customer_id IS NULL) = 0 AS no_customer_extra
""".strip()
