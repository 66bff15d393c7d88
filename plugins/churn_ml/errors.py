"""Errors that cannot succeed on a retry, and the one place they become ``AirflowFailException``.

A missing setting, a Glue job the template does not define, a model the quality gate did not approve
or a request AWS rejects as invalid fail the same way on every attempt: retrying them only delays
the failure (by ``retries`` x ``retry_delay``, 10 minutes on MWAA). Airflow fails a task at once,
without its retries, when it raises ``AirflowFailException``; transient errors (throttling,
timeouts, an interrupted job, a service error) keep their retries.

The classes here do not import Airflow: the control plane and the job runtimes import
``churn_ml.settings`` too, and importing ``airflow.sdk`` costs seconds. ``fail_fast`` turns them (and
AWS's ValidationException-like errors) into ``AirflowFailException`` where a task runs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

# Error codes with which AWS rejects the request itself: the same request fails again.
INVALID_REQUEST_CODES = frozenset({
    "ValidationException", "InvalidInputException", "InvalidParameterException", "InvalidParameterValueException",
    "InvalidRequestException", "EntityNotFoundException", "ResourceNotFoundException", "ResourceNotFound",
    "MissingParameter",
})


class CannotSucceedOnRetry(Exception):
    """Base of the project's errors that a retry cannot fix; the message says what to do instead."""


def invalid_request(err: BaseException) -> bool:
    """True for a botocore ClientError whose code says the request itself is invalid, and for a request
    botocore refuses to send because it breaks the service's model (ParamValidationError)."""
    if type(err).__name__ == "ParamValidationError" and type(err).__module__.startswith("botocore"):
        return True
    response = getattr(err, "response", None)
    if not isinstance(response, dict):
        return False
    return (response.get("Error") or {}).get("Code") in INVALID_REQUEST_CODES


@contextmanager
def fail_fast(what: str = "") -> Iterator[None]:
    """Inside a running task: re-raise errors that cannot succeed on a retry as ``AirflowFailException``
    (message kept, the original chained), so the task fails on this try instead of retrying."""
    try:
        yield
    except CannotSucceedOnRetry as err:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"{what}{err} (not retried: a retry cannot fix this)") from err
    except Exception as err:
        if not invalid_request(err):
            raise
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(
            f"{what}AWS rejected the request: {err} (not retried: the same request fails again; fix the request "
            "or the resources it names)"
        ) from err


def failing_fast(func: F) -> F:
    """Decorator form of ``fail_fast`` for the functions tasks call."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with fail_fast():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
