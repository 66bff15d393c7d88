"""An operation the control plane does not emulate fails at once, in the service's error shape.

Against the session's control plane (``aws_local``), with clients that retry as boto3 does by default
(legacy mode) and as the standard mode does: the refusal arrives on the first attempt, well under a
second, with the protocol's error code (JSON and REST-JSON ``UnknownOperationException``, query
``InvalidAction``, S3 ``NotImplemented``), the operation's name and "not emulated by the local
target" — not moto's HTML 500 that botocore retried for ~10 s, nor moto's fake success (a processing
job Completed at once, a crawler RUNNING forever). The server log records each refusal. Operations the
project uses still answer.
"""

from __future__ import annotations

import time
from pathlib import Path

import boto3
import psutil
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from local_aws.common import LOCAL_REGION, credentials

pytestmark = pytest.mark.e2e
ROLE = "arn:aws:iam::123456789012:role/churn-test"


def _client(url: str, service: str, mode: str = "legacy"):
    return boto3.client(service, endpoint_url=url, region_name=LOCAL_REGION, **credentials().as_client_kwargs(),
                        config=Config(retries={"mode": mode, "max_attempts": 5}, connect_timeout=2, read_timeout=30))


def _refused(call, code: str, operation: str, status: int) -> dict:
    """``call()`` raises the refusal at once, without a retry; returns the error response."""
    started = time.monotonic()
    with pytest.raises(ClientError) as raised:
        call()
    elapsed = time.monotonic() - started
    response = raised.value.response
    assert response["Error"]["Code"] == code, response
    assert f"{operation} is not emulated by the local target" in response["Error"]["Message"], response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert response["ResponseMetadata"]["RetryAttempts"] == 0
    assert elapsed < 1.0, f"{operation} took {elapsed:.2f}s to be refused"
    return response


def _absent(names, name: str, operation: str) -> None:
    """``name`` is not among ``names()``; or the listing ``operation`` itself is not emulated (refused as such)."""
    try:
        listed = names()
    except ClientError as err:
        assert f"{operation} is not emulated by the local target" in err.response["Error"]["Message"], err.response
    else:
        assert name not in listed


def _server_log(url: str) -> Path:
    """The control plane's log file (its stdout), found from the process listening on ``url``'s port."""
    port = int(url.rsplit(":", 1)[1])
    pid = next(conn.pid for conn in psutil.net_connections(kind="tcp")
               if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid)
    return Path(f"/proc/{pid}/fd/1").resolve()


@pytest.mark.parametrize("mode", ["legacy", "standard"])
def test_a_sagemaker_processing_job_is_refused_and_nothing_is_created(aws_local, lake_root, mode):
    sagemaker = _client(aws_local, "sagemaker", mode)
    request = {
        "ProcessingJobName": f"not-emulated-{mode}", "RoleArn": ROLE,
        "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large",
                                                  "VolumeSizeInGB": 10}},
        "AppSpecification": {"ImageUri": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/churn:latest"},
    }
    _refused(lambda: sagemaker.create_processing_job(**request), "UnknownOperationException", "CreateProcessingJob", 400)
    # Nothing was created: listing processing jobs is refused as well (SageMaker's EMULATED_OPERATIONS has no
    # processing job operation), or, where moto's List answers, it does not show the job.
    _absent(lambda: [job["ProcessingJobName"] for job in sagemaker.list_processing_jobs()["ProcessingJobSummaries"]],
            request["ProcessingJobName"], "ListProcessingJobs")
    assert "CreateProcessingJob is not emulated by the local target" in _server_log(aws_local).read_text()
    # what the project uses still answers
    assert "TrainingJobSummaries" in sagemaker.list_training_jobs()


def test_glue_crawlers_are_refused(aws_local, lake_root):
    glue = _client(aws_local, "glue")
    _refused(lambda: glue.create_crawler(Name="not-emulated", Role=ROLE, Targets={"S3Targets": [{"Path": "s3://x/y"}]}),
             "UnknownOperationException", "CreateCrawler", 400)
    _refused(lambda: glue.start_crawler(Name="not-emulated"), "UnknownOperationException", "StartCrawler", 400)
    _absent(lambda: glue.list_crawlers()["CrawlerNames"], "not-emulated", "ListCrawlers")
    assert "Jobs" in glue.get_jobs()


def test_an_s3_operation_the_lake_does_not_emulate_is_not_implemented(aws_local, lake_root):
    s3 = _client(aws_local, "s3")
    configuration = {"Role": ROLE, "Rules": [{"Status": "Enabled", "Priority": 1, "Filter": {"Prefix": ""},
                                              "DeleteMarkerReplication": {"Status": "Disabled"},
                                              "Destination": {"Bucket": "arn:aws:s3:::elsewhere"}}]}
    _refused(lambda: s3.put_bucket_replication(Bucket="churn-not-emulated", ReplicationConfiguration=configuration),
             "NotImplemented", "PutBucketReplication", 501)
    assert "Buckets" in s3.list_buckets()


def test_a_query_protocol_operation_moto_lacks_is_an_invalid_action(aws_local, lake_root):
    sns = _client(aws_local, "sns")
    _refused(lambda: sns.get_sms_sandbox_account_status(), "InvalidAction", "GetSMSSandboxAccountStatus", 400)
    assert "Topics" in sns.list_topics()
    assert _client(aws_local, "sts").get_caller_identity()["Account"]


def test_an_emr_serverless_operation_not_emulated_is_refused_in_rest_json(aws_local, lake_root):
    emr = _client(aws_local, "emr-serverless")
    _refused(lambda: emr.list_sessions(applicationId="00000000000000000"), "UnknownOperationException",
             "ListSessions", 400)
    assert "applications" in emr.list_applications()


def test_a_service_the_control_plane_does_not_serve_is_refused(aws_local, lake_root):
    ecs = _client(aws_local, "ecs")
    response = _refused(lambda: ecs.list_clusters(), "UnknownOperationException", "ListClusters", 400)
    assert "does not serve ecs" in response["Error"]["Message"]
