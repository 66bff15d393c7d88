"""Static checks of the infrastructure: the CloudFormation template (cfn-lint, checkov, least
privilege) and docker-compose.yaml (the Compose Specification schema).

The checkers live in .venv-tools (scripts/bootstrap.sh installs them from infra/requirements-tools.txt);
a missing checker fails these tests, it never skips them.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / ".venv-tools" / "bin"
TEMPLATE = REPO / "infra" / "cloudformation" / "churn.yaml"
COMPOSE = REPO / "docker-compose.yaml"

CODE_OVERRIDES = ("--scriptLocation", "--extra-py-files")  # a run's code version (churn_ml.artifacts)


def _tool(name: str) -> str:
    path = TOOLS / name
    assert path.exists(), f"{path} is missing: run scripts/bootstrap.sh (it installs infra/requirements-tools.txt)"
    return str(path)


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation's short-form tags (!Ref, !Sub, !GetAtt ...) as plain values."""


_CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: (
    loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode)
    else loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode)
    else loader.construct_mapping(node)
))


@pytest.fixture(scope="module")
def template() -> dict:
    return yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)


def test_template_passes_cfn_lint():
    proc = subprocess.run([_tool("cfn-lint"), str(TEMPLATE)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_template_passes_checkov_and_every_skip_is_justified(template):
    proc = subprocess.run(
        [_tool("checkov"), "-f", str(TEMPLATE), "--framework", "cloudformation", "--skip-download", "--output", "json"],
        capture_output=True, text=True, timeout=600,
    )
    report = json.loads(proc.stdout)
    failed = report["results"]["failed_checks"]
    assert not failed, "\n".join(f"{c['check_id']} {c['check_name']}: {c['resource']}" for c in failed)
    assert report["summary"]["passed"] > 50
    for name, resource in template["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert len(skip.get("comment", "")) > 20, f"{name}: checkov skip {skip['id']} needs a reason"


def _statements(template: dict):
    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        for policy in resource["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                yield name, statement


def test_roles_are_least_privilege_no_wildcard_actions_on_wildcard_resources(template):
    roles = {name for name, _ in _statements(template)}
    assert roles == {"SageMakerRole", "EmrServerlessJobRole", "GlueJobRole", "MwaaExecutionRole"}
    for role, statement in _statements(template):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        assert statement["Effect"] == "Allow"
        assert not any(a == "*" or a.endswith(":*") for a in actions), f"{role} {statement['Sid']}: a whole service"
        if "*" in resources:
            # Only actions AWS defines without a resource, one by one.
            assert set(actions) <= {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"}, f"{role} {statement['Sid']}"
        if "iam:PassRole" in actions:
            assert "iam:PassedToService" in json.dumps(statement.get("Condition", {})), "PassRole without a service condition"


def test_buckets_are_versioned_encrypted_private_and_tls_only(template):
    resources = template["Resources"]
    buckets = [n for n, r in resources.items() if r["Type"] == "AWS::S3::Bucket"]
    assert {"LakeBucket", "ArtifactsBucket", "MwaaBucket"} <= set(buckets)
    policies = {r["Properties"]["Bucket"]: r for r in resources.values() if r["Type"] == "AWS::S3::BucketPolicy"}
    for name in buckets:
        props = resources[name]["Properties"]
        assert props["VersioningConfiguration"]["Status"] == "Enabled", name
        assert all(props["PublicAccessBlockConfiguration"].values()), name
        algorithm = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]["SSEAlgorithm"]
        assert algorithm == ("AES256" if name == "AccessLogsBucket" else "aws:kms"), name  # S3 logs need SSE-S3
        deny = policies[name]["Properties"]["PolicyDocument"]["Statement"][0]
        assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}, name
    assert resources["EventsStream"]["Properties"]["StreamEncryption"]["EncryptionType"] == "KMS"


def test_the_endpoint_rollback_alarms_are_the_ones_the_training_dag_names(template):
    import churn_training

    names = {a["AlarmName"] for a in churn_training.ENDPOINT_REQUEST["Endpoint"]["DeploymentConfig"]
             ["AutoRollbackConfiguration"]["Alarms"]}
    alarms = {r["Properties"]["AlarmName"] for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert {n.replace("{{ churn.endpoint_name }}", "${EndpointName}") for n in names} == alarms


def test_the_streaming_job_is_the_one_the_streaming_dag_starts(template, monkeypatch):
    from cfn_template import sub_text

    from churn_ml import stream_job
    from churn_ml.settings import settings

    job = template["Resources"]["StreamingJob"]["Properties"]
    assert sub_text(job["Name"]).replace("${Project}", "churn") == settings.streaming_job_name
    assert job["Command"]["Name"] == "gluestreaming"
    assert sub_text(job["Command"]["ScriptLocation"]) == "s3://${ArtifactsBucket}/code/${CodeVersion}/jobs/churn_stream_scoring.py"
    defaults = job["DefaultArguments"]
    assert sub_text(defaults["--extra-py-files"]) == "s3://${ArtifactsBucket}/code/${CodeVersion}/lib/churn.zip"
    assert defaults["--source"] == "glue" and "--stream-arn" in defaults
    assert job["ExecutionProperty"]["MaxConcurrentRuns"] == 1  # a racing second start fails, never duplicates
    # The one override, on purpose: the run's code version (--scriptLocation, --extra-py-files of code/<version>/).
    from churn_ml import artifacts

    run_arguments = stream_job.run_arguments()
    assert artifacts.version_of(run_arguments["--extra-py-files"]) == artifacts.version_of(run_arguments["--scriptLocation"])
    assert not set(defaults) & (set(run_arguments) - set(CODE_OVERRIDES)), "the DAG's run arguments would silently override"


def test_the_alerts_topic_is_encrypted_and_only_the_orchestration_role_publishes_to_it(monkeypatch):
    """The model alerts topic (churn_monitoring's SnsPublishOperator): KMS-encrypted with the data key,
    TLS only, published to by the MWAA role alone and by sns:Publish alone; its ARN is the stack output
    deploy settings take CHURN_ALERTS_TOPIC_ARN from, and its name the local default's."""
    import cfn_template

    from churn_ml.settings import SettingsError, settings

    tagged = cfn_template.load()
    topics = {n: r for n, r in tagged["Resources"].items() if r["Type"] == "AWS::SNS::Topic"}
    assert set(topics) == {"AlertsTopic"}
    topic = topics["AlertsTopic"]["Properties"]
    assert topic["KmsMasterKeyId"] == {"!GetAtt": "DataKey.Arn"}
    from local_aws.settings import deployment_environment

    local_name = deployment_environment()["CHURN_ALERTS_TOPIC_ARN"].rsplit(":", 1)[1]  # the control plane's topic
    assert cfn_template.sub_text(topic["TopicName"]).replace("${Project}", "churn") == local_name
    monkeypatch.delenv("CHURN_ALERTS_TOPIC_ARN", raising=False)
    for target in ("aws", "local"):
        monkeypatch.setenv("ML_TARGET", target)
        with pytest.raises(SettingsError, match="CHURN_ALERTS_TOPIC_ARN"):
            settings.alerts_topic_arn  # noqa: B018 - no default on either target: the deployment sets it
    policy = [r["Properties"] for r in tagged["Resources"].values() if r["Type"] == "AWS::SNS::TopicPolicy"]
    assert len(policy) == 1 and policy[0]["Topics"] == [{"!Ref": "AlertsTopic"}]
    deny = policy[0]["PolicyDocument"]["Statement"][0]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    publishers = {}
    for role in ("SageMakerRole", "EmrServerlessJobRole", "GlueJobRole", "MwaaExecutionRole"):
        for statement in cfn_template.role_statements(tagged, role):
            if any(a.startswith("sns:") for a in cfn_template.as_list(statement["Action"])):
                publishers.setdefault(role, []).append(statement)
    assert list(publishers) == ["MwaaExecutionRole"] and len(publishers["MwaaExecutionRole"]) == 1
    statement = publishers["MwaaExecutionRole"][0]
    assert cfn_template.as_list(statement["Action"]) == ["sns:Publish"]
    assert statement["Resource"] == {"!Ref": "AlertsTopic"}
    # Publishing to a KMS-encrypted topic takes GenerateDataKey and Decrypt on its key.
    key_actions = {a for s in cfn_template.role_statements(tagged, "MwaaExecutionRole")
                   if s["Resource"] == {"!GetAtt": "DataKey.Arn"} for a in cfn_template.as_list(s["Action"])}
    assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= key_actions
    assert tagged["Outputs"]["AlertsTopicArn"] == {"Value": {"!Ref": "AlertsTopic"}, "Description": "CHURN_ALERTS_TOPIC_ARN"}


def test_the_alerts_topic_subscribes_the_parameters_endpoint_only_when_one_is_given():
    """AlertsSubscriptionEndpoint: empty (the default) creates no subscription; an e-mail address or an
    https URL (AlertsSubscriptionProtocol) is subscribed to the topic. docs/infrastructure.md says how to add more."""
    import cfn_template

    tagged = cfn_template.load()
    parameters = tagged["Parameters"]
    assert parameters["AlertsSubscriptionEndpoint"]["Default"] == ""
    assert parameters["AlertsSubscriptionProtocol"]["AllowedValues"] == ["email", "https"]
    assert tagged["Conditions"]["SubscribesToAlerts"] == {
        "!Not": [{"!Equals": [{"!Ref": "AlertsSubscriptionEndpoint"}, ""]}]}
    subscriptions = {n: r for n, r in tagged["Resources"].items() if r["Type"] == "AWS::SNS::Subscription"}
    assert list(subscriptions) == ["AlertsSubscription"]
    subscription = subscriptions["AlertsSubscription"]
    assert subscription["Condition"] == "SubscribesToAlerts"
    assert subscription["Properties"] == {"TopicArn": {"!Ref": "AlertsTopic"}, "Protocol": {"!Ref": "AlertsSubscriptionProtocol"},
                                          "Endpoint": {"!Ref": "AlertsSubscriptionEndpoint"}}
    docs = (REPO / "docs" / "infrastructure.md").read_text()
    assert "**Alerts.**" in docs and "aws sns subscribe --topic-arn" in docs


def test_the_sagemaker_role_pulls_the_xgboost_image_of_aws_accounts_only(monkeypatch):
    """ECR pulls name AWS's SageMaker image account for the region (a mapping), not any account."""
    import re

    import cfn_template

    from local_aws.settings import XGBOOST_IMAGE_URI

    tagged = cfn_template.load()
    mapping = tagged["Mappings"]["SageMakerXGBoostImage"]
    assert all(re.fullmatch(r"\d{12}", entry["Account"]) for entry in mapping.values())
    assert {"us-east-1", "us-east-2", "us-west-2", "eu-west-1", "eu-central-1"} <= set(mapping)
    registry, _, repository = XGBOOST_IMAGE_URI.partition("/")  # the local stack's (us-east-1)
    account, _, _, region = registry.split(".")[:4]
    assert repository.startswith("sagemaker-xgboost:") and mapping[region]["Account"] == account
    pulls = [s for s in cfn_template.role_statements(tagged, "SageMakerRole") if "ecr:BatchGetImage" in cfn_template.as_list(s["Action"])]
    assert len(pulls) == 1
    arn, names = pulls[0]["Resource"]["!Sub"]
    assert arn == "arn:${AWS::Partition}:ecr:${AWS::Region}:${ImageAccount}:repository/sagemaker-xgboost"
    assert names == {"ImageAccount": {"!FindInMap": ["SageMakerXGBoostImage", {"!Ref": "AWS::Region"}, "Account"]}}


def test_the_jobs_log_groups_are_encrypted_with_the_data_key_and_expire(template):
    import cfn_template

    tagged = cfn_template.load()
    resources = tagged["Resources"]
    groups = {cfn_template.sub_text(r["Properties"]["LogGroupName"]): (name, r) for name, r in resources.items()
              if r["Type"] == "AWS::Logs::LogGroup"}
    assert set(groups) == {
        "/aws/sagemaker/TrainingJobs", "/aws/sagemaker/TransformJobs", "/aws/sagemaker/Endpoints/${EndpointName}",
        "/aws-glue/jobs/${GlueSecurityConfiguration}-role/${GlueJobRole}/output",
        "/aws-glue/jobs/${GlueSecurityConfiguration}-role/${GlueJobRole}/error",
        "/aws-glue/jobs/logs-v2-${GlueSecurityConfiguration}",
    }
    for name, resource in groups.values():
        assert resource["Properties"]["KmsKeyId"] == {"!GetAtt": "DataKey.Arn"}, name
        assert resource["Properties"]["RetentionInDays"] == {"!Ref": "LogRetentionInDays"}, name
    for shared in ("/aws/sagemaker/TrainingJobs", "/aws/sagemaker/TransformJobs"):  # account-wide: kept on delete
        name, resource = groups[shared]
        assert resource["DeletionPolicy"] == resource["UpdateReplacePolicy"] == "Retain", name
    assert tagged["Parameters"]["LogRetentionInDays"]["Default"] in tagged["Parameters"]["LogRetentionInDays"]["AllowedValues"]
    # CloudWatch Logs may use the key for this account's log groups (and nothing else may, but the account).
    logs = [s for s in tagged["Resources"]["DataKey"]["Properties"]["KeyPolicy"]["Statement"]
            if s["Principal"] == {"Service": {"!Sub": "logs.${AWS::Region}.amazonaws.com"}}]
    assert len(logs) == 1 and {"kms:Encrypt*", "kms:Decrypt*", "kms:GenerateDataKey*"} <= set(logs[0]["Action"])
    assert "kms:EncryptionContext:aws:logs:arn" in str(logs[0]["Condition"])
    # EMR Serverless logs to the lake (_logs/), which expire after the same number of days.
    rules = {r["Id"]: r for r in template["Resources"]["LakeBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-job-logs"]["Prefix"] == "_logs/"
    assert rules["expire-job-logs"]["ExpirationInDays"] == "LogRetentionInDays"
    from churn_ml.dag_support import EMR_LOGS

    assert EMR_LOGS.startswith("_logs/")


def test_the_training_bundle_pins_exact_versions():
    """The SageMaker source bundle's requirements are installed in the XGBoost container at every job
    start: exact versions only (no ranges, no unpinned names)."""
    import re

    path = REPO / "include" / "sagemaker" / "requirements.txt"
    lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    requirements = [line for line in lines if line]
    assert requirements, path
    for requirement in requirements:
        assert re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][0-9A-Za-z.]*", requirement), requirement
    assert "matplotlib==3.4.1" in requirements  # what the sagemaker-xgboost:1.7-1 image (Python 3.8) has


def test_compose_file_follows_the_compose_spec():
    proc = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert {"postgres", "control-plane", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
            "airflow-triggerer"} <= set(services)
    worker = services["airflow-scheduler"]
    assert {"./dags:/opt/airflow/dags", "./plugins:/opt/airflow/plugins", "./include:/opt/airflow/include"} <= set(worker["volumes"])
    assert worker["environment"]["ML_TARGET"] == "local"
    # The tasks' AWS is the control plane service, the same connection as scripts/env.sh's but for its host.
    connection = json.loads(worker["environment"]["AIRFLOW_CONN_AWS_DEFAULT"])
    assert connection["extra"]["endpoint_url"] == "http://control-plane:4566"
    # The local stack's resources: the names local_aws.settings gives them (scripts/env.sh exports the same).
    from local_aws.settings import deployment_environment

    assert {k: worker["environment"].get(k) for k in deployment_environment()} == deployment_environment()
    plane = services["control-plane"]
    assert plane["entrypoint"][:3] == ["python", "-m", "local_aws.control_plane"]
    assert "./local_aws:/opt/airflow/local_aws" in plane["volumes"] and "ports" not in plane
    # The code the tasks run is deployed once, before them, as scripts/stack.sh start deploys it.
    assert services["airflow-init"]["command"][-1].endswith("&& python -m local_aws.code_deploy")
    dockerfile = (REPO / worker["build"]["dockerfile"]).read_text()
    assert "FROM apache/airflow:3.3.1-python3.12" in dockerfile
