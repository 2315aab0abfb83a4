"""The layout is the architecture: the library never imports the application layer (the CLI and
the flows) or Prefect; every room of the house sits on a floor and imports only from its own floor
or below; no two modules import each other, even through others; evaluation meets training at
one function (``training.export.export_model``)."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "animate_anyone"
# bottom floor first; a room is a top-level module or package of animate_anyone
FLOORS = [
    ("errors", "ids", "storage", "files", "provenance", "progress", "devices", "weights", "config"),
    ("media", "tables"),
    ("models", "reference"),
    ("pipeline", "unianimate_pipeline", "pose"),
    ("synthetic", "ingest", "clipstore", "animate"),
    ("training",),
    ("evaluation",),
    ("app", "cli"),  # the application layer: the web page and the command (with flows/, outside the package)
]
EVALUATION_MAY_USE = {"animate_anyone.training.export", "animate_anyone.training.export.export_model"}


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")


def _imports(path: Path) -> set[str]:
    """Every name a module imports, absolute (``from a import b`` gives ``a`` and ``a.b``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def _modules() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}


def _room(name: str) -> str:
    return name.split(".")[1] if name.count(".") >= 1 else name


def _floor(room: str) -> int:
    return next(i for i, rooms in enumerate(FLOORS) if room in rooms)


def test_every_room_is_on_a_floor():
    rooms = {_room(m) for m in _modules() if m != "animate_anyone"}
    assert rooms <= {r for floor in FLOORS for r in floor}, rooms - {r for floor in FLOORS for r in floor}


def test_the_library_never_imports_the_application_layer_or_prefect():
    def app(name: str) -> bool:
        return any(name == f"animate_anyone.{layer}" or name.startswith(f"animate_anyone.{layer}.")
                   for layer in ("app", "cli"))

    bad = {m: sorted(i for i in imps if i.split(".")[0] in ("prefect", "flows") or app(i))
           for m, imps in _modules().items() if not app(m)}
    assert not {m: v for m, v in bad.items() if v}


def test_no_room_imports_a_room_above_it():
    bad = {}
    for m, imps in _modules().items():
        if m == "animate_anyone":
            continue
        here = _floor(_room(m))
        up = sorted(i for i in imps if i.startswith("animate_anyone.") and _floor(_room(i)) > here)
        if up:
            bad[m] = up
    assert not bad


def _module_graph() -> dict[str, set[str]]:
    mods = _modules()

    def target(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    return {m: {t for i in imps if i.startswith("animate_anyone") and (t := target(i)) and t != m
                and not m.startswith(t + ".")}  # a package's own __init__ is not a cycle
            for m, imps in mods.items()}


def test_the_import_graph_has_no_cycle():
    graph, state, cycles = _module_graph(), {}, []

    def visit(m: str, path: list[str]) -> None:
        state[m] = "open"
        for n in sorted(graph.get(m, ())):
            if state.get(n) == "open":
                cycles.append(path[path.index(n):] + [n])
            elif n not in state:
                visit(n, path + [n])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles


def test_evaluation_meets_training_at_one_function():
    used = {i for m, imps in _modules().items() if m.startswith("animate_anyone.evaluation")
            for i in imps if i.startswith("animate_anyone.training")}
    assert used <= EVALUATION_MAY_USE, used - EVALUATION_MAY_USE
