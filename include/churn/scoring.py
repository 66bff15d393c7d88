"""Client-side scoring through a SageMaker endpoint: CSV requests of many rows under the payload limit.

Runs wherever Spark runs (Glue, EMR, local): one ``sagemaker-runtime`` client per partition, rows
``<id>,<features>`` in, ``(id, score)`` out. The answer has one line per request line, in order,
so a score is matched to its row by position, never by the id the endpoint echoes: an id the
endpoint reads differently (``nan`` comes back empty, blanks are stripped) cannot mismatch scores,
and two rows with one id keep their own scores.

A request the model rejects (a 4xx from the container: the body cannot be scored) is split in
halves until the rows it rejects are alone (``score_rows``), so one bad row costs its own score,
not its neighbours'; the caller sets those rows aside with the endpoint's message. Throttling, 5xx
and connection errors are retried instead (``invoke``).
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


# Worth another try: the endpoint is unreachable, restarting, updating or throttling, or its container
# failed (a ModelError with a 5xx from it). A 4xx about the request itself (ValidationError, a
# ModelError with 400/415) is not: the same body fails again (``score_rows`` bisects those).
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
        code = err.response["Error"].get("Code")
        container_failed = code == "ModelError" and str(original).isdigit() and int(original) >= 500
        return (code in _TRANSIENT_CODES or status == 429 or container_failed
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


def _positional_scores(text: str, rows: int, endpoint: str) -> list[float]:
    """The scores of an answer (``score`` or ``<id>,score`` lines), in the order of the request's rows."""
    scored = text.splitlines()
    if len(scored) != rows:
        raise RuntimeError(f"endpoint {endpoint} returned {len(scored)} scores for {rows} rows; expected one line "
                           f"per row. Check the model's inference handlers (output_fn).")
    return [float(line.rsplit(",", 1)[-1]) for line in scored]


def score_lines(client, endpoint: str, lines: Iterable[str], max_rows: int = DEFAULT_BATCH_ROWS,
                max_wait_seconds: float = 300.0) -> Iterator[tuple[str, float]]:
    """Score ``<id>,<features>`` lines through ``endpoint``; yields (id as sent, score) per line, in
    order. Each request waits out an unavailable endpoint for up to ``max_wait_seconds`` (``invoke``)."""
    for batch in request_batches(lines, max_rows):
        text = invoke(client, endpoint, "\n".join(batch) + "\n", max_wait_seconds)
        for line, score in zip(batch, _positional_scores(text, len(batch), endpoint)):
            yield line.split(",", 1)[0], score


def rejection(err: Exception) -> str | None:
    """The endpoint's message when ``err`` says the model cannot score this body (a 4xx from the
    container: SageMaker's ModelError with OriginalStatusCode 4xx); None for anything else (a
    missing endpoint, throttling, a server error: about the endpoint, not the rows)."""
    from botocore.exceptions import ClientError

    if not isinstance(err, ClientError) or err.response.get("Error", {}).get("Code") != "ModelError":
        return None
    original = err.response.get("OriginalStatusCode")
    try:
        status = int(original)
    except (TypeError, ValueError):
        return None
    if not 400 <= status < 500:
        return None
    return str(err.response.get("OriginalMessage") or err.response["Error"].get("Message") or err)[:1000]


class TooManyRejections(RuntimeError):
    """The model rejected more rows than a bad record explains: the endpoint, not the data, is wrong."""


class RejectionBudget:
    """Rows the model may reject one by one in a batch (shared by the batch's request threads)."""

    def __init__(self, limit: int, endpoint: str) -> None:
        import threading

        self.limit, self.endpoint, self.count = limit, endpoint, 0
        self.lock = threading.Lock()

    def spend(self, message: str) -> None:
        with self.lock:
            self.count += 1
            if self.count > self.limit:
                raise TooManyRejections(
                    f"endpoint {self.endpoint} rejected more than {self.limit} rows of one batch one by one (last: "
                    f"{message}). Bad records are quarantined before scoring, so the model, not the data, is the "
                    f"likely cause (a model with other features?): check the endpoint's model. The batch is replayed "
                    f"when the job runs again.")


def score_rows(client, endpoint: str, lines: list[str], budget: RejectionBudget,
               max_wait_seconds: float = 300.0) -> tuple[list[float | None], dict[int, str]]:
    """Score one request's ``lines`` (``<id>,<features>``); returns the scores by position (None for a
    rejected row) and {position: the endpoint's message} for the rows the model rejected. A rejected
    request is split in halves until each rejected row is alone; every row alone that is rejected
    spends one of ``budget`` (``TooManyRejections`` past it). Other errors propagate (``invoke``
    retried what was transient)."""
    try:
        text = invoke(client, endpoint, "\n".join(lines) + "\n", max_wait_seconds)
    except Exception as err:
        message = rejection(err)
        if message is None:
            raise
        if len(lines) == 1:
            budget.spend(message)
            log.warning("endpoint %s rejected a row: %s", endpoint, message)
            return [None], {0: message}
        middle = len(lines) // 2
        first, first_rejected = score_rows(client, endpoint, lines[:middle], budget, max_wait_seconds)
        second, second_rejected = score_rows(client, endpoint, lines[middle:], budget, max_wait_seconds)
        return first + second, {**first_rejected, **{middle + i: m for i, m in second_rejected.items()}}
    return list(_positional_scores(text, len(lines), endpoint)), {}
