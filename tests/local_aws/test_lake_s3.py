"""The control plane's S3 is the lake folder, read and write (local_aws/lake_s3.py), through boto3.

Against the session's control plane (``aws_local``): buckets and objects go Create -> Head/Get -> List
-> Copy -> Delete -> not found as on S3, and what a client writes is the file a runner reads (and the
other way round).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from local_aws import control_plane

pytestmark = pytest.mark.e2e


@pytest.fixture
def lake(aws_local, tmp_path_factory, monkeypatch) -> Path:
    """The lake folder the session's control plane serves (its server.json names the URL), as this
    process's LAKE_ROOT: the test reads the files a runner would, and signs with that lake's key."""
    for state in tmp_path_factory.getbasetemp().glob("*/lake/.control-plane/server.json"):
        if json.loads(state.read_text()).get("url") == aws_local:
            monkeypatch.setenv("LAKE_ROOT", str(state.parents[1]))
            return state.parents[1]
    raise AssertionError(f"no lake under {tmp_path_factory.getbasetemp()} is served at {aws_local}")


@pytest.fixture
def s3(aws_local, lake):
    return control_plane.client("s3", aws_local)


@pytest.fixture
def bucket(s3, lake):
    name = f"lake-s3-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def code(err: pytest.ExceptionInfo) -> tuple[int, str]:
    return err.value.response["ResponseMetadata"]["HTTPStatusCode"], err.value.response["Error"]["Code"]


def keys(s3, bucket: str, **kwargs) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, **kwargs)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_a_bucket_is_a_folder_from_create_to_delete(s3, lake):
    name = f"lake-s3-{uuid.uuid4().hex[:12]}"
    with pytest.raises(ClientError) as missing:
        s3.head_bucket(Bucket=name)
    assert code(missing)[0] == 404
    s3.create_bucket(Bucket=name)
    assert (lake / name).is_dir()
    s3.head_bucket(Bucket=name)
    assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] is None  # us-east-1, as S3 answers
    listed = {b["Name"]: b["CreationDate"] for b in s3.list_buckets()["Buckets"]}
    assert abs(listed[name] - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)
    assert ".control-plane" not in listed
    s3.create_bucket(Bucket=name)  # us-east-1: re-creating an own bucket answers 200, as S3 does there
    s3.put_object(Bucket=name, Key="a/b.txt", Body=b"x")
    with pytest.raises(ClientError) as not_empty:
        s3.delete_bucket(Bucket=name)
    assert code(not_empty) == (409, "BucketNotEmpty")
    s3.delete_object(Bucket=name, Key="a/b.txt")
    s3.delete_bucket(Bucket=name)
    assert not (lake / name).exists()
    with pytest.raises(ClientError) as gone:
        s3.head_bucket(Bucket=name)
    assert code(gone)[0] == 404
    assert name not in {b["Name"] for b in s3.list_buckets()["Buckets"]}
    with pytest.raises(ClientError) as invalid:
        s3.create_bucket(Bucket="Not_A_Bucket")
    assert code(invalid)[1] == "InvalidBucketName"


def test_list_buckets_shows_a_lake_folder_never_touched_through_the_api(s3, lake):
    name = f"lake-s3-{uuid.uuid4().hex[:12]}"
    (lake / name / "raw").mkdir(parents=True)
    (lake / name / "raw" / "f.csv").write_bytes(b"1,2\n")
    (lake / "Not_A_Bucket").mkdir()
    listed = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert name in listed and "Not_A_Bucket" not in listed
    assert keys(s3, name) == ["raw/f.csv"]


def test_an_object_from_put_to_delete(s3, lake, bucket):
    body = b"hello lake\n" * 100
    put = s3.put_object(Bucket=bucket, Key="dir/sub/obj.txt", Body=body, ContentType="text/plain",
                        CacheControl="max-age=60", Metadata={"owner": "tests"})
    md5 = hashlib.md5(body).hexdigest()
    assert put["ETag"] == f'"{md5}"'
    assert (lake / bucket / "dir" / "sub" / "obj.txt").read_bytes() == body  # the runners' view
    head = s3.head_object(Bucket=bucket, Key="dir/sub/obj.txt")
    assert (head["ContentLength"], head["ETag"], head["ContentType"]) == (len(body), f'"{md5}"', "text/plain")
    assert (head["CacheControl"], head["Metadata"]) == ("max-age=60", {"owner": "tests"})
    got = s3.get_object(Bucket=bucket, Key="dir/sub/obj.txt")
    assert got["Body"].read() == body and got["LastModified"] == head["LastModified"]
    ranged = s3.get_object(Bucket=bucket, Key="dir/sub/obj.txt", Range="bytes=6-9")
    assert ranged["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert (ranged["Body"].read(), ranged["ContentRange"]) == (b"lake", f"bytes 6-9/{len(body)}")
    suffix = s3.get_object(Bucket=bucket, Key="dir/sub/obj.txt", Range="bytes=-4")
    assert (suffix["Body"].read(), suffix["ContentRange"]) == (b"ake\n", f"bytes {len(body) - 4}-{len(body) - 1}/{len(body)}")
    with pytest.raises(ClientError) as beyond:
        s3.get_object(Bucket=bucket, Key="dir/sub/obj.txt", Range=f"bytes={len(body)}-")
    assert code(beyond) == (416, "InvalidRange")
    with pytest.raises(ClientError) as changed:
        s3.get_object(Bucket=bucket, Key="dir/sub/obj.txt", IfMatch='"0123"')
    assert code(changed)[0] == 412
    with pytest.raises(ClientError) as unchanged:
        s3.get_object(Bucket=bucket, Key="dir/sub/obj.txt", IfNoneMatch=f'"{md5}"')
    assert code(unchanged)[0] == 304
    with pytest.raises(ClientError) as not_modified:
        s3.head_object(Bucket=bucket, Key="dir/sub/obj.txt", IfModifiedSince=head["LastModified"])
    assert code(not_modified)[0] == 304

    copied = s3.copy_object(Bucket=bucket, Key="copy/obj.txt", CopySource={"Bucket": bucket, "Key": "dir/sub/obj.txt"})
    assert copied["CopyObjectResult"]["ETag"] == f'"{md5}"'
    copy_head = s3.head_object(Bucket=bucket, Key="copy/obj.txt")
    assert (copy_head["ContentType"], copy_head["Metadata"]) == ("text/plain", {"owner": "tests"})  # COPY directive

    s3.delete_object(Bucket=bucket, Key="dir/sub/obj.txt")
    for call in (s3.head_object, s3.get_object):
        with pytest.raises(ClientError) as missing:
            call(Bucket=bucket, Key="dir/sub/obj.txt")
        assert code(missing)[0] == 404
    assert not (lake / bucket / "dir").exists()  # empty folders pruned: the tree agrees with the listing
    s3.delete_object(Bucket=bucket, Key="dir/sub/obj.txt")  # deleting what is not there is a 204, as on S3
    assert keys(s3, bucket) == ["copy/obj.txt"]


def test_copy_onto_itself_replaces_metadata_and_honours_the_source_conditions(s3, lake, bucket):
    """What artifacts.mark_used does: CopyObject onto itself, MetadataDirective REPLACE, CopySourceIfMatch."""
    s3.put_object(Bucket=bucket, Key="code/v1/a.py", Body=b"print(1)\n", ContentType="text/x-python",
                  Metadata={"version": "v1"})
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="code/")["Contents"][0]
    with pytest.raises(ClientError) as must_change:
        s3.copy_object(Bucket=bucket, Key="code/v1/a.py", CopySource={"Bucket": bucket, "Key": "code/v1/a.py"})
    assert code(must_change) == (400, "InvalidRequest")
    with pytest.raises(ClientError) as stale:
        s3.copy_object(Bucket=bucket, Key="code/v1/a.py", CopySource={"Bucket": bucket, "Key": "code/v1/a.py"},
                       CopySourceIfMatch='"00000000000000000000000000000000"', MetadataDirective="REPLACE",
                       ContentType="text/x-python", Metadata={"version": "v1"})
    assert code(stale) == (412, "PreconditionFailed")
    with pytest.raises(ClientError) as none_match:
        s3.copy_object(Bucket=bucket, Key="code/v1/a.py", CopySource={"Bucket": bucket, "Key": "code/v1/a.py"},
                       CopySourceIfNoneMatch=listed["ETag"], MetadataDirective="REPLACE")
    assert code(none_match)[0] == 412
    with pytest.raises(ClientError) as not_since:
        s3.copy_object(Bucket=bucket, Key="code/v1/a.py", CopySource={"Bucket": bucket, "Key": "code/v1/a.py"},
                       CopySourceIfModifiedSince=listed["LastModified"] + dt.timedelta(seconds=1),
                       MetadataDirective="REPLACE")
    assert code(not_since)[0] == 412
    path = lake / bucket / "code" / "v1" / "a.py"
    before = path.stat()
    s3.copy_object(Bucket=bucket, Key="code/v1/a.py", CopySource={"Bucket": bucket, "Key": "code/v1/a.py"},
                   CopySourceIfMatch=listed["ETag"], MetadataDirective="REPLACE", ContentType="text/x-python",
                   Metadata={"version": "v1", "used": "yes"})
    after = path.stat()
    assert after.st_ino != before.st_ino and after.st_mtime_ns >= before.st_mtime_ns  # a new object, written aside
    head = s3.head_object(Bucket=bucket, Key="code/v1/a.py")
    assert (head["ETag"], head["ContentType"]) == (listed["ETag"], "text/x-python")
    assert head["Metadata"] == {"version": "v1", "used": "yes"}
    assert path.read_bytes() == b"print(1)\n"


def test_listing_prefixes_delimiters_and_pages_as_s3(s3, bucket):
    names = sorted([f"p/dt=2026-07-0{d}/part-{i}.csv" for d in (1, 2) for i in range(3)]
                   + ["p/_SUCCESS", "p-x/other", "p/a-b", "p/a/c", "top.txt"])
    for name in names:
        s3.put_object(Bucket=bucket, Key=name, Body=name.encode())
    assert keys(s3, bucket) == names  # S3's order: "p-x/..." before "p/...", "p/a-b" before "p/a/c"
    assert keys(s3, bucket, Prefix="p/dt=2026-07-02/") == [n for n in names if n.startswith("p/dt=2026-07-02/")]
    assert keys(s3, bucket, Prefix="p/dt=2026-07-0") == [n for n in names if n.startswith("p/dt=")]
    top = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [c["Prefix"] for c in top["CommonPrefixes"]] == ["p-x/", "p/"]
    assert [o["Key"] for o in top["Contents"]] == ["top.txt"]
    level = s3.list_objects_v2(Bucket=bucket, Prefix="p/", Delimiter="/")
    assert [c["Prefix"] for c in level["CommonPrefixes"]] == ["p/a/", "p/dt=2026-07-01/", "p/dt=2026-07-02/"]
    assert [o["Key"] for o in level["Contents"]] == ["p/_SUCCESS", "p/a-b"]
    dashed = s3.list_objects_v2(Bucket=bucket, Prefix="p/", Delimiter="-")
    assert [c["Prefix"] for c in dashed["CommonPrefixes"]] == ["p/a-", "p/dt=2026-"]

    pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={"PageSize": 4}))
    assert [len(p.get("Contents", [])) for p in pages] == [4, 4, 3]
    assert all(p["IsTruncated"] for p in pages[:-1]) and not pages[-1]["IsTruncated"]
    assert [o["Key"] for p in pages for o in p["Contents"]] == names
    by_prefix = list(s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="p/", Delimiter="/",
                                                                  PaginationConfig={"PageSize": 2}))
    assert [[c["Prefix"] for c in p.get("CommonPrefixes", [])] + [o["Key"] for o in p.get("Contents", [])]
            for p in by_prefix] == [["p/_SUCCESS", "p/a-b"], ["p/a/", "p/dt=2026-07-01/"], ["p/dt=2026-07-02/"]]
    after = s3.list_objects_v2(Bucket=bucket, StartAfter="p/dt=2026-07-02/part-1.csv")
    assert [o["Key"] for o in after["Contents"]] == ["p/dt=2026-07-02/part-2.csv", "top.txt"]
    v1 = s3.list_objects(Bucket=bucket, MaxKeys=3, Marker="p/a-b")
    assert [o["Key"] for o in v1["Contents"]] == names[names.index("p/a-b") + 1:][:3] and v1["IsTruncated"]
    for prefix in ("nothing/", "p/a/c/", "../", "p//"):
        empty = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, Delimiter="/")
        assert (empty["KeyCount"], empty.get("Contents"), empty["IsTruncated"]) == (0, None, False), prefix
    assert not s3.list_objects(Bucket=bucket, Prefix="nothing/").get("Contents")
    with pytest.raises(ClientError) as bad:
        s3.list_objects_v2(Bucket=bucket, ContinuationToken="not-a-token")
    assert code(bad) == (400, "InvalidArgument")


def test_delete_objects_removes_the_files_and_their_empty_folders(s3, lake, bucket):
    names = [f"batch/{i // 3}/f{i}" for i in range(7)] + ["keep/me"]
    for name in names:
        s3.put_object(Bucket=bucket, Key=name, Body=b"1")
    answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": n} for n in names[:7]] + [{"Key": "nope"}]})
    assert sorted(d["Key"] for d in answer["Deleted"]) == sorted([*names[:7], "nope"])
    assert not answer.get("Errors")
    assert keys(s3, bucket) == ["keep/me"]
    assert sorted(p.name for p in (lake / bucket).iterdir()) == ["keep"]


def test_a_multipart_upload_is_one_object_with_s3s_etag(s3, lake, bucket):
    parts = [b"a" * (5 << 20), b"b" * (5 << 20), b"tail"]
    upload = s3.create_multipart_upload(Bucket=bucket, Key="big/blob.bin", ContentType="application/x-blob")
    assert s3.list_multipart_uploads(Bucket=bucket)["Uploads"][0]["UploadId"] == upload["UploadId"]
    etags = []
    for number, data in enumerate(parts, 1):
        etags.append(s3.upload_part(Bucket=bucket, Key="big/blob.bin", UploadId=upload["UploadId"],
                                    PartNumber=number, Body=data)["ETag"])
    listed = s3.list_parts(Bucket=bucket, Key="big/blob.bin", UploadId=upload["UploadId"])
    assert [(p["PartNumber"], p["Size"]) for p in listed["Parts"]] == [(1, 5 << 20), (2, 5 << 20), (3, 4)]
    assert not (lake / bucket / "big").exists()  # parts live in the control plane's state, not the bucket
    with pytest.raises(ClientError) as wrong_part:
        s3.complete_multipart_upload(Bucket=bucket, Key="big/blob.bin", UploadId=upload["UploadId"],
                                     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"0123"'}]})
    assert code(wrong_part) == (400, "InvalidPart")
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="big/blob.bin", UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]})
    expected = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + "-3"
    assert done["ETag"] == f'"{expected}"'
    assert (lake / bucket / "big" / "blob.bin").read_bytes() == b"".join(parts)
    head = s3.head_object(Bucket=bucket, Key="big/blob.bin")
    assert (head["ETag"], head["ContentType"], head["ContentLength"]) == (f'"{expected}"', "application/x-blob",
                                                                          sum(map(len, parts)))
    assert s3.list_objects_v2(Bucket=bucket, Prefix="big/")["Contents"][0]["ETag"] == f'"{expected}"'
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")

    copied = s3.create_multipart_upload(Bucket=bucket, Key="big/copied.bin")
    first = s3.upload_part_copy(Bucket=bucket, Key="big/copied.bin", UploadId=copied["UploadId"], PartNumber=1,
                                CopySource={"Bucket": bucket, "Key": "big/blob.bin"},
                                CopySourceRange=f"bytes={(5 << 20) - 2}-{(10 << 20) - 1}")["CopyPartResult"]["ETag"]
    second = s3.upload_part(Bucket=bucket, Key="big/copied.bin", UploadId=copied["UploadId"], PartNumber=2,
                            Body=b"!")["ETag"]
    s3.complete_multipart_upload(Bucket=bucket, Key="big/copied.bin", UploadId=copied["UploadId"],
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": first},
                                                            {"PartNumber": 2, "ETag": second}]})
    assert s3.get_object(Bucket=bucket, Key="big/copied.bin")["Body"].read() == b"aa" + b"b" * (5 << 20) + b"!"
    s3.delete_object(Bucket=bucket, Key="big/copied.bin")

    aborted = s3.create_multipart_upload(Bucket=bucket, Key="big/never.bin")
    s3.upload_part(Bucket=bucket, Key="big/never.bin", UploadId=aborted["UploadId"], PartNumber=1, Body=b"x")
    s3.abort_multipart_upload(Bucket=bucket, Key="big/never.bin", UploadId=aborted["UploadId"])
    with pytest.raises(ClientError) as no_upload:
        s3.list_parts(Bucket=bucket, Key="big/never.bin", UploadId=aborted["UploadId"])
    assert code(no_upload) == (404, "NoSuchUpload")
    assert keys(s3, bucket) == ["big/blob.bin"]


def test_a_file_a_runner_writes_is_an_object_with_s3s_etag(s3, lake, bucket):
    folder = lake / bucket / "predictions" / "dt=2026-07-02"
    folder.mkdir(parents=True)
    written = b"id,score\n1,0.5\n"
    (folder / "part-0.csv").write_bytes(written)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="predictions/")["Contents"]
    assert [(o["Key"], o["Size"], o["ETag"]) for o in listed] == [
        ("predictions/dt=2026-07-02/part-0.csv", len(written), f'"{hashlib.md5(written).hexdigest()}"')]
    s3.put_object(Bucket=bucket, Key="predictions/dt=2026-07-02/part-0.csv", Body=b"x", ContentType="text/csv")
    (folder / "part-0.csv").write_bytes(b"rewritten by a runner")
    head = s3.head_object(Bucket=bucket, Key="predictions/dt=2026-07-02/part-0.csv")
    assert head["ETag"] == f'"{hashlib.md5(b"rewritten by a runner").hexdigest()}"'
    assert head["ContentType"] == "binary/octet-stream"  # the runner's file is a new object: S3's default


def test_a_half_written_object_is_never_visible(s3, lake, bucket):
    """While big PUTs stream in, listings and reads see the old object or the new one, never a temp name."""
    old, new = b"o" * (8 << 20), b"n" * (8 << 20)
    s3.put_object(Bucket=bucket, Key="swap/obj", Body=old)
    seen_keys, seen_sizes, stop, rounds = set(), set(), threading.Event(), []

    def watch():
        while not stop.is_set():
            rounds.append(1)
            seen_keys.update(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))
            seen_sizes.add(s3.head_object(Bucket=bucket, Key="swap/obj")["ContentLength"])
            seen_keys.update(p.name for p in (lake / bucket / "swap").iterdir() if not p.name.startswith("."))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for _ in range(3):
            s3.put_object(Bucket=bucket, Key="swap/obj", Body=new)
            s3.put_object(Bucket=bucket, Key="swap/obj", Body=old)
    finally:
        stop.set()
        watcher.join()
    assert len(rounds) >= 3  # the watcher looked while the writes streamed in
    assert seen_keys == {"swap/obj", "obj"}
    assert seen_sizes == {8 << 20}
    assert s3.get_object(Bucket=bucket, Key="swap/obj")["Body"].read() == old


def test_keys_no_file_can_be_are_refused_with_the_reason(s3, lake, bucket):
    odd = "odd/a b?c#d=\u00e9+%20.txt"  # S3 takes any UTF-8 name: each is a file of that name
    s3.put_object(Bucket=bucket, Key=odd, Body=b"odd")
    assert (lake / bucket / "odd" / "a b?c#d=\u00e9+%20.txt").read_bytes() == b"odd"
    assert keys(s3, bucket) == [odd] and s3.get_object(Bucket=bucket, Key=odd)["Body"].read() == b"odd"
    s3.delete_object(Bucket=bucket, Key=odd)
    s3.put_object(Bucket=bucket, Key="a/b", Body=b"1")
    for key in ("folder-marker/", "a/b/c", "a", "x//y", "x/./y"):
        with pytest.raises(ClientError) as refused:
            s3.put_object(Bucket=bucket, Key=key, Body=b"1")
        assert code(refused) == (400, "InvalidArgument"), key
        assert "cannot be stored by the local target" in refused.value.response["Error"]["Message"]
    assert keys(s3, bucket) == ["a/b"]
