"""Churn pipeline library shared by the Spark jobs, the generator and the tests.

Nothing in this package imports Airflow: it runs on EMR Serverless / Glue (shipped as a zip with
``--py-files``), under local Spark, and in plain Python.
"""
