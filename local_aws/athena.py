"""Athena on the control plane: the same SQL over the Glue Data Catalog's tables, run by DuckDB.

``LocalAthenaBackend`` (moto's ``AthenaBackend``, subclassed and registered with
``local_aws.moto_ext.register_backend``) keeps the workgroups and the query executions; the
response subclass ``LocalAthenaResponse`` shapes what moto's does not shape as Athena does. What a
query sees is the catalog of the same process: the Glue backend's databases, tables and partitions
(``local_aws.spark_api.LocalGlueBackend``, the state GetTable and GetPartitions answer from).

**A query.** StartQueryExecution parses the SQL with DuckDB's parser in the request: a syntax error, more
than one statement, or a statement other than a query (DDL, DML: CREATE, INSERT, MSCK, ...) is
Athena's ``InvalidRequestException`` at once, and nothing is created. The workgroup must exist (the
template's, which the control plane creates at its start, or one created with CreateWorkGroup); its
ResultConfiguration wins over the request's when it enforces its configuration, as Athena's does. The
query is then QUEUED and runs in a worker thread (RUNNING, then SUCCEEDED, FAILED or CANCELLED), so
the control plane keeps answering meanwhile. For each table the query names (``t``, ``db.t`` or
``awsdatacatalog.db.t``; ``QueryExecutionContext.Database`` is the default schema) the worker builds
a DuckDB view over the table's **registered partitions only** (a table without partition keys: its
``StorageDescriptor.Location``), each location mapped to the lake folder (``lake_files.local_path``),
its files listed as Athena lists them (names starting with ``_`` or ``.``, such as ``_SUCCESS``, are
not data) and read with DuckDB's own readers: ``read_parquet`` (Parquet SerDe or InputFormat),
``read_json`` (a JSON SerDe, one object per line) or ``read_csv`` (LazySimpleSerDe/OpenCSVSerde, with
the table's delimiter, ``skip.header.line.count`` and ``\\N`` as NULL; values that do not parse as
the column's type are NULL, as Hive's text SerDes make them). Columns and their types are the
catalog's (Glue types mapped to DuckDB's, ``duckdb_type``), a column a Parquet file lacks is NULL,
and the partition keys are columns with the partition's values, typed per ``PartitionKeys``. The
DuckDB connection may read only those files (``enable_external_access`` off, ``allowed_paths``, the
configuration locked): a query cannot reach any other file.

**Answers.** GetQueryExecution has Athena's fields: Status with StateChangeReason and AthenaError
(ErrorCategory 2, user error; ErrorType 1000, or 1001 for data that does not convert) for a FAILED
query - ``TABLE_NOT_FOUND``, ``SCHEMA_NOT_FOUND``, ``COLUMN_NOT_FOUND``, ``FUNCTION_NOT_FOUND`` or
``GENERIC_USER_ERROR`` followed by DuckDB's message (Athena's DuckDB engine words its messages the
same way) -, Statistics (DataScannedInBytes: the sizes of the files of the partitions the query's
tables read; engine and total times), ``ResultConfiguration.OutputLocation`` the result object
``<OutputLocation>/<QueryExecutionId>.csv``, which is written into the lake (every field quoted, a
header row, NULL an empty field; ``lake_files.write_bytes``, atomic). GetQueryResults pages the rows
(MaxResults up to 1000, NextToken), the header row first on page 1, each value Athena's text of it and
NULL a Datum without VarCharValue, with ColumnInfo types in Athena's lower-case names (``bigint``,
``varchar``, ``decimal`` with Precision and Scale, ...), which PyAthena converts by. StopQueryExecution
interrupts DuckDB and leaves the query CANCELLED. GetTableMetadata answers from the Glue table
(``Parameters["location"]``, the formats and SerDe, as Athena adds them), GetDatabase from the Glue
database. A query's record and rows are saved under ``LAKE_ROOT/.control-plane/athena/`` and read back
when a control plane starts (a query that was running then is FAILED), as are the workgroups created
through the API.

**Not emulated.** Everything else Athena has (named queries, prepared statements, data catalogs other
than AwsDataCatalog, capacity reservations, notebooks, UpdateWorkGroup, tags, ExecutionParameters):
answered "not emulated" by ``local_aws.operations``. The SQL is DuckDB's, not Trino's: portable SQL
(SELECT, joins, aggregates, CTEs, CAST, COALESCE, date literals) means the same on both; Trino-only
functions (``date_add('day', ...)``, ``approx_percentile``) fail here with FUNCTION_NOT_FOUND, and some
DuckDB-only syntax that Athena would reject runs here. Tables in ORC or Avro, Iceberg tables and views
of the catalog fail with GENERIC_USER_ERROR saying so.
"""

from __future__ import annotations

import datetime as dt
import decimal
import io
import logging
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from moto.athena.exceptions import MetadataException
from moto.athena.models import AthenaBackend
from moto.athena.responses import AthenaResponse
from moto.core.exceptions import JsonRESTError

from local_aws import lake_files
from local_aws import settings as local_settings
from local_aws.common import control_plane, read_state, write_state
from local_aws.moto_ext import overrides

log = logging.getLogger("local_aws.athena")

CATALOG = "awsdatacatalog"  # the only catalog: Glue's (AwsDataCatalog)
MAX_RESULTS = 1000  # GetQueryResults' MaxResults: 1..1000
WORKERS = 4  # queries that run at once; the rest wait QUEUED
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
EMULATED_OPERATIONS = frozenset({
    "StartQueryExecution", "GetQueryExecution", "BatchGetQueryExecution", "GetQueryResults", "StopQueryExecution",
    "ListQueryExecutions", "GetTableMetadata", "GetDatabase",
    "CreateWorkGroup", "GetWorkGroup", "ListWorkGroups", "DeleteWorkGroup",
})
USER_ERROR, SYSTEM_ERROR = 2, 1


class InvalidRequestException(JsonRESTError):
    """Athena's 400 for a request it refuses (botocore: ``client.exceptions.InvalidRequestException``)."""

    code = 400

    def __init__(self, message: str):
        super().__init__("InvalidRequestException", message)


class QueryFailed(Exception):
    """A query that was accepted and then failed: ``reason`` is the StateChangeReason."""

    def __init__(self, reason: str, error_type: int = 1000, category: int = USER_ERROR):
        super().__init__(reason)
        self.reason, self.error_type, self.category = reason, error_type, category


# ---------------------------------------------------------------- types

_SIMPLE_TYPES = {
    "string": "VARCHAR", "varchar": "VARCHAR", "char": "VARCHAR", "boolean": "BOOLEAN", "tinyint": "TINYINT",
    "smallint": "SMALLINT", "int": "INTEGER", "integer": "INTEGER", "bigint": "BIGINT", "float": "FLOAT",
    "real": "FLOAT", "double": "DOUBLE", "date": "DATE", "timestamp": "TIMESTAMP", "binary": "BLOB",
}


def _split_top(text: str, separator: str = ",") -> list[str]:
    """``text`` split at ``separator``s outside <...> and (...)."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char in "<(":
            depth += 1
        elif char in ">)":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def duckdb_type(glue_type: str) -> str:
    """The DuckDB type of a Glue (Hive) column type: ``string`` -> VARCHAR, ``decimal(10,2)`` ->
    DECIMAL(10,2), ``array<int>`` -> INTEGER[], ``map<string,int>``, ``struct<a:int,b:string>``."""
    text = glue_type.strip()
    lowered = text.lower()
    base = re.match(r"[a-z]+", lowered)
    name = base.group(0) if base else lowered
    if name in _SIMPLE_TYPES and (lowered == name or name in ("varchar", "char")):
        return _SIMPLE_TYPES[name]
    if name == "decimal":
        found = re.fullmatch(r"decimal\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?", lowered)
        if found:
            return f"DECIMAL({found.group(1) or 10},{found.group(2) or 0})"
    inner = text[text.find("<") + 1: text.rfind(">")] if "<" in text else ""
    if name == "array" and inner:
        return f"{duckdb_type(inner)}[]"
    if name == "map" and inner:
        key, value = _split_top(inner)
        return f"MAP({duckdb_type(key)}, {duckdb_type(value)})"
    if name == "struct" and inner:
        fields = []
        for member in _split_top(inner):
            member_name, _, member_type = member.partition(":")
            fields.append(f'"{member_name.strip()}" {duckdb_type(member_type)}')
        return f"STRUCT({', '.join(fields)})"
    raise QueryFailed(f"NOT_SUPPORTED: the catalog type {glue_type!r} has no local equivalent (the local Athena "
                      "reads the Hive types: string, varchar, char, boolean, tinyint, smallint, int, bigint, float, "
                      "double, decimal, date, timestamp, binary, array, map, struct)")


# DuckDB type -> (Athena ColumnInfo type, Precision, Scale), as Athena answers for its types.
_ATHENA_TYPES = {
    "BOOLEAN": ("boolean", 0, 0), "TINYINT": ("tinyint", 3, 0), "SMALLINT": ("smallint", 5, 0),
    "INTEGER": ("integer", 10, 0), "BIGINT": ("bigint", 19, 0), "HUGEINT": ("bigint", 19, 0),
    "UTINYINT": ("smallint", 5, 0), "USMALLINT": ("integer", 10, 0), "UINTEGER": ("bigint", 19, 0),
    "UBIGINT": ("bigint", 19, 0), "UHUGEINT": ("bigint", 19, 0), "FLOAT": ("float", 17, 0),
    "DOUBLE": ("double", 17, 0), "VARCHAR": ("varchar", 2147483647, 0), "DATE": ("date", 0, 0),
    "TIMESTAMP": ("timestamp", 3, 0), "TIMESTAMP_NS": ("timestamp", 3, 0), "TIMESTAMP_MS": ("timestamp", 3, 0),
    "TIMESTAMP_S": ("timestamp", 3, 0), "TIMESTAMP WITH TIME ZONE": ("timestamp with time zone", 3, 0),
    "TIME": ("time", 3, 0), "BLOB": ("varbinary", 1073741824, 0), "UUID": ("uuid", 0, 0), "JSON": ("json", 0, 0),
    "INTERVAL": ("interval day to second", 0, 0), "NULL": ("unknown", 0, 0), '"NULL"': ("unknown", 0, 0),
}


def column_info(name: str, duck_type: str) -> dict:
    """Athena's ColumnInfo for a result column of DuckDB type ``duck_type``."""
    text = duck_type.upper()
    decimal_type = re.fullmatch(r"DECIMAL\((\d+),\s*(\d+)\)", text)
    if decimal_type:
        kind, precision, scale = "decimal", int(decimal_type.group(1)), int(decimal_type.group(2))
    elif text.endswith("[]"):
        kind, precision, scale = "array", 0, 0
    elif text.startswith("MAP("):
        kind, precision, scale = "map", 0, 0
    elif text.startswith("STRUCT("):
        kind, precision, scale = "row", 0, 0
    else:
        kind, precision, scale = _ATHENA_TYPES.get(text, ("varchar", 2147483647, 0))
    return {"CatalogName": "hive", "SchemaName": "", "TableName": "", "Name": name, "Label": name, "Type": kind,
            "Precision": precision, "Scale": scale, "Nullable": "UNKNOWN", "CaseSensitive": kind == "varchar"}


def athena_text(value: Any) -> str | None:
    """A value as Athena's result text (None for NULL): ``true``, ``1.5``, ``2026-01-01 00:00:00.000``,
    ``[1, 2]``, ``{a=1}``."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        text = value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d}"
        return text + (value.strftime(" %Z") if value.tzinfo else "")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return " ".join(f"{b:02x}" for b in bytes(value))
    if isinstance(value, list):
        return "[" + ", ".join("null" if v is None else athena_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={'null' if v is None else athena_text(v)}" for k, v in value.items()) + "}"
    return str(value)


# ---------------------------------------------------------------- the catalog's tables as DuckDB views

def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _data_files(location: str) -> list[tuple[str, int]]:
    """(local path, size) of the objects below ``location`` that Athena reads: not ``_``/``.`` files, not folders'
    markers (a key ending with ``/`` or ``_$folder$``)."""
    prefix = location if location.endswith("/") else location + "/"
    files = []
    for uri in lake_files.list_keys(prefix):
        relative = uri[len(prefix):]
        if any(part.startswith(("_", ".")) for part in relative.split("/")) or relative.endswith("_$folder$"):
            continue
        path = lake_files.local_path(uri)
        files.append((str(path), path.stat().st_size))
    return files


def _format(descriptor: dict) -> str:
    serde = descriptor.get("SerdeInfo") or {}
    what = f"{serde.get('SerializationLibrary', '')} {descriptor.get('InputFormat', '')}".lower()
    if "parquet" in what:
        return "parquet"
    if "json" in what:
        return "json"
    if "opencsv" in what or "lazysimpleserde" in what or "textinputformat" in what:
        return "csv"
    raise QueryFailed(f"NOT_SUPPORTED: the local Athena reads Parquet, JSON and CSV/text tables; this one's SerDe is "
                      f"{serde.get('SerializationLibrary')!r} with InputFormat {descriptor.get('InputFormat')!r}")


def _partition_literal(value: str | None, duck: str) -> str:
    return f"CAST({'NULL' if value is None else _literal(value)} AS {duck})"


@dataclass
class TableSource:
    """What DuckDB reads for one catalog table: its columns, partition keys, format and (files, values) per partition."""

    database: str
    name: str
    columns: list[tuple[str, str]]  # (name, DuckDB type)
    partition_keys: list[tuple[str, str]]
    file_format: str
    serde_parameters: dict[str, str]
    table_parameters: dict[str, str]
    parts: list[tuple[list[tuple[str, int]], list[str]]] = field(default_factory=list)

    @property
    def files(self) -> list[str]:
        return [path for files, _ in self.parts for path, _ in files]

    @property
    def scanned_bytes(self) -> int:
        return sum(size for files, _ in self.parts for _, size in files)

    def reader(self, files: list[str]) -> str:
        paths = "[" + ", ".join(_literal(path) for path in files) + "]"
        if self.file_format == "parquet":
            return f"read_parquet({paths}, union_by_name = true)"
        typed = "{" + ", ".join(f"{_literal(n)}: {_literal('VARCHAR' if self.file_format == 'csv' else t)}"
                                for n, t in self.columns) + "}"
        if self.file_format == "json":
            return f"read_json({paths}, format = 'newline_delimited', columns = {typed})"
        serde = self.serde_parameters
        delimiter = serde.get("separatorChar") or serde.get("field.delim") or serde.get("serialization.format") or ","
        quote = serde.get("quoteChar", '"') if "separatorChar" in serde or "quoteChar" in serde else ""
        escape = serde.get("escapeChar", "\\") if quote else (serde.get("escape.delim") or "")
        skip = int(self.table_parameters.get("skip.header.line.count", "0") or 0)
        null = serde.get("serialization.null.format", "\\N")
        return (f"read_csv({paths}, header = false, skip = {skip}, columns = {typed}, delim = {_literal(delimiter)}, "
                f"quote = {_literal(quote)}, escape = {_literal(escape)}, nullstr = {_literal(null)}, "
                "auto_detect = false, strict_mode = false, null_padding = true)")

    def select(self, con, files: list[str], values: list[str | None]) -> str:
        """One partition's rows: the catalog's columns (NULL where a Parquet file lacks one), typed, and its keys."""
        present = None
        if self.file_format == "parquet" and files:
            present = {row[0].lower() for row in con.execute(f"DESCRIBE SELECT * FROM {self.reader(files)}").fetchall()}
        items = []
        for name, duck in self.columns:
            if not files or (present is not None and name.lower() not in present):
                items.append(f"CAST(NULL AS {duck}) AS {_quote(name)}")
            elif self.file_format == "csv":
                items.append(f"TRY_CAST({_quote(name)} AS {duck}) AS {_quote(name)}")
            else:
                items.append(f"CAST({_quote(name)} AS {duck}) AS {_quote(name)}")
        for (key, duck), value in zip(self.partition_keys, values, strict=True):
            items.append(f"{_partition_literal(value, duck)} AS {_quote(key)}")
        source = f" FROM {self.reader(files)}" if files else " WHERE false"
        return "SELECT " + ", ".join(items) + source

    def view_sql(self, con) -> str:
        selects = [self.select(con, [p for p, _ in files], values) for files, values in self.parts if files]
        if not selects:  # no partition with data: the schema only
            selects = [self.select(con, [], [None] * len(self.partition_keys))]
        return " UNION ALL ".join(selects)


def table_source(glue, database: str, name: str) -> TableSource:
    """The catalog table ``database.name`` of the Glue backend ``glue``, read under its lock (a snapshot)."""
    lock = getattr(glue, "_lock", None) or threading.RLock()
    with lock:
        db = next((d for key, d in glue.databases.items() if key.lower() == database.lower()), None)
        if db is None:
            raise QueryFailed(f"SCHEMA_NOT_FOUND: Schema '{database}' does not exist")
        table = next((t for key, t in db.tables.items() if key.lower() == name.lower()), None)
        if table is None:
            raise QueryFailed(f"TABLE_NOT_FOUND: Table '{CATALOG}.{database}.{name}' does not exist")
        definition = table.as_dict()
        partitions = [dict(p.partition_input) for p in table.partitions.values()]
    if (definition.get("TableType") or "").upper() == "VIRTUAL_VIEW" or \
            (definition.get("Parameters") or {}).get("table_type", "").upper() == "ICEBERG":
        raise QueryFailed(f"NOT_SUPPORTED: {database}.{name} is a view or an Iceberg table; the local Athena reads "
                          "Hive tables of Parquet, JSON and CSV files")
    descriptor = definition.get("StorageDescriptor") or {}
    keys = [(k["Name"], duckdb_type(k.get("Type", "string"))) for k in definition.get("PartitionKeys") or []]
    source = TableSource(
        database=db.name, name=table.name,
        columns=[(c["Name"], duckdb_type(c.get("Type", "string"))) for c in descriptor.get("Columns") or []],
        partition_keys=keys, file_format=_format(descriptor),
        serde_parameters=dict((descriptor.get("SerdeInfo") or {}).get("Parameters") or {}),
        table_parameters=dict(definition.get("Parameters") or {}),
    )
    if keys:
        for partition in partitions:
            location = (partition.get("StorageDescriptor") or {}).get("Location")
            values = partition.get("Values") or []
            if location and len(values) == len(keys):
                source.parts.append((_data_files(location), values))
    elif descriptor.get("Location"):
        source.parts.append((_data_files(descriptor["Location"]), []))
    return source


# ---------------------------------------------------------------- running a query

def parse(query: str) -> None:
    """Athena's synchronous checks: one statement, which parses, and is a query; else InvalidRequestException."""
    import duckdb

    try:
        statements = duckdb.extract_statements(query)
    except duckdb.ParserException as err:
        raise InvalidRequestException(_where(str(err))) from None
    if not statements:
        raise InvalidRequestException("line 1:1: mismatched input '<EOF>'. The query string is empty")
    if len(statements) > 1:
        raise InvalidRequestException("Only one sql statement is allowed. Got: " + query.strip()[:200])
    kind = statements[0].type.name
    if kind not in ("SELECT",):
        raise InvalidRequestException(
            f"the local Athena runs queries only (SELECT, WITH ... SELECT, VALUES); this is a {kind} statement, which "
            "it does not emulate: the catalog's tables are defined in infra/cloudformation/churn.yaml and their "
            "partitions registered through Glue's API. Run DDL and DML against Athena on AWS.")


def _where(message: str) -> str:
    """DuckDB's error as Athena words a position: ``line L:C: <message>``."""
    first = message.splitlines()[0]
    first = re.sub(r"^[A-Za-z ]+Error: ", "", first)
    found = re.search(r"LINE (\d+): (.*)\n(\s*)\^", message)
    if found:
        column = len(found.group(3)) - len(f"LINE {found.group(1)}: ") + 1
        return f"line {found.group(1)}:{max(column, 1)}: {first}"
    return first


def _reason(err: Exception) -> QueryFailed:
    import duckdb

    message = _where(str(err))
    text = str(err)
    if isinstance(err, duckdb.CatalogException):
        kind = "SCHEMA_NOT_FOUND" if "schema" in text.lower() and "does not exist" in text else "TABLE_NOT_FOUND"
        if "function" in text.lower():
            kind = "FUNCTION_NOT_FOUND"
        return QueryFailed(f"{kind}: {message}")
    if isinstance(err, duckdb.BinderException):
        lowered = text.lower()
        kind = ("COLUMN_NOT_FOUND" if "column" in lowered and ("not found" in lowered or "does not exist" in lowered)
                else "FUNCTION_NOT_FOUND" if "function" in lowered else "GENERIC_USER_ERROR")
        return QueryFailed(f"{kind}: {message}")
    if isinstance(err, (duckdb.ConversionException, duckdb.InvalidInputException, duckdb.OutOfRangeException)):
        return QueryFailed(f"INVALID_CAST_ARGUMENT: {message}", error_type=1001)
    if isinstance(err, duckdb.PermissionException):
        return QueryFailed(f"PERMISSION_DENIED: {message} (a query reads the catalog's tables only)")
    if isinstance(err, duckdb.InterruptException):
        return QueryFailed("Query was cancelled", error_type=1000)
    return QueryFailed(f"GENERIC_USER_ERROR: {message}")


@dataclass
class Result:
    columns: list[dict]
    rows: list[list[str | None]]
    scanned_bytes: int


class Engine:
    """One query on a fresh in-memory DuckDB: views of the catalog tables it names, then the query."""

    def __init__(self, glue) -> None:
        self.glue = glue
        self.connection = None

    def interrupt(self) -> None:
        if self.connection is not None:
            self.connection.interrupt()

    def run(self, query: str, database: str | None) -> Result:
        import duckdb

        try:
            names = duckdb.get_table_names(query, qualified=True)
        except duckdb.Error as err:
            raise _reason(err) from None
        sources: dict[tuple[str, str], TableSource] = {}
        for qualified in sorted(names):
            parts = [p.strip('"') for p in _split_names(qualified)]
            if len(parts) == 3 and parts[0].lower() != CATALOG:
                raise QueryFailed(f"CATALOG_NOT_FOUND: Catalog '{parts[0]}' does not exist (the local Athena has "
                                  f"AwsDataCatalog only)")
            if len(parts) == 1 and not database:
                raise QueryFailed(f"SCHEMA_NOT_FOUND: line 1:1: Schema must be specified when session schema is not "
                                  f"set (table {parts[0]}): give QueryExecutionContext.Database or name db.{parts[0]}")
            db, table = (parts[-2], parts[-1]) if len(parts) > 1 else (database, parts[0])
            if (db.lower(), table.lower()) not in sources:
                sources[(db.lower(), table.lower())] = table_source(self.glue, db, table)
        files = sorted({path for source in sources.values() for path in source.files})
        con = duckdb.connect(config={"threads": 2})
        self.connection = con
        try:
            con.execute("SET allowed_paths = [" + ", ".join(_literal(f) for f in files) + "]")
            con.execute("SET enable_external_access = false")
            # DuckDB 2.0's type_pushdown turns the CSV columns' TRY_CAST into the reader's strict cast, so one value
            # that does not parse would fail the query instead of being NULL (what Hive's text SerDes make it).
            con.execute("SET disabled_optimizers = 'type_pushdown'")
            con.execute(f"ATTACH ':memory:' AS {CATALOG}")
            for db, _ in sources:
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {CATALOG}.{_quote(db)}")
            for (db, table), source in sources.items():
                con.execute(f"CREATE VIEW {CATALOG}.{_quote(db)}.{_quote(table)} AS {source.view_sql(con)}")
            if database:
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {CATALOG}.{_quote(database.lower())}")
                con.execute(f"USE {CATALOG}.{_quote(database.lower())}")
            else:
                con.execute(f"USE {CATALOG}")
            con.execute("SET lock_configuration = true")
            relation = con.sql(query)
            columns = [column_info(name, str(kind)) for name, kind in zip(relation.columns, relation.types, strict=True)]
            rows = [[athena_text(value) for value in row] for row in relation.fetchall()]
        except duckdb.Error as err:
            raise _reason(err) from None
        finally:
            self.connection = None
            con.close()
        return Result(columns, rows, sum(source.scanned_bytes for source in sources.values()))


def _split_names(qualified: str) -> list[str]:
    """``a.b.c`` (DuckDB's ``get_table_names``, which appends `` AS <alias>``) split at dots outside double quotes."""
    name = re.match(r'^((?:"(?:[^"]|"")*"|[^\s."]+)(?:\.(?:"(?:[^"]|"")*"|[^\s."]+))*)', qualified.strip())
    return re.findall(r'"(?:[^"]|"")*"|[^.]+', name.group(1) if name else qualified)


def results_csv(result: Result) -> bytes:
    """Athena's result object: a header row, every field double-quoted, NULL an empty field."""
    out = io.StringIO()
    lines = [[c["Name"] for c in result.columns], *result.rows]
    for row in lines:
        out.write(",".join("" if v is None else '"' + v.replace('"', '""') + '"' for v in row) + "\n")
    return out.getvalue().encode("utf-8")


# ---------------------------------------------------------------- the backend

@dataclass
class Query:
    """A query execution: the request, its state and its result."""

    id: str
    query: str
    context: dict
    work_group: str
    output_location: str  # the result object's URI: <OutputLocation>/<id>.csv
    result_configuration: dict
    state: str = "QUEUED"
    reason: str | None = None
    error: dict | None = None
    submitted: float = field(default_factory=time.time)
    completed: float | None = None
    engine_millis: int = 0
    scanned_bytes: int = 0
    columns: list[dict] = field(default_factory=list)
    rows: list[list[str | None]] = field(default_factory=list)

    def as_dict(self) -> dict:
        status: dict[str, Any] = {"State": self.state, "SubmissionDateTime": self.submitted}
        if self.completed is not None:
            status["CompletionDateTime"] = self.completed
        if self.reason:
            status["StateChangeReason"] = self.reason
        if self.error:
            status["AthenaError"] = self.error
        total = int(((self.completed or time.time()) - self.submitted) * 1000)
        return {
            "QueryExecutionId": self.id, "Query": self.query, "StatementType": "DML", "SubstatementType": "SELECT",
            "ResultConfiguration": {**self.result_configuration, "OutputLocation": self.output_location},
            "ResultReuseConfiguration": {"ResultReuseByAgeConfiguration": {"Enabled": False}},
            "QueryExecutionContext": self.context, "Status": status,
            "Statistics": {"EngineExecutionTimeInMillis": self.engine_millis, "DataScannedInBytes": self.scanned_bytes,
                           "TotalExecutionTimeInMillis": total, "QueryQueueTimeInMillis": 0,
                           "ResultReuseInformation": {"ReusedPreviousResult": False}},
            "WorkGroup": self.work_group,
            "EngineVersion": {"SelectedEngineVersion": "AUTO", "EffectiveEngineVersion": "Athena engine version 3"},
        }


class LocalAthenaBackend(AthenaBackend):
    """moto's Athena state (workgroups) with queries that run: ``Query`` records, a DuckDB engine per query."""

    EMULATED_OPERATIONS = EMULATED_OPERATIONS

    def __init__(self, region_name: str, account_id: str):
        super().__init__(region_name, account_id)
        self.queries: dict[str, Query] = {}
        self._lock = threading.RLock()
        self._engines: dict[str, Engine] = {}
        self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="athena-query")
        self._persist = (account_id, region_name) == (local_settings.LOCAL_ACCOUNT, local_settings.LOCAL_REGION)
        if self._persist:
            self._load()

    # ---------------------------------------------------------- persistence
    def _folder(self, kind: str):
        return control_plane("athena", kind)

    def _load(self) -> None:
        for path in sorted(self._folder("workgroups").glob("*.json")):
            record = read_state(path) or {}
            if record.get("Name") and record["Name"] not in self.work_groups:
                AthenaBackend.create_work_group(self, record["Name"], record.get("Configuration") or {},
                                                record.get("Description") or "", record.get("Tags") or [])
        for path in sorted(self._folder("queries").glob("*.json")):
            record = read_state(path)
            if not record:
                continue
            query = Query(**record)
            if query.state not in TERMINAL:
                query.state, query.completed = "FAILED", time.time()
                query.reason = "GENERIC_INTERNAL_ERROR: the local control plane stopped while the query ran; run it again"
                query.error = {"ErrorCategory": SYSTEM_ERROR, "ErrorType": 100, "Retryable": True,
                               "ErrorMessage": query.reason}
            self.queries[query.id] = query

    def _save(self, query: Query) -> None:
        if self._persist:
            write_state(self._folder("queries") / f"{query.id}.json", asdict(query))

    @overrides
    def create_work_group(self, name: str, configuration: dict[str, Any], description: str,
                          tags: list[dict[str, str]]):
        created = super().create_work_group(name, configuration, description, tags)
        if created is not None and getattr(self, "_persist", False):  # moto's __init__ creates "primary" first
            write_state(self._folder("workgroups") / f"{name}.json",
                        {"Name": name, "Configuration": created.configuration, "Description": description,
                         "Tags": tags or []})
        return created

    @overrides
    def delete_work_group(self, name: str) -> None:
        super().delete_work_group(name)
        if self._persist:
            (self._folder("workgroups") / f"{name}.json").unlink(missing_ok=True)

    # ---------------------------------------------------------- queries
    def _glue(self):
        from moto.backends import get_backend

        return get_backend("glue")[self.account_id][self.region_name]

    @overrides
    def start_query_execution(self, query: str, context: str, config: dict[str, Any], workgroup: str,
                              execution_parameters: list[str] | None, client_request_token: str | None = None) -> str:
        if execution_parameters:
            raise InvalidRequestException("ExecutionParameters are not emulated by the local target: write the values "
                                          "into the query")
        name = workgroup or "primary"
        group = self.work_groups.get(name)
        if group is None:
            raise InvalidRequestException(f"WorkGroup {name} is not found.")
        if group.state != "ENABLED":
            raise InvalidRequestException(f"WorkGroup {name} is disabled.")
        settings = group.configuration or {}
        own = dict(settings.get("ResultConfiguration") or {})
        given = dict(config or {})
        chosen = own if settings.get("EnforceWorkGroupConfiguration", True) and own.get("OutputLocation") else \
            {**own, **given}
        location = chosen.get("OutputLocation")
        if not location:
            raise InvalidRequestException(
                "No output location provided. An output location is required either through the Workgroup result "
                "configuration setting or as an API input.")
        if not location.startswith("s3://"):
            raise InvalidRequestException(f"OutputLocation {location!r} is not an s3:// URI")
        parse(query)
        with self._lock:
            if client_request_token:
                for existing in self.queries.values():
                    if getattr(existing, "_token", None) == client_request_token:
                        return existing.id
            execution = Query(id=str(uuid.uuid4()), query=query, context=dict(context or {}), work_group=name,
                              output_location=location.rstrip("/") + "/" + "{id}.csv",
                              result_configuration={k: v for k, v in chosen.items() if k != "OutputLocation"})
            execution.output_location = execution.output_location.replace("{id}", execution.id)
            execution._token = client_request_token  # type: ignore[attr-defined]
            self.queries[execution.id] = execution
            self._save(execution)
        self._pool.submit(self._run, execution)
        return execution.id

    def _run(self, query: Query) -> None:
        with self._lock:
            if query.state != "QUEUED":
                return
            query.state = "RUNNING"
            engine = self._engines[query.id] = Engine(self._glue())
        started = time.monotonic()
        try:
            result = engine.run(query.query, (query.context or {}).get("Database"))
            lake_files.write_bytes(query.output_location, results_csv(result))
        except QueryFailed as failed:
            outcome: tuple = ("FAILED", failed, None)
        except Exception as err:  # a fault of the emulator, not of the query: said as Athena's internal error
            log.exception("query %s failed in the local Athena", query.id)
            outcome = ("FAILED", QueryFailed(f"GENERIC_INTERNAL_ERROR: {err}", error_type=100, category=SYSTEM_ERROR),
                       None)
        else:
            outcome = ("SUCCEEDED", None, result)
        with self._lock:
            self._engines.pop(query.id, None)
            if query.state == "CANCELLED":
                return
            state, failed, result = outcome
            query.state, query.completed = state, time.time()
            query.engine_millis = int((time.monotonic() - started) * 1000)
            if failed is not None:
                query.reason = failed.reason
                query.error = {"ErrorCategory": failed.category, "ErrorType": failed.error_type,
                               "Retryable": failed.category == SYSTEM_ERROR, "ErrorMessage": failed.reason}
            else:
                query.columns, query.rows, query.scanned_bytes = result.columns, result.rows, result.scanned_bytes
            self._save(query)

    def query(self, exec_id: str) -> Query:
        found = self.queries.get(exec_id)
        if found is None:
            raise InvalidRequestException(f"QueryExecution {exec_id} was not found")
        return found

    @overrides
    def get_query_execution(self, exec_id: str) -> Query:  # type: ignore[override]
        return self.query(exec_id)

    @overrides
    def list_query_executions(self, workgroup: str | None) -> dict[str, Query]:  # type: ignore[override]
        name = workgroup or "primary"
        if name not in self.work_groups:
            raise InvalidRequestException(f"WorkGroup {name} is not found.")
        ordered = sorted(self.queries.values(), key=lambda q: q.submitted, reverse=True)
        return {q.id: q for q in ordered if q.work_group == name}

    @overrides
    def get_query_results(self, exec_id: str) -> Query:  # type: ignore[override]
        query = self.query(exec_id)
        if query.state != "SUCCEEDED":
            raise InvalidRequestException(
                f"Query has not yet finished. Current state: {query.state}" if query.state not in TERMINAL else
                f"Query did not succeed: {query.state}" + (f" ({query.reason})" if query.reason else ""))
        return query

    @overrides
    def stop_query_execution(self, exec_id: str) -> None:
        with self._lock:
            query = self.query(exec_id)
            if query.state in TERMINAL:
                return
            query.state, query.completed = "CANCELLED", time.time()
            engine = self._engines.get(exec_id)
            self._save(query)
        if engine is not None:
            engine.interrupt()

    # ---------------------------------------------------------- the catalog's metadata
    def _glue_table(self, catalog_name: str, database_name: str, table_name: str) -> dict:
        if (catalog_name or "AwsDataCatalog").lower() != CATALOG:
            raise MetadataException(f"Catalog {catalog_name} does not exist (the local Athena has AwsDataCatalog only)")
        glue = self._glue()
        with getattr(glue, "_lock", threading.RLock()):
            db = next((d for k, d in glue.databases.items() if k.lower() == database_name.lower()), None)
            table = db and next((t for k, t in db.tables.items() if k.lower() == table_name.lower()), None)
            if table is None:
                raise MetadataException(
                    f"Entity Not Found (Service: AmazonDataCatalog; Status Code: 400; Error Code: EntityNotFoundException): "
                    f"table {database_name}.{table_name}")
            return table.as_dict()

    def table_metadata(self, catalog_name: str, database_name: str, table_name: str) -> dict:
        """GetTableMetadata's TableMetadata: the Glue table, with the Parameters Athena adds (location, formats, SerDe)."""
        table = self._glue_table(catalog_name, database_name, table_name)
        descriptor = table.get("StorageDescriptor") or {}
        serde = descriptor.get("SerdeInfo") or {}
        parameters = {**(table.get("Parameters") or {})}
        for key, value in (("location", descriptor.get("Location")), ("inputformat", descriptor.get("InputFormat")),
                           ("outputformat", descriptor.get("OutputFormat")),
                           ("serde.serialization.lib", serde.get("SerializationLibrary"))):
            if value:
                parameters[key] = value
        for key, value in (serde.get("Parameters") or {}).items():
            parameters[f"serde.param.{key}"] = value
        created = table.get("CreateTime")
        metadata = {
            "Name": table["Name"], "TableType": table.get("TableType") or "EXTERNAL_TABLE",
            "Columns": [{k: v for k, v in c.items() if k in ("Name", "Type", "Comment")}
                        for c in descriptor.get("Columns") or []],
            "PartitionKeys": [{k: v for k, v in c.items() if k in ("Name", "Type", "Comment")}
                              for c in table.get("PartitionKeys") or []],
            "Parameters": parameters,
        }
        if isinstance(created, dt.datetime):
            metadata["CreateTime"] = created.timestamp()
        return metadata

    @overrides
    def get_database(self, catalog_name: str, database_name: str) -> dict[str, Any]:
        if (catalog_name or "AwsDataCatalog").lower() != CATALOG:
            raise MetadataException(f"Catalog {catalog_name} does not exist (the local Athena has AwsDataCatalog only)")
        glue = self._glue()
        db = next((d for k, d in glue.databases.items() if k.lower() == database_name.lower()), None)
        if db is None:
            raise MetadataException(
                f"Database {database_name} not found. (Service: AmazonDataCatalog; Status Code: 400; "
                "Error Code: EntityNotFoundException)")
        record = db.as_dict() if hasattr(db, "as_dict") else {"Name": db.name}
        return {"Name": record.get("Name", db.name), "Description": record.get("Description", ""),
                "Parameters": record.get("Parameters") or {}}


class LocalAthenaResponse(AthenaResponse):
    """Athena's answers for what moto shapes otherwise (or not at all): the query calls and GetTableMetadata."""

    EMULATED_OPERATIONS = EMULATED_OPERATIONS

    @property
    def backend(self) -> LocalAthenaBackend:
        return self.athena_backend  # type: ignore[return-value]

    @overrides
    def start_query_execution(self) -> str:
        query_id = self.backend.start_query_execution(
            query=self._get_param("QueryString") or "", context=self._get_param("QueryExecutionContext") or {},
            config=self._get_param("ResultConfiguration") or {}, workgroup=self._get_param("WorkGroup"),
            execution_parameters=self._get_param("ExecutionParameters"),
            client_request_token=self._get_param("ClientRequestToken"))
        return _json({"QueryExecutionId": query_id})

    @overrides
    def get_query_execution(self) -> str:
        return _json({"QueryExecution": self.backend.query(self._get_param("QueryExecutionId")).as_dict()})

    def batch_get_query_execution(self) -> str:
        found, missing = [], []
        for exec_id in self._get_param("QueryExecutionIds") or []:
            query = self.backend.queries.get(exec_id)
            if query is None:
                missing.append({"QueryExecutionId": exec_id, "ErrorCode": "INVALID_INPUT",
                                "ErrorMessage": f"QueryExecution {exec_id} was not found"})
            else:
                found.append(query.as_dict())
        return _json({"QueryExecutions": found, "UnprocessedQueryExecutionIds": missing})

    @overrides
    def list_query_executions(self) -> str:
        ids = list(self.backend.list_query_executions(self._get_param("WorkGroup")))
        start = int(self._get_param("NextToken") or 0)
        size = int(self._get_param("MaxResults") or 50)
        answer: dict[str, Any] = {"QueryExecutionIds": ids[start:start + size]}
        if start + size < len(ids):
            answer["NextToken"] = str(start + size)
        return _json(answer)

    @overrides
    def get_query_results(self) -> str:
        query = self.backend.get_query_results(self._get_param("QueryExecutionId"))
        size = int(self._get_param("MaxResults") or MAX_RESULTS)
        if not 1 <= size <= MAX_RESULTS:
            raise InvalidRequestException(f"MaxResults must be between 1 and {MAX_RESULTS}, got {size}")
        token = self._get_param("NextToken")
        try:
            start = int(token) if token else 0
        except ValueError:
            raise InvalidRequestException(f"NextToken {token!r} is not a token this query's results returned") from None
        # The header row is the first row of the first page, as Athena answers a SELECT.
        rows = [[c["Label"] for c in query.columns], *query.rows]
        page = rows[start:start + size]
        answer: dict[str, Any] = {
            "UpdateCount": 0,
            "ResultSet": {"Rows": [{"Data": [{} if v is None else {"VarCharValue": v} for v in row]} for row in page],
                          "ResultSetMetadata": {"ColumnInfo": query.columns}},
        }
        if start + size < len(rows):
            answer["NextToken"] = str(start + size)
        return _json(answer)

    @overrides
    def stop_query_execution(self) -> str:
        self.backend.stop_query_execution(self._get_param("QueryExecutionId"))
        return "{}"

    @overrides
    def get_work_group(self) -> str:
        name = self._get_param("WorkGroup")
        found = self.backend.get_work_group(name)
        if found is None:
            raise InvalidRequestException(f"WorkGroup {name} is not found.")
        return _json({"WorkGroup": found})

    def get_table_metadata(self) -> str:
        return _json({"TableMetadata": self.backend.table_metadata(
            self._get_param("CatalogName"), self._get_param("DatabaseName"), self._get_param("TableName"))})


def _json(value: dict) -> str:
    import json

    return json.dumps(value, default=str)


# ---------------------------------------------------------------- the template's workgroup

def create_work_group(backend: AthenaBackend, request: dict) -> None:
    """The template's workgroup (``local_aws.template.athena_work_group``), as the stack creates it; an existing
    one is left as it is."""
    if request["Name"] not in backend.work_groups:
        backend.create_work_group(request["Name"], request.get("WorkGroupConfiguration") or {},
                                  request.get("Description") or "", [])


def install() -> None:
    """Register the backend and response subclasses with moto (before serving)."""
    from moto.athena import urls

    from local_aws.moto_ext import register_backend, register_responses

    register_backend("athena", LocalAthenaBackend)
    register_responses(urls, AthenaResponse, LocalAthenaResponse)


def main(argv: list[str] | None = None) -> int:
    """``python -m local_aws.athena "SELECT ..."``: run a query on this lake's control plane (started if it is not
    running), through boto3's Athena client as any client would, and print the result as a table."""
    import argparse
    import sys

    from churn_ml import settings as cfg
    from local_aws import control_plane

    parser = argparse.ArgumentParser(prog="python -m local_aws.athena", description=main.__doc__)
    parser.add_argument("query", help="the SQL (a SELECT)")
    parser.add_argument("--database", default=None, help="the default schema (default: CHURN_GLUE_DATABASE)")
    parser.add_argument("--work-group", default=None, help="default: CHURN_ATHENA_WORKGROUP")
    args = parser.parse_args(argv)
    from botocore.exceptions import ClientError

    athena = control_plane.client("athena", control_plane.ensure_server())
    try:
        query_id = athena.start_query_execution(
            QueryString=args.query, QueryExecutionContext={"Database": args.database or cfg.settings.glue_database},
            WorkGroup=args.work_group or cfg.settings.athena_workgroup)["QueryExecutionId"]
    except ClientError as err:
        print(f"{err.response['Error']['Code']}: {err.response['Error']['Message']}", file=sys.stderr)
        return 1
    while (execution := athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"])["Status"]["State"] \
            not in TERMINAL:
        time.sleep(0.2)
    status = execution["Status"]
    if status["State"] != "SUCCEEDED":
        print(f"{status['State']}: {status.get('StateChangeReason', '')}", file=sys.stderr)
        return 1
    found = []
    for page in athena.get_paginator("get_query_results").paginate(QueryExecutionId=query_id):
        found += [["NULL" if "VarCharValue" not in d else d["VarCharValue"] for d in row["Data"]]
                  for row in page["ResultSet"]["Rows"]]
    widths = [max(len(row[i]) for row in found) for i in range(len(found[0]))] if found else []
    for n, row in enumerate(found):
        print("  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * width for width in widths))
    print(f"({len(found) - 1} rows; {execution['Statistics']['DataScannedInBytes']} bytes scanned; "
          f"result {execution['ResultConfiguration']['OutputLocation']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
