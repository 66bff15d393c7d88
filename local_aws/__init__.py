"""Local target: runners that take the same request as the AWS API and do the work on this machine.

Each returns a response shaped like the matching AWS Describe/Get call and keeps its state under
``LAKE_ROOT/.control-plane/`` so a retried task finds a job that already completed.
"""
