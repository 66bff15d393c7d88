"""What the SageMaker runners accept from a request: programs inside the source bundle, container
paths inside the job's ``/opt/ml`` sandbox, handlers loaded from the file they name.

A request names code to run (``sagemaker_program``, a model's ``SAGEMAKER_PROGRAM``) and folders of
the container (``CheckpointConfig.LocalPath``, channel names); the runners turn those into paths of
this machine, run the program and empty the checkpoint folder. Without limits, an absolute path or
a ``..`` would run any Python file here or delete any folder. So the checks come twice: on the
request's text when it is created (``check_program``, ``check_container_path``, ``check_channel_name``:
no file system, so CreateTrainingJob, CreateModel, ... refuse it with ValidationException before
anything runs), and on the real paths just before use (``program_path``, ``container_path``:
resolved, symlinks included, and held inside their folder). S3 URIs are held to the lake's rules
(``check_lake_uri``: ``s3://`` only, nothing that maps outside the lake root).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path, PurePosixPath
from types import ModuleType

from local_aws import lake_files

OPT_ML = PurePosixPath("/opt/ml")
# The folders the training runner lays out and fills itself: a checkpoint folder among them would be
# emptied at each (re)start, taking the input data, the code or the model with it.
RUNNER_FOLDERS = ("input", "model", "output", "code")
# CreateTrainingJob's ChannelName pattern (botocore's model), which allows "." and ".." too.
_CHANNEL = re.compile(r"[A-Za-z0-9.\-_]{1,64}")
_HANDLERS = ("model_fn", "input_fn", "predict_fn", "output_fn")


def _segments_problem(value: str) -> str | None:
    if "\0" in value:
        return "it contains a NUL character"
    if "\\" in value:
        return "it contains a backslash"
    if ".." in value.split("/"):
        return "it has a '..' segment"
    return None


def check_program(program: object, what: str) -> PurePosixPath:
    """``program`` as a path relative to the source bundle's root, or ValueError.

    SageMaker runs the entry point from the unpacked ``sagemaker_submit_directory`` (SAGEMAKER_PROGRAM:
    the model's ``SAGEMAKER_SUBMIT_DIRECTORY``): a relative ``.py`` path without ``..``. An absolute path
    would name any file of this machine."""
    problem = None
    if not isinstance(program, str) or not program.strip():
        problem = "it is empty or not a string"
    elif program.startswith("/"):
        problem = "it is an absolute path"
    else:
        problem = _segments_problem(program)
        if problem is None and not program.endswith(".py"):
            problem = "it is not a .py file (the local runners run and import Python scripts)"
    if problem:
        raise ValueError(
            f"{what} {program!r} is refused: {problem}. Expected the entry point's path relative to the "
            f"source bundle's root, e.g. 'churn_train.py' or 'inference.py'; put the script in the bundle "
            "(include/sagemaker/) and name it by that relative path"
        )
    return PurePosixPath(program)


def program_path(code_dir: Path, program: str, what: str) -> Path:
    """The real file ``program`` names inside the unpacked bundle ``code_dir``, or ValueError.

    Resolved with symlinks, so a link in the bundle cannot lead out of it; it must be a regular file."""
    check_program(program, what)
    root = code_dir.resolve()
    path = (root / program).resolve()
    if not path.is_relative_to(root):
        raise ValueError(
            f"{what} {program!r} resolves to {path}, outside the source bundle's folder {root} (a symbolic "
            "link in the bundle points out of it): name a regular file of the bundle"
        )
    if not path.is_file():
        raise ValueError(
            f"{what} {program!r} is not a file of the source bundle (unpacked in {root}): "
            "check the name and that the bundle (include/sagemaker/) contains it"
        )
    return path


def check_container_path(value: object, what: str, default: str) -> PurePosixPath:
    """A container folder from the request (``CheckpointConfig.LocalPath``) as a path below ``/opt/ml``.

    Only a folder of its own is accepted: under ``/opt/ml/``, no ``..``, and outside the folders
    the runner lays out (``input``, ``model``, ``output``, ``code``), which the checkpoint sync would
    empty."""
    problem = None
    if not isinstance(value, str) or not value:
        problem = "it is empty or not a string"
    else:
        problem = _segments_problem(value)
        if problem is None:
            path = PurePosixPath(value)  # drops '.' segments and doubled or trailing '/'
            if not path.is_relative_to(OPT_ML) or path == OPT_ML:
                problem = "it is not a folder under /opt/ml/"
            elif path.relative_to(OPT_ML).parts[0] in RUNNER_FOLDERS:
                problem = f"it is in /opt/ml/{path.relative_to(OPT_ML).parts[0]}/, a folder the runner fills itself"
    if problem:
        raise ValueError(
            f"{what} {value!r} is refused: {problem}. Expected a folder of its own under /opt/ml/ outside "
            f"{', '.join(f'/opt/ml/{f}/' for f in RUNNER_FOLDERS)}, e.g. {default} (the default)"
        )
    return PurePosixPath(value)


def container_path(opt_ml: Path, value: str, what: str, default: str) -> Path:
    """Where the container folder ``value`` is in the job's sandbox ``opt_ml``, resolved and inside it."""
    relative = check_container_path(value, what, default).relative_to(OPT_ML)
    root = opt_ml.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or path == root:
        raise ValueError(f"{what} {value!r} resolves to {path}, outside the job's sandbox {root}: refusing to use it")
    return path


def check_channel_name(name: object) -> str:
    """A training channel's name, which becomes ``/opt/ml/input/data/<name>``: the API's pattern, not '.' or '..'."""
    if not isinstance(name, str) or not _CHANNEL.fullmatch(name) or name in (".", ".."):
        raise ValueError(
            f"InputDataConfig ChannelName {name!r} is refused: expected 1-64 letters, digits, '.', '-' or '_' "
            "(not '.' or '..'), e.g. 'train'; the channel is the folder /opt/ml/input/data/<ChannelName>"
        )
    return name


def check_lake_uri(uri: object, what: str) -> str:
    """``uri`` if it is an ``s3://`` URI the lake can hold (``lake_files.local_path``'s rules), else ValueError."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise ValueError(f"{what} must be an s3://bucket/key URI, got {uri!r}: the local runners read and write the lake only")
    try:
        lake_files.local_path(uri)
    except ValueError as err:
        raise ValueError(f"{what}: {err}") from None
    return uri


def load_handlers(code_dir: str | Path, program: str, what: str = "SAGEMAKER_PROGRAM") -> ModuleType:
    """Import the inference handlers from the file ``program`` names in the bundle ``code_dir``.

    By location (``spec_from_file_location`` on the resolved file), not by module name: a name looked
    up on ``sys.path`` could pick a module of that name from anywhere. The bundle goes first on
    ``sys.path`` for what the script itself imports, as in the framework container. The module is
    registered under its stem so that pickled objects and ``import <stem>`` find this one."""
    path = program_path(Path(code_dir), program, what)
    root = str(Path(code_dir).resolve())
    if root not in sys.path:
        sys.path.insert(0, root)
    name = path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{what} {program!r}: {path} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    missing = [h for h in _HANDLERS if not callable(getattr(module, h, None))]
    if missing:
        raise RuntimeError(
            f"{program} has no {', '.join(f'{m}()' for m in missing)}; the inference script must define all four "
            f"handlers ({', '.join(_HANDLERS)})"
        )
    return module
