"""The package's layering, read from the source: imports only go down the layers of
docs/architecture.md, there is no import cycle, remote-code files import only each other and
transformers/torch/numpy, the command line starts without torch, and no module is oversized."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "brain_jepa_hf"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
MAX_LINES = 600
LINE_LIMIT_EXCEPTIONS = {"modeling_brain_jepa"}  # one flat file per model, as transformers keeps it
REMOTE_CODE = {
    "configuration_brain_jepa",
    "modeling_brain_jepa",
    "feature_extraction_brain_jepa",
    "pipeline_brain_jepa",
}
REMOTE_CODE_IMPORTS = {"transformers", "torch", "numpy", "__future__"}


def layers() -> dict[str, int]:
    """Module -> layer number, from the table in docs/architecture.md (`| L<n> <name> | `mod`, ... |`)."""
    table = {}
    for line in ARCHITECTURE.read_text().splitlines():
        match = re.match(r"\|\s*L(\d+)\b[^|]*\|([^|]*)\|", line)
        if match:
            for module in re.findall(r"`([\w.]+)`", match.group(2)):
                table[module] = int(match.group(1))
    return table


def allowed_within_layer() -> set[tuple[str, str]]:
    """Same-layer imports docs/architecture.md allows, one per line: "- `a` -> `b`: why"."""
    pairs = set()
    for line in ARCHITECTURE.read_text().splitlines():
        match = re.match(r"\s*-\s*`([\w.]+)`\s*->\s*`([\w.]+)`", line)
        if match:
            pairs.add((match.group(1), match.group(2)))
    return pairs


def package_modules() -> dict[str, Path]:
    """`brain_jepa_hf` module names relative to the package (`commands.embed` style) -> file."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        if name.endswith("__init__"):
            name = name[: -len(".__init__")] if "." in name else "__init__"
        modules[name] = path
    return modules


def imports_of(name: str, path: Path) -> set[str]:
    """Package-internal modules imported anywhere in the file (in functions too)."""
    package = name.rsplit(".", 1)[0] if "." in name else ""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:  # `from . import x`
                    found.update(".".join(base + [alias.name]) for alias in node.names)
                    continue
            elif node.module and node.module.startswith("brain_jepa_hf."):
                target = node.module[len("brain_jepa_hf.") :]
            elif node.module == "brain_jepa_hf":
                target = "__init__"
            else:
                continue
            found.add(target or "__init__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("brain_jepa_hf."):
                    found.add(alias.name[len("brain_jepa_hf.") :])
    return found


def top_level_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names.add(node.module.split(".")[0])
    return names


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = package_modules()
    return {name: {dep for dep in imports_of(name, path) if dep != name} for name, path in modules.items()}


def test_every_module_has_a_layer(graph):
    table = layers()
    missing = sorted(set(graph) - set(table) - {"__init__", "__main__"})
    assert not missing, f"modules missing from docs/architecture.md's layer table: {missing}"
    stale = sorted(set(table) - set(graph))
    assert not stale, f"docs/architecture.md names modules that do not exist: {stale}"


def test_imports_only_go_down_the_layers(graph):
    table, allowed = layers(), allowed_within_layer()
    wrong = [
        f"{module} (L{table[module]}) imports {dep} (L{table[dep]})"
        for module, deps in sorted(graph.items())
        if module in table
        for dep in sorted(deps)
        if dep in table
        and (table[dep] > table[module] or (table[dep] == table[module] and (module, dep) not in allowed))
    ]
    assert not wrong, "imports that go up a layer, or sideways without a listed reason:\n" + "\n".join(wrong)


def test_no_import_cycle(graph):
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for dep in graph.get(node, ()):
            if state.get(dep) == "open":
                cycles.append(" -> ".join(stack[stack.index(dep) :] + [dep]))
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state and module != "__init__":
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_remote_code_files_import_only_each_other_and_their_three_libraries(graph):
    for module in REMOTE_CODE:
        path = PACKAGE / f"{module}.py"
        outside = top_level_imports(path) - REMOTE_CODE_IMPORTS - set(sys.stdlib_module_names)
        assert not outside, f"{module}.py imports {sorted(outside)}: the Hub copy must run without them"
        assert graph[module] <= REMOTE_CODE, f"{module}.py imports {sorted(graph[module] - REMOTE_CODE)}"


def test_no_module_is_oversized():
    oversized = {
        name: len(path.read_text().splitlines())
        for name, path in package_modules().items()
        if name not in LINE_LIMIT_EXCEPTIONS and len(path.read_text().splitlines()) > MAX_LINES
    }
    assert not oversized, f"modules over {MAX_LINES} lines: {oversized}"


def test_the_package_never_imports_its_command_line():
    """`brain_jepa_cli` sits above the package; only `python -m brain_jepa_hf` hands over to it."""
    offenders = [
        name
        for name, path in package_modules().items()
        if name != "__main__" and "brain_jepa_cli" in top_level_imports(path)
    ]
    assert not offenders, f"modules importing brain_jepa_cli: {offenders}"


def test_the_command_line_imports_the_package_by_its_name():
    """`brain_jepa_cli` is its own top-level package: a relative import may reach only its own modules."""
    wrong = []
    for path in (ROOT / "brain_jepa_cli").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level > 1:
                wrong.append(f"{path.name}:{node.lineno} from {'.' * node.level}{node.module or ''}")
    assert not wrong, f"relative imports out of brain_jepa_cli: {wrong}"
