"""The project's import graph has no cycle, and deploy's layers import only downwards.

Every .py file of the project's packages is parsed with `ast`; every `import` and `from ...
import` counts, at module level and inside functions alike (a function-level import is still a
dependency, only a late one). Relative imports are resolved against the importing module's
package; `from pkg import name` is an edge to the module `pkg.name` when there is one, else to
`pkg`. In tests, a bare name that is no project module is looked up beside the importing file
(pytest puts a test's folder on sys.path: `from deploy_support import ...`). Importing a submodule
is not counted as importing its parent packages, so a package's `__init__` may re-export its
modules.

deploy's layers, from the top:
  deploy.cli (and deploy.__main__)      registers the commands
  deploy.commands.*                     one module per command; among commands only the shared
                                        deploy.commands.options is imported
  domain modules (deploy.spec, .images, .launch, .redeploy, .autoscaling.*, .alarms, ...)
  deploy.context                        the session, the state and the log of one run
  deploy.aws.*                          AWS plumbing: imports only deploy.aws.*, deploy.config,
                                        deploy.errors, deploy.names and deploy.state
  deploy.config, deploy.errors, deploy.names, deploy.state
Nothing but deploy.cli and deploy.__main__ imports deploy.cli; nothing outside deploy.commands and
deploy.cli imports deploy.commands.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("deploy", "serve", "export", "bench", "demo", "container", "reliability", "tests")
AWS_MAY_IMPORT = ("deploy.config", "deploy.errors", "deploy.names", "deploy.state")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


def imported_names(path: Path, name: str) -> list[str]:
    """Every dotted name the file imports (`from a import b` gives `a.b`)."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".") if package else []
                anchor = anchor[: len(anchor) - (node.level - 1)] if node.level > 1 else anchor
                base = ".".join([*anchor, *([base] if base else [])])
            names += [f"{base}.{alias.name}" if base else alias.name for alias in node.names]
    return names


def resolve(imported: str, importer: str, modules: dict[str, Path]) -> str | None:
    """The project module an imported name means, or None (standard library, third party)."""
    if imported in modules:
        return imported
    beside = importer.rpartition(".")[0]
    if under(importer, "tests") and f"{beside}.{imported}" in modules:
        return f"{beside}.{imported}"  # pytest put the test's folder on sys.path
    return None


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    edges: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for imported in imported_names(path, name):
            target = resolve(imported, name, modules)
            if target is None and "." in imported:
                # `from pkg import function`: the edge goes to pkg
                target = resolve(imported.rpartition(".")[0], name, modules)
            if target is not None and target != name:
                edges[name].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def under(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_no_import_cycle():
    found = cycles(graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_deploy_imports_only_downwards():
    wrong = []
    for module, targets in sorted(graph().items()):
        if not under(module, "deploy"):
            continue
        for target in sorted(targets):
            if target == "deploy.cli" and module not in ("deploy.__main__",):
                wrong.append(f"{module} -> {target}: only the entry point imports the CLI")
            elif under(target, "deploy.commands") and not under(
                module, "deploy.cli", "deploy.commands"
            ):
                wrong.append(f"{module} -> {target}: the commands sit on top")
            elif (
                under(module, "deploy.commands")
                and under(target, "deploy.commands")
                and target not in ("deploy.commands", "deploy.commands.options")
            ):
                wrong.append(f"{module} -> {target}: a command imports no other command")
            elif under(module, "deploy.aws") and not under(target, "deploy.aws", *AWS_MAY_IMPORT):
                wrong.append(f"{module} -> {target}: deploy.aws imports no module above it")
    assert not wrong, "\n".join(wrong)


def test_serve_never_reaches_an_export_only_package():
    """NNCF (and torch) are export's: requirements-export.txt, never the serving image. No serve
    module imports them, directly or through a project module it imports (function level too)."""
    edges, modules = graph(), project_modules()
    reached, stack = set(), [m for m in modules if under(m, "serve")]
    while stack:
        module = stack.pop()
        if module not in reached:
            reached.add(module)
            stack += edges[module]
    wrong = sorted(
        f"{module} imports {name}"
        for module in reached
        for name in imported_names(modules[module], module)
        if under(name, "nncf", "torch")
    )
    assert not wrong, "\n".join(wrong)
    assert "export.quantize_nncf" not in reached


def test_the_graph_sees_function_level_and_relative_imports(tmp_path, monkeypatch):
    """The checker itself: a cycle closed by a function-level import is found."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from . import b\n")
    (package / "b.py").write_text("def late():\n    from pkg.a import thing\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGES", ("pkg",))
    assert cycles(graph()) == [["pkg.a", "pkg.b"]]
