"""The package's floors: a module imports only from its own floor or lower ones (``medseg_dropclass/__init__.py``
names them). Function-level (lazy) imports count too: a lazy import of a higher floor is still a dependency."""

import ast
import pathlib

import pytest

import medseg_dropclass

FLOORS = ["validation", "dropclass", "networks", "evaluation", "data", "engine", "study", "apps"]
PACKAGE = pathlib.Path(medseg_dropclass.__file__).parent


def _floor(module: str) -> int:
    """The floor of ``medseg_dropclass.<top>...`` (the package root itself: its version, floor 0)."""
    parts = module.split(".")
    if parts == ["medseg_dropclass"]:
        return 0
    if parts[1] not in FLOORS:
        raise AssertionError(f"{module}: not in a floor ({FLOORS}); a new top-level module needs a place in the order")
    return FLOORS.index(parts[1])


def _imports(path: pathlib.Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "medseg_dropclass":
            yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "medseg_dropclass":
                    yield node.lineno, alias.name


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(relative.parts)
        if name in ("medseg_dropclass.__init__", "medseg_dropclass.__main__") or ".bundles" in name:
            continue  # the root re-exports the method's public names; __main__ is the top of everything
        yield name, path


def test_the_root_holds_only_floors():
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__", "validation"))
    assert loose == [], f"modules at the package root besides validation: {loose} (each belongs to a floor)"


@pytest.mark.parametrize("name,path", list(_modules()), ids=lambda value: value if isinstance(value, str) else "")
def test_no_module_imports_a_higher_floor(name, path):
    own = _floor(name.removesuffix(".__init__"))
    upward = [f"{path.name}:{line} imports {module}" for line, module in _imports(path) if _floor(module) > own]
    assert upward == [], f"{name} (floor {FLOORS[own]}) reaches up: {upward}"


def test_the_check_can_fail(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from medseg_dropclass.study.compare import run_study\n")
    assert [(line, module) for line, module in _imports(bad)] == [(2, "medseg_dropclass.study.compare")]
    assert _floor("medseg_dropclass.study.compare") > _floor("medseg_dropclass.data.transforms")
