"""The Glue jobs' definitions are the template's; the DAGs only start runs (security review, issue 17).

The provider's GlueJobOperator with ``update_config=True`` calls UpdateJob with the operator's few
fields, and UpdateJob replaces the whole definition: the KMS security configuration, the continuous
logging and the timeout the template sets were dropped at every run. These tests check that no task
or hook in dags/ and plugins/ creates or updates a Glue job, that the orchestration role may not,
and that what a run sends never overrides a default argument the template sets, nor any argument
that decides encryption, logging or the code that runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from airflow.providers.amazon.aws.hooks.glue import GlueJobHook
from airflow.providers.amazon.aws.operators.glue import GlueJobOperator
from built_dags import ARTIFACTS_BUCKET, CODE_VERSION, dags, render
from cfn_template import as_list, load, role_statements, sub_text

from churn_ml import artifacts
from local_aws.template import glue_jobs

REPO = Path(__file__).resolve().parents[2]
# Glue job arguments that decide encryption, logging, monitoring or which code and libraries run:
# a run may not set them (the job's definition does, or nobody).
SECURITY_ARGUMENTS = {
    "--encryption-type", "--enable-continuous-cloudwatch-log", "--enable-continuous-log-filter",
    "--continuous-log-logGroup", "--continuous-log-logStreamPrefix", "--continuous-log-conversionPattern",
    "--custom-logGroup-prefix", "--custom-logStream-prefix", "--enable-metrics", "--enable-observability-metrics",
    "--enable-spark-ui", "--spark-event-logs-path", "--TempDir", "--extra-py-files", "--extra-jars", "--extra-files",
    "--additional-python-modules", "--python-modules-installer-option", "--user-jars-first", "--conf",
    "--job-bookmark-option", "--enable-glue-datacatalog", "--datalake-formats", "--enable-auto-scaling",
}
# StartJobRun's own parameters a run may use: sizing. Never SecurityConfiguration (or a Timeout).
RUN_PARAMETERS = {"WorkerType", "NumberOfWorkers", "ExecutionClass"}


@pytest.fixture(scope="module")
def template() -> dict:
    return load()




def glue_tasks() -> list:
    tasks = [t for dag in dags("glue").values() for t in dag.tasks if isinstance(t, GlueJobOperator)]
    assert {t.task_id for t in tasks} == {"build_features", "build_training_set", "monitor"}
    return tasks


def test_no_task_or_hook_creates_or_updates_a_glue_job():
    from churn_ml import stream_job
    from churn_ml.operators import GlueJobDefinitionError, StartOnlyGlueJobHook

    for task in glue_tasks():
        assert task.update_config is False and not task.create_job_kwargs, task.task_id
        assert task.aws_hook_class is StartOnlyGlueJobHook, task.task_id
        with pytest.raises(GlueJobDefinitionError, match="template"):
            task.hook.create_or_update_glue_job()
        with pytest.raises(GlueJobDefinitionError, match="template"):
            task.hook.update_job(Name=task.job_name)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ML_TARGET", "aws")
        assert stream_job._glue_hook().update_config is False  # the streaming job's runs: StartJobRun only


def test_no_code_in_dags_or_plugins_updates_a_glue_job_definition():
    """No ``update_config=True``, no UpdateJob/CreateJob call, no create_job_kwargs, anywhere in dags/ and plugins/."""
    found = []
    for path in sorted([*(REPO / "dags").rglob("*.py"), *(REPO / "plugins").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            where = f"{path.relative_to(REPO)}:{getattr(node, 'lineno', '?')}"
            if (isinstance(node, ast.keyword) and node.arg == "update_config"
                    and not (isinstance(node.value, ast.Constant) and node.value.value is False)):
                found.append(f"{where} update_config={ast.unparse(node.value)}")
            if isinstance(node, ast.keyword) and node.arg == "create_job_kwargs":
                found.append(f"{where} create_job_kwargs")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in (
                    "update_job", "create_job", "create_or_update_glue_job"):
                found.append(f"{where} .{node.func.attr}()")
    assert not found, "Glue job definitions belong to infra/cloudformation/churn.yaml:\n" + "\n".join(found)


def test_the_orchestration_role_cannot_create_or_update_glue_jobs(template):
    # Its glue actions on jobs (those on the Data Catalog's tables are tests/infra/test_catalog_grants.py's).
    actions = {a for s in role_statements(template, "MwaaExecutionRole") if ":job/" in str(s["Resource"])
               for a in as_list(s["Action"])}
    assert {a for a in actions if a.startswith("glue:")} == {
        "glue:StartJobRun", "glue:GetJobRun", "glue:GetJobRuns", "glue:BatchStopJobRun", "glue:GetJob"}
    for statement in role_statements(template, "MwaaExecutionRole"):
        if "iam:PassRole" in as_list(statement["Action"]):
            assert "GlueJobRole" not in str(statement["Resource"])  # nothing to pass it to without CreateJob
            assert "glue.amazonaws.com" not in str(statement.get("Condition"))
        assert "iam:GetRole" not in as_list(statement["Action"])


def test_every_glue_job_keeps_the_templates_encryption_logging_and_timeout(template):
    jobs = glue_jobs(template)
    assert set(jobs) == {"churn-features", "churn-training-set", "churn-monitoring", "churn-streaming"}
    security = template["Resources"]["GlueSecurityConfiguration"]["Properties"]["EncryptionConfiguration"]
    assert security["S3Encryptions"][0]["S3EncryptionMode"] == "SSE-KMS"
    assert security["CloudWatchEncryption"]["CloudWatchEncryptionMode"] == "SSE-KMS"
    assert security["JobBookmarksEncryption"]["JobBookmarksEncryptionMode"] == "CSE-KMS"
    for name, job in jobs.items():
        assert job["SecurityConfiguration"] == {"!Ref": "GlueSecurityConfiguration"}, name
        if job["Command"]["Name"] == "glueetl":
            assert job["Timeout"] > 0, name
    assert jobs["churn-features"]["DefaultArguments"]["--enable-continuous-cloudwatch-log"] == "true"


def test_glue_runs_never_override_a_default_argument_or_a_security_setting(template):
    jobs = glue_jobs(template)
    for task in glue_tasks():
        rendered, _ = render(task)
        job = jobs[rendered.job_name]
        defaults = {k: sub_text(v).replace("${ArtifactsBucket}", ARTIFACTS_BUCKET) if sub_text(v) else v
                    for k, v in job["DefaultArguments"].items()}
        # The code version's script and library: the one override a run makes of the definition, on purpose.
        script = sub_text(job["Command"]["ScriptLocation"]).replace("${ArtifactsBucket}", ARTIFACTS_BUCKET)
        code = artifacts.glue_code_arguments(CODE_VERSION, script.rsplit("/", 1)[-1].removesuffix(".py"))
        assert {k: rendered.script_args.get(k) for k in code} == code, task.task_id
        assert script.replace("${CodeVersion}", CODE_VERSION) == code["--scriptLocation"], task.task_id
        assert rendered.script_location is None, task.task_id
        run_arguments = set(rendered.script_args) - set(code)
        assert not run_arguments & set(defaults), f"{task.task_id} overrides {run_arguments & set(defaults)}"
        assert not run_arguments & SECURITY_ARGUMENTS, f"{task.task_id} sets {run_arguments & SECURITY_ARGUMENTS}"
        assert set(rendered.run_job_kwargs) <= RUN_PARAMETERS, task.task_id
    # The streaming job, started by churn_ml.stream_job with its run arguments on top of the job's defaults.
    from churn_ml import stream_job

    sent = stream_job.run_arguments()
    code = artifacts.glue_code_arguments(artifacts.version_of(sent["--scriptLocation"]), stream_job.SCRIPT)
    assert {k: sent[k] for k in code} == code  # the code version: the one override a run makes, on purpose
    run_arguments = set(sent) - set(code)
    defaults = set(jobs["churn-streaming"]["DefaultArguments"])
    assert not run_arguments & defaults and not run_arguments & SECURITY_ARGUMENTS


def test_a_glue_run_never_creates_the_job_either():
    """A job the template does not define is an error, not a job created with the provider's defaults."""
    from churn_ml.operators import GlueJobDefinitionError, StartOnlyGlueJobHook

    hook = StartOnlyGlueJobHook(job_name="churn-not-in-the-template", aws_conn_id=None)
    hook.has_job = lambda name: False  # what GetJob says for it
    with pytest.raises(GlueJobDefinitionError, match="does not exist"):
        hook.initialize_job({"--ds": "2026-07-06"})
    assert issubclass(StartOnlyGlueJobHook, GlueJobHook)


def test_the_monitoring_job_runs_the_monitoring_script_like_the_other_batch_jobs(template):
    """churn-monitoring (the churn_monitoring DAG's Spark job on the glue backend): a batch job of the
    same shape as the features job, running include/jobs/churn_monitoring.py with the churn library."""
    jobs = glue_jobs(template)
    job, features = jobs["churn-monitoring"], jobs["churn-features"]
    assert sub_text(job["Command"]["ScriptLocation"]) == "s3://${ArtifactsBucket}/code/${CodeVersion}/jobs/churn_monitoring.py"
    assert (REPO / "include" / "jobs" / "churn_monitoring.py").is_file()
    for same in ("Role", "GlueVersion", "WorkerType", "SecurityConfiguration"):
        assert job[same] == features[same], same
    assert job["Command"]["Name"] == "glueetl" and job["GlueVersion"] == "5.0"
    assert sub_text(job["DefaultArguments"]["--extra-py-files"]) == "s3://${ArtifactsBucket}/code/${CodeVersion}/lib/churn.zip"
