"""Client-side scoring through a SageMaker endpoint: CSV requests of many rows under the payload limit.

Runs wherever Spark runs (Glue, EMR, local): one ``sagemaker-runtime`` client per partition, rows
``<id>,<features>`` in, ``(id, score)`` out. The inference handlers echo the id column, so the
answer is joined back by id, not by position.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

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


def score_lines(client, endpoint: str, lines: Iterable[str], max_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[tuple[str, float]]:
    """Score ``<id>,<features>`` lines through ``endpoint``; yields (id, score) per line."""
    for batch in request_batches(lines, max_rows):
        answer = client.invoke_endpoint(
            EndpointName=endpoint, ContentType="text/csv", Accept="text/csv", Body="\n".join(batch) + "\n"
        )
        scored = answer["Body"].read().decode("utf-8").splitlines()
        if len(scored) != len(batch):
            raise RuntimeError(f"endpoint {endpoint} returned {len(scored)} scores for {len(batch)} rows")
        for line in scored:
            record_id, score = line.rsplit(",", 1)
            yield record_id, float(score)
