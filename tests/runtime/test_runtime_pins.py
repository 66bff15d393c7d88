"""infra/runtimes.toml against the deployment, and the AWS-side files against the runtimes' Python.

The first tests are quick (no venv): the runtimes the toml describes must be the ones the template
and the settings pin, and the files the toml says run there must be all of them. The last ones run
vermin (the tools venv) over those files with the runtime's Python as the target: a static check
of language features and standard-library names that also covers the code paths the runtime tests
do not execute.
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from runtime_support import REPO, runtime_env, runtimes_config

TEMPLATE = REPO / "infra" / "cloudformation" / "churn.yaml"


class _IgnoreTags(yaml.SafeLoader):
    """Reads the template with its short-form intrinsics (!Sub, !Ref, ...) as None: only plain values are compared."""


_IgnoreTags.add_multi_constructor("!", lambda loader, suffix, node: None)


@pytest.fixture(scope="module")
def template() -> dict:
    return yaml.load(TEMPLATE.read_text(), Loader=_IgnoreTags)


def test_the_glue_jobs_are_the_toml_glue_version_and_get_no_extra_modules(template):
    config = runtimes_config()["runtime"]
    glue = [r for r in template["Resources"].values() if r["Type"] == "AWS::Glue::Job"]
    assert glue, "no Glue job in the template"
    for job in glue:
        assert f"glue-{job['Properties']['GlueVersion']}" in config, f"{job['Properties']['Name']}: a runtime not in the toml"
        arguments = job["Properties"].get("DefaultArguments", {})
        # What the runtime tests give the jobs: the library zip and no pip installs at job start.
        assert "--extra-py-files" in arguments
        assert not arguments.get("--additional-python-modules"), "update ships.additional_python_modules and the tests"
        assert "--python-modules-installer-option" not in arguments


def test_the_emr_release_is_the_toml_one(template):
    label = template["Parameters"]["EmrReleaseLabel"]["Default"]
    assert label.startswith("emr-") and f"emr-serverless-{label[4:]}" in runtimes_config()["runtime"]


def test_the_xgboost_image_is_the_toml_one():
    """The image the local stack names (local_aws/settings.py; docker-compose.yaml and the deploy examples
    repeat it) is a runtime the toml pins and the job scripts are tested under."""
    named = "".join((REPO / path).read_text() for path in ("local_aws/settings.py", "docker-compose.yaml", "infra/deploy_mwaa.py"))
    tags = set(re.findall(r"sagemaker-xgboost:([0-9][0-9.]*-[0-9]+)", named))
    assert tags and {f"sagemaker-xgboost-{t}" for t in tags} <= set(runtimes_config()["runtime"])


def _churn_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "churn":
            found |= {f"{node.module}.{a.name}" if node.module == "churn" else node.module for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "churn"}
    return found


@pytest.mark.parametrize("name", ["glue-5.0", "emr-serverless-7.9.0"])
def test_the_toml_lists_every_library_module_the_batch_jobs_import(name):
    runs = set(runtimes_config()["runtime"][name]["runs"])
    local_only = set(runtimes_config()["runtime"][name].get("local_only", []))
    todo = [REPO / r for r in runs if r.startswith("include/jobs/")]
    seen: set[str] = set()
    while todo:
        for module in _churn_imports(todo.pop()):
            path = f"include/{module.replace('.', '/')}.py"
            if (REPO / path).exists() and path not in seen and path not in local_only:  # "from churn import x" may name a module or an object
                seen.add(path)
                todo.append(REPO / path)
    assert seen <= runs, f"add {sorted(seen - runs)} to runs of [runtime.{name}]"


def test_the_toml_lists_every_sagemaker_file():
    runs = set(runtimes_config()["runtime"]["sagemaker-xgboost-1.7-1"]["runs"])
    assert {p.relative_to(REPO).as_posix() for p in (REPO / "include" / "sagemaker").glob("*.py")} == runs


def _vermin(tools: dict, target: str, files: list[Path], *options: str) -> subprocess.CompletedProcess:
    vermin = Path(tools["venv_python"]).parent / "vermin"
    return subprocess.run([vermin, "--no-tips", "--violations", f"-t={target}-", *options, *map(str, files)],
                          check=False, capture_output=True, text=True, timeout=120, env=runtime_env())


@pytest.mark.e2e  # needs the tools venv (scripts/runtime_venvs.py)
def test_vermin_catches_what_a_runtime_lacks(runtime_venvs, tmp_path):
    """The checker itself: a file that needs Python 3.9 fails a 3.8 target (else a pass below means nothing)."""
    newer = tmp_path / "needs_39.py"
    newer.write_text("import math\nimport zoneinfo\n\nprint(math.lcm(4, 6), zoneinfo.ZoneInfo('UTC'))\n")
    done = _vermin(runtime_venvs["tools"], "3.8", [newer])
    assert done.returncode != 0 and "3.9" in done.stdout, done.stdout


@pytest.mark.e2e
@pytest.mark.parametrize("name", list(runtimes_config()["runtime"]))
def test_the_files_need_no_newer_python_than_the_runtime(runtime_venvs, name):
    spec = runtimes_config()["runtime"][name]
    files = [REPO / r for r in spec["runs"]]
    assert all(f.exists() for f in files), "a file of 'runs' is missing"
    # With `from __future__ import annotations` annotations stay strings (list[str] is fine on 3.8);
    # without it they are evaluated when the module loads, so vermin must count them too.
    postponed = [f for f in files if "from __future__ import annotations" in f.read_text()]
    for group, options in ((postponed, ()), ([f for f in files if f not in postponed], ("--eval-annotations",))):
        if group:
            done = _vermin(runtime_venvs["tools"], spec["min_python"], group, *options)
            assert done.returncode == 0, f"needs a newer Python than {spec['min_python']}:\n{done.stdout}{done.stderr}"
