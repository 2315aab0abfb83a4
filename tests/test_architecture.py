"""The layout is the architecture: the library never imports the application layer (the CLI and
the flows) or Prefect, and the stages depend only on media, tables, config, models and below."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "animate_anyone"
APP = {"animate_anyone.cli"}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def _modules() -> dict[str, set[str]]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        out[name] = _imports(path)
    return out


def test_the_library_never_imports_the_application_layer_or_prefect():
    bad = {m: sorted(i for i in imps if i.split(".")[0] in ("prefect", "flows") or i in APP)
           for m, imps in _modules().items() if m not in APP}
    assert not {m: v for m, v in bad.items() if v}


def test_lower_layers_do_not_import_upwards():
    # config, files, errors, ids, media, tables, models: the floor everything stands on
    floor = ("animate_anyone.config", "animate_anyone.files", "animate_anyone.errors", "animate_anyone.ids",
             "animate_anyone.media", "animate_anyone.tables", "animate_anyone.models")
    upper = ("animate_anyone.ingest", "animate_anyone.pose", "animate_anyone.animate", "animate_anyone.pipeline",
             "animate_anyone.synthetic", "animate_anyone.training", "animate_anyone.cli")
    bad = {}
    for m, imps in _modules().items():
        if m.startswith(floor):
            up = sorted(i for i in imps if i.startswith(upper))
            if up:
                bad[m] = up
    assert not bad
