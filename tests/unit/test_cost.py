"""The cost ledger's pure core (churn_ml.cost): usage from fixed Describe/Get answers equals hand-computed
figures for each service, prices come from the table (and its Price List refresh), ledger records and keys,
the projection of the reference scenario and its CLI, and docs/cost.md against the table and the command."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from churn_ml.cost import cli, ledger, prices, project, usage

REPO = Path(__file__).resolve().parents[2]
PRICES = prices.load_prices("us-east-1")
UTC = dt.UTC


def at(text: str) -> dt.datetime:
    """A timestamp as boto3 returns it: an aware datetime."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def usd(usages) -> float:
    return sum(ledger.price(u, PRICES).usd for u in usages)


# ----------------------------------------------------------------------------------------------- answers

def training_job(name="churn-train-1", *, instance="ml.m5.xlarge", count=1, billable=600, training=1500, spot=True,
                 status="Completed", tuning=None):
    job = {"TrainingJobName": name, "TrainingJobStatus": status, "SecondaryStatus": status,
           "ResourceConfig": {"InstanceType": instance, "InstanceCount": count, "VolumeSizeInGB": 10},
           "EnableManagedSpotTraining": spot, "CreationTime": at("2026-07-01T09:59:00"),
           "TrainingStartTime": at("2026-07-01T10:00:00"), "TrainingEndTime": at("2026-07-01T10:25:00"),
           "BillableTimeInSeconds": billable, "TrainingTimeInSeconds": training}
    if tuning:
        job["TuningJobArn"] = f"arn:aws:sagemaker:us-east-1:000000000000:hyper-parameter-tuning-job/{tuning}"
    return job


def endpoint_config(name, instance, count, variant="AllTraffic"):
    return {"EndpointConfigName": name, "ProductionVariants": [
        {"VariantName": variant, "ModelName": f"model-{name}", "InstanceType": instance, "InitialInstanceCount": count,
         "InitialVariantWeight": 1.0}]}


# ------------------------------------------------------------------------------------ SageMaker training

def test_on_demand_training_bills_billable_seconds_times_instances():
    [u] = usage.training_job_usage(training_job(count=2, billable=1800, training=1800, spot=False))
    assert (u.item, u.unit, u.day) == ("sagemaker.training.ml.m5.xlarge", "instance-hour", "2026-07-01")
    assert u.quantity == pytest.approx(1.0)                        # 1800 s x 2 instances = 1 instance-hour
    assert ledger.price(u, PRICES).usd == pytest.approx(0.23)
    assert u.detail["managed_spot"] is False and u.detail["spot_saving"] == 0.0


def test_spot_training_bills_only_billable_time_and_measures_the_saving():
    [u] = usage.training_job_usage(training_job(billable=600, training=1500, spot=True))
    assert u.quantity == pytest.approx(600 / 3600)
    assert ledger.price(u, PRICES).usd == pytest.approx(0.23 / 6)  # 10 billable minutes of ml.m5.xlarge
    assert u.detail["managed_spot"] is True
    assert u.detail["spot_saving"] == pytest.approx(0.6)             # 1 - 600/1500: measured, not assumed
    assert (u.detail["billable_seconds"], u.detail["training_seconds"]) == (600, 1500)


def test_a_heterogeneous_cluster_bills_each_instance_group():
    job = training_job(billable=3600, training=3600, spot=False)
    job["ResourceConfig"] = {"InstanceGroups": [{"InstanceGroupName": "a", "InstanceType": "ml.m5.large", "InstanceCount": 2},
                                                {"InstanceGroupName": "b", "InstanceType": "ml.c5.xlarge", "InstanceCount": 1}]}
    usages = usage.training_job_usage(job)
    assert [(u.item, u.quantity) for u in usages] == [("sagemaker.training.ml.m5.large", 2.0), ("sagemaker.training.ml.c5.xlarge", 1.0)]
    assert usd(usages) == pytest.approx(2 * 0.115 + 0.204)


def test_a_tuning_job_is_the_sum_of_its_trials():
    trials = [training_job("churn-hpo-1-001", instance="ml.c5.xlarge", billable=360, training=400, tuning="churn-hpo-1"),
              training_job("churn-hpo-1-002", instance="ml.c5.xlarge", billable=720, training=900, tuning="churn-hpo-1")]
    usages = usage.tuning_job_usage("churn-hpo-1", trials)
    assert [u.resource for u in usages] == ["churn-hpo-1-001", "churn-hpo-1-002"]
    assert all(u.detail["tuning_job"] == "churn-hpo-1" for u in usages)
    assert sum(u.quantity for u in usages) == pytest.approx(0.3)      # (360 + 720) s = 0.3 instance-hours
    assert usd(usages) == pytest.approx(0.3 * 0.204)
    assert usage.measured_spot_saving(usages) == pytest.approx(1 - 1080 / 1300)
    with pytest.raises(ValueError, match="is not the tuning job churn-hpo-1"):
        usage.tuning_job_usage("churn-hpo-1", [training_job("x", tuning="churn-hpo-2")])


def test_training_answers_that_cannot_be_billed_say_which_field():
    with pytest.raises(ValueError, match="TrainingJobStatus is InProgress, expected one of Completed, Stopped, Failed"):
        usage.training_job_usage(training_job(status="InProgress"))
    job = training_job()
    del job["BillableTimeInSeconds"]
    with pytest.raises(ValueError, match="expected the field BillableTimeInSeconds"):
        usage.training_job_usage(job)
    job = training_job()
    del job["ResourceConfig"]["InstanceType"]
    with pytest.raises(ValueError, match="expected the field InstanceType"):
        usage.training_job_usage(job)
    stopped = training_job(status="Stopped")            # stopped before it ran: AWS reports (and bills) nothing
    del stopped["BillableTimeInSeconds"], stopped["TrainingTimeInSeconds"]
    assert usage.training_job_usage(stopped)[0].quantity == 0


# ------------------------------------------------------------------------------------------- transform

def test_transform_bills_instances_times_its_duration():
    job = {"TransformJobName": "churn-bt-1", "TransformJobStatus": "Completed", "CreationTime": at("2026-07-02T09:59:00"),
           "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 2},
           "TransformStartTime": at("2026-07-02T10:00:00"), "TransformEndTime": at("2026-07-02T10:45:00")}
    u = usage.transform_job_usage(job)
    assert (u.item, u.day, u.quantity) == ("sagemaker.transform.ml.m5.large", "2026-07-02", pytest.approx(1.5))
    assert ledger.price(u, PRICES).usd == pytest.approx(1.5 * 0.115)
    del job["TransformEndTime"]
    with pytest.raises(ValueError, match="expected the field TransformEndTime"):
        usage.transform_job_usage(job)
    with pytest.raises(ValueError, match="TransformJobStatus is InProgress"):
        usage.transform_job_usage({**job, "TransformJobStatus": "InProgress"})


# -------------------------------------------------------------------------------------------- endpoint

def blue_green_history():
    """Created 07-01 00:00 on 2 x ml.m5.large (config A); a blue/green update to 2 x ml.m5.xlarge (config B)
    starts 07-01 23:00 and completes 07-02 01:30 (both fleets run across midnight); deleted 07-02 12:00."""
    a, b = endpoint_config("churn-a", "ml.m5.large", 2), endpoint_config("churn-b", "ml.m5.xlarge", 2)
    described = {"EndpointName": "churn-xgboost", "EndpointConfigName": "churn-a", "CreationTime": at("2026-07-01T00:00:00"),
                 "EndpointStatus": "InService"}
    return [usage.creation_event(described, a),
            *usage.update_events(at("2026-07-01T23:00:00"), b, completed=at("2026-07-02T01:30:00")),
            usage.deletion_event(at("2026-07-02T12:00:00"))]


def test_endpoint_bills_both_fleets_of_a_blue_green_update_per_utc_day():
    usages = usage.endpoint_usage("churn-xgboost", blue_green_history(), until=at("2026-07-03T00:00:00"))
    got = {(u.day, u.detail["endpoint_config"], u.item): u.quantity for u in usages}
    assert got == {
        ("2026-07-01", "churn-a", "sagemaker.hosting.ml.m5.large"): pytest.approx(48.0),   # 24 h x 2
        ("2026-07-01", "churn-b", "sagemaker.hosting.ml.m5.xlarge"): pytest.approx(2.0),   # 23:00-24:00 x 2
        ("2026-07-02", "churn-a", "sagemaker.hosting.ml.m5.large"): pytest.approx(3.0),    # 00:00-01:30 x 2
        ("2026-07-02", "churn-b", "sagemaker.hosting.ml.m5.xlarge"): pytest.approx(24.0),  # 00:00-12:00 x 2
    }
    by_day = {}
    for u in usages:
        by_day[u.day] = by_day.get(u.day, 0.0) + ledger.price(u, PRICES).usd
    assert by_day == {"2026-07-01": pytest.approx(48 * 0.115 + 2 * 0.23), "2026-07-02": pytest.approx(3 * 0.115 + 24 * 0.23)}


def test_endpoint_rollback_scale_and_a_fleet_still_running():
    a, b = endpoint_config("churn-a", "ml.m5.large", 1), endpoint_config("churn-b", "ml.m5.large", 1)
    events = [usage.EndpointEvent(at("2026-07-01T00:00:00"), "create", "churn-a", usage.variants_of(a)),
              *usage.update_events(at("2026-07-01T06:00:00"), b, rolled_back=at("2026-07-01T06:30:00")),
              usage.scale_event(at("2026-07-01T12:00:00"),
                                {"EndpointName": "e", "ProductionVariants": [{"VariantName": "AllTraffic", "CurrentInstanceCount": 3}]}, a)]
    usages = usage.endpoint_usage("e", events, until=at("2026-07-01T18:00:00"))
    # churn-a: 12 h x 1 then 6 h x 3 = 30; the rolled-back churn-b: 0.5 h x 1
    assert {u.detail["endpoint_config"]: u.quantity for u in usages} == {"churn-a": pytest.approx(30.0), "churn-b": pytest.approx(0.5)}
    with pytest.raises(ValueError, match="no fleet runs to update; expected a create"):
        usage.endpoint_usage("e", usage.update_events(at("2026-07-01T06:00:00"), b), until=at("2026-07-02T00:00:00"))
    with pytest.raises(ValueError, match="serverless"):
        usage.variants_of({"EndpointConfigName": "s", "ProductionVariants": [{"VariantName": "v", "ServerlessConfig": {"MemorySizeInMB": 2048}}]})


# ------------------------------------------------------------------------------------------ EMR Serverless

def test_emr_serverless_bills_its_billed_resource_utilization():
    answer = {"jobRun": {"applicationId": "00f1", "jobRunId": "00f2", "name": "churn-features-20260701", "state": "SUCCESS",
                         "createdAt": at("2026-07-01T02:00:00"), "startedAt": at("2026-07-01T02:01:00"),
                         "billedResourceUtilization": {"vCPUHour": 2.5, "memoryGBHour": 10.0, "storageGBHour": 4.0}}}
    usages = usage.emr_serverless_usage(answer)
    assert {u.item: u.quantity for u in usages} == {"emr_serverless.vcpu_hour": 2.5, "emr_serverless.memory_gb_hour": 10.0,
                                                    "emr_serverless.storage_gb_hour": 4.0}
    assert usd(usages) == pytest.approx(2.5 * 0.052624 + 10 * 0.0057785 + 4 * 0.000111)
    del answer["jobRun"]["billedResourceUtilization"]
    with pytest.raises(ValueError, match="expected the field billedResourceUtilization"):
        usage.emr_serverless_usage(answer)
    with pytest.raises(ValueError, match="state is RUNNING"):
        usage.emr_serverless_usage({"jobRun": {**answer["jobRun"], "state": "RUNNING"}})


# ---------------------------------------------------------------------------------------------------- Glue

def glue_run(**fields):
    run = {"Id": "jr_1", "JobName": "churn-features", "JobRunState": "SUCCEEDED", "GlueVersion": "4.0",
           "StartedOn": at("2026-07-01T03:00:00"), "CompletedOn": at("2026-07-01T03:15:00")}
    return {"JobRun": {**run, **fields}}


def test_glue_bills_dpu_seconds_when_the_service_reports_them():
    u = usage.glue_job_run_usage(glue_run(DPUSeconds=5400.0, ExecutionTime=900, WorkerType="G.1X", NumberOfWorkers=10))
    assert (u.item, u.quantity, u.detail["basis"]) == ("glue.etl.dpu_hour", pytest.approx(1.5), "DPUSeconds")
    assert ledger.price(u, PRICES).usd == pytest.approx(0.66)


def test_glue_without_dpu_seconds_bills_execution_time_times_capacity_with_the_minimum():
    u = usage.glue_job_run_usage(glue_run(ExecutionTime=900, WorkerType="G.2X", NumberOfWorkers=5))
    assert u.quantity == pytest.approx(2.5)                      # 10 DPU x 0.25 h
    assert ledger.price(u, PRICES).usd == pytest.approx(1.10)
    short = usage.glue_job_run_usage(glue_run(ExecutionTime=20, WorkerType="G.1X", NumberOfWorkers=2))
    assert short.quantity == pytest.approx(2 * 60 / 3600)        # Glue 2.0+: billed for 1 minute, not 20 s
    assert short.detail["billed_seconds"] == 60
    legacy = usage.glue_job_run_usage(glue_run(ExecutionTime=120, MaxCapacity=10.0, GlueVersion="1.0"))
    assert legacy.quantity == pytest.approx(10 * 600 / 3600)     # Glue 1.0: a 10-minute minimum
    flex = usage.glue_job_run_usage(glue_run(ExecutionTime=3600, WorkerType="G.025X", NumberOfWorkers=4, ExecutionClass="FLEX"))
    assert (flex.item, flex.quantity) == ("glue.flex.dpu_hour", pytest.approx(1.0))


def test_glue_answers_that_cannot_be_billed_say_which_field():
    with pytest.raises(ValueError, match="expected the field ExecutionTime"):
        usage.glue_job_run_usage(glue_run(WorkerType="G.1X", NumberOfWorkers=2))
    with pytest.raises(ValueError, match="expected WorkerType and NumberOfWorkers, or MaxCapacity"):
        usage.glue_job_run_usage(glue_run(ExecutionTime=60))
    with pytest.raises(ValueError, match="WorkerType 'G.99X' has no DPU figure"):
        usage.glue_job_run_usage(glue_run(ExecutionTime=60, WorkerType="G.99X", NumberOfWorkers=2))
    with pytest.raises(ValueError, match="JobRunState is RUNNING"):
        usage.glue_job_run_usage(glue_run(JobRunState="RUNNING", ExecutionTime=60, WorkerType="G.1X", NumberOfWorkers=2))


def test_a_glue_streaming_job_bills_its_hours_per_utc_day():
    run = glue_run(JobRunState="RUNNING", WorkerType="G.1X", NumberOfWorkers=2, StartedOn=at("2026-07-01T22:00:00"))
    del run["JobRun"]["CompletedOn"]
    usages = usage.glue_streaming_usage(run, until=at("2026-07-02T03:00:00"))
    assert [(u.day, u.item, u.quantity) for u in usages] == [("2026-07-01", "glue.streaming.dpu_hour", pytest.approx(4.0)),
                                                             ("2026-07-02", "glue.streaming.dpu_hour", pytest.approx(6.0))]
    day_two = usage.glue_streaming_usage(run, until=at("2026-07-02T03:00:00"),
                                         window=(at("2026-07-02T00:00:00"), at("2026-07-03T00:00:00")))
    assert [(u.day, u.quantity) for u in day_two] == [("2026-07-02", pytest.approx(6.0))]
    with pytest.raises(ValueError, match="pass until="):
        usage.glue_streaming_usage(run)


# ------------------------------------------------------------------------------------------ Kinesis and S3

def test_kinesis_shard_hours_and_put_payload_units():
    summary = {"StreamDescriptionSummary": {"StreamName": "churn-events", "OpenShardCount": 4,
                                            "StreamModeDetails": {"StreamMode": "PROVISIONED"}}}
    usages = usage.kinesis_stream_usage(summary, at("2026-07-01T18:00:00"), at("2026-07-02T06:00:00"))
    assert [(u.day, u.item, u.quantity) for u in usages] == [("2026-07-01", "kinesis.shard_hour", 24.0),
                                                             ("2026-07-02", "kinesis.shard_hour", 24.0)]
    assert usd(usages) == pytest.approx(48 * 0.015)
    put = usage.kinesis_put_usage("churn-events", [100, 25600, 25601, 51200, 0], "2026-07-01")
    assert put.detail["put_payload_units"] == 1 + 1 + 2 + 2 + 1  # each record rounded up to 25 KB units
    assert ledger.price(put, PRICES).usd == pytest.approx(7 / 1e6 * 0.014)
    on_demand = usage.kinesis_put_usage("churn-events", [1, 1024, 1025], "2026-07-01", mode="ON_DEMAND")
    assert (on_demand.item, on_demand.quantity) == ("kinesis.on_demand.data_in_gb", pytest.approx(4 * 1024 / 2**30))
    stream_hours = usage.kinesis_stream_usage({"StreamName": "s", "StreamModeDetails": {"StreamMode": "ON_DEMAND"}},
                                              at("2026-07-01T00:00:00"), at("2026-07-01T10:00:00"))
    assert [(u.item, u.quantity) for u in stream_hours] == [("kinesis.on_demand.stream_hour", 10.0)]
    with pytest.raises(ValueError, match="expected the field OpenShardCount"):
        usage.kinesis_stream_usage({"StreamName": "s"}, at("2026-07-01T00:00:00"), at("2026-07-01T01:00:00"))


def test_s3_storage_is_gb_month_for_one_day():
    pages = [{"Contents": [{"Key": "raw/a", "Size": 2 * 2**30}, {"Key": "raw/b", "Size": 2**30, "StorageClass": "STANDARD"}]},
             {"Contents": [{"Key": "raw/c", "Size": 10, "StorageClass": "GLACIER"}]}]
    sizes = usage.listing_bytes(pages)
    assert sizes == {"STANDARD": 3 * 2**30, "GLACIER": 10}
    u = usage.s3_storage_usage("churn-lake", "raw/", sizes["STANDARD"], "2026-07-15")
    assert (u.item, u.quantity) == ("s3.standard.gb_month", pytest.approx(3 / 31))  # July has 31 days
    assert ledger.price(u, PRICES).usd == pytest.approx(3 / 31 * 0.023)
    assert usage.s3_storage_usage("churn-lake", "raw/", 2**30, "2026-02-01").quantity == pytest.approx(1 / 28)


# ----------------------------------------------------------------------------------------------- prices

def test_the_price_table_is_complete_data():
    for kind in ("training", "hosting", "transform"):
        for instance in ("ml.m5.large", "ml.m5.xlarge", "ml.m5.2xlarge", "ml.c5.xlarge", "ml.c5.2xlarge"):
            assert PRICES.item(f"sagemaker.{kind}.{instance}").unit == "instance-hour"
    for name in ("emr_serverless.vcpu_hour", "emr_serverless.memory_gb_hour", "emr_serverless.storage_gb_hour",
                 "glue.etl.dpu_hour", "glue.streaming.dpu_hour", "kinesis.shard_hour", "kinesis.put_payload_units",
                 "s3.standard.gb_month", "sagemaker.data_capture"):
        assert name in PRICES
    for item in PRICES:
        assert item.source.startswith("https://aws.amazon.com/"), item.name
        assert re.match(r"^\d{4}-\d{2}-\d{2}$", item.as_of) and item.note, item.name
    # The file is what the table writes: `prices --refresh --json` output can replace it as it is.
    path = REPO / "plugins/churn_ml/cost/prices/us-east-1.json"
    assert json.dumps(PRICES.to_dict(), indent=1) + "\n" == path.read_text()


def test_a_missing_region_or_item_says_which_file_to_add_it_to():
    with pytest.raises(FileNotFoundError, match=r"no price table for region 'eu-west-9'.*prices/eu-west-9.json.*Regions with one: us-east-1"):
        prices.load_prices("eu-west-9")
    with pytest.raises(KeyError) as err:
        PRICES.item("sagemaker.training.ml.p5.48xlarge")
    assert "no price for item 'sagemaker.training.ml.p5.48xlarge' in" in str(err.value)
    assert "prices/us-east-1.json" in str(err.value)
    with pytest.raises(ValueError, match="item 'x': missing as_of"):
        prices.parse_table({"items": {"x": {"usd": 1, "unit": "h", "source": "s"}}}, "t.json")


def price_list_product(sku, usd, unit="Hrs", usagetype="USE1-Train:ml.m5.large"):
    """One GetProducts PriceList entry (a JSON string), in the Price List API's documented shape."""
    return json.dumps({
        "product": {"productFamily": "ML Instance", "sku": sku,
                    "attributes": {"usagetype": usagetype, "regionCode": "us-east-1", "servicecode": "AmazonSageMaker"}},
        "serviceCode": "AmazonSageMaker", "publicationDate": "2026-11-20T00:00:00Z", "version": "20261120000000",
        "terms": {"OnDemand": {f"{sku}.JRTCKXETXF": {
            "offerTermCode": "JRTCKXETXF", "sku": sku, "effectiveDate": "2026-11-01T00:00:00Z", "termAttributes": {},
            "priceDimensions": {f"{sku}.JRTCKXETXF.6YS6EN2CT7": {
                "rateCode": f"{sku}.JRTCKXETXF.6YS6EN2CT7", "description": "per hour", "unit": unit,
                "beginRange": "0", "endRange": "Inf", "appliesTo": [], "pricePerUnit": {"USD": f"{usd:.10f}"}}}}}}})


def test_refresh_from_the_price_list_api_reads_get_products():
    table = prices.parse_table({"region": "us-east-1", "items": {
        "sagemaker.training.ml.m5.large": {**PRICES.item("sagemaker.training.ml.m5.large").to_dict(), "usd": 9.99},
        "glue.etl.dpu_hour": PRICES.item("glue.etl.dpu_hour").to_dict(),
        "emr_serverless.vcpu_hour": PRICES.item("emr_serverless.vcpu_hour").to_dict(),
        "kinesis.shard_hour": PRICES.item("kinesis.shard_hour").to_dict(),     # no filter: kept as it is
    }}, "test.json", "us-east-1")
    client = boto3.client("pricing", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
    stub = Stubber(client)

    def expect(service, filters, answer):
        token = answer.pop("_token", None)  # the NextToken this request must carry
        stub.add_response("get_products", answer, {
            "ServiceCode": service, "FormatVersion": "aws_v1", "MaxResults": 100,
            "Filters": [{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in sorted(filters.items())],
            **({"NextToken": token} if token else {})})

    # items in name order: emr_serverless.vcpu_hour, glue.etl.dpu_hour, sagemaker.training.ml.m5.large (two pages)
    expect("ElasticMapReduce", {"usagetype": "USE1-EMR-SERVERLESS-vCPUHours"},
           {"FormatVersion": "aws_v1", "PriceList": [price_list_product("EMR1", 0.052624, "vCPU-hours")]})
    expect("AWSGlue", {"usagetype": "USE1-ETL-DPU-Hour", "operation": "Jobrun"},
           {"FormatVersion": "aws_v1", "PriceList": [price_list_product("GLUE1", 0.44, "DPU-Hour")]})
    expect("AmazonSageMaker", {"usagetype": "USE1-Train:ml.m5.large"},
           {"FormatVersion": "aws_v1", "PriceList": [price_list_product("SM1", 0.115)], "NextToken": "page2"})
    expect("AmazonSageMaker", {"usagetype": "USE1-Train:ml.m5.large"},
           {"FormatVersion": "aws_v1", "PriceList": [price_list_product("SM2", 0.115)], "_token": "page2"})
    with stub:
        fresh = prices.refresh_from_price_list("us-east-1", client=client, table=table, as_of="2026-12-01")
        stub.assert_no_pending_responses()
    item = fresh.item("sagemaker.training.ml.m5.large")
    assert (item.usd, item.as_of, item.confirmed) == (0.115, "2026-12-01", True)
    assert "SKU SM1" in item.note and "effective 2026-11-01" in item.note
    assert item.source == table.item("sagemaker.training.ml.m5.large").source  # still the pricing page
    assert fresh.item("emr_serverless.vcpu_hour").usd == 0.052624
    assert fresh.item("kinesis.shard_hour") == table.item("kinesis.shard_hour")

    # Products of different prices for one filter: refused, naming the file whose filter to narrow.
    stub = Stubber(client)
    expect("ElasticMapReduce", {"usagetype": "USE1-EMR-SERVERLESS-vCPUHours"},
           {"FormatVersion": "aws_v1", "PriceList": [price_list_product("A", 0.05), price_list_product("B", 0.06)]})
    with stub, pytest.raises(ValueError, match=r"different prices .*narrow the item's price_list filters in test.json"):
        prices.refresh_from_price_list("us-east-1", client=client, table=table)
    stub = Stubber(client)
    expect("ElasticMapReduce", {"usagetype": "USE1-EMR-SERVERLESS-vCPUHours"}, {"FormatVersion": "aws_v1", "PriceList": []})
    with stub, pytest.raises(ValueError, match="has no ElasticMapReduce product for emr_serverless.vcpu_hour"):
        prices.refresh_from_price_list("us-east-1", client=client, table=table)


# ----------------------------------------------------------------------------------------------- ledger

def test_price_and_unit_checks():
    [u] = usage.training_job_usage(training_job())
    line = ledger.price(u, PRICES)
    assert (line.unit_usd, line.price_source, line.price_as_of) == (0.23, PRICES.item(u.item).source, PRICES.item(u.item).as_of)
    with pytest.raises(KeyError, match="no price for item 'sagemaker.training.ml.p4d.24xlarge'"):
        ledger.price(usage.Usage("sagemaker", "j", "sagemaker.training.ml.p4d.24xlarge", 1, "instance-hour", "2026-07-01"), PRICES)
    with pytest.raises(ValueError, match="is in 'hour' but .* prices it per 'instance-hour'"):
        ledger.price(usage.Usage("sagemaker", "j", "sagemaker.training.ml.m5.large", 1, "hour", "2026-07-01"), PRICES)


def record(dag="churn_training", run="manual__2026-07-01", ds="2026-07-01", task="train_model", job=None, **kw):
    job = job or training_job()
    return ledger.job_record(dag_id=dag, run_id=run, ds=ds, task_id=task, resource=job["TrainingJobName"],
                             usages=usage.training_job_usage(job), prices=PRICES, **kw)


def test_a_job_record_and_its_key_are_the_same_on_a_retry():
    first, retry = record(model_version="3"), record(model_version="3")
    assert first == retry and json.dumps(first, sort_keys=True) == json.dumps(retry, sort_keys=True)
    assert first["usd"] == pytest.approx(0.23 / 6) and first["service"] == "sagemaker"
    key = ledger.records_key("2026-07-01", "churn_training", "train_model", "churn-train-1")
    assert key == "_costs/records/date=2026-07-01/churn_training/train_model/churn-train-1.json"
    assert key == ledger.records_key("2026-07-01", "churn_training", "train_model", "churn-train-1")
    assert key.startswith(ledger.task_prefix("2026-07-01", "churn_training", "train_model"))
    assert ledger.records_key("2026-07-01", "d", "t", "s3://churn-lake/raw/") == "_costs/records/date=2026-07-01/d/t/s3%3A%2F%2Fchurn-lake%2Fraw%2F.json"
    assert ledger.records_key("2026-07-02", "d", "t", "r") != ledger.records_key("2026-07-01", "d", "t", "r")
    with pytest.raises(ValueError, match="ds must be the run's logical date"):
        ledger.records_key("07/01/2026", "d", "t", "r")
    with pytest.raises(ValueError, match="dag_id must be a non-empty Airflow id"):
        ledger.records_key("2026-07-01", "a/b", "t", "r")


def test_totals_by_dag_run_model_version_and_day_and_per_1000_predictions():
    transform = {"TransformJobName": "churn-bt-1", "TransformJobStatus": "Completed",
                 "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
                 "TransformStartTime": at("2026-07-02T10:00:00"), "TransformEndTime": at("2026-07-02T11:00:00")}
    records = [record(model_version="3"),                                                    # 0.23 / 6
               record(job=training_job("churn-train-2", billable=3600, training=3600, spot=False), model_version="3"),  # 0.23
               ledger.job_record(dag_id="churn_batch_scoring", run_id="scheduled__2026-07-02", ds="2026-07-02",
                                 task_id="batch_transform", resource="churn-bt-1", usages=[usage.transform_job_usage(transform)],
                                 prices=PRICES, predictions=50_000)]                          # 0.115
    result = ledger.totals(records)
    assert result["usd"] == pytest.approx(0.23 / 6 + 0.23 + 0.115)
    assert result["by_dag"] == {"churn_batch_scoring": pytest.approx(0.115), "churn_training": pytest.approx(0.23 / 6 + 0.23)}
    assert result["by_run"]["churn_training/manual__2026-07-01"] == pytest.approx(0.23 / 6 + 0.23)
    assert result["by_model_version"] == {"3": pytest.approx(0.23 / 6 + 0.23)}
    assert result["by_day"] == {"2026-07-01": pytest.approx(0.23 / 6 + 0.23), "2026-07-02": pytest.approx(0.115)}
    assert result["predictions"] == 50_000
    assert ledger.cost_per_1000_predictions(0.115, 50_000) == pytest.approx(0.0023)
    with pytest.raises(ValueError, match="expected a prediction count > 0"):
        ledger.cost_per_1000_predictions(1.0, 0)
    with pytest.raises(ValueError, match="missing lines"):
        ledger.check_record({k: v for k, v in records[0].items() if k != "lines"}, "x.json")


# ----------------------------------------------------------------------------------------------- projection

def test_the_reference_scenario_is_reproducible_and_its_items_sum_to_the_total():
    first, second = project.project(project.Scenario(), PRICES), project.project(project.Scenario(), PRICES)
    assert first == second and project.render(first) == project.render(second)
    assert sum(line.usd for line in first.lines) == first.total
    got = {line.what.split(":")[0]: line.usd for line in first.lines}
    days = Decimal(730) / 24
    assert got["batch Spark on Glue"] == (2 * 5 * days * Decimal("0.44")).quantize(Decimal("0.01"))      # 133.83
    assert got["Glue streaming job"] == (12 * 5 * days * Decimal("0.44")).quantize(Decimal("0.01"))      # 803.00
    assert got["real-time endpoint"] == Decimal("167.90")                                                # 730 h x 0.23
    assert got["lake storage"] == Decimal("69.00")                                                       # 3,000 GB-month
    for line in first.lines:                            # each line is its shown quantity times its unit price
        assert line.usd == (line.quantity * line.unit_usd).quantize(Decimal("0.01"))
    assert {a.name for a in first.assumptions} >= {f for f in project.Scenario.__dataclass_fields__}


def test_the_projection_follows_its_inputs():
    base = project.project(project.Scenario(), PRICES)
    bigger = project.project(project.Scenario(gb_per_day=200), PRICES)
    assert bigger.total > base.total
    emr = project.project(project.Scenario(spark_backend="emr-serverless"), PRICES)
    items = {line.item: line for line in emr.lines}
    assert "glue.etl.dpu_hour" not in items
    assert items["emr_serverless.vcpu_hour"].quantity == Decimal(2 * 5 * 4 * 730 / 24).quantize(Decimal("0.0001"))
    no_spot = project.project(project.Scenario(spot_saving=0.0), PRICES)
    train = [line.usd for line in no_spot.lines if line.item.startswith("sagemaker.training.")]
    assert sum(train) == pytest.approx(float(sum(line.usd for line in base.lines if line.item.startswith("sagemaker.training."))) / 0.4, abs=0.02)
    with pytest.raises(ValueError, match="spark_backend 'dataproc'"):
        project.project(project.Scenario(spark_backend="dataproc"), PRICES)
    with pytest.raises(KeyError, match="sagemaker.hosting.ml.p5.48xlarge"):
        project.project(project.Scenario(endpoint_instance="ml.p5.48xlarge"), PRICES)


def test_the_ledger_scaled_to_a_target_volume():
    records = [record(run=f"manual__2026-07-0{d}", ds=f"2026-07-0{d}", job=training_job(f"t{d}", billable=1800, training=3600))
               for d in (1, 2)]                                                     # 0.5 instance-hours a run
    records.append(ledger.job_record(dag_id="churn_streaming", run_id="r1", ds="2026-07-01", task_id="ensure_endpoint",
                                     resource="churn-xgboost", prices=PRICES,
                                     usages=usage.endpoint_usage("churn-xgboost", blue_green_history()[:1], until=at("2026-07-01T12:00:00"))))
    result = project.project_from_ledger(records, PRICES, measured_gb_per_day=0.5, target_gb_per_day=100)
    lines = {line.item: line for line in result.lines}
    runs = Decimal(730) / 24 / 7
    assert lines["sagemaker.training.ml.m5.xlarge"].quantity == (Decimal("0.5") * runs * 200).quantize(Decimal("0.0001"))
    assert lines["sagemaker.hosting.ml.m5.large"].quantity == (Decimal(24) * Decimal(730) / 24).quantize(Decimal("0.0001"))  # not scaled
    assert sum(line.usd for line in result.lines) == result.total
    with pytest.raises(ValueError, match="no ledger records"):
        project.project_from_ledger([], PRICES, measured_gb_per_day=1, target_gb_per_day=1)


# ------------------------------------------------------------------------------------------------------ CLI

def test_the_cli_prints_a_table_and_json(capsys, tmp_path):
    assert cli.main(["project"]) == 0
    out = capsys.readouterr().out
    assert "| **total** |" in out and "| this architecture |" in out and "1,610.98" in out and "| assumption | value | why |" in out
    assert cli.main(["project", "--json", "--gb-per-day", "100"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert sum(Decimal(str(i["usd"])) for i in data["items"]) == Decimal(str(data["total_usd"]))
    assert data["reference_usd"] == 1610.98
    assert data["total_usd"] == float(project.project(project.Scenario(), PRICES).total)
    for n, rec in enumerate([record(), record(run="r2", ds="2026-07-02")]):
        (tmp_path / f"{n}.json").write_text(json.dumps(rec))
    assert cli.main(["project", "--from-ledger", str(tmp_path), "--measured-gb-per-day", "1", "--target-gb-per-day", "10", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["items"][0]["item"] == "sagemaker.training.ml.m5.xlarge"
    with pytest.raises(SystemExit):
        cli.main(["project", "--from-ledger", str(tmp_path), "--target-gb-per-day", "10"])
    assert "--from-ledger needs --measured-gb-per-day" in capsys.readouterr().err
    assert cli.main(["project", "--spark-backend", "spark-on-the-moon"]) == 2
    assert "expected one of glue, emr-serverless" in capsys.readouterr().err


def test_importing_the_cost_package_stays_cheap():
    """The plugin loader imports these modules in every Airflow process: no boto3, no Airflow at import."""
    code = ("import sys; import churn_ml.cost.cli, churn_ml.cost.usage; "
            "print(sorted(m for m in ('boto3', 'botocore', 'airflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(REPO / "plugins"), "PATH": "/usr/bin:/bin"}).stdout
    assert out.strip() == "[]"


# ----------------------------------------------------------------------------------------------------- docs

DOC = (REPO / "docs" / "cost.md").read_text()


def test_every_price_of_the_table_is_in_the_docs_with_the_same_figure():
    lines = DOC.splitlines()
    header = lines.index(cli.price_table_markdown(PRICES).splitlines()[0])  # the price table, not the projection's rows
    rows = {}
    for line in lines[header + 2:]:
        if not line.startswith("| "):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0]] = cells
    for item in PRICES:
        assert item.name in rows, f"docs/cost.md's price table lacks {item.name}: paste `python -m churn_ml.cost.cli prices`"
        assert float(rows[item.name][1]) == item.usd, f"docs/cost.md prices {item.name} at {rows[item.name][1]}, the table at {item.usd}"
        assert rows[item.name][2] == item.unit


def test_the_docs_show_what_the_projection_command_prints(capsys):
    block = re.search(r"<!-- projection: python -m churn_ml.cost.cli project -->\n\n(.*?)\n\n<!-- end projection -->", DOC, re.S)
    assert block, "docs/cost.md lacks the output of `python -m churn_ml.cost.cli project` between its markers"
    assert cli.main(["project"]) == 0
    assert block.group(1) == capsys.readouterr().out.rstrip("\n"), "regenerate docs/cost.md's projection block"
