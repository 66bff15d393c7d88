"""A Spark Structured Streaming source for Kinesis, in Python (pyspark's DataSource API).

The local target reads the Kinesis-compatible emulator through it; on Glue the streaming job uses
Glue's own Kinesis source instead. Offsets are the per-shard sequence numbers of the last record
read (``{"shards": {"shardId-000000000000": "4958...", ...}}``), so a query restarted from its
checkpoint resumes after the last committed record of every shard, and a batch replayed after a
failure (``readBetweenOffsets``) reads exactly the same records.

    spark.dataSource.register(KinesisDataSource)
    events = (spark.readStream.format("churn_kinesis")
              .option("stream", "churn-events").option("endpoint_url", "http://127.0.0.1:4567").load())

Options: ``stream`` (required), ``endpoint_url`` (none: AWS), ``region`` (us-east-1),
``max_records_per_batch`` (10000), ``max_record_bytes`` (none). Columns: shard_id, sequence_number,
partition_key, data (the record as UTF-8 text; of a record over ``max_record_bytes``, only its first
``max_record_bytes`` bytes: the reader rejects it anyway, and a batch of them must not fill the
driver), record_bytes (the record's size), arrival_ts.
"""

from __future__ import annotations

from collections.abc import Iterator

from pyspark.sql.datasource import DataSource, SimpleDataSourceStreamReader

SCHEMA = ("shard_id string, sequence_number string, partition_key string, data string, record_bytes int, "
          "arrival_ts timestamp")
GET_RECORDS_LIMIT = 1000


def clip(data: bytes, max_bytes: int | None) -> str:
    """The record as text (invalid UTF-8 replaced); over ``max_bytes``, only its first ``max_bytes``."""
    return (data if max_bytes is None or len(data) <= max_bytes else data[:max_bytes]).decode("utf-8", "replace")


class KinesisDataSource(DataSource):
    @classmethod
    def name(cls) -> str:
        return "churn_kinesis"

    def schema(self) -> str:
        return SCHEMA

    def simpleStreamReader(self, schema):
        return KinesisStreamReader(self.options)


class KinesisStreamReader(SimpleDataSourceStreamReader):
    def __init__(self, options: dict) -> None:
        if not options.get("stream"):
            raise ValueError("the churn_kinesis source needs .option('stream', '<stream name>')")
        self.stream = options["stream"]
        self.endpoint_url = options.get("endpoint_url") or None
        self.region = options.get("region", "us-east-1")
        self.max_records = int(options.get("max_records_per_batch", 10000))
        self.max_record_bytes = int(options["max_record_bytes"]) if options.get("max_record_bytes") else None
        self._kinesis = None

    @property
    def kinesis(self):
        if self._kinesis is None:
            from churn.stream_producer import kinesis_client

            self._kinesis = kinesis_client(self.endpoint_url, self.region)
        return self._kinesis

    def _shards(self) -> list[str]:
        shards, token = [], None
        while True:
            page = self.kinesis.list_shards(NextToken=token) if token else self.kinesis.list_shards(StreamName=self.stream)
            shards += [s["ShardId"] for s in page["Shards"]]
            token = page.get("NextToken")
            if not token:
                return sorted(shards)

    def initialOffset(self) -> dict:
        return {"shards": {shard: "" for shard in self._shards()}}  # "": from the oldest record

    def _iterator(self, shard: str, after: str) -> str:
        if after:
            return self.kinesis.get_shard_iterator(StreamName=self.stream, ShardId=shard,
                                                   ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                                                   StartingSequenceNumber=after)["ShardIterator"]
        return self.kinesis.get_shard_iterator(StreamName=self.stream, ShardId=shard,
                                               ShardIteratorType="TRIM_HORIZON")["ShardIterator"]

    def _read_shard(self, shard: str, after: str, budget: int, until: str | None = None) -> list[tuple]:
        """Records of ``shard`` after sequence ``after``: at most ``budget``, or up to ``until`` inclusive."""
        rows: list[tuple] = []
        iterator = self._iterator(shard, after)
        while iterator and (until is not None or len(rows) < budget):
            page = self.kinesis.get_records(ShardIterator=iterator, Limit=GET_RECORDS_LIMIT)
            for record in page["Records"]:
                sequence = record["SequenceNumber"]
                if until is not None and int(sequence) > int(until):
                    return rows
                data = record["Data"]
                rows.append((shard, sequence, record["PartitionKey"], clip(data, self.max_record_bytes), len(data),
                             record["ApproximateArrivalTimestamp"].replace(tzinfo=None)))
                if until is not None and sequence == until:
                    return rows
                if until is None and len(rows) >= budget:
                    return rows
            if not page["Records"] and (until is None or page.get("MillisBehindLatest", 0) == 0):
                return rows  # caught up
            iterator = page.get("NextShardIterator")
        return rows

    def read(self, start: dict) -> tuple[Iterator[tuple], dict]:
        offsets = dict(start.get("shards", {}))
        for shard in self._shards():  # shards added by a resharding start from their oldest record
            offsets.setdefault(shard, "")
        rows: list[tuple] = []
        for shard in sorted(offsets):
            budget = max(1, (self.max_records - len(rows)) // max(1, len(offsets)))
            taken = self._read_shard(shard, offsets[shard], budget)
            if taken:
                offsets[shard] = taken[-1][1]
            rows += taken
        return iter(rows), {"shards": offsets}

    def readBetweenOffsets(self, start: dict, end: dict) -> Iterator[tuple]:
        rows: list[tuple] = []
        before = start.get("shards", {})
        for shard, until in sorted(end.get("shards", {}).items()):
            if until and until != before.get(shard, ""):
                rows += self._read_shard(shard, before.get(shard, ""), budget=0, until=until)
        return iter(rows)
