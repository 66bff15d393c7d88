"""IAM as AWS enforces it, for the lake: each S3 request checked against the policy of the role that signed it.

On AWS a task's S3 calls are signed with the MWAA execution role's credentials and S3 authorizes each
against that role's policies (infra/cloudformation/churn.yaml); a missing grant is a 403 in production.
The local target does the same:

- **One key per role.** Besides the lake's own key (``common.credentials()``: the developer's, an
  administrator's, that tests and tools use), each role of the template has an access key derived from
  the lake's secret (``role_credentials``): an HMAC, so nothing more is stored and every process that can
  read the lake's key can compute it. The Airflow connection of the local target signs with the MWAA
  role's key (scripts/env.sh, ``control_plane.connection()``), as MWAA's tasks sign with that role's.
- **The roles in moto's IAM.** At its start the control plane creates the template's roles in moto's IAM
  backend with their inline policies' S3 statements, resolved for the local buckets (``create_roles``);
  statements on other services are not enforced here and are left out. The policies are state like any
  other: ``iam.get_role_policy`` shows them, ``iam.put_role_policy`` changes them, and the next request
  is checked against the change (what the test of a missing grant does).
- **Every S3 request of a role is authorized** before moto sees it (``authorize_s3``), as S3 does: the
  operation's IAM action(s) on the object or bucket ARN, with the condition keys S3 supplies
  (``s3:prefix``, ``s3:delimiter``, ``s3:max-keys`` for a listing, ``s3:x-amz-copy-source`` for a copy);
  an explicit Deny wins, else an Allow must match, else it is denied. A denial is S3's 403 AccessDenied,
  which botocore does not retry. A HEAD is authorized as s3:GetObject (S3 answers 403, not 404, for a
  missing object the role may not read), a copy as s3:PutObject on the target and s3:GetObject on the
  source, DeleteObjects as s3:DeleteObject per key.

What is not enforced, and why: other services' actions (SageMaker, EMR Serverless, Glue, Logs, Kinesis,
SNS) — the roles' statements on them name resources by ARN patterns the local target shares, but their
enforcement would not find a different class of error than S3's does; and the jobs' own data access:
local Spark and the SageMaker sandbox read and write the lake as files (``local_aws.lake_files``).
tests/infra/test_lake_access.py checks those roles' S3 statements against ``LAKE_ACCESS`` instead.

The evaluator is this module's own (about 60 lines) rather than moto's ``IAMPolicyStatement``: moto's
denies a request when an Allow statement's condition does not match (it should be neutral), which would
refuse, e.g., a ListBucket of the lake because the artifacts bucket's conditional ListBucket does not match.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import xml.etree.ElementTree as ET
from typing import NamedTuple
from urllib.parse import parse_qsl, unquote

ROLE_PATH = "/"
# The template's roles (resource name -> what the local target calls its principal). RoleName is
# "${Project}-<suffix>" in the template; the tests check these names against it.
ROLES = {
    "MwaaExecutionRole": "churn-mwaa",
    "SageMakerRole": "churn-sagemaker",
    "EmrServerlessJobRole": "churn-emr-serverless",
    "GlueJobRole": "churn-glue",
}
MWAA_ROLE = ROLES["MwaaExecutionRole"]
KEY_PREFIX = "LROLE"  # a role key's id starts so; the lake's own key starts "LOCAL"


class Credentials(NamedTuple):
    access_key_id: str
    secret_access_key: str


def role_credentials(lake_secret: str, role: str) -> Credentials:
    """The access key of ``role`` (one of ``ROLES``' values) for the lake whose secret key is ``lake_secret``."""
    if role not in ROLES.values():
        raise ValueError(f"{role!r} is not a role of the template; expected one of {', '.join(ROLES.values())}")
    digest = hmac.new(lake_secret.encode(), f"churn-local role key {role}".encode(), hashlib.sha256).hexdigest()
    return Credentials(f"{KEY_PREFIX}{digest[:15].upper()}", hmac.new(
        lake_secret.encode(), f"churn-local role secret {role}".encode(), hashlib.sha256).hexdigest()[:40])


def role_keys(lake_secret: str) -> dict[str, tuple[str, Credentials]]:
    """access key id -> (role, credentials) for every role."""
    keys = {}
    for role in ROLES.values():
        key = role_credentials(lake_secret, role)
        keys[key.access_key_id] = (role, key)
    return keys


# ---------------------------------------------------------------- the roles in moto's IAM

def s3_statements(template: dict, resource_name: str, refs: dict[str, str]) -> list[dict]:
    """The S3 statements of a template role's inline policies, resolved with ``refs``."""
    from local_aws.template import resolve

    statements = []
    for policy in template["Resources"][resource_name]["Properties"].get("Policies", []):
        for statement in policy["PolicyDocument"]["Statement"]:
            actions = _as_list(statement.get("Action", []))
            if not any(str(a).lower().startswith("s3:") for a in actions):
                continue
            statements.append(resolve({k: v for k, v in statement.items()}, refs))
    return statements


def bucket_refs(lake_bucket: str, artifacts_bucket: str, account: str, region: str) -> dict[str, str]:
    """What the template's S3 statements refer to, on the local target."""
    return {
        "LakeBucket": lake_bucket, "LakeBucket.Arn": f"arn:aws:s3:::{lake_bucket}",
        "ArtifactsBucket": artifacts_bucket, "ArtifactsBucket.Arn": f"arn:aws:s3:::{artifacts_bucket}",
        "MwaaBucket": "churn-mwaa", "MwaaBucket.Arn": "arn:aws:s3:::churn-mwaa",
        "Project": "churn", "AWS::AccountId": account, "AWS::Region": region, "AWS::Partition": "aws",
    }


def create_roles(iam_backend, refs: dict[str, str]) -> dict[str, str]:
    """Create the template's roles with their S3 statements as one inline policy each (``lake``);
    returns role -> ARN. An existing role gets its policy put again (the template may have changed)."""
    import json

    from local_aws.template import load

    template = load()
    arns = {}
    for resource_name, role in ROLES.items():
        try:
            found = iam_backend.get_role(role)
        except Exception:  # moto's NoSuchEntity
            trust = template["Resources"][resource_name]["Properties"].get("AssumeRolePolicyDocument", {})
            found = iam_backend.create_role(
                role_name=role, assume_role_policy_document=json.dumps(trust, default=str), path=ROLE_PATH,
                permissions_boundary=None, description=f"the template's {resource_name}", tags=[],
                max_session_duration="3600", linked_service=None)
        document = {"Version": "2012-10-17", "Statement": s3_statements(template, resource_name, refs)}
        iam_backend.put_role_policy(role, "lake", json.dumps(document))
        arns[role] = found.arn
    return arns


# ---------------------------------------------------------------- S3 requests -> IAM checks

class Check(NamedTuple):
    action: str
    resource: str
    context: dict[str, str]


def s3_checks(operation: str, bucket: str | None, key: str | None, query: str, headers: dict[str, str],
              body: bytes) -> list[Check]:
    """The IAM checks S3 makes for one request (``headers`` with lower-case names)."""
    params = dict(parse_qsl(query, keep_blank_values=True))
    bucket_arn = f"arn:aws:s3:::{bucket}" if bucket else "*"
    object_arn = f"arn:aws:s3:::{bucket}/{key}" if bucket else "*"
    if operation == "ListBuckets":
        return [Check("s3:ListAllMyBuckets", "*", {})]
    if operation in ("ListObjects", "ListObjectsV2"):
        context = {"s3:prefix": params.get("prefix", "")}
        if "delimiter" in params:
            context["s3:delimiter"] = params["delimiter"]
        if "max-keys" in params:
            context["s3:max-keys"] = params["max-keys"]
        return [Check("s3:ListBucket", bucket_arn, context)]
    if operation == "HeadBucket":
        return [Check("s3:ListBucket", bucket_arn, {})]
    if operation in ("GetObject", "HeadObject"):
        return [Check("s3:GetObject", object_arn, {})]
    if operation in ("PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"):
        return [Check("s3:PutObject", object_arn, {})]
    if operation in ("CopyObject", "UploadPartCopy"):
        source = unquote(headers.get("x-amz-copy-source", "")).lstrip("/").split("?versionId=", 1)[0]
        return [Check("s3:PutObject", object_arn, {"s3:x-amz-copy-source": source}),
                Check("s3:GetObject", f"arn:aws:s3:::{source}", {})]
    if operation == "AbortMultipartUpload":
        return [Check("s3:AbortMultipartUpload", object_arn, {})]
    if operation == "ListParts":
        return [Check("s3:ListMultipartUploadParts", object_arn, {})]
    if operation == "ListMultipartUploads":
        return [Check("s3:ListBucketMultipartUploads", bucket_arn, {})]
    if operation == "DeleteObject":
        return [Check("s3:DeleteObject", object_arn, {})]
    if operation == "DeleteObjects":
        return [Check("s3:DeleteObject", f"arn:aws:s3:::{bucket}/{name}", {}) for name in _delete_keys(body)]
    if operation in ("GetObjectTagging", "PutObjectTagging", "DeleteObjectTagging"):
        return [Check(f"s3:{operation}", object_arn, {})]
    return [Check(f"s3:{operation}", bucket_arn, {})]  # bucket-level operations are named as their action


def _delete_keys(body: bytes) -> list[str]:
    try:
        root = ET.fromstring(body or b"<Delete/>")
    except ET.ParseError:
        return []
    return [element.text or "" for element in root.iter() if element.tag.rsplit("}", 1)[-1] == "Key"]


# ---------------------------------------------------------------- policy evaluation

def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _iam_regex(pattern: str) -> str:
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)


_OPERATORS = {
    "StringEquals": lambda want, have: have == want,
    "StringNotEquals": lambda want, have: have != want,
    "StringEqualsIgnoreCase": lambda want, have: have.lower() == want.lower(),
    "StringLike": lambda want, have: re.fullmatch(_iam_regex(want), have, re.DOTALL) is not None,
    "StringNotLike": lambda want, have: re.fullmatch(_iam_regex(want), have, re.DOTALL) is None,
    "Bool": lambda want, have: have.lower() == str(want).lower(),
    "ArnLike": lambda want, have: re.fullmatch(_iam_regex(want), have) is not None,
    "ArnEquals": lambda want, have: have == want,
}


def _condition_holds(operator: str, key: str, wanted, context: dict[str, str]) -> bool:
    if_exists = operator.endswith("IfExists")
    base = operator[: -len("IfExists")] if if_exists else operator
    if base == "Null":
        return (key not in context) == (str(wanted).lower() == "true")
    if base not in _OPERATORS:
        raise ValueError(f"condition operator {operator} is not evaluated by the local target; the template's S3 "
                         f"statements use {', '.join(sorted(_OPERATORS))} (+IfExists) and Null")
    negated = base.startswith("StringNot")
    if key not in context:
        return if_exists or negated
    have = context[key]
    values = [str(v) for v in _as_list(wanted)]
    if negated:
        return all(_OPERATORS[base](want, have) for want in values)
    return any(_OPERATORS[base](want, have) for want in values)


def _matches(statement: dict, check: Check) -> bool:
    actions = statement.get("Action")
    if actions is not None:
        if not any(_wildcard_ci(a, check.action) for a in _as_list(actions)):
            return False
    elif "NotAction" in statement:
        if any(_wildcard_ci(a, check.action) for a in _as_list(statement["NotAction"])):
            return False
    resources = statement.get("Resource")
    if resources is not None:
        if not any(re.fullmatch(_iam_regex(r), check.resource) for r in _as_list(resources)):
            return False
    elif "NotResource" in statement:
        if any(re.fullmatch(_iam_regex(r), check.resource) for r in _as_list(statement["NotResource"])):
            return False
    for operator, conditions in (statement.get("Condition") or {}).items():
        for key, wanted in conditions.items():
            if not _condition_holds(operator, key, wanted, check.context):
                return False
    return True


def _wildcard_ci(pattern: str, value: str) -> bool:
    return re.fullmatch(_iam_regex(pattern), value, re.IGNORECASE) is not None


def allowed(statements: list[dict], check: Check) -> bool:
    """IAM's evaluation of identity-based statements: an explicit Deny wins, else an Allow must match."""
    matching = [s for s in statements if _matches(s, check)]
    if any(s.get("Effect") == "Deny" for s in matching):
        return False
    return any(s.get("Effect") == "Allow" for s in matching)


class Denied(Exception):
    """S3's AccessDenied for a role's request."""

    def __init__(self, role: str, check: Check) -> None:
        self.role, self.check = role, check
        super().__init__(
            f"User: arn:aws:sts::000000000000:assumed-role/{role}/local is not authorized to perform: {check.action} "
            f"on resource: \"{check.resource}\" because no identity-based policy allows the {check.action} action "
            f"(local target: the role's policies are infra/cloudformation/churn.yaml's, and the grants each task needs "
            f"are LAKE_ACCESS in plugins/churn_ml/dag_support.py)")


_policy_lock = threading.Lock()


def role_statements(iam_backend, role: str) -> list[dict]:
    """The statements of every inline policy of ``role`` in moto's IAM, as they are now."""
    import json

    with _policy_lock:
        found = iam_backend.get_role(role)
        return [statement for document in found.policies.values()
                for statement in _as_list(json.loads(document)["Statement"] if isinstance(document, str)
                                          else document["Statement"])]


def authorize_s3(iam_backend, role: str, operation: str, bucket: str | None, key: str | None, query: str,
                 headers: dict[str, str], body: bytes) -> None:
    """Raise ``Denied`` unless ``role``'s policies allow every check of the request."""
    statements = role_statements(iam_backend, role)
    for check in s3_checks(operation, bucket, key, query, headers, body):
        if not allowed(statements, check):
            raise Denied(role, check)


# ---------------------------------------------------------------- in the control plane's request path

def signer(access_key_id: str, lake_key) -> tuple[object, str | None] | None:
    """The credentials that ``access_key_id`` names and the role they stand for (None: the lake's own key,
    not checked against a role), or None for a key of neither."""
    if access_key_id == lake_key.access_key_id:
        return lake_key, None
    found = role_keys(lake_key.secret_access_key).get(access_key_id)
    if found is None:
        return None
    role, key = found
    return type(lake_key)(key.access_key_id, key.secret_access_key), role


def bucket_and_key(raw_path: str) -> tuple[str | None, str | None]:
    """Bucket and key of a path-style S3 request (what clients of 127.0.0.1 send)."""
    path = unquote(raw_path.split("?", 1)[0]).lstrip("/")
    if not path:
        return None, None
    bucket, _, key = path.partition("/")
    return bucket, key or None


def authorize_request(role: str, service: str, operation: str | None, raw_path: str, query: str,
                      headers: dict[str, str], body: bytes) -> None:
    """The control plane's check of a role's request: S3 requests against the role's policies in moto's
    IAM (``Denied``); other services are not checked (the module docstring says why)."""
    if service != "s3" or operation is None:
        return
    from local_aws.moto_ext import backend

    bucket, key = bucket_and_key(raw_path)
    authorize_s3(backend("iam", region="global"), role, operation, bucket, key, query, headers, body)


def main(argv: list[str] | None = None) -> int:
    """``python3 local_aws/iam.py <credentials file> <role>``: print the role's access key id and secret key
    (scripts/env.sh signs the Airflow connection with the MWAA role's). Standard library only."""
    import configparser
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python3 local_aws/iam.py <lake credentials file> <role>", file=sys.stderr)
        return 2
    parser = configparser.ConfigParser()
    parser.read(args[0])
    key = role_credentials(parser["default"]["aws_secret_access_key"], args[1])
    print(key.access_key_id, key.secret_access_key)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
