"""local_aws.lake_files.local_path, the one place an s3:// URI becomes a local path, keeps every URI inside
the lake root (security review, issue 17: ``s3://bucket/a/../../..`` mapped outside it)."""

from __future__ import annotations

import pytest

from churn_ml import lake
from local_aws import lake_files


@pytest.mark.parametrize("uri", [
    "s3://churn-lake/a/../../..",
    "s3://churn-lake/../../etc/passwd",
    "s3://churn-lake/..",
    "s3://churn-lake/predictions/dt=2026-07-02/../../../../outside",
    "s3a://churn-lake/x/../../other-bucket/y",  # would stay in the lake but leave the bucket
    "s3://../etc/passwd",
    "s3://./x",
    "s3://churn-lake/a\0b",
    "s3://churn-lake//../x",
])
def test_keys_that_lead_out_of_the_lake_are_refused_with_the_reason(lake_root, uri):
    with pytest.raises(ValueError, match="refusing to map .* outside the lake root"):
        lake_files.local_path(uri)


def test_every_way_into_the_lake_checks_the_uri(lake_s3):
    """The emulator's mapping refuses a '..' segment; the plugins go through S3, where such a key is a name
    like any other, and the control plane's S3 (local_aws.lake_s3) refuses it as a key no file can hold."""
    from botocore.exceptions import ClientError

    escape = "s3://churn-lake/a/../../../escaped"
    with pytest.raises(ValueError, match="'..' segment"):
        lake_files.local_uri(escape)
    with pytest.raises(ValueError, match="'..' segment"):
        lake_files.to_local_uris({"--out": [escape]})
    assert lake.exists(escape) is False  # on S3 a name like any other, and no object has it
    with pytest.raises(FileNotFoundError):
        lake.read_text(escape)
    assert lake.list_keys(escape) == []
    with pytest.raises(ClientError, match="InvalidArgument"):  # a key no file can hold is refused, not mapped
        lake.write_bytes(escape, b"x")
    lake.write_bytes("s3://churn-lake/_staging/p", b"staged")
    with pytest.raises(ClientError, match="InvalidArgument"):  # passes publish's own prefix check, not S3's
        lake.publish({"s3://churn-lake/_staging/p": "s3://churn-lake/p/../../../x"}, "s3://churn-lake/p/")
    assert not (lake_s3.parent / "escaped").exists() and not (lake_s3 / "escaped").exists()
    assert lake.read_bytes("s3://churn-lake/_staging/p") == b"staged"  # the staged object is still there


def test_local_uris_are_file_uris_that_hadoop_reads_literally(lake_root):
    # "=" stays as it is (Path.as_uri would write %3D, which Hadoop takes literally); a prefix keeps its "/".
    assert lake_files.local_uri("s3://churn-lake/features/dt=2026-03-01/") == \
        f"file://{lake_root}/churn-lake/features/dt=2026-03-01/"
    assert lake_files.to_local_uris({"a": ["s3://churn-lake/x", "--flag", 3], "b": "s3a://churn-lake/y"}) == \
        {"a": [f"file://{lake_root}/churn-lake/x", "--flag", 3], "b": f"file://{lake_root}/churn-lake/y"}


@pytest.mark.parametrize("uri, relative", [
    ("s3://churn-lake/predictions/dt=2026-07-02/a.out", "churn-lake/predictions/dt=2026-07-02/a.out"),
    ("s3://churn-lake//leading/slash", "churn-lake/leading/slash"),
    ("s3://churn-lake/a/./b", "churn-lake/a/b"),
    ("s3://churn-lake/..data/...", "churn-lake/..data/..."),  # dots inside a name are just characters
    ("s3://churn-lake", "churn-lake"),
    ("s3://churn-lake/", "churn-lake"),
])
def test_ordinary_keys_map_below_the_bucket_folder(lake_root, uri, relative):
    assert lake_files.local_path(uri) == lake_root / relative
    assert lake_files.local_path(uri).resolve().is_relative_to(lake_root.resolve())
