"""The import rule of ARCHITECTURE.md, checked: layers point one way, no two packages import each
other, no module reaches for another module's private names, and every package imports on its own.

Imports are read with ``ast`` from every module of the gateway package, those inside functions and
``if TYPE_CHECKING:`` blocks included: a cycle dodged by a late import is still a cycle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "gateway"

# The rank of each top-level part of the gateway package (ARCHITECTURE.md, "Layers"). A module may
# import its own part, and parts of a strictly lower rank; parts of one rank never import each other.
RANKS: dict[str, int] = {
    # 0 core
    "background": 0, "clock": 0, "durations": 0, "errors": 0,
    "config": 1, "policy": 1,
    # 1 state
    "store": 2,
    "observe": 3,
    # 2 edges
    "http": 4,
    # 3 features
    "auth": 5, "proxy": 5,
    "services": 6,
    "web": 7,
    # 4 wiring
    "asgi": 8,
    "app": 9,
    "server": 10,
    "cli": 11,
    "__main__": 12,
}


@dataclass(frozen=True, slots=True)
class Import:
    module: str  # the importing module, dotted
    line: int
    target: str  # the imported module, dotted
    names: tuple[str, ...]  # the names taken from it ("from x import a, b"), else ()


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    found: list[Import] = []
    for node in ast.walk(tree):  # every level: function bodies and TYPE_CHECKING blocks included
        if isinstance(node, ast.Import):
            found.extend(Import(name, node.lineno, alias.name, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.append(Import(name, node.lineno, target, tuple(alias.name for alias in node.names)))
    return found


def part(dotted: str) -> str | None:
    """The top-level part of the gateway a dotted module name belongs to, or None outside it."""
    pieces = dotted.split(".")
    if pieces[0] != "gateway" or len(pieces) < 2:
        return None
    return pieces[1]



ALL_MODULES = modules()
ALL_IMPORTS = [imp for name, path in ALL_MODULES.items() for imp in imports_of(name, path)]


def test_every_part_has_a_rank() -> None:
    unranked = sorted({p for name in ALL_MODULES if (p := part(name)) is not None and p not in RANKS})
    assert unranked == [], f"give these a layer in ARCHITECTURE.md and RANKS: {unranked}"


def test_no_part_imports_a_higher_or_equal_layer() -> None:
    wrong = []
    for imp in ALL_IMPORTS:
        source, target = part(imp.module), part(imp.target)
        if source is None or target is None or source == target:
            continue
        if target not in RANKS or source not in RANKS:
            continue  # reported by test_every_part_has_a_rank
        if RANKS[target] >= RANKS[source]:
            wrong.append(f"{imp.module}:{imp.line} imports {imp.target} ({source} {RANKS[source]} -> {target} {RANKS[target]})")
    assert wrong == []


def test_no_two_parts_import_each_other() -> None:
    edges = {(part(i.module), part(i.target)) for i in ALL_IMPORTS}
    edges = {(a, b) for a, b in edges if a is not None and b is not None and a != b}
    mutual = sorted({tuple(sorted((a, b))) for a, b in edges if (b, a) in edges})
    assert mutual == []


def test_no_private_name_is_imported_from_another_module() -> None:
    wrong = [
        f"{imp.module}:{imp.line} takes {name} from {imp.target}"
        for imp in ALL_IMPORTS
        if part(imp.target) is not None and imp.target != imp.module
        for name in imp.names
        if name.startswith("_") and not name.startswith("__")
    ]
    wrong += [f"{imp.module}:{imp.line} imports {imp.target}" for imp in ALL_IMPORTS
              if any(piece.startswith("_") and not piece.startswith("__") for piece in imp.target.split("."))]
    assert wrong == []


# Underscored by their libraries but documented as their API.
DOCUMENTED_PRIVATE = frozenset({"_get_current_object"})  # werkzeug's LocalProxy (quart_auth.current_user)


def test_no_private_attribute_of_another_object_is_used() -> None:
    """``gateway._identify(...)`` from another module is a private name too; ``self._x`` is not."""
    wrong = []
    for name, path in ALL_MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Attribute) or node.attr in DOCUMENTED_PRIVATE:
                continue
            own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if node.attr.startswith("_") and not node.attr.startswith("__") and not own:
                wrong.append(f"{name}:{node.lineno} uses .{node.attr}")
    assert wrong == []


def test_every_package_declares_its_public_names() -> None:
    missing = [name for name, path in ALL_MODULES.items()
               if path.name == "__init__.py" and name != "gateway" and "__all__" not in path.read_text(encoding="utf-8")]
    assert missing == []


PARTS = sorted({name for name in ALL_MODULES if name.count(".") == 1 and not name.endswith("__main__")})


@pytest.mark.parametrize("module", PARTS)
def test_each_part_imports_alone(module: str) -> None:
    """A fresh interpreter imports the part first: an import cycle fails here whatever else came first."""
    result = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
