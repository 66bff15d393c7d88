"""lake.local_path, the one place an s3:// URI becomes a local path, keeps every URI inside the lake root
(security review, issue 17: ``s3://bucket/a/../../..`` mapped outside it)."""

from __future__ import annotations

import pytest

from churn_ml import lake


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
        lake.local_path(uri)


def test_every_way_into_the_lake_checks_the_uri(lake_root):
    escape = "s3://churn-lake/a/../../../escaped"
    for call in (lake.local_uri, lake.exists, lake.read_text, lake.list_keys):
        with pytest.raises(ValueError, match="'..' segment"):
            call(escape)
    with pytest.raises(ValueError, match="'..' segment"):
        lake.write_bytes(escape, b"x")
    with pytest.raises(ValueError, match="'..' segment"):
        lake.to_local_uris({"--out": [escape]})
    lake.write_bytes("s3://churn-lake/_staging/p", b"staged")
    with pytest.raises(ValueError, match="'..' segment"):  # passes publish's own prefix check, not the lake's
        lake.publish({"s3://churn-lake/_staging/p": "s3://churn-lake/p/../../../x"}, "s3://churn-lake/p/")
    assert not (lake_root.parent / "escaped").exists()


@pytest.mark.parametrize("uri, relative", [
    ("s3://churn-lake/predictions/dt=2026-07-02/a.out", "churn-lake/predictions/dt=2026-07-02/a.out"),
    ("s3://churn-lake//leading/slash", "churn-lake/leading/slash"),
    ("s3://churn-lake/a/./b", "churn-lake/a/b"),
    ("s3://churn-lake/..data/...", "churn-lake/..data/..."),  # dots inside a name are just characters
    ("s3://churn-lake", "churn-lake"),
    ("s3://churn-lake/", "churn-lake"),
])
def test_ordinary_keys_map_below_the_bucket_folder(lake_root, uri, relative):
    assert lake.local_path(uri) == lake_root / relative
    assert lake.local_path(uri).resolve().is_relative_to(lake_root.resolve())
