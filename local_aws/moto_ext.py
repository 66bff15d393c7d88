"""How the control plane extends moto: subclasses registered where moto looks them up, checked at import.

moto's server builds one Flask app per service on that service's first request
(``werkzeug_app.create_backend_app``): the routes come from the service's ``urls.url_paths`` (each a
``<Response class>.dispatch``), and each request's handler reaches the state through the service's
``BackendDict`` (``moto.<service>.models.<service>_backends``), which instantiates
``BackendDict.backend`` once per account and region on first use. Those are the two registration
points the control plane uses:

- ``register_backend(service, cls)``: ``cls`` (a subclass of moto's backend class) becomes the class
  the service's BackendDict instantiates. Every response handler, moto's own included, then reads
  and writes the subclass's state, so Create, Describe, List, Update, Delete and tags agree.
- ``register_responses(urls_module, parent, cls)``: ``cls`` (a subclass of moto's response class)
  answers the routes ``parent`` answered, for operations whose request or answer moto does not shape
  the way the service does.

Nothing here replaces an attribute of a moto class. ``overrides`` marks a method of a subclass that
replaces moto's method of the same name; ``check_overrides(cls)`` (run by both register functions,
and by the test that imports every extension) fails with ``MotoExtensionError`` when moto no longer
has that method or its parameters changed, so a moto upgrade that breaks an extension fails at
import, not in the middle of a DAG run.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

T = TypeVar("T")


class MotoExtensionError(RuntimeError):
    """An extension no longer fits the installed moto (a method it overrides is gone or changed)."""


def overrides(method: Callable) -> Callable:
    """Mark ``method`` as replacing the parent class's method of the same name (checked by ``check_overrides``)."""
    method.__moto_override__ = True  # type: ignore[attr-defined]
    return method


def _parameters(function: Callable) -> list[str]:
    target = function.fget if isinstance(function, property) else function
    target = getattr(target, "__func__", target)
    return [p.name for p in inspect.signature(target).parameters.values()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def check_overrides(cls: type) -> None:
    """Every ``@overrides`` method of ``cls`` exists in a base class with the same parameter names
    (an override may add keyword parameters with defaults); else ``MotoExtensionError``."""
    import moto

    for name, member in vars(cls).items():
        function = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
        if not getattr(function, "__moto_override__", False):
            continue
        parent = next((vars(base)[name] for base in cls.__mro__[1:] if name in vars(base)), None)
        if parent is None:
            raise MotoExtensionError(
                f"{cls.__module__}.{cls.__qualname__}.{name} overrides a method moto {moto.__version__} no longer "
                f"has (none of {', '.join(b.__qualname__ for b in cls.__mro__[1:-1])} defines {name}); update the "
                "extension to the installed moto, or pin the moto version requirements-local.txt names")
        theirs, ours = _parameters(parent), _parameters(member)
        if ours[:len(theirs)] != theirs:
            raise MotoExtensionError(
                f"{cls.__module__}.{cls.__qualname__}.{name}{tuple(ours)} no longer matches moto {moto.__version__}'s "
                f"{name}{tuple(theirs)}; update the extension to the installed moto's signature")


def register_backend(service: str, cls: type[T]) -> type[T]:
    """Make ``cls`` the backend class of moto's ``service`` (before the service's first request)."""
    from moto.backends import get_backend

    backends = get_backend(service)  # type: ignore[arg-type]
    base = backends.backend
    if not issubclass(cls, base):
        raise MotoExtensionError(f"{cls.__qualname__} must subclass moto's {base.__qualname__} to back {service!r}")
    if any(len(account) for account in backends.values()):
        raise MotoExtensionError(f"moto's {service!r} backend was used before {cls.__qualname__} was registered; "
                                 "register the control plane's extensions before serving")
    check_overrides(cls)
    if cls.__module__ != base.__module__ and "_url_module" not in vars(cls):
        # moto derives a backend's URL module from the class's module name (models -> urls): keep moto's.
        module = __import__(base.__module__.rsplit(".", 1)[0] + ".urls", fromlist=["url_paths"])
        cls._url_module = property(lambda self: module)  # type: ignore[attr-defined]
    backends.backend = cls
    return cls


def register_responses(urls: ModuleType, parent: type, cls: type) -> None:
    """Route the paths of ``urls`` (a moto service's urls module) that ``parent`` answered to ``cls``
    (``dispatch``, or S3's ``bucket_dispatch``/``key_dispatch``/``ambiguous_dispatch``)."""
    if not issubclass(cls, parent):
        raise MotoExtensionError(f"{cls.__qualname__} must subclass {parent.__qualname__}")
    check_overrides(cls)
    routed = 0
    for path, handler in list(urls.url_paths.items()):
        name = getattr(handler, "__name__", "")
        if getattr(handler, "__self__", None) in (parent, cls) and name.endswith("dispatch"):
            urls.url_paths[path] = getattr(cls, name)
            routed += 1
    if not routed:
        raise MotoExtensionError(f"{urls.__name__}.url_paths has no route answered by {parent.__qualname__}.dispatch; "
                                 "the installed moto routes this service differently: update the extension")


def backend(service: str, region: str | None = None, account: str | None = None) -> Any:
    """The control plane's backend of ``service`` for the local account and region."""
    from moto.backends import get_backend

    from local_aws.settings import LOCAL_ACCOUNT, LOCAL_REGION

    return get_backend(service)[account or LOCAL_ACCOUNT][region or LOCAL_REGION]  # type: ignore[arg-type]
