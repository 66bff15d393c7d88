"""What ships to MWAA does not branch on the target (issue 25): plugins/ and dags/ name ML_TARGET,
``target()``/``.target`` or ``is_local`` nowhere but in ``churn_ml/settings.py``, which defines them.
The AWS connection decides where each request goes; a branch would be a code path that runs on one
target only."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFINES = REPO / "plugins" / "churn_ml" / "settings.py"
NAMES = ("target", "is_local")


def branches(source: str, name: str) -> list[str]:
    """Where ``source`` reads the target: ``x.target``, ``target``/``is_local`` loaded or imported, 'ML_TARGET'."""
    found = []
    for node in ast.walk(ast.parse(source, filename=name)):
        if isinstance(node, ast.Attribute) and node.attr in NAMES:
            found.append(f"{name}:{node.lineno} .{node.attr}")
        elif isinstance(node, ast.Name) and node.id in NAMES and isinstance(node.ctx, ast.Load):
            found.append(f"{name}:{node.lineno} {node.id}")
        elif isinstance(node, ast.ImportFrom) and any(a.name in NAMES for a in node.names):
            found.append(f"{name}:{node.lineno} import")
        elif isinstance(node, ast.Constant) and node.value == "ML_TARGET":
            found.append(f"{name}:{node.lineno} 'ML_TARGET'")
    return found


def test_nothing_that_ships_to_mwaa_branches_on_the_target():
    files = [p for folder in ("plugins", "dags") for p in sorted((REPO / folder).rglob("*.py")) if p != DEFINES]
    assert len(files) > 20
    found = [b for path in files for b in branches(path.read_text(), str(path.relative_to(REPO)))]
    assert not found, f"a branch on the target outside plugins/churn_ml/settings.py: {found}"


def test_each_way_of_reading_the_target_is_found():
    for source in ("from churn_ml import settings as cfg\nif cfg.target() == 'local':\n    pass\n",
                   "from churn_ml.settings import target\n",
                   "import os\nlocal = os.environ.get('ML_TARGET') == 'local'\n",
                   "x = '{{ churn.target }}' if settings.target else None\n"):
        assert branches(source, "probe.py"), source
