"""The floor plan of `mcnn_keras/` (docs/ARCHITECTURE.md), read from the imports.

Every import between the package's own modules is read from the source (also
those inside functions): a module imports only from its own floor and the
floors below it, sub-packages and modules form no cycle, and every imported
name is taken from the module that defines it (one address per name).
"""

import ast
import os
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "mcnn_keras"
# The floors, bottom first: the order of the data flow.
FLOORS = ["core", "io", "data", "model", "export", "train", "serve", "profiling",
          "experiments", "cli"]


def _modules():
    """{dotted module name: path} of every module of the package."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(path):
    """(line, imported module, names or None) of each import of the package's own."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] == "mcnn_keras":
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                if child in MODULES:
                    yield node.lineno, child, None
                else:
                    yield node.lineno, node.module, alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "mcnn_keras":
                    yield node.lineno, alias.name, None


def _floor(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _edges():
    """(importer, imported module, line) of every import between own modules."""
    return [(module, target, line) for module, path in MODULES.items()
            for line, target, _ in _imports(path) if target != "mcnn_keras"]


def test_every_module_lives_on_a_floor():
    loose = [m for m in MODULES if m != "mcnn_keras" and _floor(m) not in FLOORS]
    assert not loose, f"modules outside the floors {FLOORS}: {loose}"


def test_modules_import_only_their_floor_and_the_floors_below():
    upward = [f"{MODULES[m].relative_to(PACKAGE.parent)}:{line} imports {t}"
              for m, t, line in _edges()
              if _floor(m) and _floor(t) and FLOORS.index(_floor(t)) > FLOORS.index(_floor(m))]
    assert not upward, "imports from a higher floor:\n" + "\n".join(upward)


def _find_cycle(graph):
    """A list of nodes forming a cycle in {node: set(nodes)}, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def _related(a, b):
    """A package and one of its own sub-packages (a parent's modules may use
    its children, and a child the parent's modules: not a folder cycle)."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def _graph(key):
    graph = {}
    for module, target, _ in _edges():
        a, b = key(module), key(target)
        if a and b and not _related(a, b):
            graph.setdefault(a, set()).add(b)
    return graph


def _package_at(depth):
    """The sub-package of a module `depth` levels below mcnn_keras (None above)."""
    def key(module):
        parts = module.split(".")
        if MODULES[module].name != "__init__.py":
            parts = parts[:-1]  # a module belongs to its package
        return ".".join(parts[:depth + 1]) if len(parts) > depth else None
    return key


def test_no_module_imports_itself_in_a_circle():
    cycle = _find_cycle(_graph(lambda m: m))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_no_package_cycle(depth):
    cycle = _find_cycle(_graph(_package_at(depth)))
    assert cycle is None, "package cycle: " + " -> ".join(cycle)


def _defined(path):
    """Names a module defines at its top level (not those it imports)."""
    names = set()
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for sub in ast.walk(target):
                    if isinstance(sub, ast.Name):
                        names.add(sub.id)
        elif isinstance(node, (ast.If, ast.Try)):
            for sub in ast.walk(node):
                if isinstance(sub, (ast.FunctionDef, ast.ClassDef)):
                    names.add(sub.name)
                elif isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                    names.add(sub.id)
    return names


def _own_imported(path):
    """{name: defining module} of names a module imports from the package's own."""
    return {name: module for _, module, name in _imports(path) if name}


def _users():
    """Every file that imports from the package: the package, tests, tools."""
    root = PACKAGE.parent
    for folder in ("mcnn_keras", "tests", "tools"):
        yield from (root / folder).rglob("*.py")


def test_every_name_is_imported_from_the_module_that_defines_it():
    # The package's own public entry points (README): `mcnn_keras.build_model`.
    public = {("mcnn_keras", "build_model"), ("mcnn_keras", "model_cost"),
              ("mcnn_keras", "__version__")}
    second_addresses = []
    for path in _users():
        for line, module, name in _imports(path):
            if name is None or (module, name) in public or module not in MODULES:
                continue
            if name not in _defined(MODULES[module]):
                second_addresses.append(f"{path.relative_to(PACKAGE.parent)}:{line} "
                                        f"takes {name} from {module}")
    assert not second_addresses, "re-exported names:\n" + "\n".join(second_addresses)


def _module_aliases(tree):
    """{local name: own module} of `from mcnn_keras.x import module [as name]`."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                if child in MODULES:
                    aliases[alias.asname or alias.name] = child
    return aliases


def test_module_attributes_are_the_modules_own():
    # `convert.ConvertOptions` where `convert` only imported it is a second address.
    second_addresses = []
    for path in _users():
        tree = ast.parse(path.read_text(), str(path))
        aliases = _module_aliases(tree)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases):
                module = aliases[node.value.id]
                if MODULES[module].name == "__init__.py" or node.attr.startswith("__"):
                    continue
                if node.attr in _own_imported(MODULES[module]):
                    second_addresses.append(f"{path.relative_to(PACKAGE.parent)}:"
                                            f"{node.lineno} {node.value.id}.{node.attr} "
                                            f"is imported there, not defined")
    assert not second_addresses, "re-exported names:\n" + "\n".join(sorted(set(second_addresses)))


def test_every_package_says_what_it_holds_and_may_import():
    missing = [str(p.relative_to(PACKAGE.parent)) for m, p in MODULES.items()
               if p.name == "__init__.py" and m != "mcnn_keras"
               and len((ast.get_docstring(ast.parse(p.read_text())) or "").split()) < 15]
    assert not missing, f"packages without a docstring paragraph: {missing}"


def test_the_rule_catches_an_upward_import(tmp_path):
    # The checker itself: an upward import and a cycle are found.
    assert _find_cycle({"a": {"b"}, "b": {"a"}}) in (["a", "b", "a"], ["b", "a", "b"])
    assert _find_cycle({"a": {"b"}, "b": set()}) is None
    assert FLOORS.index(_floor("mcnn_keras.cli.train")) > FLOORS.index(_floor("mcnn_keras.io.atomic"))
    assert os.path.basename(str(MODULES["mcnn_keras.io.atomic"])) == "atomic.py"


# Rooms of a readable size: modules and functions (tests and the synthetic cell
# renderer, one drawing recipe per phenotype, excepted).
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 60
LONG_FUNCTIONS_ALLOWED = {("mcnn_keras.data.synthetic.cells", "draw_cell")}


def test_no_module_above_400_lines():
    long = {m: n for m, p in MODULES.items()
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_above_60_lines():
    long = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                    and (module, node.name) not in LONG_FUNCTIONS_ALLOWED:
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{module}.{node.name}: {lines} lines")
    assert not long, "functions over 60 lines:\n" + "\n".join(long)
