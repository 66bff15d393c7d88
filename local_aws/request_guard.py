"""What every server of the local target checks before a request reaches a handler.

The control plane, the endpoints' router and the model containers listen on 127.0.0.1, which a
web page in the developer's browser can reach too: by ``fetch`` (with or without a CORS
preflight), a form POST, or DNS rebinding (a name of the page's that resolves to 127.0.0.1, so the
browser deems the answer same-origin). So before dispatching, each server refuses:

- a ``Host`` other than its own loopback address and port (``127.0.0.1:<port>``, ``localhost:<port>``,
  or a name in ``CHURN_LOCAL_SERVER_NAMES``): DNS rebinding sends the page's own name;
- a request a browser sent: it carries ``Origin`` (every CORS request, every cross-site POST) or
  ``Sec-Fetch-*`` headers, which no AWS SDK sends; no server answers CORS, so a page cannot read
  an answer either;
- a request not signed with the lake's key (``common.credentials()``): AWS Signature Version 4 in
  the ``Authorization`` header, checked with botocore's own signer over the headers the client
  signed, the path, the query and the body, as AWS checks it; or, where only local processes call
  (the model containers, the router's ``/_local/`` pages), the lake's token (``common.endpoint_token``).

Refusals are 403s in the service's error shape (``Refused.render``), so boto3 raises its usual
``ClientError`` with AWS's codes: InvalidClientTokenId / UnrecognizedClientException /
InvalidAccessKeyId for a key that is not the lake's, SignatureDoesNotMatch /
InvalidSignatureException for a bad signature. ``Refused`` also renders the control plane's refusal of
an operation it does not emulate (``local_aws.operations``): UnknownOperationException / InvalidAction
with 400, S3's NotImplemented with 501, which botocore does not retry. Moto's own check (``moto.iam.access_control``)
looks keys up in its IAM backend and then evaluates IAM policies; here there is one key per lake
and no policies, so only the signature part is reused: botocore's ``SigV4Auth``, as moto does.

``sign()`` signs a raw HTTP request the same way boto3 does, for the tools that do not use boto3.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Mapping
from urllib.parse import urlsplit

from local_aws import settings as local_settings
from local_aws.common import Credentials

TOKEN_HEADER = "x-churn-local-token"
MAX_SKEW = dt.timedelta(minutes=15)  # AWS refuses a signature dated further from its clock
_AUTH = re.compile(r"AWS4-HMAC-SHA256\s+Credential=([^/,\s]+)/(\d{8})/([^/,\s]+)/([^/,\s]+)/aws4_request\s*,\s*"
                   r"SignedHeaders=([a-z0-9;\-]+)\s*,\s*Signature=([0-9a-f]{64})\s*$")
HOW_TO_CALL = ("Call it with an AWS SDK signed with this lake's credentials (local_aws.control_plane.client(), "
               "the Airflow connection scripts/env.sh builds, or AWS_SHARED_CREDENTIALS_FILE=<lake>/.control-plane/credentials).")


class Refused(Exception):
    """A request refused before dispatch: ``kind`` is what is wrong (``host``, ``browser``, ``unsigned``,
    ``key``, ``signature``, ``token``, ``not_emulated``); the AWS error code and the HTTP status follow
    from it and the service's protocol."""

    # kind -> error code per protocol style (json: JSON protocols and the Runtime; query: XML query; s3)
    CODES = {
        "host": ("AccessDeniedException", "AccessDenied", "AccessDenied"),
        "browser": ("AccessDeniedException", "AccessDenied", "AccessDenied"),
        "unsigned": ("MissingAuthenticationTokenException", "MissingAuthenticationToken", "AccessDenied"),
        "token": ("AccessDeniedException", "AccessDenied", "AccessDenied"),
        "key": ("UnrecognizedClientException", "InvalidClientTokenId", "InvalidAccessKeyId"),
        "signature": ("InvalidSignatureException", "SignatureDoesNotMatch", "SignatureDoesNotMatch"),
        # an operation the control plane does not emulate (local_aws.operations): what AWS answers for an
        # operation it does not have (JSON: UnknownOperationException, query: InvalidAction) or, S3's,
        # for functionality it does not implement (NotImplemented, 501)
        "not_emulated": ("UnknownOperationException", "InvalidAction", "NotImplemented"),
        # a role's request its policies do not allow (local_aws.iam): S3's AccessDenied
        "access_denied": ("AccessDeniedException", "AccessDenied", "AccessDenied"),
    }
    # kind -> HTTP status per protocol style; 403 for the rest. None of them is one botocore retries (its
    # legacy _retry.json and standard mode retry 500, 502, 503, 504, 509, 429 and throttling codes).
    STATUS = {"not_emulated": (400, 400, 501)}

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind, self.message = kind, message

    def code(self, style: str) -> str:
        return self.CODES[self.kind][("json", "query", "s3").index(style)]

    def status(self, style: str) -> int:
        return self.STATUS.get(self.kind, (403, 403, 403))[("json", "query", "s3").index(style)]

    def render(self, style: str) -> tuple[int, list[tuple[str, str]], bytes]:
        """Status, headers (no Content-Length) and body of the refusal in ``style``'s error shape (what
        botocore's parser reads)."""
        code, request_id = self.code(style), str(uuid.uuid4())
        if style == "json":
            body = json.dumps({"__type": code, "message": self.message}).encode()
            headers = [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-ErrorType", f"{code}:")]
        else:
            error = f"<Code>{code}</Code><Message>{_xml(self.message)}</Message>"
            body = (f"<ErrorResponse><Error><Type>Sender</Type>{error}</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
                    if style == "query" else
                    f'<?xml version="1.0" encoding="UTF-8"?>\n<Error>{error}<RequestId>{request_id}</RequestId></Error>').encode()
            headers = [("Content-Type", "text/xml" if style == "query" else "application/xml")]
        return self.status(style), [*headers, ("x-amzn-RequestId", request_id)], body


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def error_style(headers: Mapping[str, str], query: str) -> str:
    """The protocol whose error shape the client parses: ``json`` (X-Amz-Target, rest-json, the Runtime),
    ``s3`` (S3's REST XML) or ``query`` (form-encoded Action=..., e.g. STS, SNS, IAM)."""
    content_type = headers.get("content-type", "")
    if "x-amz-target" in headers or "amz-json" in content_type:
        return "json"
    signed = _AUTH.match(headers.get("authorization", ""))
    if signed and signed.group(4) == "s3":
        return "s3"
    if content_type.startswith("application/x-www-form-urlencoded") or "Action=" in query:
        return "query"
    return "json"


def allowed_hosts(port: int) -> set[str]:
    return {f"{name}:{port}" for name in ("127.0.0.1", "localhost", *local_settings.server_names())}


def check_host_and_browser(headers: Mapping[str, str], port: int) -> None:
    """Refuse a foreign Host (DNS rebinding) and anything a browser sent. ``headers``: lower-case names."""
    host = headers.get("host", "").lower()
    if host not in allowed_hosts(port):
        raise Refused("host", f"Host {host[:100]!r} is not this server's: the local target answers only to "
                              f"{' or '.join(sorted(allowed_hosts(port)))} (another name pointing at 127.0.0.1 is how "
                              "a web page reaches a local server). Use one of those in the endpoint URL, or add "
                              "the name to CHURN_LOCAL_SERVER_NAMES.")
    browser = [name for name in headers if name == "origin" or name.startswith("sec-fetch-")]
    if browser:
        raise Refused("browser", f"requests from a web browser are refused (they carry {', '.join(sorted(browser))}): "
                                 f"this is the local target's AWS, for this machine's processes. {HOW_TO_CALL}")


def check_token(headers: Mapping[str, str], token: str) -> None:
    if not hmac.compare_digest(headers.get(TOKEN_HEADER, "").encode(), token.encode()):
        raise Refused("token", f"this page takes the lake's local token in the {TOKEN_HEADER} header "
                               "(local_aws.common.endpoint_token()); it was missing or wrong")


def signing_key(headers: Mapping[str, str], lake_key: Credentials) -> tuple[Credentials, str | None]:
    """The key a request claims to be signed with, and the role it stands for: a role's key
    (``local_aws.iam.role_keys``, derived from the lake's secret) or else the lake's own (role None), which
    ``authorization`` and ``check_signature`` then hold the request to."""
    from local_aws import iam

    signed = _AUTH.match(headers.get("authorization", ""))
    found = iam.signer(signed.group(1), lake_key) if signed else None
    return found if found is not None else (lake_key, None)


def authorization(headers: Mapping[str, str], expected: Credentials) -> re.Match:
    """The parsed SigV4 Authorization header, refused unless it names the lake's access key: the cheap
    part of the check, before a body is read."""
    value = headers.get("authorization")
    if not value:
        raise Refused("unsigned", f"the request is not signed (no Authorization header; presigned URLs are not "
                                  f"accepted here). {HOW_TO_CALL}")
    signed = _AUTH.match(value)
    if not signed:
        raise Refused("signature", "the Authorization header is not an AWS Signature Version 4 "
                                   "(AWS4-HMAC-SHA256 Credential=.../aws4_request, SignedHeaders=..., Signature=...)")
    if not hmac.compare_digest(signed.group(1).encode(), expected.access_key_id.encode()):
        raise Refused("key", f"The security token included in the request is invalid: access key "
                             f"{signed.group(1)[:40]!r} is not this lake's. {HOW_TO_CALL}")
    return signed


def check_signature(method: str, raw_path: str, query: str, headers: Mapping[str, str], body: bytes,
                    expected: Credentials, now: dt.datetime | None = None) -> None:
    """Refuse unless ``Authorization`` is a SigV4 signature of this request by the lake's key.

    ``raw_path`` and ``query`` exactly as sent (percent-encoded), ``headers`` with lower-case names,
    ``body`` the whole payload."""
    from botocore.awsrequest import AWSRequest

    signed = authorization(headers, expected)
    _, day, region, service, names, signature = signed.groups()
    names = names.split(";")
    missing = [n for n in ("host", "x-amz-date") if n not in names] + [n for n in names if n not in headers]
    if missing:
        raise Refused("signature", f"SignedHeaders must include host and x-amz-date, and every header signed must "
                                   f"be sent; missing: {', '.join(missing)}")
    stamp = headers["x-amz-date"]
    try:
        if not re.fullmatch(r"\d{8}T\d{6}Z", stamp):
            raise ValueError(stamp)
        when = dt.datetime(int(stamp[:4]), int(stamp[4:6]), int(stamp[6:8]), int(stamp[9:11]), int(stamp[11:13]),
                           int(stamp[13:15]), tzinfo=dt.UTC)
    except ValueError:
        raise Refused("signature", f"X-Amz-Date {stamp[:40]!r} is not yyyymmddThhmmssZ") from None
    now = now or dt.datetime.now(dt.UTC)
    if abs(now - when) > MAX_SKEW or stamp[:8] != day:
        raise Refused("signature", f"Signature expired: {stamp} is not within 15 minutes of the server's time "
                                   f"{now:%Y%m%dT%H%M%SZ} (or not the credential scope's day {day}); check the clock")
    body_sha = hashlib.sha256(body).hexdigest()
    content_sha = headers.get("x-amz-content-sha256", "")
    if re.fullmatch(r"[0-9a-f]{64}", content_sha) and body_sha != content_sha:
        raise Refused("signature", "X-Amz-Content-SHA256 is not the SHA-256 of the body sent")
    request = AWSRequest(method=method, url=f"http://{headers['host']}{raw_path}" + (f"?{query}" if query else ""),
                         headers={n: headers[n] for n in names})
    request.context.update(timestamp=stamp, signed_names=names)
    if "x-amz-content-sha256" not in names:  # what the signer hashes the body to, without preparing the request
        request.headers["X-Amz-Content-SHA256"] = body_sha
    verifier = _verifier(service == "s3")(_boto_credentials(expected), service, region)
    canonical = verifier.canonical_request(request)
    calculated = verifier.signature(verifier.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(calculated.encode(), signature.encode()):
        raise Refused("signature", "The request signature we calculated does not match the signature you provided. "
                                   "Check your AWS Secret Access Key and signing method: sign with this lake's key "
                                   "(<lake>/.control-plane/credentials).")


@functools.cache
def _verifier(s3: bool):
    """botocore's signer (S3's for S3: no path normalization), over exactly the headers the client
    signed (botocore's own choice leaves some out, e.g. User-Agent)."""
    from botocore.auth import S3SigV4Auth, SigV4Auth
    from botocore.awsrequest import HTTPHeaders

    class Verifier(S3SigV4Auth if s3 else SigV4Auth):
        def headers_to_sign(self, request):
            chosen = HTTPHeaders()
            for name in request.context["signed_names"]:
                chosen[name] = request.headers[name]
            return chosen

    return Verifier


def _boto_credentials(key: Credentials):
    from botocore.credentials import Credentials as BotoCredentials

    return BotoCredentials(key.access_key_id, key.secret_access_key)


def sign(method: str, url: str, body: bytes, headers: Mapping[str, str], credentials: Credentials,
         service: str = "sagemaker", region: str = local_settings.LOCAL_REGION) -> dict[str, str]:
    """``headers`` plus the SigV4 ones (Authorization, X-Amz-Date) for a raw HTTP request, as boto3 signs it."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    request = AWSRequest(method=method, url=url, data=body, headers={"Host": urlsplit(url).netloc, **headers})
    SigV4Auth(_boto_credentials(credentials), service, region).add_auth(request)
    return dict(request.headers.items())
