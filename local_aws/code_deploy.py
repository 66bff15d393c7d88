"""The local target's deploy of include/: ``python -m local_aws.code_deploy``.

The local counterpart of infra/deploy_mwaa.py's ``upload_code`` and ``write_code_pointer``: builds
include/ (``CHURN_INCLUDE_DIR``) into the local artifacts bucket as its content-addressed code
version (``<LAKE_ROOT>/<artifacts bucket>/code/<version>/``, which the control plane's S3 serves)
and points ``code/CURRENT.json`` at it, last. A version that exists is left as it is (versions are
immutable, and the local target keeps all of them); deploying an unchanged include/ changes nothing.

As on AWS, nothing else builds code: the DAGs' tasks read the pointer through S3
(``churn_ml.artifacts.current_version``), and the local runners run the version a request names. So
after a change of include/, deploy it, as a person runs infra/deploy_mwaa.py on AWS;
``scripts/stack.sh start`` (and so ``make run``) deploys, and so does ``make deploy-local``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from churn_ml import artifacts
from churn_ml import settings as cfg
from local_aws import lake_files
from local_aws import settings as local_settings

COMMAND = "python -m local_aws.code_deploy"


def bucket_folder() -> Path:
    """The local artifacts bucket's folder, ``<LAKE_ROOT>/<CHURN_ARTIFACTS_BUCKET>``."""
    return lake_files.local_path(f"{cfg.settings.artifacts}/")


def deploy(include: Path | None = None) -> str:
    """Build ``include`` (default: ``CHURN_INCLUDE_DIR``) into the local artifacts bucket and point
    ``code/CURRENT.json`` at its version; returns the version."""
    include = Path(include) if include is not None else local_settings.include_dir()
    if not (include / "jobs").is_dir() or not (include / "churn").is_dir() or not (include / "sagemaker").is_dir():
        raise FileNotFoundError(
            f"{include} is not an include/ folder (expected jobs/, churn/ and sagemaker/ in it); set CHURN_INCLUDE_DIR "
            "to the include/ to deploy, or leave it unset for the repository's")
    version = artifacts.publish_local(include, bucket_folder(), written_by=f"local target: {COMMAND} from {include}")
    artifacts.clear_cache()  # this process sees the new pointer at once
    return version


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[1])
    parser.add_argument("--include", type=Path, default=None,
                        help="the include/ folder to deploy (default: CHURN_INCLUDE_DIR, else the repository's)")
    args = parser.parse_args(argv)
    if cfg.target() != "local":
        parser.error("ML_TARGET is not 'local': on AWS, deploy with infra/deploy_mwaa.py")
    version = deploy(args.include)
    print(f"code version {version} deployed: {artifacts.code_uri(version)} "
          f"(pointer {cfg.settings.artifacts}/{artifacts.POINTER_KEY})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
