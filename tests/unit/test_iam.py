"""The local target's IAM for the lake (local_aws.iam): the template's roles, S3's checks per request,
and IAM's evaluation of them. No server: the control plane's use of it is tested in tests/local_aws."""

from __future__ import annotations

import pytest

from local_aws import iam
from local_aws.template import load

REFS = iam.bucket_refs("churn-lake", "churn-artifacts", "000000000000", "us-east-1")


@pytest.fixture(scope="module")
def template():
    return load()


def statements(template, role_resource: str) -> list[dict]:
    return iam.s3_statements(template, role_resource, REFS)


def allows(statements_, action, resource, **context) -> bool:
    return iam.allowed(statements_, iam.Check(action, resource, context))


def test_the_roles_are_the_templates_and_each_has_s3_statements(template):
    for resource, role in iam.ROLES.items():
        name = template["Resources"][resource]["Properties"]["RoleName"]["!Sub"].replace("${Project}", "churn")
        assert name == role
        assert statements(template, resource), f"{resource} has no S3 statement"
        assert all("!" not in str(s) for s in statements(template, resource))  # every intrinsic resolved


def test_the_mwaa_role_may_read_the_registry_but_not_write_raw_data(template):
    mwaa = statements(template, "MwaaExecutionRole")
    assert allows(mwaa, "s3:GetObject", "arn:aws:s3:::churn-lake/registry/churn-xgboost/v1/card.json")
    assert not allows(mwaa, "s3:PutObject", "arn:aws:s3:::churn-lake/raw/customers/dt=2026-07-06/part.csv")
    assert not allows(mwaa, "s3:GetObject", "arn:aws:s3:::another-bucket/registry/x")


def test_conditions_of_allow_statements_are_neutral_when_they_do_not_match(template):
    """The artifacts bucket's ListBucket is conditioned on s3:prefix code/*: a lake listing is still allowed by
    the lake's own statement (moto's evaluator would deny it), an artifacts listing elsewhere is not."""
    mwaa = statements(template, "MwaaExecutionRole")
    assert allows(mwaa, "s3:ListBucket", "arn:aws:s3:::churn-lake", **{"s3:prefix": "raw/"})
    assert allows(mwaa, "s3:ListBucket", "arn:aws:s3:::churn-artifacts", **{"s3:prefix": "code/abc/"})
    assert not allows(mwaa, "s3:ListBucket", "arn:aws:s3:::churn-artifacts", **{"s3:prefix": "secrets/"})
    assert not allows(mwaa, "s3:ListBucket", "arn:aws:s3:::churn-artifacts")  # no prefix (a HEAD of the bucket)


def test_the_code_refresh_is_a_copy_in_place_only(template):
    mwaa = statements(template, "MwaaExecutionRole")
    copy = iam.s3_checks("CopyObject", "churn-artifacts", "code/v1/jobs/a.py", "",
                         {"x-amz-copy-source": "/churn-artifacts/code/v1/jobs/a.py"}, b"")
    assert [c.action for c in copy] == ["s3:PutObject", "s3:GetObject"]
    assert all(iam.allowed(mwaa, c) for c in copy)
    put = iam.s3_checks("PutObject", "churn-artifacts", "code/v1/jobs/a.py", "", {}, b"")
    assert not iam.allowed(mwaa, put[0])
    foreign = iam.s3_checks("CopyObject", "churn-artifacts", "code/v1/jobs/a.py", "",
                            {"x-amz-copy-source": "churn-lake/raw/x.py"}, b"")
    assert not iam.allowed(mwaa, foreign[0])


def test_s3_checks_per_operation():
    head = iam.s3_checks("HeadObject", "b", "k/x", "", {}, b"")
    assert head == [iam.Check("s3:GetObject", "arn:aws:s3:::b/k/x", {})]
    listing = iam.s3_checks("ListObjectsV2", "b", None, "list-type=2&prefix=a%2Fb%2F&delimiter=%2F", {}, b"")
    assert listing == [iam.Check("s3:ListBucket", "arn:aws:s3:::b", {"s3:prefix": "a/b/", "s3:delimiter": "/"})]
    body = b'<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Object><Key>a</Key></Object><Object><Key>b/c</Key></Object></Delete>'
    assert [c.resource for c in iam.s3_checks("DeleteObjects", "b", None, "delete", {}, body)] == [
        "arn:aws:s3:::b/a", "arn:aws:s3:::b/b/c"]
    assert iam.s3_checks("ListBuckets", None, None, "", {}, b"") == [iam.Check("s3:ListAllMyBuckets", "*", {})]
    assert iam.s3_checks("CompleteMultipartUpload", "b", "k", "uploadId=1", {}, b"")[0].action == "s3:PutObject"


def test_an_explicit_deny_wins_and_wildcards_follow_iam():
    policy = [
        {"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b/*"},
        {"Effect": "Deny", "Action": "s3:Delete*", "Resource": "arn:aws:s3:::b/keep/*"},
        {"Effect": "Allow", "Action": "S3:GETOBJECT", "Resource": "arn:aws:s3:::c/a?c"},
    ]
    assert allows(policy, "s3:DeleteObject", "arn:aws:s3:::b/tmp/x")
    assert not allows(policy, "s3:DeleteObject", "arn:aws:s3:::b/keep/x")
    assert allows(policy, "s3:GetObject", "arn:aws:s3:::c/abc")  # actions are case-insensitive, ? is one character
    assert not allows(policy, "s3:GetObject", "arn:aws:s3:::c/abbc")
    assert not allows(policy, "s3:GetObject", "arn:aws:s3:::b")  # b/* does not cover the bucket itself


def test_condition_keys_missing_from_the_request():
    like = [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*", "Condition": {"StringLike": {"s3:prefix": "a/*"}}}]
    not_like = [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*",
                 "Condition": {"StringNotLike": {"s3:prefix": "secret/*"}}}]
    if_exists = [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*",
                  "Condition": {"StringLikeIfExists": {"s3:prefix": "a/*"}}}]
    assert not allows(like, "s3:ListBucket", "arn:aws:s3:::b")
    assert allows(not_like, "s3:ListBucket", "arn:aws:s3:::b")
    assert not allows(not_like, "s3:ListBucket", "arn:aws:s3:::b", **{"s3:prefix": "secret/x"})
    assert allows(if_exists, "s3:ListBucket", "arn:aws:s3:::b")
    unknown = [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*",
                "Condition": {"DateGreaterThan": {"aws:CurrentTime": "2020-01-01"}}}]
    with pytest.raises(ValueError, match="DateGreaterThan is not evaluated"):
        allows(unknown, "s3:ListBucket", "arn:aws:s3:::b")


def test_role_keys_are_derived_per_lake_and_role():
    one, other = iam.role_keys("secret-one"), iam.role_keys("secret-two")
    assert len(one) == len(iam.ROLES) and not set(one) & set(other)
    assert all(key.startswith(iam.KEY_PREFIX) and len(key) == 20 for key in one)
    assert iam.role_credentials("secret-one", iam.MWAA_ROLE) == iam.role_credentials("secret-one", iam.MWAA_ROLE)
    with pytest.raises(ValueError, match="not a role of the template"):
        iam.role_credentials("secret-one", "admin")


def test_roles_are_created_in_motos_iam_and_their_policy_is_read_as_it_is_now():
    import json

    from moto import mock_aws
    from moto.backends import get_backend

    with mock_aws():
        backend = get_backend("iam")["000000000000"]["global"]
        arns = iam.create_roles(backend, REFS)
        assert arns[iam.MWAA_ROLE].endswith(":role/churn-mwaa")
        iam.create_roles(backend, REFS)  # again (a restart): the same roles, policies put again
        card = iam.s3_checks("HeadObject", "churn-lake", "registry/churn-xgboost/v1/card.json", "", {}, b"")
        iam.authorize_s3(backend, iam.MWAA_ROLE, "HeadObject", "churn-lake", "registry/churn-xgboost/v1/card.json",
                         "", {}, b"")
        reduced = [s for s in iam.role_statements(backend, iam.MWAA_ROLE) if s.get("Sid") != "LakeRead"]
        backend.put_role_policy(iam.MWAA_ROLE, "lake", json.dumps({"Version": "2012-10-17", "Statement": reduced}))
        with pytest.raises(iam.Denied, match=r"not authorized to perform: s3:GetObject .*registry/churn-xgboost"):
            iam.authorize_s3(backend, iam.MWAA_ROLE, "HeadObject", "churn-lake",
                             "registry/churn-xgboost/v1/card.json", "", {}, b"")
        assert card[0].action == "s3:GetObject"
