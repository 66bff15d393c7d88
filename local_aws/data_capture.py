"""The local endpoints' data capture: SageMaker's capture records, in SageMaker's layout.

An endpoint config's ``DataCaptureConfig`` travels with its route (``local_aws.endpoints``), and
the Runtime router (``local_aws.endpoint_server``) hands every sampled successful invocation of a
capturing route to a ``CaptureBuffer``. The buffer writes the records as SageMaker does:

- one JSON object per line, ``{"captureData": {"endpointInput": {...}, "endpointOutput": {...}},
  "eventMetadata": {"eventId", "inferenceTime"}, "eventVersion": "0"}``; each side has the observed
  ``Content-Type``, the mode, the body and its encoding: ``CSV`` or ``JSON`` (the body as text) when
  the type is one of ``CaptureContentTypeHeader``'s, ``BASE64`` otherwise (and without that header);
- files ``<DestinationS3Uri>/<EndpointName>/<VariantName>/yyyy/mm/dd/hh/<mm>-<ss>-<mmm>-<uuid>.jsonl``
  by the UTC hour of the inference, in the lake folder (``lake_files.write_bytes``: written aside, then
  renamed into place, so a reader never sees half a file).

Records wait in memory and are written as new files every ``CHURN_LOCAL_CAPTURE_FLUSH_SECONDS``
(5) and at shutdown, in a thread: an invocation only appends to a list. A write that fails is
logged and counted (``stats``, served at ``/_local/capture``), never raised to a caller; beyond
``MAX_BUFFERED_BYTES`` waiting, records are dropped and counted, as SageMaker stops capturing
rather than slow the endpoint.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import logging
import random
import time
import uuid
from dataclasses import dataclass

from local_aws import lake_files
from local_aws import settings as local_settings

log = logging.getLogger("churn_ml.endpoint.capture")
MAX_BUFFERED_BYTES = 64 * 1024 * 1024
MODES = {"Input": ("Input",), "Output": ("Output",), "InputAndOutput": ("Input", "Output")}


def _media(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


@dataclass(frozen=True)
class CaptureSettings:
    """A route's DataCaptureConfig, compiled once per routes file: what the router asks per request."""

    destination: str  # DestinationS3Uri, without its trailing "/"
    percentage: int
    modes: frozenset[str]
    csv_types: frozenset[str]
    json_types: frozenset[str]

    @classmethod
    def of(cls, config: dict | None) -> CaptureSettings | None:
        """None when nothing is to be captured: no config, EnableCapture false, 0 % or no mode."""
        if not config or not config.get("EnableCapture", True) or not config.get("InitialSamplingPercentage"):
            return None
        modes = frozenset(m for option in config.get("CaptureOptions", []) for m in MODES.get(option.get("CaptureMode"), ()))
        if not modes:
            return None
        header = config.get("CaptureContentTypeHeader") or {}
        return cls(
            destination=config["DestinationS3Uri"].rstrip("/"), percentage=int(config["InitialSamplingPercentage"]),
            modes=modes, csv_types=frozenset(_media(t) for t in header.get("CsvContentTypes", [])),
            json_types=frozenset(_media(t) for t in header.get("JsonContentTypes", [])),
        )

    def sampled(self) -> bool:
        return self.percentage >= 100 or random.random() * 100 < self.percentage

    def encode(self, body: bytes, content_type: str | None) -> tuple[str, str]:
        """(data, encoding) of a body: as text for the configured CSV and JSON types, else BASE64."""
        media = _media(content_type)
        kind = "CSV" if media in self.csv_types else "JSON" if media in self.json_types else None
        if kind is not None:
            try:
                return body.decode("utf-8"), kind
            except UnicodeDecodeError:
                pass  # not text after all: kept byte for byte
        return base64.b64encode(body).decode("ascii"), "BASE64"


def capture_record(settings: CaptureSettings, inference_time: float, request: tuple[bytes, str | None],
                   response: tuple[bytes, str | None], event_id: str | None = None) -> dict:
    """One capture record (a line of a capture file) of an invocation at ``inference_time`` (epoch
    seconds): ``request`` and ``response`` are (body, Content-Type)."""
    data = {}
    for mode, key, (body, content_type) in (("Input", "endpointInput", request), ("Output", "endpointOutput", response)):
        if mode in settings.modes:
            text, encoding = settings.encode(body, content_type)
            data[key] = {"observedContentType": content_type or "", "mode": mode.upper(), "data": text, "encoding": encoding}
    when = dt.datetime.fromtimestamp(inference_time, dt.UTC)
    return {"captureData": data,
            "eventMetadata": {"eventId": event_id or str(uuid.uuid4()), "inferenceTime": when.strftime("%Y-%m-%dT%H:%M:%SZ")},
            "eventVersion": "0"}


def capture_key(settings: CaptureSettings, endpoint: str, variant: str, first: float) -> str:
    """The object a file of records starting at ``first`` (epoch seconds) is written to."""
    when = dt.datetime.fromtimestamp(first, dt.UTC)
    name = f"{when:%M-%S}-{when.microsecond // 1000:03d}-{uuid.uuid4()}.jsonl"
    return f"{settings.destination}/{endpoint}/{variant}/{when:%Y/%m/%d/%H}/{name}"


class CaptureBuffer:
    """Captured invocations waiting to be written; ``run`` writes them every ``flush_seconds``."""

    def __init__(self, flush_seconds: float | None = None) -> None:
        self.flush_seconds = flush_seconds or local_settings.capture_flush_seconds()
        self._items: list[tuple] = []
        self._bytes = 0
        self._stopping = asyncio.Event()
        self.stats = {"captured": 0, "written": 0, "files": 0, "write_errors": 0, "lost": 0, "dropped": 0}

    def add(self, settings: CaptureSettings, endpoint: str, variant: str, request: tuple[bytes, str | None],
            response: tuple[bytes, str | None]) -> None:
        """Called on the event loop for each sampled invocation: an append, nothing more."""
        size = len(request[0]) + len(response[0])
        if self._bytes + size > MAX_BUFFERED_BYTES:
            self.stats["dropped"] += 1
            return
        self._items.append((settings, endpoint, variant, time.time(), request, response))
        self._bytes += size
        self.stats["captured"] += 1

    def write(self, items: list[tuple]) -> None:
        """Write ``items`` (in a worker thread): one new file per destination, endpoint, variant and hour."""
        files: dict[tuple, list[tuple]] = {}
        for item in items:
            settings, endpoint, variant, when = item[:4]
            files.setdefault((settings.destination, endpoint, variant, int(when // 3600)), []).append(item)
        for group in files.values():
            settings, endpoint, variant, first = group[0][:4]
            key = capture_key(settings, endpoint, variant, first)
            try:
                lines = [json.dumps(capture_record(s, when, request, response), separators=(",", ":"))
                         for s, _, _, when, request, response in group]
                lake_files.write_bytes(key, ("\n".join(lines) + "\n").encode("utf-8"))
            except Exception as err:  # a capture problem must never reach an invocation
                self.stats["write_errors"] += 1
                self.stats["lost"] += len(group)
                log.error("data capture: could not write %d record(s) to %s: %s: %s", len(group), key,
                          type(err).__name__, err)
                continue
            self.stats["written"] += len(group)
            self.stats["files"] += 1

    async def flush(self) -> None:
        """Write what is waiting now, off the event loop."""
        items, self._items, self._bytes = self._items, [], 0
        if items:
            await asyncio.to_thread(self.write, items)

    async def run(self) -> None:
        """Flush every ``flush_seconds``, and once more after ``close`` (what came in until then)."""
        stopping = False
        while not stopping:
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=self.flush_seconds)
                stopping = True
            except TimeoutError:
                pass
            try:
                await self.flush()
            except Exception:  # write() counts its own failures; this is the thread hand-off failing
                log.exception("data capture: flush failed")

    async def close(self, runner: asyncio.Task) -> None:
        """Stop ``run`` (it flushes what is left on its way out) and wait for it."""
        self._stopping.set()
        await runner
