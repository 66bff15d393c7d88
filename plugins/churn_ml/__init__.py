"""Airflow side of the churn pipelines: custom operators and the local target's runners.

Importing this package is cheap (no boto3, pyspark or xgboost): DAG files import from it at parse time.
"""
