"""churn_train.py and inference.py under the SageMaker XGBoost 1.7-1 container's Python and libraries.

In the runtime venv (Python 3.8, xgboost 1.7.4, pandas 1.2.4, numpy 1.19.2, scikit-learn 0.24.1;
infra/runtimes.toml), from the source bundle the deployment uploads (sagemaker/sourcedir.tar.gz):
the bundle's requirements.txt is pip-installed first, as the container does; then a real training
job (script mode: SM_* variables, channel folders of CSV) trains, evaluates, checkpoints and
resumes; then the inference handlers load that model and score CSV and JSON requests.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
from runtime_support import REPO, run, runtime_env, runtimes_config

pytestmark = pytest.mark.e2e  # builds the runtime venvs (1-2 min once) and runs real jobs in them

RUNTIME = "sagemaker-xgboost-1.7-1"
FEATURES = ["tenure_days", "usage_minutes_30d", "tickets_30d"]
ROUNDS = 20


@pytest.fixture(scope="module")
def venv(runtime_venvs) -> dict:
    return runtime_venvs[RUNTIME]


@pytest.fixture(scope="module")
def container(venv, sourcedir, tmp_path_factory) -> dict:
    """The venv after the container's step before the script: ``pip install -r requirements.txt`` of the bundle."""
    requirements = sourcedir / "requirements.txt"
    if venv["fallback"]:  # no Python 3.8 here: the image's pins have no cp311 wheels (docs/runtimes.md)
        return {"report": None, "requirements": requirements}
    python = venv["venv_python"]
    report = tmp_path_factory.mktemp("pip") / "report.json"
    run([python, "-m", "pip", "--disable-pip-version-check", "--no-input", "install", "--only-binary=:all:",
         "--report", report, "-r", requirements], timeout=600, env=runtime_env())
    installed = json.loads(report.read_text())["install"]
    if installed:  # the venv no longer is the image: have the next build start from scratch
        (Path(venv["folder"]) / "runtime-stamp.json").unlink(missing_ok=True)
    return {"report": installed, "requirements": requirements}


def _pins(lines: str) -> dict[str, str]:
    pins = {}
    for line in lines.splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.lower()] = version
    return pins


def test_the_venv_is_the_containers_python_and_libraries(venv):
    spec = runtimes_config()["runtime"][RUNTIME]
    probe = run([venv["venv_python"], "-c", textwrap.dedent("""
        import json, platform, numpy, pandas, scipy, sklearn, xgboost, matplotlib
        print(json.dumps({"python": platform.python_version(), "xgboost": xgboost.__version__,
                          "numpy": numpy.__version__, "pandas": pandas.__version__, "scipy": scipy.__version__,
                          "scikit-learn": sklearn.__version__, "matplotlib": matplotlib.__version__}))
    """)], timeout=120, env=runtime_env())
    got = json.loads(probe.stdout)
    pins = _pins("\n".join(spec["fallback"]["packages"] if venv["fallback"] else spec["packages"]))
    for name in ("xgboost", "numpy", "pandas", "scipy", "scikit-learn", "matplotlib"):
        assert got[name] == pins[name], f"{name}: the venv has {got[name]}, infra/runtimes.toml pins {pins[name]}"
    wanted = spec["fallback"]["python"] if venv["fallback"] else spec["python"]
    assert got["python"].split(".")[:2] == wanted.split(".")[:2]


def test_the_bundles_requirements_are_what_the_image_already_has(container):
    """The container pip-installs the bundle's requirements.txt at every job start: it must need no download."""
    spec = runtimes_config()["runtime"][RUNTIME]
    image = _pins("\n".join(spec["packages"]))
    bundle = _pins(container["requirements"].read_text())
    assert bundle, "the source bundle has no requirements.txt pins"
    for name, version in bundle.items():
        assert image.get(name) == version, (
            f"the bundle's requirements.txt pins {name}=={version}, the 1.7-1 image has {image.get(name)}: "
            "pip would replace the image's package at every job start"
        )
    if container["report"] is not None:
        assert container["report"] == [], f"pip installed {[p['metadata']['name'] for p in container['report']]}"


def _channels(root: Path) -> dict[str, Path]:
    """train / validation / holdout folders of headed CSV (label first), with a learnable signal."""
    rng = np.random.default_rng(7)
    paths = {}
    for name, rows in (("train", 400), ("validation", 150), ("holdout", 150)):
        x = np.column_stack([rng.integers(1, 900, rows), rng.gamma(2.0, 300.0, rows), rng.poisson(0.7, rows)])
        risk = -0.004 * x[:, 1] + 0.9 * x[:, 2] - 0.002 * x[:, 0] + rng.normal(0, 0.7, rows)
        y = (risk > np.quantile(risk, 0.8)).astype(int)
        folder = root / name
        folder.mkdir(parents=True)
        lines = ["churned_30d," + ",".join(FEATURES)] + [f"{label}," + ",".join(f"{v:g}" for v in row)
                                                         for label, row in zip(y, x)]
        if name != "holdout":  # a missing value, left to XGBoost (churn_train's single-feature baseline
            lines[5] = lines[5].rsplit(",", 1)[0] + ","  # on the holdout does not take them: docs/runtimes.md)
        (folder / "part-00000.csv").write_text("\n".join(lines) + "\n")
        paths[name] = folder
    return paths


def _train(venv: dict, code: Path, root: Path, **more_env: str) -> subprocess.CompletedProcess:
    channels = root / "input"
    env = runtime_env(**more_env,
        SM_MODEL_DIR=str(root / "model"), SM_OUTPUT_DATA_DIR=str(root / "output"),
        SM_CHANNEL_TRAIN=str(channels / "train"), SM_CHANNEL_VALIDATION=str(channels / "validation"),
        SM_CHANNEL_HOLDOUT=str(channels / "holdout"), SM_CHECKPOINT_DIR=str(root / "checkpoints"),
        SM_NUM_CPUS="2", SM_FAILURE_FILE=str(root / "failure"), MPLCONFIGDIR=str(root / "mpl"),
    )
    # Script mode: the container runs the entry point from the unpacked bundle with the hyperparameters as arguments.
    return run([venv["venv_python"], code / "churn_train.py", "--num_round", str(ROUNDS), "--max_depth", "3",
                "--eta", "0.3", "--early_stopping_rounds", "0", "--checkpoint_every", "10", "--log_every", "5"],
               timeout=300, cwd=code, env=env)


@pytest.fixture(scope="module")
def trained(venv, container, sourcedir, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("opt-ml")
    _channels(root / "input")
    (root / "checkpoints").mkdir()  # SageMaker creates CheckpointConfig.LocalPath when a job has one
    done = _train(venv, sourcedir, root, TRAINING_JOB_NAME="churn-xgb-20260706-runtime")  # SageMaker sets it
    return {"root": root, "stdout": done.stdout, "stderr": done.stderr}


def test_churn_train_trains_evaluates_and_checkpoints(trained):
    root, stdout = trained["root"], trained["stdout"]
    model = root / "model" / "xgboost-model.json"
    assert model.is_file() and model.stat().st_size > 1000
    assert not (root / "failure").exists()
    report = json.loads((root / "model" / "evaluation.json").read_text())
    assert report["rounds"] == ROUNDS and report["features"] == FEATURES
    assert (report["train_rows"], report["validation_rows"], report["holdout_rows"]) == (400, 150, 150)
    # The metric lines the training request's MetricDefinitions parse, printed by the script itself.
    printed = dict(re.findall(r"^([a-z][a-z0-9_:]+): ([0-9.]+)$", stdout, re.MULTILINE))
    for name in ("validation:auc", "holdout:auc", "holdout:pr_auc", "holdout:logloss", "holdout:brier", "holdout:lift_at_10"):
        assert name in printed, f"no '{name}: <value>' line in the job's output"
        assert float(printed[name]) == pytest.approx(report["metrics"][name], abs=1e-6)
    assert 0.75 < report["metrics"]["holdout:auc"] <= 1.0, report["metrics"]
    assert re.search(r"^\[0\]\tvalidation-logloss:[0-9.]+\tvalidation-auc:[0-9.]+$", stdout, re.MULTILINE)
    # matplotlib 3.4.1 (the image's) drew the model card; checkpoints every 10 rounds, the last two kept.
    assert report["card_plot"] is True and (root / "output" / "model_card.png").stat().st_size > 10_000
    assert sorted(p.name for p in (root / "checkpoints").iterdir()) == ["churn-xgb-000010.ubj", "churn-xgb-000020.ubj"]
    assert len(report["canary"]["rows"]) == 20 and all(0 <= s <= 1 for s in report["canary"]["scores"])


def test_the_job_writes_the_monitoring_baseline_beside_its_evaluation(trained):
    """baseline.json in the job's output (output.tar.gz), computed with the image's numpy 1.19.2 and pandas 1.2.4."""
    import pandas as pd

    baseline = json.loads((trained["root"] / "output" / "baseline.json").read_text())
    assert baseline["format"] == "churn-baseline/1" and baseline["training_job_name"] == "churn-xgb-20260706-runtime"
    assert list(baseline["features"]) == FEATURES and baseline["rows"] == {"train": 400, "holdout": 150}
    train = pd.read_csv(trained["root"] / "input" / "train" / "part-00000.csv")
    for name, entry in baseline["features"].items():
        values = train[name].to_numpy(dtype="float64")
        present = values[~np.isnan(values)]
        assert entry["edges"] == sorted(set(entry["edges"])) and len(entry["counts"]) == len(entry["edges"]) + 1
        assert (entry["rows"], entry["missing"]) == (400, 400 - present.size)
        # The bin rule, applied here by numpy 2 to the stored edges, gives the counts the job stored.
        recount = np.bincount(np.searchsorted(entry["edges"], present, side="left"), minlength=len(entry["counts"]))
        assert entry["counts"] == recount.tolist()
        if np.unique(present).size <= 20:
            assert entry["edges"] == np.unique(present).tolist() and entry["counts"][-1] == 0
        else:
            assert entry["edges"] == pytest.approx(np.quantile(present, np.arange(1, 10) / 10).tolist(), rel=1e-12)
    assert baseline["features"]["tickets_30d"]["missing"] == 1  # the train channel's missing value
    score = baseline["score"]
    assert sum(score["counts"]) == score["rows"] == 150 and score["missing"] == 0 and 0 < score["mean"] < 1
    assert score["edges"] == sorted(set(score["edges"])) and 1 < len(score["edges"]) <= 9
    assert all(0 <= e <= 1 for e in score["edges"])


def test_a_restarted_job_resumes_from_its_checkpoint(venv, sourcedir, trained, tmp_path):
    """A spot restart: the same checkpoint folder, so the job loads the newest checkpoint and trains no round again."""
    root = tmp_path / "restart"
    shutil.copytree(trained["root"] / "input", root / "input")
    shutil.copytree(trained["root"] / "checkpoints", root / "checkpoints")
    done = _train(venv, sourcedir, root)
    assert f"resumed_from_round: {ROUNDS}" in done.stdout and "rounds_trained_this_attempt: 0" in done.stdout
    first = json.loads((trained["root"] / "model" / "evaluation.json").read_text())
    again = json.loads((root / "model" / "evaluation.json").read_text())
    assert again["metrics"] == pytest.approx(first["metrics"])


def test_the_champion_model_is_scored_on_the_same_holdout(venv, sourcedir, trained, tmp_path):
    """The quality gate's input: the approved model (a model.tar.gz in the champion channel) on the same holdout."""
    root = tmp_path / "challenger"
    shutil.copytree(trained["root"] / "input", root / "input")
    (root / "checkpoints").mkdir()  # the same checkpoint intervals as the champion's job: the same samplers
    champion = root / "input" / "champion"
    champion.mkdir()
    with tarfile.open(champion / "model.tar.gz", "w:gz") as archive:  # what SageMaker makes of SM_MODEL_DIR
        for name in ("xgboost-model.json", "evaluation.json"):
            archive.add(trained["root"] / "model" / name, arcname=name)
    _train(venv, sourcedir, root, SM_CHANNEL_CHAMPION=str(champion))
    metrics = json.loads((root / "model" / "evaluation.json").read_text())["metrics"]
    # The same data and seed: the challenger is the champion again, so their figures agree.
    for name in ("auc", "pr_auc", "logloss", "brier", "lift_at_10"):
        assert metrics[f"champion:holdout:{name}"] == pytest.approx(metrics[f"holdout:{name}"], abs=1e-9)


DRIVER = '''
import json, sys
import inference

model_dir, requests = sys.argv[1], json.load(open(sys.argv[2]))
model = inference.model_fn(model_dir)  # as the container calls it, with the unpacked model.tar.gz folder
answers = []
for request in requests:
    try:
        data = inference.input_fn(request["body"].encode("utf-8"), request["content_type"])
        prediction = inference.predict_fn(data, model)
        body, media = inference.output_fn(prediction, inference.response_type(request["accept"], request["content_type"]))
        answers.append({"status": 200, "body": body, "media": media})
    except inference.InferenceError as err:
        answers.append({"status": err.status, "body": str(err)})
print(json.dumps(answers))
'''


def test_the_inference_handlers_score_csv_and_json_with_the_trained_model(venv, sourcedir, trained, tmp_path):
    canary = json.loads((trained["root"] / "model" / "evaluation.json").read_text())["canary"]
    rows, expected = canary["rows"], canary["scores"]

    def csv_value(v):
        return "" if v is None else repr(v)

    requests = [
        {"content_type": "text/csv", "accept": "text/csv",
         "body": "".join(",".join(csv_value(v) for v in row) + "\n" for row in rows)},
        {"content_type": "text/csv; charset=utf-8", "accept": "application/json",
         "body": "".join(f"C{i:03d}," + ",".join(csv_value(v) for v in row) + "\n" for i, row in enumerate(rows))},
        {"content_type": "application/json", "accept": "application/json",
         "body": json.dumps({"instances": [{"id": f"C{i:03d}", "features": row} for i, row in enumerate(rows)]})},
        {"content_type": "application/json", "accept": "*/*",
         "body": json.dumps({"instances": [dict(zip(canary["features"], row), id=i) for i, row in enumerate(rows)]})},
        {"content_type": "application/jsonlines", "accept": "application/jsonlines",
         "body": "".join(json.dumps(row) + "\n" for row in rows)},
        {"content_type": "text/csv", "accept": "text/csv", "body": "1.0,2.0\n"},
        {"content_type": "text/csv", "accept": "text/csv", "body": "1.0,inf,3\n"},
        {"content_type": "application/x-protobuf", "accept": "text/csv", "body": "1,2,3"},
    ]
    (tmp_path / "requests.json").write_text(json.dumps(requests))
    (tmp_path / "driver.py").write_text(DRIVER)
    # The container imports the handlers from the unpacked bundle (/opt/ml/code on sys.path).
    done = run([venv["venv_python"], tmp_path / "driver.py", trained["root"] / "model", tmp_path / "requests.json"],
               timeout=120, cwd=sourcedir, env=runtime_env(PYTHONPATH=str(sourcedir)))
    plain, csv_ids, as_json, named, lines, short, infinite, protobuf = json.loads(done.stdout)

    assert plain["status"] == 200 and plain["media"] == "text/csv"
    scores = [float(s) for s in plain["body"].splitlines()]
    assert scores == pytest.approx(expected, abs=1e-6)  # the very scores the training job computed
    assert all(0.0 <= s <= 1.0 for s in scores) and len(set(scores)) > 5
    for answer in (csv_ids, as_json):
        predictions = json.loads(answer["body"])["predictions"]
        assert [p["id"] for p in predictions] == [f"C{i:03d}" for i in range(len(rows))]
        assert [p["score"] for p in predictions] == pytest.approx(expected, abs=1e-6)
    assert named["media"] == "application/json"
    assert [p["score"] for p in json.loads(named["body"])["predictions"]] == pytest.approx(expected, abs=1e-6)
    assert [json.loads(line)["score"] for line in lines["body"].splitlines()] == pytest.approx(expected, abs=1e-6)
    assert short["status"] == 400 and "needs 3 features" in short["body"]
    assert infinite["status"] == 400 and "infinite" in infinite["body"]
    assert protobuf["status"] == 415


def test_the_handlers_unit_tests_pass_under_the_runtime(venv, sourcedir, tmp_path):
    """tests/unit/test_inference.py, test_train.py and test_baseline.py (edge cases, hypothesis) with the image's
    pandas, numpy and xgboost."""
    if not venv.get("check_tools_dir"):
        pytest.skip("infra/runtimes.toml gives this runtime no check_tools")
    for name in ("test_inference.py", "test_train.py", "test_baseline.py"):
        shutil.copy(REPO / "tests" / "unit" / name, tmp_path / name)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # not the repository's configuration (plugins, paths)
    done = subprocess.run(
        [venv["venv_python"], "-m", "pytest", "-q", "-p", "no:cacheprovider", "--noconftest", "-x", str(tmp_path)],
        check=False, capture_output=True, text=True, timeout=600, cwd=tmp_path,
        env=runtime_env(PYTHONPATH=f"{sourcedir}:{venv['check_tools_dir']}", HYPOTHESIS_STORAGE_DIRECTORY=str(tmp_path / "hyp"),
                        MPLCONFIGDIR=str(tmp_path / "mpl")),
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert re.search(r"\b\d+ passed\b", done.stdout) and " failed" not in done.stdout
