"""Which operation a request to the control plane calls, and whether the control plane emulates it.

The promise of the local target is that it answers like AWS. For an operation it does not emulate
the AWS-like answer is a refusal in the service's error shape, at once: moto answers an operation it
does not implement with an HTML 500, which botocore retries for ~10 s before "reached max retries",
and fakes some it does implement (CreateProcessingJob is Completed at once, a crawler started with
StartCrawler stays RUNNING forever). So ``control_plane.guard`` asks ``Catalog.check`` about every
authenticated request before moto sees it, and renders a refusal with ``request_guard.Refused``.

**Which operation.** From botocore's service models, the ones boto3 serializes with, so the match is
the client's own view of the API: the service from the SigV4 credential scope of ``Authorization``
(``signingName``: CloudWatch signs as ``monitoring``); the operation by ``X-Amz-Target`` for the JSON
protocols (SageMaker, Glue, Logs, Kinesis, Athena, and CloudWatch, which botocore calls by JSON), by the
``Action`` parameter for the query protocols (SNS, STS, IAM), and for the REST protocols (S3, EMR
Serverless, MWAA) by method and path against each operation's ``http.requestUri`` template; among the
templates that match, the one whose query keys (``?uploads``, ``?list-type=2``) and required
query-string and header members (``uploadId``, ``x-amz-copy-source``) the request carries most of
wins. S3 requests may name the bucket in the Host (virtual-host style) or the path.

**Which operations are emulated.** For each service moto's server answers here:

- where the control plane registered backend or response subclasses (``local_aws.moto_ext``:
  S3, SageMaker, EMR Serverless, Glue, Logs, Athena), the union of their ``EMULATED_OPERATIONS``: the
  operations that run with shared state;
- elsewhere (Kinesis, SNS, SQS, STS, IAM, CloudWatch, KMS), and for a registered class that declares no
  ``EMULATED_OPERATIONS`` yet (logged as a warning), the operations moto's response classes
  implement (a method named for the operation: what moto's ``call_action`` dispatches to), less
  ``FAKED_BY_MOTO``, the operations moto answers as done while nothing happens;
- for a service moto does not have, which the control plane answers itself (``OWN``: MWAA, ``local_aws.mwaa``),
  the ``EMULATED_OPERATIONS`` of its module.

Every other operation of those services, and every operation of a service the control plane does not
serve, is refused: ``python -m local_aws.operations [--markdown]`` prints the table.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import logging
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

log = logging.getLogger(__name__)

# SigV4 signing name -> botocore service name of the services the control plane serves.
SERVED = {
    "s3": "s3", "sagemaker": "sagemaker", "emr-serverless": "emr-serverless", "glue": "glue", "logs": "logs",
    "kinesis": "kinesis", "sns": "sns", "sts": "sts", "iam": "iam", "monitoring": "cloudwatch",
    "kms": "kms",  # the template's data key, which the control plane creates (control_plane.create_data_key)
    "sqs": "sqs",  # a queue subscribed to the alerts topic receives what SNS publishes, as on AWS
    "athena": "athena",  # queries over the Glue catalog's tables, run by DuckDB (local_aws.athena)
    "airflow": "mwaa",  # the template's environment and its InvokeRestApi (local_aws.mwaa)
}
# Services moto does not have, which the control plane answers itself: botocore service name -> the module
# whose ``application`` (WSGI) answers them and whose ``EMULATED_OPERATIONS`` say what is emulated.
OWN = {"mwaa": "local_aws.mwaa"}
# botocore service name -> moto backend name (the same for every service moto serves here).
MOTO_NAME = {service: service for service in SERVED.values() if service not in OWN}
# Services whose state the control plane keeps in registered subclasses of moto's backends.
EXTENDED = ("s3", "sagemaker", "emr-serverless", "glue", "logs", "athena")
# Operations moto implements by answering as if done while nothing happens: never "moto implements it"
# (only a registered class that declares one in EMULATED_OPERATIONS emulates it).
FAKED_BY_MOTO = {
    "sagemaker": frozenset({
        "CreateProcessingJob",  # Completed at once; nothing ran
        "CreateAutoMLJob", "CreateAutoMLJobV2", "CreateCompilationJob",  # Completed at once
        "StartPipelineExecution",  # Succeeded at once
        "CreateCluster", "CreateDomain", "CreateNotebookInstance", "StartNotebookInstance",  # InService, nothing runs
    }),
    "glue": frozenset({"CreateCrawler", "StartCrawler", "StartCrawlerSchedule"}),  # a crawl that never crawls
    "s3": frozenset({"PutBucketReplication", "PutBucketWebsite"}),  # stored; nothing replicated or served
}
# Operations whose request, sent to an endpoint URL, is the same as another's: on AWS the endpoint
# tells them apart (directory buckets are S3 Express One Zone's own control endpoint), here the other wins.
# (Deprecated operations, such as S3's GetBucketLifecycle, lose to their successor the same way.)
SAME_REQUEST_AS = {"s3": {"ListDirectoryBuckets": "ListBuckets"}}
NOT_EMULATED = "not emulated by the local target"
STYLE = {"json": "json", "rest-json": "json", "rest-xml": "s3", "query": "query", "ec2": "query",
         "smithy-rpc-v2-cbor": "json"}


@functools.cache
def service_model(service: str):
    """botocore's model of ``service`` (as boto3 loads it), or None for a name botocore does not know."""
    from botocore.exceptions import UnknownServiceError

    try:
        return _session().get_service_model(service)
    except UnknownServiceError:
        return None


@functools.cache
def _session():
    import botocore.session

    return botocore.session.get_session()


def protocol(model) -> str:
    """The protocol botocore speaks to the service (``resolved_protocol``: CloudWatch's JSON, not its CBOR)."""
    return model.resolved_protocol


def error_style(model) -> str:
    """``request_guard.Refused.render``'s style for the service's protocol."""
    return STYLE.get(protocol(model), "json")


@dataclass(frozen=True)
class _Route:
    """One REST operation: its method, path pattern and what the request must carry to be it."""

    operation: str
    method: str
    path: re.Pattern
    query: tuple[tuple[str, str | None], ...]  # keys (and values) the requestUri or a required member puts in the query
    headers: tuple[str, ...]  # lower-case names of required header members
    literal: int  # characters of the path template outside labels: more is more specific
    preferred: bool  # among routes that match a request equally well (not deprecated, not SAME_REQUEST_AS another)

    def matches(self, method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str]) -> int | None:
        """How specific the match is (None: no match)."""
        if method != self.method or not self.path.match(path):
            return None
        for key, value in self.query:
            if key not in query or (value is not None and query[key] != value):
                return None
        if any(name not in headers for name in self.headers):
            return None
        return ((len(self.query) + len(self.headers)) * 10_000 + self.literal) * 2 + self.preferred


def _route(operation_model) -> _Route:
    http = operation_model.http
    template, _, query_part = http["requestUri"].partition("?")
    pattern, literal, position = "", 0, 0
    for label in re.finditer(r"\{([^}]+)\}", template):
        text = template[position:label.start()]
        pattern, literal = pattern + re.escape(text), literal + len(text)
        pattern += ".+" if label.group(1).endswith("+") else "[^/]+"
        position = label.end()
    pattern += re.escape(template[position:])
    literal += len(template) - position
    query: list[tuple[str, str | None]] = []
    for item in filter(None, query_part.split("&")):
        key, sep, value = item.partition("=")
        query.append((key, value if sep else None))
    headers: list[str] = []
    shape = operation_model.input_shape
    if shape is not None:
        for name in shape.required_members:
            member = shape.members[name]
            where = member.serialization.get("location")
            if where == "querystring":
                query.append((member.serialization.get("name", name), None))
            elif where == "header":
                headers.append(member.serialization.get("name", name).lower())
    pattern = pattern.rstrip("/") if pattern not in ("/", "") else pattern
    return _Route(operation_model.name, http["method"], re.compile(f"^{pattern or '/'}/?$" if pattern != "/" else "^/$"),
                  tuple(query), tuple(headers), literal,
                  not operation_model.deprecated
                  and operation_model.name not in SAME_REQUEST_AS.get(operation_model.service_model.service_name, {}))


@functools.cache
def _routes(service: str) -> dict[str, list[_Route]]:
    model = service_model(service)
    routes: dict[str, list[_Route]] = {}
    for name in model.operation_names:
        route = _route(model.operation_model(name))
        routes.setdefault(route.method, []).append(route)
    return routes


@functools.cache
def _targets(service: str) -> dict[str, str]:
    model = service_model(service)
    prefix = model.metadata.get("targetPrefix", "")
    return {f"{prefix}.{name}": name for name in model.operation_names}


def operation_of(service: str, method: str, raw_path: str, query: str, headers: Mapping[str, str],
                 body: bytes, host_names: Iterable[str] = ()) -> str | None:
    """The operation of ``service`` (a botocore service name) that the request calls, or None when no
    operation of the model matches. ``raw_path`` and ``query`` as sent, ``headers`` with lower-case
    names; ``host_names``: the server's own host names, so that a Host ``<bucket>.<name>`` is S3's
    virtual-host style."""
    model = service_model(service)
    kind = protocol(model)
    if kind in ("json", "smithy-rpc-v2-cbor") and "x-amz-target" in headers:
        return _targets(service).get(headers["x-amz-target"].strip())
    if kind == "smithy-rpc-v2-cbor" or (kind == "json" and raw_path.startswith("/service/")):
        # smithy RPC v2: POST /service/<ServiceName>/operation/<Operation>
        name = raw_path.rstrip("/").rsplit("/operation/", 1)[-1]
        return name if name in model.operation_names else None
    if kind in ("query", "ec2"):
        fields = dict(parse_qsl(query, keep_blank_values=True))
        if "x-www-form-urlencoded" in headers.get("content-type", ""):
            fields.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        action = fields.get("Action")
        return action if action in model.operation_names else None
    if kind not in ("rest-json", "rest-xml"):
        return None
    path = raw_path or "/"
    if service == "s3":
        bucket = _virtual_host_bucket(headers.get("host", ""), host_names)
        if bucket:
            path = f"/{bucket}{path}" if path != "/" else f"/{bucket}"
    params = {unquote(key): value for key, value in parse_qsl(query, keep_blank_values=True)}
    best, score = None, -1
    for route in _routes(service).get(method.upper(), []):
        matched = route.matches(method.upper(), path, params, headers)
        if matched is not None and matched > score:
            best, score = route.operation, matched
    return best


def _virtual_host_bucket(host: str, host_names: Iterable[str]) -> str | None:
    name = host.rsplit(":", 1)[0].lower() if not host.startswith("[") else host
    for own in host_names:
        if name != own and name.endswith(f".{own}"):
            return name[: -len(own) - 1]
    return None


# -- what is emulated --------------------------------------------------------------------------------


@dataclass
class ServiceOperations:
    """The operations of one service: all of botocore's, those emulated and where that comes from."""

    service: str
    operations: frozenset[str]
    emulated: frozenset[str]
    source: str  # how ``emulated`` was derived, for the table
    warnings: list[str] = field(default_factory=list)

    @property
    def refused(self) -> frozenset[str]:
        return self.operations - self.emulated


def _moto_base(cls: type) -> type:
    return next(base for base in cls.__mro__ if base.__module__.startswith("moto."))


def _response_classes(service: str) -> list[type]:
    """The classes whose ``dispatch`` answers the service's routes in moto's server (moto's or registered)."""
    from moto.backends import get_backend

    base = _moto_base(get_backend(MOTO_NAME[service]).backend)  # type: ignore[arg-type]
    urls = importlib.import_module(base.__module__.rsplit(".", 1)[0] + ".urls")
    classes: list[type] = []
    for handler in urls.url_paths.values():
        owner = getattr(handler, "__self__", None)
        if isinstance(owner, type) and owner not in classes:
            classes.append(owner)
    return classes


def moto_implements(service: str) -> frozenset[str]:
    """The operations of ``service`` that moto's own response classes (and, for S3, whose answers moto's
    S3 response assembles from backend methods, its backend) have a method for: what moto's
    ``call_action`` dispatches to; any other operation ends in moto's "has not been implemented"."""
    from moto.backends import get_backend
    from moto.core.utils import camelcase_to_underscores

    owners = [_moto_base(cls) for cls in _response_classes(service)]
    if service == "s3":
        owners.append(_moto_base(get_backend("s3").backend))  # type: ignore[arg-type]
    names = {name for owner in owners for name in dir(owner) if callable(getattr(owner, name, None))}
    return frozenset(op for op in service_model(service).operation_names if camelcase_to_underscores(op) in names)


def _registered(service: str) -> list[type]:
    """The control plane's subclasses registered for ``service`` (backend and responses), moto's own excluded."""
    from moto.backends import get_backend

    found = [get_backend(MOTO_NAME[service]).backend, *_response_classes(service)]  # type: ignore[arg-type]
    return [cls for cls in found if not cls.__module__.startswith("moto.")]


def service_operations(service: str) -> ServiceOperations:
    """What the control plane emulates of ``service`` (a botocore service name), as installed in this process."""
    operations = frozenset(service_model(service).operation_names)
    if service in OWN:
        names = frozenset(importlib.import_module(OWN[service]).EMULATED_OPERATIONS)
        unknown = sorted(names - operations)
        if unknown:
            raise ValueError(f"{OWN[service]}.EMULATED_OPERATIONS names operations {service} does not have in "
                             f"botocore's model: {', '.join(unknown)}")
        return ServiceOperations(service, operations, names, f"EMULATED_OPERATIONS of {OWN[service]} (moto has no {service})")
    if service not in MOTO_NAME:
        return ServiceOperations(service, operations, frozenset(), "not served by the control plane")
    registered, warnings = _registered(service), []
    declared = [cls for cls in registered if "EMULATED_OPERATIONS" in _attributes(cls)]
    undeclared = [cls for cls in registered if cls not in declared]
    emulated: set[str] = set()
    for cls in declared:
        names = frozenset(cls.EMULATED_OPERATIONS)
        unknown = sorted(names - operations)
        if unknown:
            raise ValueError(f"{cls.__module__}.{cls.__qualname__}.EMULATED_OPERATIONS names operations {service} "
                             f"does not have in botocore's model: {', '.join(unknown)}; use the botocore operation "
                             "names (e.g. CreateTrainingJob)")
        emulated |= names
    if declared and not undeclared:
        source = "EMULATED_OPERATIONS of " + ", ".join(cls.__qualname__ for cls in declared)
    else:
        emulated |= moto_implements(service) - FAKED_BY_MOTO.get(service, frozenset())
        source = "moto's implementation" + (f" less {len(FAKED_BY_MOTO[service])} it fakes" if service in FAKED_BY_MOTO else "")
        for cls in undeclared:
            warnings.append(f"{cls.__module__}.{cls.__qualname__} declares no EMULATED_OPERATIONS: every operation "
                            f"moto implements for {service} is allowed until it does")
        if service in EXTENDED and not registered:
            warnings.append(f"no class is registered for {service} through local_aws.moto_ext: every operation moto "
                            "implements is allowed (less the ones it fakes)")
        if declared:
            source = "EMULATED_OPERATIONS of " + ", ".join(cls.__qualname__ for cls in declared) + " and " + source
    return ServiceOperations(service, operations, frozenset(emulated), source, warnings)


def _attributes(cls: type) -> set[str]:
    return {name for klass in cls.__mro__ if not klass.__module__.startswith("moto.") for name in vars(klass)}


# -- the check in the request path ---------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """What the control plane does with a request: ``allowed``, or refused with ``message``."""

    service: str  # botocore service name (or the signing name of a service botocore does not know)
    operation: str | None
    allowed: bool
    style: str  # request_guard error style of the service's protocol
    message: str = ""


class Catalog:
    """The emulated operations of every served service, computed once after the extensions are installed."""

    def __init__(self, services: Mapping[str, ServiceOperations]) -> None:
        self.services = dict(services)

    @classmethod
    def build(cls) -> Catalog:
        services = {service: service_operations(service) for service in SERVED.values()}
        for entry in services.values():
            for warning in entry.warnings:
                log.warning("%s", warning)
        return cls(services)

    def check(self, signing_name: str, method: str, raw_path: str, query: str, headers: Mapping[str, str],
              body: bytes, host_names: Iterable[str] = (), fallback_style: str = "json") -> Decision:
        """Allow the request, or say why not in words a caller can act on."""
        service = SERVED.get(signing_name, signing_name)
        model = service_model(service)
        if model is None:
            return Decision(signing_name, None, False, fallback_style,
                            f"The service {signing_name!r} (the request's SigV4 credential scope) is {NOT_EMULATED}: "
                            f"its control plane serves {', '.join(sorted(SERVED.values()))}. Call it on AWS.")
        operation = operation_of(service, method, raw_path, query, headers, body, host_names)
        style = error_style(model)
        if service not in self.services:
            what = operation or "this operation"
            return Decision(service, operation, False, style,
                            f"{what} is {NOT_EMULATED}: the local target does not serve {service} at all (it serves "
                            f"{', '.join(sorted(self.services))}). Run this against AWS, or leave it out of local runs.")
        entry = self.services[service]
        if operation is None:
            return Decision(service, None, False, style,
                            f"{method} {raw_path[:200]} is no operation of {service} in botocore's model, so it is "
                            f"{NOT_EMULATED}; call the service through an AWS SDK.")
        if operation in entry.emulated:
            return Decision(service, operation, True, style)
        return Decision(service, operation, False, style,
                        f"{operation} is {NOT_EMULATED}: its control plane emulates {len(entry.emulated)} of the "
                        f"{len(entry.operations)} operations of {service} ({entry.source}; `python -m "
                        "local_aws.operations` lists them). Run it against AWS, or emulate it in local_aws "
                        "with shared state.")


_catalog: Catalog | None = None
_lock = threading.Lock()


def catalog() -> Catalog:
    """The process's catalog, built on first use (after ``control_plane.serve`` installed the extensions)."""
    global _catalog
    with _lock:
        if _catalog is None:
            _catalog = Catalog.build()
        return _catalog


# -- the table -------------------------------------------------------------------------------------------


def table(services: Iterable[ServiceOperations], markdown: bool = False) -> str:
    rows = sorted(services, key=lambda entry: entry.service)
    lines: list[str] = []
    if markdown:
        lines += ["| service | emulated with shared state | answered \"not emulated\" | emulated operations |",
                  "|---|---|---|---|"]
        for entry in rows:
            names = ", ".join(sorted(entry.emulated)) or "-"
            lines.append(f"| {entry.service} | {len(entry.emulated)} | {len(entry.refused)} of {len(entry.operations)} | {names} |")
        lines.append("")
        lines.append("Not served at all (every operation answered \"not emulated\"): every other service.")
        return "\n".join(lines)
    for entry in rows:
        lines.append(f"{entry.service}: {len(entry.emulated)} emulated with shared state, {len(entry.refused)} of "
                     f"{len(entry.operations)} answered \"{NOT_EMULATED}\" ({entry.source})")
        lines.append("  emulated: " + (", ".join(sorted(entry.emulated)) or "-"))
        lines.append("  not emulated: " + (", ".join(sorted(entry.refused)) or "-"))
        lines += [f"  warning: {warning}" for warning in entry.warnings]
    lines.append("every other service: not served (every operation answered \"not emulated\")")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_aws.operations",
                                     description="The operations per service the local control plane emulates "
                                                 "with shared state, and those it answers 'not emulated'.")
    parser.add_argument("--markdown", action="store_true", help="a Markdown table (for docs and notes)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    from local_aws import control_plane

    control_plane.install_extensions()  # as serve() does: the registered classes say what is emulated
    print(table(Catalog.build().services.values(), markdown=args.markdown))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
