"""S3 on the control plane: one S3, and it is the lake folder, read and write.

Every bucket is a folder ``LAKE_ROOT/<bucket>`` (a folder whose name is a valid bucket name; never one
starting with "." such as ``.control-plane``, the control plane's own state), every object a file
below it: ``s3://bucket/key`` is ``LAKE_ROOT/bucket/key``. So the local runners, which hand local
Spark and the SageMaker sandbox files of the lake, see every object a client wrote, and a client
sees every file a runner wrote (ListBuckets too, for a folder never touched through the API).

``LakeS3Backend`` is moto's ``S3Backend`` with its state replaced by the folder (registered with
``moto_ext.register_backend("s3", ...)``; moto's ``s3bucket_path`` has no backend of its own in the
installed moto, S3 has the one BackendDict ``moto.s3.models.s3_backends``). moto's ``S3Response``
still parses every request and shapes every answer (XML, errors, ranges, conditional requests);
``LakeS3Response`` adds only what moto's copy does not check: the ``x-amz-copy-source-if-match`` /
``-if-unmodified-since`` / ``-if-modified-since`` conditions.

- **Writes are atomic**: PutObject, CopyObject and CompleteMultipartUpload write a temporary file in
  the object's folder (``.lake-s3-*.tmp``: no listing shows it, and Spark skips dot files) and rename
  it into place, so a reader sees the old object or the new one, never half of one. A key that cannot
  be a file (ending with "/", an empty, "." or ".." segment, a segment over 255 bytes, a key below
  another object's key or above a folder of keys) is refused with ``InvalidArgument``.
- **What S3 keeps besides the bytes** (Content-Type, Content-Encoding, Cache-Control,
  Content-Disposition, Content-Language, Expires, ``x-amz-meta-*``, the SSE fields as sent, the
  checksum moto computed, a multipart upload's ETag) is a sidecar under
  ``LAKE_ROOT/.control-plane/s3/objects/<bucket>/``, tied to the file's version (inode, size,
  modification time): a file a runner rewrites is a new object with S3's defaults, never the old
  one's metadata. PutObject's metadata lands a moment after its bytes (moto sets it on the key
  ``put_object`` returns); CopyObject's and a multipart upload's with them.
- **ETag** = the MD5 of the content, as S3's of a single-part upload (``etag()``, cached per file
  version, so a listing reads only the files that changed); a multipart upload's is S3's
  ``md5-of-part-md5s-N``. Size and Last-Modified come from the file.
- **Multipart uploads** keep their parts under ``.control-plane/s3/uploads/<bucket>/<upload id>/``
  until CompleteMultipartUpload concatenates them into the object (parts other than the last at least
  5 MiB, ETags checked, as S3 does) or AbortMultipartUpload drops them.
- **Deletes** remove the file and its sidecar and prune the folders left empty up to the bucket's, so
  the listing and the file tree agree. DeleteBucket refuses a bucket with an object (BucketNotEmpty).
- **Listings** walk the folder in S3's key order (UTF-8 byte order) and stop after a page: Prefix,
  Delimiter (a folder under "/" is one common prefix without being read further), StartAfter, Marker,
  MaxKeys (1000 by default), and a continuation token that is the last name returned (opaque, so a
  restart of the control plane does not invalidate it).

``EMULATED_OPERATIONS`` names what runs on this state; every other S3 operation (versioning,
replication, website, ACL writes, tagging, ...) is refused as not emulated (``local_aws.operations``).
A GetObject reads the file where the answer needs it: a Range reads that range, the whole object
streams in chunks (``LakeS3Response.key_response``, ``FileView``). A PutObject's body passes through
memory (the request guard and moto's response read it whole before the backend writes it).
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import datetime as dt
import email.utils
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from moto import settings as moto_settings
from moto.s3.exceptions import (
    BucketAlreadyExists,
    CopyObjectMustChangeSomething,
    EntityTooSmall,
    InvalidArgumentError,
    InvalidBucketName,
    InvalidContinuationToken,
    InvalidPart,
    MalformedXML,
    MissingBucket,
    NoSuchUpload,
    PreconditionFailed,
    S3ClientError,
)
from moto.s3.models import FakeBucket, FakeKey, S3Backend
from moto.s3.responses import S3Response

from local_aws import settings as local_settings
from local_aws.lake_files import TEMP_PREFIX, write_atomically
from local_aws.moto_ext import overrides, register_backend, register_responses

LOCAL_REGION = "us-east-1"
CHUNK = 1 << 20
BUCKET_NAME = re.compile(r"^(?!xn--)(?!.*\.\.)(?!\d+\.\d+\.\d+\.\d+$)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# The headers S3 keeps with an object and answers on GetObject/HeadObject (besides x-amz-meta-*).
KEPT_HEADERS = frozenset({"content-type", "content-encoding", "cache-control", "content-disposition",
                          "content-language", "expires"})
TOKEN_PREFIX = "lake1:"
_UMASK = os.umask(0)
os.umask(_UMASK)


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
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    with _ETAGS_LOCK:
        _ETAGS[key] = digest.hexdigest()
        while len(_ETAGS) > _ETAGS_MAX:
            _ETAGS.popitem(last=False)
    return digest.hexdigest()


def _version(stat: os.stat_result) -> list[int]:
    """The file version a sidecar belongs to (a rename keeps inode and modification time)."""
    return [stat.st_ino, stat.st_size, stat.st_mtime_ns]


def _is_temp(name: str) -> bool:
    return name.startswith(TEMP_PREFIX)


def _write_json(path: Path, payload: dict) -> None:
    write_atomically(path, json.dumps(payload, sort_keys=True).encode("utf-8"))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return {}


def _kept_metadata(metadata: Any) -> dict[str, str]:
    """The part of moto's metadata dict that S3 keeps with an object (not the request's checksum or
    signing headers, which moto's ``metadata_from_headers`` also collects)."""
    return {str(name): str(value) for name, value in dict(metadata or {}).items()
            if str(name).lower() in KEPT_HEADERS or str(name).lower().startswith("x-amz-meta-")}


def _has_object(folder: Path) -> bool:
    """Whether any object (a file that is not a write in progress) is below ``folder``."""
    for _, _, files in os.walk(folder):
        if any(not _is_temp(name) for name in files):
            return True
    return False


# Set by LakeS3Response for the GET of an object: its ``value`` is then a FileView, read where the answer
# needs it (a range, or chunk by chunk for the whole object), instead of the whole file in memory.
_STREAM_VALUES: contextvars.ContextVar[bool] = contextvars.ContextVar("lake_s3_stream_values", default=False)


class FileView:
    """An object's content as moto's GET answer uses it (``len``, slices for a Range, the body), read
    from a file opened once, so the answer is of the version whose size and ETag it names."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("rb")
        self._size = os.fstat(self._file.fileno()).st_size

    def __len__(self) -> int:
        return self._size

    def _read(self, offset: int, length: int) -> bytes:
        parts = []
        while length > 0 and (chunk := os.pread(self._file.fileno(), min(length, CHUNK * 8), offset)):
            parts.append(chunk)
            offset, length = offset + len(chunk), length - len(chunk)
        return b"".join(parts)

    def __getitem__(self, item: slice) -> bytes:
        start, stop, step = item.indices(self._size)
        if step != 1:
            raise ValueError("a FileView is sliced by byte ranges only")
        return self._read(start, max(0, stop - start))

    def __bytes__(self) -> bytes:
        return self[:]

    def chunks(self) -> Iterator[bytes]:
        """The whole content, a chunk at a time (the WSGI body); the file is closed at the end."""
        try:
            offset = 0
            while chunk := self._read(offset, CHUNK):
                yield chunk
                offset += len(chunk)
        finally:
            self.close()

    def close(self) -> None:
        self._file.close()

    def __del__(self) -> None:
        self._file.close()


class NotStorable(InvalidArgumentError):
    """A key the lake folder cannot hold as a file (S3 would take it)."""

    def __init__(self, bucket: str, key: str, problem: str) -> None:
        super().__init__(
            f"s3://{bucket}/{key} cannot be stored by the local target: {problem}. The local target keeps every "
            f"object as the file {local_settings.lake_root()}/<bucket>/<key>; use '/'-separated keys whose segments are "
            "non-empty file names (not '.' or '..'), and no key that is also the folder of other keys",
            "Key", key)


class NotEmulated(S3ClientError):
    """A request option the local target's S3 does not emulate (it would be ignored otherwise)."""

    code = "NotImplemented"

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} is not emulated by the local target; leave it out of the request")


class LakeBucket(FakeBucket):
    """A folder of the lake as moto's bucket model (its configuration stays moto's defaults)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> LakeBucket:
        return object.__new__(cls)  # not in moto's instances_tracked: buckets come and go with folders


class LakeKey(FakeKey):
    """An object that is a file of the lake: size, date, ETag and metadata from the file and its
    sidecar; the content read on demand. Metadata and checksum set on it (moto's response does, after
    ``put_object``) are written to the sidecar."""

    def __new__(cls, *args: Any, **kwargs: Any) -> LakeKey:
        return object.__new__(cls)  # not in moto's instances_tracked: a listing makes one per object

    def __init__(self, backend: LakeS3Backend, bucket_name: str, name: Any, path: Path, stat: os.stat_result,
                 stored: dict) -> None:
        self.__dict__["_backend"] = None  # the setters below persist only once the key is built
        checksum = stored.get("checksum") or {}
        super().__init__(name, b"", backend.account_id, backend.region_name, etag=stored.get("etag"),
                         bucket_name=bucket_name, encryption=stored.get("encryption"),
                         kms_key_id=stored.get("kms_key_id"), bucket_key_enabled=stored.get("bucket_key_enabled"),
                         checksum_value=checksum.get("value"), checksum_type=checksum.get("type"))
        self.path = path
        self.stat = stat
        self.contentsize = stat.st_size
        self.last_modified = dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC).replace(tzinfo=None)
        self._metadata.update(stored.get("metadata") or {})
        self.checksum_algorithm = checksum.get("algorithm")
        self._value_buffer.close()  # FakeKey's in-memory buffer: the file is the value
        self.disposed = True
        self.__dict__["_backend"] = backend

    @property
    @overrides
    def value(self) -> bytes:
        if _STREAM_VALUES.get():
            return FileView(self.path)  # type: ignore[return-value]
        return self.path.read_bytes()

    @value.setter
    def value(self, new_value: bytes) -> None:  # FakeKey's constructor sets it; the file is the value
        pass

    @property
    @overrides
    def etag(self) -> str:
        if self._etag is None:
            self._etag = etag(self.path, self.stat)
        return f'"{self._etag}"'

    @property
    def checksum_algorithm(self) -> str | None:
        return self.__dict__.get("_checksum_algorithm")

    @checksum_algorithm.setter
    def checksum_algorithm(self, value: str | None) -> None:
        changed = value != self.__dict__.get("_checksum_algorithm")
        self.__dict__["_checksum_algorithm"] = value
        if changed and self._backend is not None:
            self._backend._save_stored(self)

    @overrides
    def set_metadata(self, metadata: Any, replace: bool = False) -> None:
        super().set_metadata(metadata, replace)
        if self._backend is not None:
            self._backend._save_stored(self)

    def stored(self) -> dict:
        """What the sidecar keeps of this object."""
        return {"metadata": _kept_metadata(self._metadata), "encryption": self.encryption,
                "kms_key_id": self.kms_key_id, "bucket_key_enabled": self.bucket_key_enabled,
                "etag": self._etag if self._etag and "-" in self._etag else None,
                "checksum": {"algorithm": self.checksum_algorithm, "value": self.checksum_value,
                             "type": self.checksum_type}}


@dataclass
class LakeUpload:
    """A multipart upload in progress (moto's FakeMultipart's fields that its responses read)."""

    id: str
    key_name: str
    metadata: dict = field(default_factory=dict)
    storage: str | None = None
    sse_encryption: str | None = None
    kms_key_id: str | None = None
    initiated: str = ""
    parts: dict = field(default_factory=dict)


class LakeS3Backend(S3Backend):
    """moto's S3 backend whose buckets are the lake's folders and whose objects are their files."""

    EMULATED_OPERATIONS = frozenset({
        "CreateBucket", "HeadBucket", "ListBuckets", "GetBucketLocation", "DeleteBucket",
        "PutObject", "GetObject", "HeadObject", "CopyObject", "DeleteObject", "DeleteObjects",
        "ListObjects", "ListObjectsV2",
        "CreateMultipartUpload", "UploadPart", "UploadPartCopy", "ListParts", "CompleteMultipartUpload",
        "AbortMultipartUpload", "ListMultipartUploads",
    })

    @property
    @overrides
    def _url_module(self) -> Any:
        # moto's property reloads moto.s3.urls on every call, which would drop LakeS3Response's routes.
        import moto.s3.urls

        return moto.s3.urls

    # ------------------------------------------------------------------ where things are
    @staticmethod
    def _state(*parts: str) -> Path:
        return local_settings.lake_root().joinpath(".control-plane", "s3", *parts)

    @staticmethod
    def _folder(bucket_name: str) -> Path | None:
        return local_settings.lake_root() / bucket_name if BUCKET_NAME.match(bucket_name or "") else None

    def _object_path(self, bucket_name: str, key_name: str) -> Path:
        """The file of ``key_name``, or ``NotStorable`` for a key no file can be. By segments, not through
        ``lake_files.local_path``: that maps ``s3://`` URIs, where "?" and "#" would end the key."""
        segments = key_name.split("/")
        problem = None
        if not key_name:
            problem = "the key is empty"
        elif "\0" in key_name:
            problem = "the key has a NUL character"
        elif key_name.endswith("/"):
            problem = "the key ends with '/' (a folder marker)"
        elif any(s in ("", ".", "..") for s in segments):
            problem = "the key has an empty, '.' or '..' segment"
        elif any(len(s.encode("utf-8")) > 255 for s in segments):
            problem = "a segment of the key is longer than 255 bytes"
        elif _is_temp(segments[-1]):
            problem = f"names starting with {TEMP_PREFIX!r} are the local target's writes in progress"
        if problem:
            raise NotStorable(bucket_name, key_name, problem)
        return local_settings.lake_root().joinpath(bucket_name, *segments)

    def _meta_path(self, bucket_name: str, key_name: str) -> Path:
        digest = hashlib.sha256(key_name.encode("utf-8")).hexdigest()
        return self._state("objects", bucket_name, digest[:2], f"{digest}.json")

    # ------------------------------------------------------------------ buckets
    def _bucket_record(self, bucket_name: str) -> Path:
        return self._state("buckets", f"{bucket_name}.json")

    @overrides
    def get_bucket(self, bucket_name: str) -> FakeBucket:
        folder = self._folder(bucket_name)
        if folder is None or not folder.is_dir():
            self.buckets.pop(bucket_name, None)
            raise MissingBucket(bucket=bucket_name)
        bucket = self.buckets.get(bucket_name)
        if bucket is None:
            record = _read_json(self._bucket_record(bucket_name))
            bucket = LakeBucket(bucket_name, self.account_id, record.get("region") or LOCAL_REGION)
            created = record.get("created")
            bucket.creation_date = (dt.datetime.fromisoformat(created) if created else
                                    dt.datetime.fromtimestamp(folder.stat().st_mtime, dt.UTC))
            self.buckets[bucket_name] = bucket
        return bucket

    @overrides
    def create_bucket(self, bucket_name: str, region_name: str, bucket_namespace: str | None = None) -> FakeBucket:
        folder = self._folder(bucket_name)
        if folder is None:
            raise InvalidBucketName()
        if bucket_namespace:
            raise NotEmulated("x-amz-bucket-namespace")
        try:
            folder.mkdir(parents=True)
        except FileExistsError:
            raise BucketAlreadyExists(bucket=bucket_name) from None
        _write_json(self._bucket_record(bucket_name),
                    {"created": dt.datetime.now(dt.UTC).isoformat(), "region": region_name})
        self.buckets.pop(bucket_name, None)
        return self.get_bucket(bucket_name)

    @overrides
    def list_buckets(self, prefix: str | None, bucket_region: str | None, max_buckets: str | None) -> list[FakeBucket]:
        root = local_settings.lake_root()
        names = sorted(entry.name for entry in (os.scandir(root) if root.is_dir() else [])
                       if BUCKET_NAME.match(entry.name) and entry.is_dir())
        buckets = []
        for name in names:
            if prefix and not name.startswith(prefix):
                continue
            try:
                bucket = self.get_bucket(name)
            except MissingBucket:  # removed meanwhile
                continue
            if not bucket_region or bucket.region_name == bucket_region:
                buckets.append(bucket)
        return buckets[: int(max_buckets)] if max_buckets else buckets

    @overrides
    def delete_bucket(self, bucket_name: str) -> FakeBucket | None:
        bucket = self.get_bucket(bucket_name)
        folder = local_settings.lake_root() / bucket_name
        if _has_object(folder):
            return None
        for parent, dirs, _ in os.walk(folder, topdown=False):
            for name in dirs:
                try:
                    os.rmdir(os.path.join(parent, name))
                except OSError:  # an object arrived meanwhile
                    return None
        for name in os.listdir(folder):  # leftovers of writes that never finished
            if _is_temp(name):
                Path(folder, name).unlink(missing_ok=True)
        try:
            folder.rmdir()
        except OSError:
            return None
        self._bucket_record(bucket_name).unlink(missing_ok=True)
        for kind in ("objects", "uploads"):
            shutil.rmtree(self._state(kind, bucket_name), ignore_errors=True)
        self.buckets.pop(bucket_name, None)
        return bucket

    # ------------------------------------------------------------------ objects
    def _key(self, bucket_name: str, key_name: str) -> LakeKey | None:
        try:
            path = self._object_path(bucket_name, key_name)
            stat = path.stat()
        except (NotStorable, FileNotFoundError, NotADirectoryError):
            return None
        if not path.is_file():
            return None
        return self._lake_key(bucket_name, key_name, path, stat)

    def _lake_key(self, bucket_name: str, key_name: str, path: Path, stat: os.stat_result) -> LakeKey:
        stored = _read_json(self._meta_path(bucket_name, key_name))
        if stored.get("version") != _version(stat):
            stored = {}  # a sidecar of an earlier version of the file (a runner rewrote it)
        return LakeKey(self, bucket_name, key_name, path, stat, stored)

    def _save_stored(self, key: LakeKey) -> None:
        _write_json(self._meta_path(key.bucket_name, key.name), {"key": key.name, "version": _version(key.stat),
                                                                 **key.stored()})

    def _write(self, bucket_name: str, key_name: str, fill: Callable[[BinaryIO], None], stored: dict) -> LakeKey:
        """Write the object aside (``fill`` writes its bytes), record its sidecar, rename it into place."""
        path = self._object_path(bucket_name, key_name)
        for attempt in range(3):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".tmp", dir=path.parent)
                break
            except FileNotFoundError:  # a delete pruned the folder meanwhile: make it again
                if attempt == 2:
                    raise
            except (FileExistsError, NotADirectoryError):
                raise NotStorable(bucket_name, key_name, "a part of its folder is an object") from None
        try:
            with os.fdopen(fd, "wb") as handle:
                fill(handle)
            os.chmod(tmp, 0o666 & ~_UMASK)
            stat = os.stat(tmp)
            _write_json(self._meta_path(bucket_name, key_name), {"key": key_name, "version": _version(stat), **stored})
            try:
                os.replace(tmp, path)
            except IsADirectoryError:
                raise NotStorable(bucket_name, key_name, "it is the folder of other keys") from None
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self._lake_key(bucket_name, key_name, path, stat)

    @staticmethod
    def _check_storage(storage: str | None) -> None:
        if storage not in (None, "STANDARD"):
            raise NotEmulated(f"the storage class {storage} (every object of the local target is STANDARD)")

    @overrides
    def put_object(self, bucket_name: str, key_name: str, value: bytes, storage: str | None = None,
                   etag: str | None = None, multipart: Any = None, encryption: str | None = None,
                   kms_key_id: str | None = None, bucket_key_enabled: Any = None, lock_mode: str | None = None,
                   lock_legal_status: str | None = None, lock_until: str | None = None,
                   checksum_value: str | None = None, request_method: str | None = "PUT",
                   disable_notification: bool | None = False) -> FakeKey:
        self._check_storage(storage)
        self.get_bucket(bucket_name)
        data = value.encode("utf-8") if isinstance(value, str) else bytes(value or b"")
        stored = {"encryption": encryption, "kms_key_id": kms_key_id, "bucket_key_enabled": bucket_key_enabled,
                  "checksum": {"value": checksum_value}}
        return self._write(bucket_name, key_name, lambda handle: handle.write(data), stored)

    @overrides
    def get_object(self, bucket_name: str, key_name: str, version_id: str | None = None,
                   part_number: str | None = None, return_delete_marker: bool = False) -> FakeKey | None:
        self.get_bucket(bucket_name)
        if version_id not in (None, "null"):
            return None  # versioning is not emulated: the one version is "null"
        return self._key(bucket_name, key_name)

    @overrides
    def put_object_tagging(self, key: FakeKey, tags: dict[str, str] | None, key_name: str | None = None) -> FakeKey:
        if tags:
            raise NotEmulated("object tagging (x-amz-tagging)")
        return key

    @overrides
    def copy_object(self, src_key: FakeKey, dest_bucket_name: str, dest_key_name: str, storage: str | None = None,
                    encryption: str | None = None, kms_key_id: str | None = None, bucket_key_enabled: Any = None,
                    mdirective: str | None = None, metadata: Any | None = None,
                    website_redirect_location: str | None = None, lock_mode: str | None = None,
                    lock_legal_status: str | None = None, lock_until: str | None = None,
                    provided_version_id: str | None = None) -> None:
        self._check_storage(storage)
        self.get_bucket(dest_bucket_name)
        if website_redirect_location:
            raise NotEmulated("x-amz-website-redirect-location")
        if (src_key.bucket_name, src_key.name) == (dest_bucket_name, dest_key_name) and not (
                storage or encryption or mdirective == "REPLACE"):
            raise CopyObjectMustChangeSomething()
        source = src_key.path if isinstance(src_key, LakeKey) else None

        def fill(handle: BinaryIO) -> None:
            if source is None:
                handle.write(src_key.value)
                return
            with source.open("rb") as reader:
                shutil.copyfileobj(reader, handle, CHUNK)

        stored = {"metadata": _kept_metadata(metadata if mdirective == "REPLACE" else src_key.metadata),
                  "encryption": encryption, "kms_key_id": kms_key_id, "bucket_key_enabled": bucket_key_enabled,
                  "checksum": {"algorithm": src_key.checksum_algorithm, "value": src_key.checksum_value}
                  if src_key.checksum_value else {}}
        self._write(dest_bucket_name, dest_key_name, fill, stored)

    @overrides
    def delete_object(self, bucket_name: str, key_name: str, version_id: str | None = None,
                      bypass: bool = False) -> tuple[bool, dict[str, Any]]:
        self.get_bucket(bucket_name)
        if version_id not in (None, "null"):
            return False, {}
        try:
            path = self._object_path(bucket_name, key_name)
        except NotStorable:
            return True, {}  # no such object: S3 answers 204 for a key that is not there
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return True, {}
        self._meta_path(bucket_name, key_name).unlink(missing_ok=True)
        self._prune(local_settings.lake_root() / bucket_name, path.parent)
        return True, {}

    @staticmethod
    def _prune(top: Path, folder: Path) -> None:
        """Remove the empty folders from ``folder`` up to (not including) ``top``: S3 has no empty prefixes."""
        while folder != top and top in folder.parents:
            try:
                folder.rmdir()
            except OSError:  # not empty (or gone)
                return
            folder = folder.parent

    # ------------------------------------------------------------------ listings
    def _walk(self, folder: Path, rel: str, prefix: str, after: str,
              collapse: Callable[[str], bool]) -> Iterator[tuple[str, Path, bool]]:
        """(name, path, is_folder) below ``folder`` in S3's key order: objects whose key starts with
        ``prefix`` and sorts after ``after``, and folders ``collapse`` keeps whole (a common prefix)."""
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return
        items = []
        for entry in entries:
            if _is_temp(entry.name):
                continue
            try:
                is_dir = entry.is_dir()
                is_file = not is_dir and entry.is_file()
            except OSError:
                continue
            if is_dir:
                name = f"{rel}{entry.name}/"
                if not (name.startswith(prefix) or prefix.startswith(name)):
                    continue
                if name <= after and not after.startswith(name):
                    continue  # every key below sorts before ``after``
            elif is_file:
                name = rel + entry.name
                if not name.startswith(prefix) or name <= after:
                    continue
            else:
                continue
            items.append((name, Path(entry.path), is_dir))
        items.sort()
        for name, path, is_dir in items:
            if not is_dir:
                yield name, path, False
            elif name.startswith(prefix) and collapse(name):
                yield name, path, True
            else:
                yield from self._walk(path, name, prefix, after, collapse)

    def _listing(self, bucket_name: str, prefix: str, delimiter: str | None, after: str
                 ) -> Iterator[tuple[str, Path | None]]:
        """(key, path) of objects and (common prefix, None) of common prefixes, in S3's order, after ``after``."""
        root = local_settings.lake_root() / bucket_name
        base = prefix[: prefix.rfind("/") + 1]
        if any(s in ("", ".", "..") for s in base.split("/")[:-1]):
            return  # no key has such a folder
        start = root.joinpath(*base.split("/")[:-1])

        def collapse(folder_name: str) -> bool:
            rest = folder_name[len(prefix):]
            return bool(delimiter) and len(delimiter) == 1 and delimiter in rest

        last = None
        for name, path, is_dir in self._walk(start, base, prefix, after, collapse):
            rest = name[len(prefix):]
            if delimiter and delimiter in rest:
                common = prefix + rest.split(delimiter, 1)[0] + delimiter
                if common != last and common > after and (not is_dir or _has_object(path)):
                    last = common
                    yield common, None
                continue
            if not is_dir:
                yield name, path

    def _page(self, bucket: FakeBucket, prefix: str | None, delimiter: str | None, after: str,
              max_keys: int | None) -> tuple[list[FakeKey | str], bool]:
        max_keys = moto_settings.get_s3_default_max_keys() if max_keys is None else int(max_keys)
        if max_keys <= 0:
            return [], False
        page: list[FakeKey | str] = []
        for name, path in self._listing(bucket.name, prefix or "", delimiter, after):
            if len(page) == max_keys:
                return page, True
            if path is None:
                page.append(name)
                continue
            try:
                page.append(self._lake_key(bucket.name, name, path, path.stat()))
            except FileNotFoundError:  # deleted since the folder was read
                continue
        return page, False

    @staticmethod
    def _name(item: FakeKey | str) -> str:
        return item if isinstance(item, str) else item.name

    @overrides
    def list_objects(self, bucket: FakeBucket, prefix: str | None, delimiter: str | None, marker: str | None,
                     max_keys: int | None) -> tuple[list[FakeKey], list[str], bool, str | None]:
        page, truncated = self._page(bucket, prefix, delimiter, marker or "", max_keys)
        keys = [item for item in page if not isinstance(item, str)]
        folders = [item for item in page if isinstance(item, str)]
        return keys, folders, truncated, self._name(page[-1]) if truncated else None  # type: ignore[return-value]

    @overrides
    def list_objects_v2(self, bucket: FakeBucket, prefix: str | None, delimiter: str | None,
                        continuation_token: str | None, start_after: str | None, max_keys: int
                        ) -> tuple[list[FakeKey | str], bool, str | None]:
        after = self._token_name(continuation_token) if continuation_token else (start_after or "")
        page, truncated = self._page(bucket, prefix, delimiter, after, max_keys)
        if not truncated:
            return page, False, None
        token = TOKEN_PREFIX + base64.urlsafe_b64encode(self._name(page[-1]).encode("utf-8")).decode("ascii")
        return page, True, token  # type: ignore[return-value]

    @staticmethod
    def _token_name(token: str) -> str:
        """The last name a page returned (the token is opaque to clients, as S3's; here it names that key)."""
        if not token.startswith(TOKEN_PREFIX):
            raise InvalidContinuationToken()
        try:
            return base64.urlsafe_b64decode(token[len(TOKEN_PREFIX):].encode("ascii")).decode("utf-8")
        except (binascii.Error, UnicodeError, ValueError):
            raise InvalidContinuationToken() from None

    # ------------------------------------------------------------------ multipart uploads
    def _upload_dir(self, bucket_name: str, upload_id: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{64}", upload_id or ""):
            raise NoSuchUpload(upload_id=upload_id)
        return self._state("uploads", bucket_name, upload_id)

    def _upload(self, bucket_name: str, upload_id: str) -> LakeUpload:
        self.get_bucket(bucket_name)
        record = _read_json(self._upload_dir(bucket_name, upload_id) / "upload.json")
        if not record:
            raise NoSuchUpload(upload_id=upload_id)
        return LakeUpload(**record)

    def _part_key(self, bucket_name: str, upload_id: str, number: int) -> LakeKey | None:
        path = self._upload_dir(bucket_name, upload_id) / f"{number:05d}.part"
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        return LakeKey(self, bucket_name, number, path, stat, {})

    def _part_numbers(self, bucket_name: str, upload_id: str) -> list[int]:
        folder = self._upload_dir(bucket_name, upload_id)
        return sorted(int(p.name[:-5]) for p in folder.glob("*.part") if p.name[:-5].isdigit())

    @overrides
    def create_multipart_upload(self, bucket_name: str, key_name: str, metadata: Any, storage_type: str,
                                tags: dict[str, str], acl: Any, sse_encryption: str, kms_key_id: str) -> Any:
        self._check_storage(storage_type)
        self.get_bucket(bucket_name)
        self._object_path(bucket_name, key_name)  # a key no file can be fails now, not at the end
        if tags:
            raise NotEmulated("object tagging (x-amz-tagging)")
        upload = LakeUpload(id=uuid.uuid4().hex + uuid.uuid4().hex, key_name=key_name,
                            metadata={str(k): str(v) for k, v in dict(metadata or {}).items()},
                            storage=storage_type, sse_encryption=sse_encryption, kms_key_id=kms_key_id,
                            initiated=dt.datetime.now(dt.UTC).isoformat())
        record = {k: v for k, v in upload.__dict__.items() if k != "parts"}
        _write_json(self._upload_dir(bucket_name, upload.id) / "upload.json", record)
        return upload

    def _write_part(self, bucket_name: str, upload_id: str, part_id: int, fill: Callable[[BinaryIO], None]) -> LakeKey:
        self._upload(bucket_name, upload_id)
        if not 1 <= int(part_id) <= 10000:
            raise NoSuchUpload(upload_id=upload_id)
        folder = self._upload_dir(bucket_name, upload_id)
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as handle:
                fill(handle)
            os.replace(tmp, folder / f"{int(part_id):05d}.part")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self._part_key(bucket_name, upload_id, int(part_id))  # type: ignore[return-value]

    @overrides
    def upload_part(self, bucket_name: str, multipart_id: str, part_id: int, value: bytes) -> FakeKey:
        data = bytes(value or b"")
        return self._write_part(bucket_name, multipart_id, part_id, lambda handle: handle.write(data))

    @overrides
    def upload_part_copy(self, dest_bucket_name: str, multipart_id: str, part_id: int, src_bucket_name: str,
                         src_key_name: str, src_version_id: str | None, start_byte: int, end_byte: int) -> FakeKey:
        source = self.get_object(src_bucket_name, src_key_name, version_id=src_version_id)
        if source is None:
            raise NoSuchUpload(upload_id=multipart_id)

        def fill(handle: BinaryIO) -> None:
            with source.path.open("rb") as reader:  # type: ignore[union-attr]
                if start_byte is None:
                    shutil.copyfileobj(reader, handle, CHUNK)
                    return
                reader.seek(start_byte)
                remaining = end_byte - start_byte + 1
                while remaining > 0:
                    chunk = reader.read(min(CHUNK, remaining))
                    if not chunk:
                        break
                    handle.write(chunk)
                    remaining -= len(chunk)

        return self._write_part(dest_bucket_name, multipart_id, part_id, fill)

    @overrides
    def list_parts(self, bucket_name: str, multipart_id: str, part_number_marker: int = 0,
                   max_parts: int = 1000) -> list[FakeKey]:
        self._upload(bucket_name, multipart_id)
        numbers = [n for n in self._part_numbers(bucket_name, multipart_id) if n > int(part_number_marker or 0)]
        parts = (self._part_key(bucket_name, multipart_id, n) for n in numbers[: int(max_parts)])
        return [part for part in parts if part is not None]

    @overrides
    def is_truncated(self, bucket_name: str, multipart_id: str, next_part_number_marker: int) -> bool:
        return any(n > int(next_part_number_marker) for n in self._part_numbers(bucket_name, multipart_id))

    @overrides
    def abort_multipart_upload(self, bucket_name: str, multipart_id: str) -> None:
        self._upload(bucket_name, multipart_id)
        shutil.rmtree(self._upload_dir(bucket_name, multipart_id), ignore_errors=True)

    @overrides
    def list_multipart_uploads(self, bucket_name: str) -> dict[str, Any]:
        self.get_bucket(bucket_name)
        folder = self._state("uploads", bucket_name)
        uploads = {}
        for record_path in sorted(folder.glob("*/upload.json")) if folder.is_dir() else []:
            record = _read_json(record_path)
            if record:
                uploads[record["id"]] = LakeUpload(**record)
        return dict(sorted(uploads.items(), key=lambda item: (item[1].key_name, item[1].initiated)))

    @overrides
    def complete_multipart_upload(self, bucket_name: str, multipart_id: str, body: Iterator[tuple[int, str]]
                                  ) -> FakeKey | None:
        upload = self._upload(bucket_name, multipart_id)
        parts: list[LakeKey] = []
        for number, part_etag in body:
            part = self._part_key(bucket_name, multipart_id, int(number))
            if part is None or part.etag.strip('"') != part_etag.strip('"'):
                raise InvalidPart()
            if parts and parts[-1].size < moto_settings.S3_UPLOAD_PART_MIN_SIZE:
                raise EntityTooSmall()
            parts.append(part)
        if not parts:
            raise MalformedXML()
        digests = b"".join(bytes.fromhex(part.etag.strip('"')) for part in parts)
        whole = f"{hashlib.md5(digests, usedforsecurity=False).hexdigest()}-{len(parts)}"

        def fill(handle: BinaryIO) -> None:
            for part in parts:
                with part.path.open("rb") as reader:
                    shutil.copyfileobj(reader, handle, CHUNK)

        stored = {"etag": whole, "metadata": _kept_metadata(upload.metadata), "encryption": upload.sse_encryption,
                  "kms_key_id": upload.kms_key_id}
        key = self._write(bucket_name, upload.key_name, fill, stored)
        shutil.rmtree(self._upload_dir(bucket_name, multipart_id), ignore_errors=True)
        return key


class LakeS3Response(S3Response):
    """moto's S3 answers, with the copy-source conditions moto's CopyObject does not check."""

    EMULATED_OPERATIONS = LakeS3Backend.EMULATED_OPERATIONS

    @overrides
    def key_response(self, request: Any, full_url: str, headers: dict[str, Any]) -> Any:
        """moto's answer; for a GET the object's content is read from its file where the answer needs it
        (a Range reads that range; the whole object streams in chunks) rather than held in memory."""
        token = _STREAM_VALUES.set(request.method == "GET")
        try:
            status, response_headers, body = super().key_response(request, full_url, headers)
        finally:
            _STREAM_VALUES.reset(token)
        if isinstance(body, FileView):
            body = body.chunks()
        return status, response_headers, body

    @overrides
    def copy_object(self) -> Any:
        self._check_copy_source_conditions()
        return super().copy_object()

    def _check_copy_source_conditions(self) -> None:
        """x-amz-copy-source-if-match / -if-unmodified-since / -if-modified-since, as S3 evaluates them
        (a true If-Match wins over a false If-Unmodified-Since; a true If-None-Match over a false
        If-Modified-Since); moto checks only -if-none-match."""
        headers = {name.lower(): value for name, value in self.headers.items()}
        if_match = headers.get("x-amz-copy-source-if-match")
        unmodified_since = headers.get("x-amz-copy-source-if-unmodified-since")
        modified_since = headers.get("x-amz-copy-source-if-modified-since")
        if not (if_match or unmodified_since or modified_since):
            return
        from urllib.parse import unquote, urlparse

        source = unquote(urlparse(headers.get("x-amz-copy-source", "")).path).lstrip("/")
        bucket_name, _, key_name = source.partition("/")
        key = self.backend.get_object(bucket_name, key_name)
        if key is None:
            return  # moto's copy answers NoSuchKey
        last_modified = key.last_modified.replace(microsecond=0, tzinfo=dt.UTC)
        if if_match is not None:
            if key.etag.strip('"') not in [tag.strip().strip('"') for tag in if_match.split(",")]:
                raise PreconditionFailed("x-amz-copy-source-If-Match")
        elif unmodified_since and last_modified > email.utils.parsedate_to_datetime(unmodified_since):
            raise PreconditionFailed("x-amz-copy-source-If-Unmodified-Since")
        if modified_since and "x-amz-copy-source-if-none-match" not in headers \
                and last_modified <= email.utils.parsedate_to_datetime(modified_since):
            raise PreconditionFailed("x-amz-copy-source-If-Modified-Since")


def install() -> None:
    """Make the lake the control plane's S3 (before its first S3 request)."""
    import moto.s3.urls

    register_backend("s3", LakeS3Backend)
    register_responses(moto.s3.urls, S3Response, LakeS3Response)
