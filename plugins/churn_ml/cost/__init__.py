"""What the churn pipelines cost, from what each AWS service bills (docs/cost.md).

- ``prices``: the price table of a region, kept as data (``prices/<region>.json``), and its optional
  refresh from the AWS Price List API;
- ``usage``: pure functions from each service's own Describe/Get answer to usage records
  (BillableTimeInSeconds, billedResourceUtilization, DPU seconds, instance-hours, shard-hours, GB-months);
- ``ledger``: usage priced into ledger lines, one record per job under the lake's ``_costs/``, and totals
  (per DAG, run, model version, day; per 1,000 predictions);
- ``project`` and ``python -m churn_ml.cost.cli project``: a month of a scenario priced item by item beside
  the reference architecture's $1,610.98/month, or the ledger's measured usage scaled to a target volume.

Importing this package is cheap (no boto3, no Airflow): the modules import them where they are used.
"""
