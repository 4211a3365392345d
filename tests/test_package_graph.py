"""The package graph of docs/architecture.md: imports only go down."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Higher levels may import lower ones, never the other way round; packages of one level
# are independent of each other.
LEVELS = {"sdes": 0, "metrics": 0, "networks": 0,
          "models": 1, "datasets": 1,
          "training": 2, "evaluation": 2}  # fmt: skip


def imported_packages(path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module.split(".")[0]


def test_no_import_goes_up_or_sideways():
    bad = []
    for pkg, level in LEVELS.items():
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for top in imported_packages(path):
                if top in LEVELS and top != pkg and LEVELS[top] >= level:
                    bad.append(f"{path.relative_to(ROOT)} imports {top}")
    assert not bad, "\n".join(bad)


def test_the_checker_sees_an_upward_import(tmp_path):
    fake = tmp_path / "mod.py"
    fake.write_text("import os\nfrom evaluation.runner import Settings\nfrom . import x\n")
    assert list(imported_packages(fake)) == ["os", "evaluation"]
