"""Client-side scoring through a SageMaker endpoint: CSV requests of many rows under the payload limit.

Runs wherever Spark runs (Glue, EMR, local): one ``sagemaker-runtime`` client per partition, rows
``<id>,<features>`` in, ``(id, score)`` out. The inference handlers echo the id column, so the
answer is joined back by id, not by position.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterable, Iterator

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 5 * 1024 * 1024  # under InvokeEndpoint's 6 MB, with room for headers
DEFAULT_BATCH_ROWS = 500


def request_batches(lines: Iterable[str], max_rows: int | None = DEFAULT_BATCH_ROWS,
                    max_bytes: int = MAX_REQUEST_BYTES) -> Iterator[list[str]]:
    """Group CSV lines into requests of at most ``max_rows`` lines (None: no limit) and ``max_bytes``
    bytes (a line counts with its newline); also batch transform's MultiRecord within MaxPayloadInMB."""
    batch: list[str] = []
    size = 0
    for line in lines:
        line_size = (len(line) if line.isascii() else len(line.encode("utf-8"))) + 1
        if line_size > max_bytes:
            raise ValueError(f"a record of {line_size} bytes does not fit in one request of {max_bytes} bytes")
        if batch and ((max_rows and len(batch) >= max_rows) or size + line_size > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(line)
        size += line_size
    if batch:
        yield batch


class EndpointUnavailable(RuntimeError):
    """The endpoint did not answer within the allowed wait; nothing was scored from this request."""


# Worth another try: the endpoint is unreachable, restarting, updating or throttling. A 4xx about
# the request itself (ValidationError, a ModelError with 400/415) is not: the same body fails again.
_TRANSIENT_CODES = {"ThrottlingException", "ServiceUnavailable", "ServiceUnavailableException", "InternalFailure",
                    "InternalServerError", "ModelNotReadyException", "InternalDependencyException"}


def _transient(err: Exception) -> bool:
    from botocore.exceptions import ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(err, (BotoConnectionError, HTTPClientError)):
        return True
    if isinstance(err, ClientError):
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        original = err.response.get("OriginalStatusCode", 0)
        return (err.response["Error"].get("Code") in _TRANSIENT_CODES or status == 429
                or (status >= 500 and original not in (400, 413, 415)))
    return False


def invoke(client, endpoint: str, body: str, max_wait_seconds: float = 300.0, sleep=time.sleep) -> str:
    """InvokeEndpoint with a CSV body; transient failures are retried with exponential backoff and
    jitter (0.5 s doubling to 10 s) for up to ``max_wait_seconds``, then EndpointUnavailable."""
    deadline = time.monotonic() + max_wait_seconds
    delay, attempts = 0.5, 0
    while True:
        attempts += 1
        try:
            answer = client.invoke_endpoint(EndpointName=endpoint, ContentType="text/csv", Accept="text/csv", Body=body)
            return answer["Body"].read().decode("utf-8")
        except Exception as err:
            if not _transient(err):
                raise
            left = deadline - time.monotonic()
            if left <= 0:
                raise EndpointUnavailable(
                    f"endpoint {endpoint} did not answer for {max_wait_seconds:.0f}s ({attempts} attempts; last error: "
                    f"{type(err).__name__}: {err}). Check that it is InService; the unscored records are retried "
                    f"when the job runs again."
                ) from err
            if attempts == 1 or attempts % 10 == 0:
                log.warning("endpoint %s unavailable (%s); retrying for up to %.0fs more", endpoint, err, left)
            sleep(min(delay * (0.5 + random.random() / 2), left))
            delay = min(delay * 2, 10.0)


def score_lines(client, endpoint: str, lines: Iterable[str], max_rows: int = DEFAULT_BATCH_ROWS,
                max_wait_seconds: float = 300.0) -> Iterator[tuple[str, float]]:
    """Score ``<id>,<features>`` lines through ``endpoint``; yields (id, score) per line. Each request
    waits out an unavailable endpoint for up to ``max_wait_seconds`` (see ``invoke``)."""
    for batch in request_batches(lines, max_rows):
        text = invoke(client, endpoint, "\n".join(batch) + "\n", max_wait_seconds)
        scored = text.splitlines()
        if len(scored) != len(batch):
            raise RuntimeError(f"endpoint {endpoint} returned {len(scored)} scores for {len(batch)} rows")
        for line in scored:
            record_id, score = line.rsplit(",", 1)
            yield record_id, float(score)
