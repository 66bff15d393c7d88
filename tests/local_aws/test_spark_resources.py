"""EMR Serverless and Glue on the control plane answer like AWS wherever a client looks (issue 25).

The provider's application operators complete with their waiters, the application's lifecycle is
AWS's (CREATING, CREATED, STARTING, STARTED, STOPPING, STOPPED, TERMINATED, each seen by a watcher),
Create, Get, List (filters, pagination), tags and Delete agree for applications, EMR job runs, Glue
jobs and runs, and a restart of the control plane keeps all of them (``local_aws.spark_api``).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from local_aws import control_plane
from support import free_port

pytestmark = pytest.mark.e2e
ROLE = "arn:aws:iam::000000000000:role/churn-emr-job"


@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    """A control plane of this module's own: its lake holds the probe scripts, it is restarted, and the
    provider's operators reach it through the ``aws_default`` connection set here, signed with its key."""
    lake = tmp_path_factory.mktemp("spark-resources") / "lake"
    env = {"LAKE_ROOT": str(lake), "ML_TARGET": "local", "CHURN_LOCAL_AWS_PORT": str(free_port()),
           "CHURN_LOCAL_RUNTIME_PORT": str(free_port())}
    probe = lake / "churn-lake" / "probe"
    probe.mkdir(parents=True)
    # Scripts that end at once or sleep: the control plane's part, not Spark's, is under test.
    (probe / "ok.py").write_text("print('probe says hello')\n")
    (probe / "sleep.py").write_text("import sys, time\ntime.sleep(float(sys.argv[-1]))\n")
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        url = control_plane.ensure_server()
        patch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(control_plane.connection(url, role=None)))
        try:
            yield {"url": url, "lake": lake}
        finally:
            control_plane.stop_server()


def client(url: str, service: str):
    return control_plane.client(service, url)


def until(what, condition, timeout: float = 120.0, every: float = 0.2):
    """``what()`` once ``condition`` holds for it; fails after ``timeout`` seconds with the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if condition(value):
            return value
        assert time.monotonic() < deadline, f"still {value!r} after {timeout:.0f}s"
        time.sleep(every)


def error_code(call) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value.response["Error"]["Code"]


def spark_run(script: str, *arguments: str) -> dict:
    return {"executionRoleArn": ROLE, "jobDriver": {"sparkSubmit": {
        "entryPoint": f"s3://churn-lake/probe/{script}", "entryPointArguments": list(arguments)}}}


def test_the_emulated_operations_are_the_services_and_crawlers_are_not_among_them():
    import boto3

    from local_aws.spark_api import (
        LocalEMRServerlessBackend,
        LocalEMRServerlessResponse,
        LocalGlueBackend,
        LocalGlueResponse,
    )

    session = boto3.session.Session(region_name="us-east-1")
    for service, classes in (("emr-serverless", (LocalEMRServerlessBackend, LocalEMRServerlessResponse)),
                             ("glue", (LocalGlueBackend, LocalGlueResponse))):
        known = set(session.get_available_services() and
                    session._session.get_service_model(service).operation_names)
        for cls in classes:
            assert cls.EMULATED_OPERATIONS <= known, cls.EMULATED_OPERATIONS - known
    # What the Amazon provider's EMR Serverless operators, hooks and waiters call.
    assert {"CreateApplication", "GetApplication", "StartApplication", "StopApplication", "DeleteApplication",
            "StartJobRun", "GetJobRun", "ListJobRuns", "CancelJobRun"} <= LocalEMRServerlessBackend.EMULATED_OPERATIONS
    # What the provider's GlueJobHook and the project's Glue operators call.
    assert {"GetJob", "CreateJob", "StartJobRun", "GetJobRun", "GetJobRuns", "BatchStopJobRun",
            "GetTags", "TagResource", "UntagResource"} <= LocalGlueBackend.EMULATED_OPERATIONS
    assert not [op for op in LocalGlueBackend.EMULATED_OPERATIONS if "Crawler" in op or "Crawl" in op]


def test_every_override_matches_the_installed_moto():
    from local_aws import spark_api
    from local_aws.moto_ext import check_overrides

    classes = (spark_api.LocalEMRServerlessBackend, spark_api.LocalEMRServerlessResponse, spark_api.LocalGlueBackend,
               spark_api.LocalGlueResponse, spark_api.LocalGlueJob, spark_api.LocalGlueJobRun)
    for cls in classes:
        check_overrides(cls)
    overridden = {name for cls in classes for name, member in vars(cls).items()
                  if getattr(getattr(member, "fget", member), "__moto_override__", False)}
    assert {"create_application", "start_job_run", "get_job_run", "status", "as_dict", "delete_job"} <= overridden


def test_the_providers_application_operators_complete_with_their_waiters(plane):
    from airflow.providers.amazon.aws.operators.emr import (
        EmrServerlessCreateApplicationOperator,
        EmrServerlessDeleteApplicationOperator,
        EmrServerlessStopApplicationOperator,
    )

    name = f"lifecycle-{time.time_ns()}"
    seen: list[str] = []
    done = threading.Event()

    def watch():
        emr = client(plane["url"], "emr-serverless")
        while not done.is_set():
            for application in emr.list_applications()["applications"]:
                if application["name"] == name and (not seen or seen[-1] != application["state"]):
                    seen.append(application["state"])
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    waiting = {"waiter_delay": 1, "waiter_max_attempts": 30, "deferrable": False}
    try:
        application_id = EmrServerlessCreateApplicationOperator(
            task_id="create", release_label="emr-7.9.0", job_type="SPARK", config={"name": name},
            wait_for_completion=True, **waiting).execute({})
        emr = client(plane["url"], "emr-serverless")
        assert emr.get_application(applicationId=application_id)["application"]["state"] == "STARTED"
        EmrServerlessStopApplicationOperator(task_id="stop", application_id=application_id, force_stop=True,
                                             wait_for_completion=True, **waiting).execute({})
        assert emr.get_application(applicationId=application_id)["application"]["state"] == "STOPPED"
        EmrServerlessDeleteApplicationOperator(task_id="delete", application_id=application_id,
                                               wait_for_completion=True, **waiting).execute({})
        time.sleep(0.3)  # one more look for the watcher
    finally:
        done.set()
        watcher.join()
    # CREATED lasts as long as the operator takes to call StartApplication after its waiter saw it (the
    # create operator's waiter succeeds on CREATED only): the watcher may miss it on a busy machine.
    assert [s for s in seen if s != "CREATED"] == ["CREATING", "STARTING", "STARTED", "STOPPING", "STOPPED", "TERMINATED"]
    # AWS keeps a deleted application, TERMINATED (the provider's serverless_app_terminated waiter waits
    # for that state); it runs nothing more and cannot be deleted again.
    assert emr.get_application(applicationId=application_id)["application"]["state"] == "TERMINATED"
    assert error_code(lambda: emr.start_job_run(applicationId=application_id, **spark_run("ok.py"))) \
        == "ValidationException"
    assert error_code(lambda: emr.delete_application(applicationId=application_id)) == "ValidationException"
    assert error_code(lambda: emr.get_application(applicationId="no0such0app00000")) == "ResourceNotFoundException"


def test_applications_and_job_runs_create_get_list_tag_cancel_and_auto_start_stop(plane):
    emr = client(plane["url"], "emr-serverless")
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    created = emr.create_application(name="round", releaseLabel="emr-7.9.0", type="SPARK", tags={"team": "ml"},
                                     autoStopConfiguration={"enabled": True, "idleTimeoutMinutes": 1})
    app, arn = created["applicationId"], created["arn"]
    got = emr.get_application(applicationId=app)["application"]
    assert got["state"] == "CREATING" and got["tags"] == {"team": "ml"}
    assert got["autoStartConfiguration"] == {"enabled": True}
    assert app in [a["id"] for a in emr.list_applications(states=["CREATING"])["applications"]]
    assert app not in [a["id"] for a in emr.list_applications(states=["STARTED"])["applications"]]
    until(lambda: emr.get_application(applicationId=app)["application"]["state"], lambda s: s == "CREATED")

    emr.tag_resource(resourceArn=arn, tags={"stage": "test"})
    emr.untag_resource(resourceArn=arn, tagKeys=["team"])
    assert emr.list_tags_for_resource(resourceArn=arn)["tags"] == {"stage": "test"}
    assert emr.get_application(applicationId=app)["application"]["tags"] == {"stage": "test"}
    assert error_code(lambda: emr.list_tags_for_resource(resourceArn=arn + "x")) == "ResourceNotFoundException"

    # A run on a CREATED application starts it (autoStartConfiguration, AWS's default).
    long_run = emr.start_job_run(applicationId=app, name="sleeper", clientToken="sleeper", tags={"kind": "sleep"},
                                 **spark_run("sleep.py", "60"))
    assert emr.get_application(applicationId=app)["application"]["state"] == "STARTING"
    until(lambda: emr.get_application(applicationId=app)["application"]["state"], lambda s: s == "STARTED")
    run_id, run_arn = long_run["jobRunId"], long_run["arn"]
    assert emr.get_job_run(applicationId=app, jobRunId=run_id)["jobRun"]["tags"] == {"kind": "sleep"}
    emr.tag_resource(resourceArn=run_arn, tags={"owner": "tests"})
    assert emr.list_tags_for_resource(resourceArn=run_arn)["tags"] == {"kind": "sleep", "owner": "tests"}
    until(lambda: emr.get_job_run(applicationId=app, jobRunId=run_id)["jobRun"]["state"], lambda s: s == "RUNNING",
          timeout=60)

    listed = lambda **filters: [r["id"] for r in emr.list_job_runs(applicationId=app, **filters)["jobRuns"]]  # noqa: E731
    assert listed(states=["RUNNING"]) == [run_id]
    assert listed(states=["SUCCESS"]) == []
    assert listed(createdAtAfter=before) == [run_id]
    assert listed(createdAtBefore=before) == []
    # A running application with a run that has not ended is neither stopped nor deleted.
    assert error_code(lambda: emr.stop_application(applicationId=app)) == "ValidationException"
    assert error_code(lambda: emr.delete_application(applicationId=app)) == "ValidationException"

    emr.cancel_job_run(applicationId=app, jobRunId=run_id)
    assert emr.get_job_run(applicationId=app, jobRunId=run_id)["jobRun"]["state"] in ("CANCELLING", "CANCELLED")
    until(lambda: emr.get_job_run(applicationId=app, jobRunId=run_id)["jobRun"]["state"], lambda s: s == "CANCELLED")
    assert error_code(lambda: emr.cancel_job_run(applicationId=app, jobRunId=run_id)) == "ValidationException"
    ok = emr.start_job_run(applicationId=app, name="ok", clientToken="ok", **spark_run("ok.py"))["jobRunId"]
    until(lambda: emr.get_job_run(applicationId=app, jobRunId=ok)["jobRun"]["state"], lambda s: s == "SUCCESS")
    assert listed(states=["CANCELLED"]) == [run_id] and sorted(listed()) == sorted([run_id, ok])
    # Both listings page as AWS's do (maxResults, nextToken): botocore's paginators walk them.
    pages = list(emr.get_paginator("list_job_runs").paginate(applicationId=app, PaginationConfig={"PageSize": 1}))
    assert [len(p["jobRuns"]) for p in pages] == [1, 1] and sorted(r["id"] for p in pages for r in p["jobRuns"]) \
        == sorted([run_id, ok])
    pages = list(emr.get_paginator("list_applications").paginate(PaginationConfig={"PageSize": 1}))
    assert all(len(p["applications"]) <= 1 for p in pages) and app in [a["id"] for p in pages for a in p["applications"]]
    assert error_code(lambda: emr.get_job_run(applicationId=app, jobRunId="no0such0run00000")) \
        == "ResourceNotFoundException"

    # Idle for its one minute, the application stops itself (STOPPING, then STOPPED); then it can go.
    states = []
    until(lambda: states.append(emr.get_application(applicationId=app)["application"]["state"]) or states[-1],
          lambda s: s == "STOPPED", timeout=90, every=0.3)
    assert [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s][-3:] == ["STARTED", "STOPPING", "STOPPED"]
    emr.delete_application(applicationId=app)
    assert emr.get_application(applicationId=app)["application"]["state"] == "TERMINATED"


def test_glue_jobs_and_runs_create_get_list_tag_stop_and_delete(plane):
    from local_aws.spark_api import run_log_files

    glue = client(plane["url"], "glue")
    command = {"Name": "glueetl", "ScriptLocation": "s3://churn-lake/probe/ok.py", "PythonVersion": "3"}
    glue.create_job(Name="probe-job", Role="arn:aws:iam::000000000000:role/service-role/probe-role", Command=command,
                    SecurityConfiguration="probe-sc", GlueVersion="5.0", ExecutionProperty={"MaxConcurrentRuns": 5},
                    Tags={"team": "ml"})
    glue.create_job(Name="probe-plain", Role="arn:aws:iam::000000000000:role/probe-role",
                    Command={**command, "ScriptLocation": "s3://churn-lake/probe/sleep.py"})
    arn = "arn:aws:glue:us-east-1:000000000000:job/probe-job"
    assert glue.get_job(JobName="probe-job")["Job"]["SecurityConfiguration"] == "probe-sc"
    assert {"probe-job", "probe-plain"} <= set(glue.list_jobs()["JobNames"])
    glue.tag_resource(ResourceArn=arn, TagsToAdd={"stage": "test"})
    glue.untag_resource(ResourceArn=arn, TagsToRemove=["team"])
    assert glue.get_tags(ResourceArn=arn)["Tags"] == {"stage": "test"}

    run_ids = [glue.start_job_run(JobName="probe-job")["JobRunId"] for _ in range(3)]
    pages, token = [], None
    while True:
        page = glue.get_job_runs(JobName="probe-job", MaxResults=2, **({"NextToken": token} if token else {}))
        pages.append([r["Id"] for r in page["JobRuns"]])
        token = page.get("NextToken")
        if not token:
            break
    assert [len(p) for p in pages] == [2, 1] and sorted(sum(pages, [])) == sorted(run_ids)
    for run_id in run_ids:
        run = until(lambda rid=run_id: glue.get_job_run(JobName="probe-job", RunId=rid)["JobRun"],
                    lambda r: r["JobRunState"] not in ("STARTING", "RUNNING"))
        assert run["JobRunState"] == "SUCCEEDED", run
        assert run["LogGroupName"] == "/aws-glue/jobs/probe-sc-role/probe-role"
        assert "probe says hello" in run_log_files("glue", run_id)["output"].read_text()

    sleeper = glue.start_job_run(JobName="probe-plain", Arguments={"--seconds": "60"})["JobRunId"]
    assert glue.get_job_run(JobName="probe-plain", RunId=sleeper)["JobRun"]["LogGroupName"] == "/aws-glue/jobs"
    assert error_code(lambda: glue.start_job_run(JobName="probe-plain")) == "ConcurrentRunsExceededException"
    answer = glue.batch_stop_job_run(JobName="probe-plain", JobRunIds=[sleeper, "jr_nosuchrun"])
    assert [s["JobRunId"] for s in answer["SuccessfulSubmissions"]] == [sleeper]
    assert [e["JobRunId"] for e in answer["Errors"]] == ["jr_nosuchrun"]
    assert glue.get_job_run(JobName="probe-plain", RunId=sleeper)["JobRun"]["JobRunState"] == "STOPPED"

    glue.delete_job(JobName="probe-job")
    assert error_code(lambda: glue.get_job(JobName="probe-job")) == "EntityNotFoundException"
    assert error_code(lambda: glue.get_job_run(JobName="probe-job", RunId=run_ids[0])) == "EntityNotFoundException"
    assert error_code(lambda: glue.get_tags(ResourceArn=arn)) == "EntityNotFoundException"
    assert "probe-job" not in glue.list_jobs()["JobNames"]
    with pytest.raises(LookupError):
        run_log_files("glue", run_ids[0])


def test_the_templates_glue_jobs_log_where_the_template_creates_their_log_groups(plane):
    from local_aws import template
    from local_aws.spark_api import glue_log_group, glue_refs

    glue = client(plane["url"], "glue")
    job = glue.get_job(JobName="churn-features")["Job"]
    refs = glue_refs(plane["url"])
    output_group = template.resolve(template.load()["Resources"]["GlueOutputLogGroup"]["Properties"]["LogGroupName"],
                                    refs)
    assert job["SecurityConfiguration"] == "churn-glue"
    assert f"{glue_log_group(job['SecurityConfiguration'], job['Role'])}/output" == output_group


def test_a_restart_of_the_control_plane_keeps_applications_jobs_and_runs(plane, monkeypatch):
    emr, glue = client(plane["url"], "emr-serverless"), client(plane["url"], "glue")
    app = emr.create_application(name="kept", releaseLabel="emr-7.9.0", type="SPARK", tags={"k": "v"})["applicationId"]
    until(lambda: emr.get_application(applicationId=app)["application"]["state"], lambda s: s == "CREATED")
    done = emr.start_job_run(applicationId=app, name="done", clientToken="done", **spark_run("ok.py"))["jobRunId"]
    until(lambda: emr.get_job_run(applicationId=app, jobRunId=done)["jobRun"]["state"], lambda s: s == "SUCCESS")
    flying = emr.start_job_run(applicationId=app, name="flying", clientToken="flying",
                               **spark_run("sleep.py", "120"))["jobRunId"]
    until(lambda: emr.get_job_run(applicationId=app, jobRunId=flying)["jobRun"]["state"], lambda s: s == "RUNNING",
          timeout=60)
    glue.create_job(Name="kept-job", Role="arn:aws:iam::000000000000:role/probe-role", Tags={"k": "v"},
                    Command={"Name": "glueetl", "ScriptLocation": "s3://churn-lake/probe/ok.py"})
    glue_run = glue.start_job_run(JobName="kept-job")["JobRunId"]
    until(lambda: glue.get_job_run(JobName="kept-job", RunId=glue_run)["JobRun"]["JobRunState"],
          lambda s: s == "SUCCEEDED")
    application = emr.get_application(applicationId=app)["application"]

    monkeypatch.setenv("LAKE_ROOT", str(plane["lake"]))
    monkeypatch.setenv("CHURN_LOCAL_AWS_PORT", plane["url"].rsplit(":", 1)[1])
    control_plane.stop_server()  # stops the in-flight run's worker with it
    assert control_plane.ensure_server() == plane["url"]

    emr, glue = client(plane["url"], "emr-serverless"), client(plane["url"], "glue")
    again = emr.get_application(applicationId=app)["application"]
    assert {k: again[k] for k in ("arn", "state", "tags", "createdAt")} \
        == {k: application[k] for k in ("arn", "state", "tags", "createdAt")}
    assert emr.get_job_run(applicationId=app, jobRunId=done)["jobRun"]["state"] == "SUCCESS"
    lost = emr.get_job_run(applicationId=app, jobRunId=flying)["jobRun"]
    assert lost["state"] == "FAILED" and lost["stateDetails"], lost
    assert sorted(r["id"] for r in emr.list_job_runs(applicationId=app)["jobRuns"]) == sorted([done, flying])
    # Idempotent on clientToken across the restart, as the service is.
    assert emr.start_job_run(applicationId=app, name="done", clientToken="done", **spark_run("ok.py"))["jobRunId"] \
        == done
    assert glue.get_tags(ResourceArn="arn:aws:glue:us-east-1:000000000000:job/kept-job")["Tags"] == {"k": "v"}
    assert glue.get_job_run(JobName="kept-job", RunId=glue_run)["JobRun"]["JobRunState"] == "SUCCEEDED"
    assert [r["Id"] for r in glue.get_job_runs(JobName="kept-job")["JobRuns"]] == [glue_run]
    # The DAGs' application is still the one the control plane created, not a second one.
    from churn_ml.settings import settings

    names = [a["id"] for a in emr.list_applications()["applications"]]
    assert names.count(settings.emr_application_id) == 1
    assert Path(plane["lake"], ".control-plane", "emr-serverless", "applications", f"{app}.json").exists()


def test_the_data_catalog_keeps_databases_tables_versions_and_partitions_across_a_restart(plane, monkeypatch):
    """The Glue Data Catalog as Glue's clients see it (boto3 and the provider's catalog hook): Create, Get,
    List with an expression, Update (a new table version), Batch writes, Delete; saved and read back by a
    restarted control plane with the same timestamps."""
    from airflow.providers.amazon.aws.hooks.glue_catalog import GlueCatalogHook

    glue = client(plane["url"], "glue")
    glue.create_database(DatabaseInput={"Name": "lakedb", "Description": "the lake"}, Tags={"team": "ml"})
    assert error_code(lambda: glue.create_database(DatabaseInput={"Name": "lakedb"})) == "AlreadyExistsException"
    columns = [{"Name": "customer_id", "Type": "string"}, {"Name": "score", "Type": "double"}]
    table = {"Name": "predictions", "PartitionKeys": [{"Name": "dt", "Type": "string"}], "TableType": "EXTERNAL_TABLE",
             "StorageDescriptor": {"Columns": columns, "Location": "s3://churn-lake/predictions/"}}
    glue.create_table(DatabaseName="lakedb", TableInput=table)
    assert error_code(lambda: glue.create_table(DatabaseName="nodb", TableInput=table)) == "EntityNotFoundException"
    days = [f"2026-07-0{d}" for d in range(1, 5)]
    created = glue.batch_create_partition(DatabaseName="lakedb", TableName="predictions", PartitionInputList=[
        {"Values": [d], "StorageDescriptor": {"Columns": columns, "Location": f"s3://churn-lake/predictions/dt={d}/"}}
        for d in days])
    assert created.get("Errors", []) == []
    again = glue.batch_create_partition(DatabaseName="lakedb", TableName="predictions", PartitionInputList=[
        {"Values": [days[0]], "StorageDescriptor": {"Columns": columns, "Location": "s3://elsewhere/"}}])
    assert [e["ErrorDetail"]["ErrorCode"] for e in again["Errors"]] == ["AlreadyExistsException"]
    glue.update_partition(DatabaseName="lakedb", TableName="predictions", PartitionValueList=[days[1]],
                          PartitionInput={"Values": [days[1]], "Parameters": {"rows": "42"}, "StorageDescriptor": {
                              "Columns": columns, "Location": f"s3://churn-lake/predictions/dt={days[1]}/"}})
    glue.delete_partition(DatabaseName="lakedb", TableName="predictions", PartitionValues=[days[3]])
    glue.update_table(DatabaseName="lakedb", TableInput={**table, "Description": "scores per customer"})
    hook = GlueCatalogHook(aws_conn_id="aws_default")  # the provider's hook, as a DAG would use it
    assert hook.check_for_partition("lakedb", "predictions", f"dt = '{days[1]}'")
    assert not hook.check_for_partition("lakedb", "predictions", f"dt = '{days[3]}'")
    before = {
        "database": glue.get_database(Name="lakedb")["Database"],
        "table": glue.get_table(DatabaseName="lakedb", Name="predictions")["Table"],
        "versions": glue.get_table_versions(DatabaseName="lakedb", TableName="predictions")["TableVersions"],
        "partitions": glue.get_partitions(DatabaseName="lakedb", TableName="predictions")["Partitions"],
    }
    assert sorted(p["Values"][0] for p in before["partitions"]) == days[:3]
    assert len(before["versions"]) == 2 and before["table"]["Description"] == "scores per customer"
    glue.create_table(DatabaseName="lakedb", TableInput={**table, "Name": "scratch"})
    glue.batch_delete_table(DatabaseName="lakedb", TablesToDelete=["scratch"])

    monkeypatch.setenv("LAKE_ROOT", str(plane["lake"]))
    monkeypatch.setenv("CHURN_LOCAL_AWS_PORT", plane["url"].rsplit(":", 1)[1])
    control_plane.stop_server()
    assert control_plane.ensure_server() == plane["url"]

    glue = client(plane["url"], "glue")
    assert glue.get_database(Name="lakedb")["Database"] == before["database"]
    assert glue.get_table(DatabaseName="lakedb", Name="predictions")["Table"] == before["table"]
    assert glue.get_table_versions(DatabaseName="lakedb", TableName="predictions")["TableVersions"] == before["versions"]
    assert glue.get_partitions(DatabaseName="lakedb", TableName="predictions")["Partitions"] == before["partitions"]
    narrowed = glue.get_partitions(DatabaseName="lakedb", TableName="predictions", Expression=f"dt > '{days[0]}'")
    assert sorted(p["Values"][0] for p in narrowed["Partitions"]) == days[1:3]
    assert glue.get_partition(DatabaseName="lakedb", TableName="predictions",
                              PartitionValues=[days[1]])["Partition"]["Parameters"] == {"rows": "42"}
    assert [t["Name"] for t in glue.get_tables(DatabaseName="lakedb")["TableList"]] == ["predictions"]
    assert glue.get_tags(ResourceArn="arn:aws:glue:us-east-1:000000000000:database/lakedb")["Tags"] == {"team": "ml"}

    glue.delete_table(DatabaseName="lakedb", Name="predictions")
    assert error_code(lambda: glue.get_table(DatabaseName="lakedb", Name="predictions")) == "EntityNotFoundException"
    glue.delete_database(Name="lakedb")
    assert error_code(lambda: glue.get_database(Name="lakedb")) == "EntityNotFoundException"
    from churn_ml.dag_support import TABLES

    folder = Path(plane["lake"], ".control-plane", "glue", "catalog")
    left = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.json"))
    # lakedb is gone; what is left is the template's database of the lake, which the control plane creates at start
    assert left == sorted(["churn_lake.json", *(f"churn_lake/{table}.json" for table in TABLES)])
