"""S3 on the control plane: a read-only view of the lake folder through moto's S3 API.

The local lake is a folder (``s3://bucket/key`` is ``LAKE_ROOT/bucket/key``, ``churn_ml.lake``);
the jobs and Spark read and write it as files. What the provider's code asks S3 (the sensors'
HeadObject and ListObjectsV2, the SageMaker hook's checks that a job's input bucket and prefix
exist before it creates the job, a GetObject) is answered from that folder: every folder under
LAKE_ROOT is a bucket, every file below it an object, listed in S3's order with prefixes and
delimiters, sized and dated from the file. Writes through the API are refused: nothing in the
project writes the lake through S3 on the local target, and an object that lived only in moto's
memory would be a second, diverging lake.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import threading
from collections import OrderedDict
from pathlib import Path

from moto.s3.exceptions import MissingBucket, S3ClientError
from moto.s3.models import FakeBucket, FakeKey, S3Backend

from churn_ml import settings as cfg
from local_aws import lake_files

_get_bucket = S3Backend.get_bucket
_list_objects = S3Backend.list_objects
_get_object = S3Backend.get_object
_put_object = S3Backend.put_object


_ETAGS: OrderedDict[tuple, str] = OrderedDict()  # (path, inode, size, mtime_ns, ctime_ns) -> MD5 of the content
_ETAGS_MAX = 200_000
_ETAGS_LOCK = threading.Lock()


def etag(path: Path, stat: os.stat_result) -> str:
    """S3's ETag of a single-part upload, the MD5 of the content: an identical rewrite keeps it, any
    change of the bytes changes it, as on S3. Cached per file version (inode, size, modification and
    change times: a write moves the change time even when the modification time is set back), so a
    listing reads only the files that changed since the last one."""
    key = (str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    with _ETAGS_LOCK:
        if key in _ETAGS:
            _ETAGS.move_to_end(key)
            return _ETAGS[key]
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    with _ETAGS_LOCK:
        _ETAGS[key] = digest.hexdigest()
        while len(_ETAGS) > _ETAGS_MAX:
            _ETAGS.popitem(last=False)
    return digest.hexdigest()


class LakeKey(FakeKey):
    """An object that is a file of the lake: size, date and ETag (the content's MD5) from the file,
    content read on demand."""

    def __init__(self, path: Path, name: str, bucket: FakeBucket) -> None:
        self.path = path
        stat = path.stat()
        tag = etag(path, stat)
        super().__init__(name, b"", bucket.account_id, bucket.region_name, etag=tag, bucket_name=bucket.name)
        self.contentsize = stat.st_size
        self.last_modified = dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC).replace(tzinfo=None)

    @property
    def value(self) -> bytes:
        return self.path.read_bytes()

    @value.setter
    def value(self, new_value: bytes) -> None:  # FakeKey's constructor sets it; the file is the value
        pass


def _mounted(bucket_name: str) -> Path | None:
    folder = cfg.lake_root() / bucket_name
    return folder if bucket_name and not bucket_name.startswith(".") and folder.is_dir() else None


def get_bucket(self: S3Backend, bucket_name: str) -> FakeBucket:
    try:
        return _get_bucket(self, bucket_name)
    except MissingBucket:
        if _mounted(bucket_name) is None:
            raise
        bucket = self.create_bucket(bucket_name, self.region_name)
        bucket.lake = True
        return bucket


def _walk(bucket: FakeBucket, prefix: str, delimiter: str | None) -> tuple[list[FakeKey], list[str]]:
    root = _mounted(bucket.name)
    if root is None:
        return [], []
    base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
    start = lake_files.local_path(f"s3://{bucket.name}/{base}") if base else root
    if not start.is_dir():
        return [], []
    keys: list[FakeKey] = []
    folders: set[str] = set()
    for folder, dirs, files in os.walk(start):
        relative = Path(folder).relative_to(root).as_posix()
        here = "" if relative == "." else f"{relative}/"
        for name in sorted(files):
            key = here + name
            if not key.startswith(prefix):
                continue
            rest = key[len(prefix):]
            if delimiter and delimiter in rest:
                folders.add(prefix + rest.split(delimiter)[0] + delimiter)
            else:
                keys.append(LakeKey(Path(folder) / name, key, bucket))
        descend = []
        for name in dirs:
            candidate = f"{here}{name}/"
            if candidate.startswith(prefix) and delimiter == "/":
                # One common prefix for the folder (when it holds an object): no need to read further.
                if any(p.is_file() for p in Path(folder, name).rglob("*")):
                    folders.add(candidate)
            elif candidate.startswith(prefix) or prefix.startswith(candidate):
                descend.append(name)
        dirs[:] = descend
    return sorted(keys, key=lambda k: k.name), sorted(folders)


def list_objects(self: S3Backend, bucket: FakeBucket, prefix: str | None, delimiter: str | None,
                 marker: str | None, max_keys: int | None):
    if not getattr(bucket, "lake", False):
        return _list_objects(self, bucket, prefix, delimiter, marker, max_keys)
    keys, folders = _walk(bucket, prefix or "", delimiter)
    return keys, folders, False, None


def get_object(self: S3Backend, bucket_name: str, key_name: str, *args, **kwargs) -> FakeKey | None:
    bucket = self.get_bucket(bucket_name)
    if not getattr(bucket, "lake", False):
        return _get_object(self, bucket_name, key_name, *args, **kwargs)
    try:
        path = lake_files.local_path(f"s3://{bucket_name}/{key_name}")
    except ValueError:
        return None
    return LakeKey(path, key_name, bucket) if path.is_file() else None


def put_object(self: S3Backend, bucket_name: str, key_name: str, *args, **kwargs):
    if _mounted(bucket_name) is not None:
        raise S3ClientError(
            "AccessDenied", f"s3://{bucket_name}/{key_name}: the local control plane's S3 is a read-only view of the lake folder "
            f"{cfg.lake_root()}; on the local target write the file there (churn_ml.lake)"
        )
    return _put_object(self, bucket_name, key_name, *args, **kwargs)


def install() -> None:
    S3Backend.get_bucket = get_bucket
    S3Backend.list_objects = list_objects
    S3Backend.get_object = get_object
    S3Backend.put_object = put_object
