"""Least privilege per lake prefix (security review, issue 17).

``LAKE_ACCESS`` in plugins/churn_ml/dag_support.py is the one table of which role reads, writes or
deletes under which lake prefix, for every task of every DAG. These tests derive what the code
touches and hold it against the table, and the table against the template's IAM policies:

* every task of every DAG (either Spark backend) has its row, and no row names a task that is gone;
* the rendered requests of the built tasks (sensor keys, SageMaker channels, outputs, checkpoints,
  models, Spark arguments and log URIs, the Glue streaming job's run arguments) fall under prefixes
  the table gives the role that touches them, with the access they need;
* the lake paths written in the code (the ``@task`` functions of dags/, include/jobs/*.py, and
  plugins/churn_ml/*.py) fall under the table's prefixes for the task or job that runs that code;
* each role's S3 statements in infra/cloudformation/churn.yaml are exactly the table's: GetObject,
  PutObject and DeleteObject on exactly those prefixes, ListBucket conditioned on them;
* the production model pointer is written by the orchestration role only.

A new prefix in the code therefore fails here until the table says who uses it, and then until the
template grants exactly that.
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from itertools import product
from pathlib import Path

import pytest
from airflow.providers.amazon.aws.operators.sns import SnsPublishOperator
from airflow.providers.common.sql.operators.sql import SQLCheckOperator
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from built_dags import ARTIFACTS_BUCKET, LAKE_BUCKET, LAKE_ROOT, dags, render
from cfn_template import Tagged, as_list, load, role_statements, sub_text

from churn_ml import dag_support as ds
from local_aws.template import glue_jobs

REPO = Path(__file__).resolve().parents[2]
TEMPLATE_ROLES = {ds.MWAA: "MwaaExecutionRole", ds.SAGEMAKER: "SageMakerRole", ds.EMR: "EmrServerlessJobRole",
                  ds.GLUE: "GlueJobRole"}
# The one role whose s3:ListBucket on the lake has no s3:prefix condition, and why (the template says so too).
UNCONDITIONED_LAKE_LISTING = {
    ds.MWAA: "the provider's SageMakerHook.check_s3_url calls HeadBucket (s3:ListBucket, no prefix) before it "
             "creates a training, tuning or transform job; the sensors need 404 (not 403) for keys not there yet",
}
# Paths task code writes into a record as text (the model card names its training set), not accessed.
NAMED_NOT_ACCESSED = {("churn_training", "register_model"): {f"{ds.TRAINING_SETS}ds="}}


def task_access(dag_id: str, task_id: str) -> dict[str, dict[str, str]]:
    """The table's row for one task, SPARK expanded to both Spark roles."""
    return ds.role_access({dag_id: {task_id: ds.LAKE_ACCESS[dag_id][task_id]}})


def _key(uri: str) -> str:
    assert uri.startswith(f"{LAKE_ROOT}/"), uri
    return uri[len(LAKE_ROOT) + 1:]


def covered(access: dict[str, str], key: str, need: str = "") -> bool:
    """Whether ``key`` (a lake key, the literal start of one, or a folder named without its "/") is
    under a prefix of ``access`` that has every mode of ``need``."""
    return any(_under(key, prefix) and set(need) <= set(modes) for prefix, modes in access.items())


def _under(key: str, prefix: str) -> bool:
    """``key`` below ``prefix``; a ``*`` in the prefix (``code/*/jobs/``: any code version) matches one segment."""
    if "*" not in prefix:
        return key.startswith(prefix) or f"{key}/".startswith(prefix)
    pattern = "".join("[^/]+" if part == "*" else re.escape(part) for part in re.split(r"(\*)", prefix))
    return re.match(pattern, key) is not None or re.match(pattern, f"{key}/") is not None


def s3_strings(value, path=()):
    """(path, string) of every s3:// string inside a request."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from s3_strings(v, (*path, k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from s3_strings(v, (*path, i))
    elif isinstance(value, str):
        for match in re.finditer(r"s3://[^\s,]+", value):
            yield path, match.group(0)


# What SageMaker does with each S3 location of a request (by the request field that holds it), and
# which of them the provider's SageMakerHook checks from the orchestration role before creating the job.
SAGEMAKER_FIELDS = {
    "S3OutputPath": "w",
    "DataCaptureConfig": "w",  # the endpoint's capture (DestinationS3Uri)
    "ModelDataUrl": "r",
    "SAGEMAKER_SUBMIT_DIRECTORY": "r",
    "sagemaker_submit_directory": "r",
}


def _sagemaker_need(path: tuple) -> tuple[str, bool]:
    """(SageMaker's access, whether the provider checks it from MWAA) for the field at ``path``."""
    if "CheckpointConfig" in path:
        return "rwd", False
    if path[-1] == "S3Uri" and ("InputDataConfig" in path or "TransformInput" in path):
        return "r", True
    for name, need in SAGEMAKER_FIELDS.items():
        if name in path:
            return need, False
    raise AssertionError(f"an S3 location at {'.'.join(map(str, path))}: say in this test what SageMaker does with it")


def request_uses(task) -> list[tuple[str, str, str, str]]:
    """(role, bucket, key, access needed) for every S3 location in a built task's rendered request.

    Access "" means "some": the code behind it decides (a Spark job's arguments), and the static scan
    of that code below checks the rest.
    """
    from churn_ml import operators

    rendered, _ = render(task)
    uses: list[tuple[str, str, str, str]] = []

    def add(role: str, uri: str, need: str) -> None:
        bucket, _, key = uri[len("s3://"):].partition("/")
        uses.append((role, bucket, key, need))

    if isinstance(rendered, operators.LakeKeySensor):
        for key in as_list(rendered.bucket_key):
            add(ds.MWAA, key, "r")
    elif isinstance(rendered, (operators.ChurnTrainingOperator, operators.ChurnTuningOperator,
                               operators.BatchScoringOperator, operators.EndpointDeployOperator)):
        config = rendered.config
        if isinstance(rendered, operators.ChurnTrainingOperator) and rendered.champion_model_uri:
            config = {**config, "InputDataConfig": [*config["InputDataConfig"], {"S3Uri": rendered.champion_model_uri}]}
        for path, uri in s3_strings(config):
            need, checked = _sagemaker_need(path)
            add(ds.SAGEMAKER, uri, need)
            if checked:
                add(ds.MWAA, uri, "r")
        if isinstance(rendered, operators.EndpointDeployOperator) and rendered.expectations_uri:
            add(ds.MWAA, rendered.expectations_uri, "r")  # the canary rows the deployment is checked against
        source = config.get("Transform", {}).get("TransformInput", {}).get("DataSource", {}).get("S3DataSource", {})
        if source.get("S3DataType") == "ManifestFile":
            # SageMaker reads the objects the manifest names: the prefix the task that writes it lists.
            writers = [render(t)[0] for t in task.dag.tasks if hasattr(t, "python_callable")]
            listed = [w.op_args[0] for w in writers if source["S3Uri"] in w.op_args]
            assert listed, f"{task.task_id}: no task writes the manifest {source['S3Uri']}"
            add(ds.SAGEMAKER, listed[0], "r")
    elif isinstance(rendered, operators.SparkOnEmrServerlessOperator):
        submit = rendered.job_driver["sparkSubmit"]
        add(ds.EMR, submit["entryPoint"], "r")
        for _, uri in s3_strings(submit["sparkSubmitParameters"]):
            add(ds.EMR, uri, "r")
        for _, uri in s3_strings(submit["entryPointArguments"]):
            if uri != LAKE_ROOT:  # the job derives its prefixes from the root: the static scan checks them
                add(ds.EMR, uri, "")
        log_uri = rendered.configuration_overrides["monitoringConfiguration"]["s3MonitoringConfiguration"]["logUri"]
        add(ds.EMR, log_uri, "w")
    elif isinstance(rendered, operators.SparkOnGlueOperator):
        # The run's code version (--scriptLocation, --extra-py-files among script_args, below) replaces the
        # definition's; the job's other DefaultArguments are the template's (the control plane's jobs too).
        defaults = glue_jobs(load())[rendered.job_name]["DefaultArguments"]
        for _, uri in s3_strings({k: (sub_text(v) or v).replace("${ArtifactsBucket}", ARTIFACTS_BUCKET)
                                  for k, v in defaults.items() if sub_text(v) and k not in rendered.script_args}):
            add(ds.GLUE, uri, "r")
        for _, uri in s3_strings(rendered.script_args):
            if uri != LAKE_ROOT:
                add(ds.GLUE, uri, "")
    elif isinstance(rendered, (SnsPublishOperator, TriggerDagRunOperator)):
        pass  # an SNS message (a report's URI in it is text) and a DAG run in Airflow: no S3 access
    elif isinstance(rendered, SQLCheckOperator):
        # An Athena query (churn_ml.checks): Athena reads the tables' files and writes the result as the caller.
        tables = ds.QUERY_ACCESS[task.dag_id][task.task_id]
        for table in tables:
            assert f" {table} " in f" {rendered.sql} ", f"{task.task_id} does not query {table} (QUERY_ACCESS)"
            add(ds.MWAA, f"{LAKE_ROOT}/{ds.TABLES[table]}dt=2026-01-01/part-00000", "r")
        add(ds.MWAA, f"{LAKE_ROOT}/{ds.ATHENA_RESULTS}query-id.csv", "rw")
    elif hasattr(rendered, "python_callable"):
        for value in [*rendered.op_args, *rendered.op_kwargs.values()]:
            if isinstance(value, str):
                for _, uri in s3_strings(value):
                    add(ds.MWAA, uri, "")
    else:
        raise AssertionError(f"{task.task_id}: a {type(task).__name__}; say in this test which S3 locations it uses")
    return uses


# ------------------------------------------------------------------ lake paths written in the code

ENTITIES = ("customers", "events")  # include/churn/schema.py ENTITIES: the jobs loop over them as `entity`
WILDCARD = "\0"


def _root_expr(node: ast.expr) -> bool:
    """``lake``, ``settings.lake``, ``cfg.settings.lake``, ``self.args.lake``, ``s.lake``: the lake root URI."""
    return (isinstance(node, ast.Name) and node.id == "lake") or (isinstance(node, ast.Attribute) and node.attr == "lake")


def fstring_paths(tree: ast.AST, names: dict) -> set[str]:
    """Lake keys (their literal start, up to the first part only known at run time) that f-strings
    below ``tree`` build from the lake root. ``names`` resolves module constants (a tuple: each value)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.JoinedStr) or not node.values:
            continue
        first = node.values[0]
        if not (isinstance(first, ast.FormattedValue) and _root_expr(first.value)):
            continue
        options: list[list[str]] = []
        for part in node.values[1:]:
            if isinstance(part, ast.Constant):
                options.append([str(part.value)])
            elif isinstance(part.value, ast.Name) and part.value.id in names:
                value = names[part.value.id]
                options.append(list(value) if isinstance(value, tuple) else [str(value)])
            elif (isinstance(part.value, ast.Subscript) and isinstance(part.value.value, ast.Name)
                  and isinstance(names.get(part.value.value.id), dict)):  # TABLES[table]: each of the table's values
                options.append([str(v) for v in names[part.value.value.id].values()])
            else:
                options.append([WILDCARD])
        for combination in product(*options):
            text = "".join(combination)
            if not text.startswith("/") or text == "/":
                continue
            key = text[1:].split(WILDCARD, 1)[0]
            # A path whose first folder is only known at run time cannot be checked: name it with a constant.
            found.add(key if key and ("/" in key or WILDCARD not in text) else f"<unresolved: {ast.unparse(node)}>")
    return found


def module_constants(tree: ast.Module) -> dict:
    constants = {}
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            constants[node.targets[0].id] = node.value.value
    return constants


def job_paths(script: str) -> set[str]:
    tree = ast.parse((REPO / "include" / script).read_text())
    return fstring_paths(tree, {**module_constants(tree), "entity": ENTITIES})


def callable_paths(task) -> set[str]:
    function = task.python_callable
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    names = {k: v for k, v in function.__globals__.items() if isinstance(v, (str, tuple))}
    return fstring_paths(tree, names)


# ------------------------------------------------------------------ tests: the table and the code

@pytest.mark.parametrize("backend", ["emr_serverless", "glue"])
def test_every_task_has_its_row_in_the_access_table(backend):
    built = {(dag_id, t.task_id) for dag_id, dag in dags(backend).items() for t in dag.tasks}
    table = {(dag_id, task_id) for dag_id, tasks in ds.LAKE_ACCESS.items() for task_id in tasks}
    assert built == table, f"tasks without a row: {sorted(built - table)}; rows without a task: {sorted(table - built)}"
    prefixes = {p for roles in (r for tasks in ds.LAKE_ACCESS.values() for r in tasks.values())
                for access in roles.values() for p in access}
    assert all(p.endswith("/") and not p.startswith("/") for p in prefixes), prefixes
    for a, b in product(prefixes, prefixes):  # one prefix per part of the lake: none inside another
        assert a == b or not a.startswith(b), f"{a} is inside {b}: grant one or the other"


@pytest.mark.parametrize("backend", ["emr_serverless", "glue"])
def test_what_each_request_touches_is_granted_to_its_role_by_the_table(backend):
    for dag_id, dag in dags(backend).items():
        for task in dag.tasks:
            access = task_access(dag_id, task.task_id)
            for role, bucket, key, need in request_uses(task):
                where = f"{dag_id}.{task.task_id} ({role}): s3://{bucket}/{key}"
                if bucket == ARTIFACTS_BUCKET:
                    assert covered(ds.ARTIFACTS_ACCESS.get(role, {}), key, need), f"{where} not in ARTIFACTS_ACCESS"
                else:
                    assert bucket == LAKE_BUCKET, where
                    assert covered(access.get(role, {}), key, need), f"{where} needs {need or 'access'}: not in LAKE_ACCESS"


@pytest.mark.parametrize("backend", ["emr_serverless", "glue"])
def test_the_paths_in_task_code_are_granted_to_the_orchestration_role(backend):
    scanned = 0
    for dag_id, dag in dags(backend).items():
        for task in dag.tasks:
            if not hasattr(task, "python_callable"):
                continue
            for key in callable_paths(task) - NAMED_NOT_ACCESSED.get((dag_id, task.task_id), set()):
                scanned += 1
                assert covered(task_access(dag_id, task.task_id).get(ds.MWAA, {}), key), (
                    f"{dag_id}.{task.task_id} uses {key} in its code: give the mwaa role that prefix in LAKE_ACCESS")
    assert scanned >= 6  # the scan sees the tasks' paths (pointer, manifest, summaries, partitions)


def _spark_tasks(backend: str) -> dict[str, list[tuple[str, str]]]:
    """include/jobs/<job>.py -> the (dag_id, task_id) that run it."""
    from churn_ml import operators

    jobs: dict[str, list[tuple[str, str]]] = {}
    for dag_id, dag in dags(backend).items():
        for task in dag.tasks:
            if isinstance(task, operators.SparkOnEmrServerlessOperator):
                script = task.job_driver["sparkSubmit"]["entryPoint"]
            elif isinstance(task, operators.SparkOnGlueOperator):
                script = task.script_args["--scriptLocation"]
            else:
                continue
            jobs.setdefault(script.rsplit("/jobs/", 1)[1], []).append((dag_id, task.task_id))
    return jobs


@pytest.mark.parametrize("backend", ["emr_serverless", "glue"])
def test_the_paths_in_the_spark_jobs_are_granted_to_the_role_that_runs_them(backend):
    from churn_ml import stream_job

    role = ds.EMR if backend == "emr_serverless" else ds.GLUE
    runs = {job: [(t, role) for t in tasks] for job, tasks in _spark_tasks(backend).items()}
    # The streaming job: a Glue job the churn_streaming DAG starts (stream_job.ensure_job).
    script = sub_text(glue_jobs(load())[stream_job.settings.streaming_job_name]["Command"]["ScriptLocation"])
    runs.setdefault(script.rsplit("/", 1)[1], []).append((("churn_streaming", "ensure_streaming_job"), ds.GLUE))
    assert set(runs) == {p.name for p in (REPO / "include" / "jobs").glob("*.py")}, "a job no task runs, or the reverse"
    for job, runners in runs.items():
        paths = job_paths(f"jobs/{job}")
        assert paths, f"jobs/{job}: no lake paths found; the scan no longer sees how it builds them"
        for (dag_id, task_id), runner in runners:
            for key in paths:
                assert covered(task_access(dag_id, task_id)[runner], key), (
                    f"jobs/{job} uses {key}; LAKE_ACCESS gives {runner} no such prefix for {dag_id}.{task_id}")


def test_the_streaming_jobs_run_arguments_and_health_check_are_in_the_table():
    from churn_ml import stream_job

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHURN_LAKE_BUCKET", LAKE_BUCKET)
        arguments = stream_job.run_arguments()
        progress = f"{stream_job.root()}/runs/run-1/progress.json"
    job = task_access("churn_streaming", "ensure_streaming_job")[ds.GLUE]
    for name, value in arguments.items():
        if name in ("--scriptLocation", "--extra-py-files"):  # the run's code version, in the artifacts bucket
            assert value.startswith(f"s3://{ARTIFACTS_BUCKET}/")
            assert covered(ds.ARTIFACTS_ACCESS[ds.GLUE], value.split("/", 3)[3], "r"), f"{name} {value}"
            continue
        if value.startswith("s3://") and value != LAKE_ROOT:
            assert covered(job, _key(value) + "/", "rw"), f"{name} {value}"
    assert covered(task_access("churn_streaming", "check_health")[ds.MWAA], _key(progress), "r")


def test_every_lake_path_in_the_plugins_is_in_the_table():
    everything = ds.role_access()
    for path in sorted((REPO / "plugins" / "churn_ml").glob("*.py")):
        tree = ast.parse(path.read_text())
        for key in fstring_paths(tree, {**module_constants(tree), **{k: v for k, v in vars(ds).items()
                                                                    if isinstance(v, (str, tuple)) or k == "TABLES"}}):
            assert any(covered(access, key) for access in everything.values()), f"{path.name} uses {key}"
    from churn_ml import registry

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHURN_LAKE_BUCKET", LAKE_BUCKET)
        card = f"{registry.version_prefix('churn-xgboost', 1)}/card.json"
    assert covered(task_access("churn_training", "register_model")[ds.MWAA], _key(card), "w")


# ------------------------------------------------------------------ tests: the table and the policies

def _bucket_prefixes(value, bucket: str) -> str | None:
    text = sub_text(value)
    marker = f"${{{bucket}.Arn}}/"
    if text is None or not text.startswith(marker):
        return None
    assert text.endswith("*"), text
    return text[len(marker):-1]


def _is_bucket(value, bucket: str) -> bool:
    return isinstance(value, Tagged) and value.get("!GetAtt") in (f"{bucket}.Arn", [bucket, "Arn"])


def policy_access(template: dict, role: str, bucket: str) -> tuple[dict[str, str], dict | None, bool]:
    """(prefix -> modes from GetObject/PutObject/DeleteObject, the ListBucket condition, whether listed)."""
    modes = {"s3:GetObject": "r", "s3:PutObject": "w", "s3:DeleteObject": "d"}
    granted: dict[str, set[str]] = {}
    condition, listed = None, False
    for statement in role_statements(template, role):
        resources = as_list(statement["Resource"])
        prefixes = [p for p in (_bucket_prefixes(r, bucket) for r in resources) if p is not None]
        actions = as_list(statement["Action"])
        if prefixes:
            assert len(actions) == 1 and actions[0] in modes, f"{role} {statement['Sid']}: one object action a statement"
            for prefix in prefixes:
                granted.setdefault(prefix, set()).add(modes[actions[0]])
        if any(_is_bucket(r, bucket) for r in resources):
            if actions == ["s3:GetBucketLocation"] and role == "MwaaExecutionRole":
                continue  # Athena checks its results bucket's region first (the lake's _athena/: QueryLakeResultsLocation)
            assert actions == ["s3:ListBucket"], f"{role} {statement['Sid']}: only ListBucket on the bucket itself"
            assert not listed, f"{role}: one ListBucket statement on {bucket}"
            listed, condition = True, statement.get("Condition")
    return {p: "".join(m for m in "rwd" if m in v) for p, v in sorted(granted.items())}, condition, listed


@pytest.fixture(scope="module")
def template() -> dict:
    return load()


@pytest.mark.parametrize("role", ds.ROLES)
def test_each_roles_lake_statements_are_exactly_the_table(template, role):
    expected = ds.role_access()[role]
    granted, condition, listed = policy_access(template, TEMPLATE_ROLES[role], "LakeBucket")
    assert granted == expected
    assert listed
    if role in UNCONDITIONED_LAKE_LISTING:
        assert condition is None
    else:
        assert condition == {"StringLike": {"s3:prefix": [f"{p}*" for p in expected]}}


@pytest.mark.parametrize("role", ds.ROLES)
def test_each_roles_artifacts_statements_are_exactly_the_table(template, role):
    expected = ds.ARTIFACTS_ACCESS.get(role, {})
    granted, condition, listed = policy_access(template, TEMPLATE_ROLES[role], "ArtifactsBucket")
    assert granted == expected
    assert listed == bool(expected)
    if expected:
        assert condition == {"StringLike": {"s3:prefix": [f"{p}*" for p in expected]}}


def test_no_role_reaches_the_lake_any_other_way(template):
    """No wildcard over the whole bucket and no S3 action other than the four the table speaks of (and, for the
    role that runs Athena queries, s3:GetBucketLocation on the lake: Athena checks its results bucket's region)."""
    for role in TEMPLATE_ROLES.values():
        athena = {"s3:GetBucketLocation"} if role == "MwaaExecutionRole" else set()
        for statement in role_statements(template, role):
            text = str(statement["Resource"])
            if "LakeBucket" in text or "ArtifactsBucket" in text:
                assert "Bucket.Arn}/*'" not in text and "Bucket.Arn}/*\"" not in text, f"{role} {statement['Sid']}"
                assert set(as_list(statement["Action"])) <= {"s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                                                             "s3:ListBucket", *athena}, f"{role} {statement['Sid']}"


def _changes(access: dict[str, str], key: str) -> bool:
    return covered(access, key, "w") or covered(access, key, "d")


def test_only_the_orchestration_role_writes_the_production_model_pointer(template):
    pointer = ds.MODEL_POINTER_KEY
    writers = {role for role, access in ds.role_access().items() if _changes(access, pointer)}
    assert writers == {ds.MWAA}
    for role, name in TEMPLATE_ROLES.items():
        granted, _, _ = policy_access(template, name, "LakeBucket")
        assert _changes(granted, pointer) == (role == ds.MWAA), f"{role} may write or delete {pointer}"
    assert covered(ds.role_access()[ds.MWAA], pointer, "rw")
    # Nothing a SageMaker job writes (outputs, checkpoints, transform outputs) contains it.
    sagemaker_writes = [p for p, m in ds.role_access()[ds.SAGEMAKER].items() if set(m) & set("wd")]
    assert not any(pointer.startswith(p) or p.startswith(ds.PUBLISHED) for p in sagemaker_writes)
    assert ds.MODEL_ASSET.uri.endswith(f"/{pointer}")


def test_the_docs_table_names_every_prefix_each_role_may_touch():
    """docs/infrastructure.md says what each role may touch: every prefix of role_access() is in its row."""
    from churn_ml.dag_support import role_access

    docs = (Path(__file__).resolve().parents[2] / "docs/infrastructure.md").read_text()
    rows = {"mwaa": "| MWAA", "sagemaker": "| SageMaker", "emr-serverless": "| EMR Serverless", "glue": "| Glue"}
    for role, prefixes in role_access().items():
        row = next(line for line in docs.splitlines() if line.startswith(rows[role]))
        if role == "glue":  # "as EMR Serverless, plus ..."
            row += next(line for line in docs.splitlines() if line.startswith(rows["emr-serverless"]))
        missing = [prefix for prefix in prefixes if f"`{prefix}`" not in row]
        assert not missing, f"docs/infrastructure.md's row for {role} misses {missing}"
