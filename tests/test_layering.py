"""The layering of house-style.md, enforced by walking every import (AST): imports point down.

layer 0 errors, models, urls, formats/*, units, events    stdlib (+ lazy kombu.utils.url, msgpack, yaml)
layer 1 backends/*                                        layer 0, SDKs (the only place boto3/kombu/redis live)
layer 2 operations, output, config                        layers 0, the backend registry and protocols
layer 3 commands/*                                        layers 0-2 and typer
layer 4 cli, __main__, devtools, demo                     everything
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "taskctl"
LAYER0 = {"errors", "models", "urls", "formats", "units", "events"}
LAYER4 = {"cli", "__main__", "devtools", "demo", "demo_app"}
SDKS = {"boto3", "botocore", "kombu", "amqp", "redis", "vine"}
LAZY_OK_LAYER0 = {"kombu.utils.url", "msgpack", "yaml", "zlib", "bz2", "lzma", "gzip", "brotli", "zstandard"}


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(mod: str) -> int:
    parts = mod.split(".")
    if parts[0] != "taskctl" or len(parts) == 1:
        return 0
    head = parts[1]
    if head in LAYER0:
        return 0
    if head == "backends":
        # the registry and the protocols are the public face of layer 1 for layer 2
        return 1
    if head == "commands":
        return 3
    if head in LAYER4:
        return 4
    return 2


def imports(path: Path) -> list[tuple[str, bool, int]]:
    """(module, inside a function or TYPE_CHECKING block, line) for every import."""
    tree = ast.parse(path.read_text())
    out: list[tuple[str, bool, int]] = []
    pkg = module_name(path)
    is_pkg = path.name == "__init__.py"

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for c in child.body:
                    if isinstance(c, ast.Import | ast.ImportFrom):
                        continue  # typing-only imports cost nothing at run time
                    visit(c, nested)
                for c in child.orelse:
                    visit(c, nested)
                continue
            if isinstance(child, ast.Import):
                out.extend((a.name, inner, child.lineno) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = pkg.split(".") if is_pkg else pkg.split(".")[:-1]
                    base = base[: len(base) - (child.level - 1)] if child.level > 1 else base
                    mod = ".".join([*base, child.module] if child.module else base)
                else:
                    mod = child.module or ""
                out.append((mod, inner, child.lineno))
                if mod in ("taskctl", "taskctl.backends", "taskctl.formats", "taskctl.commands"):
                    folder = PKG.parent.joinpath(*mod.split("."))
                    out.extend(
                        (f"{mod}.{a.name}", inner, child.lineno)
                        for a in child.names
                        if (folder / f"{a.name}.py").is_file() or (folder / a.name).is_dir()
                    )
            visit(child, inner)

    visit(tree, False)
    return out


FILES = sorted(p for p in PKG.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PKG)))
def test_imports_point_down(path: Path) -> None:
    me = module_name(path)
    my_layer = layer_of(me)
    problems = []
    for mod, nested, line in imports(path):
        top = mod.split(".")[0]
        if top == "click":
            problems.append(f"line {line}: imports click (use typer)")
        lazy_ok = my_layer == 0 and nested and mod in LAZY_OK_LAYER0
        if top in SDKS and my_layer != 1 and not lazy_ok and me not in ("taskctl.demo", "taskctl.demo_app"):
            problems.append(f"line {line}: layer {my_layer} imports the SDK {mod}")
        if top in ("rich", "tabulate") and me != "taskctl.output" and my_layer < 4:
            problems.append(f"line {line}: only taskctl.output renders (imports {mod})")
        if top == "typer" and my_layer < 3:
            problems.append(f"line {line}: layer {my_layer} imports typer")
        if top == "celery" and me not in ("taskctl.demo_app", "taskctl.demo"):
            problems.append(f"line {line}: celery is a test/demo dependency only ({mod})")
        if top == "taskctl" and mod != "taskctl":
            target = layer_of(mod)
            if target > my_layer:
                problems.append(f"line {line}: layer {my_layer} imports {mod} (layer {target})")
            if my_layer in (2, 3) and target == 1:
                allowed = {"taskctl.backends", "taskctl.backends.base"}
                if mod not in allowed:
                    problems.append(f"line {line}: layer {my_layer} imports the adapter {mod}; use the registry")
            if my_layer == 0 and target == 0 and mod.split(".")[1] not in LAYER0:
                problems.append(f"line {line}: layer 0 imports {mod}")
    assert not problems, f"{me}:\n" + "\n".join(problems)


def test_help_imports_neither_boto3_nor_kombu() -> None:
    import subprocess
    import sys

    code = (
        "import sys\nfrom taskctl.cli import main\nsys.argv=['taskctl','--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "bad=[m for m in ('boto3','botocore','kombu','redis','celery') if m in sys.modules]\n"
        "print('LOADED', bad, file=sys.stderr)\n"
    )
    for argv in (["--help"], ["table", "--help"], ["result", "--help"], ["queue", "--help"]):
        c = code.replace("['taskctl','--help']", repr(["taskctl", *argv]))
        res = subprocess.run([sys.executable, "-c", c], capture_output=True, text=True, timeout=60)
        assert "LOADED []" in res.stderr, (argv, res.stderr[-500:])
