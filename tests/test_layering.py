"""The layering of house-style.md, enforced by walking every import (AST): imports point down.

Type-only imports (``if TYPE_CHECKING:``) and lazy strings (``lazy_module("taskctl.x")``, the registry's
``"taskctl.backends.x:Class"``) are arrows too; a module no entry of LAYERS covers is a failure.

layer 0 errors, models, urls, formats/*, units, events    stdlib (+ lazy kombu.utils.url, msgpack, yaml)
layer 1 backends/*                                        layer 0, SDKs (the only place boto3/kombu/redis live)
layer 2 operations, output, config                        layers 0, the backend registry and protocols
layer 3 commands/*                                        layers 0-2 and typer
layer 4 cli, __main__, devtools, demo                     everything
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "taskctl"

#: every module of taskctl and its layer. An entry covers the module and, should it become a package, every
#: module below it (``taskctl.formats`` covers ``taskctl.formats.result``); a module no entry covers fails
#: test_every_module_has_a_layer. ``taskctl`` itself stands only for the package's ``__init__``.
LAYERS: dict[str, int] = {
    # 0: values and codecs, stdlib only
    "taskctl": 0,
    "taskctl.errors": 0,
    "taskctl.models": 0,
    "taskctl.urls": 0,
    "taskctl.formats": 0,
    "taskctl.units": 0,
    "taskctl.events": 0,
    # 1: adapters; taskctl.backends (the registry) and taskctl.backends.base (the contracts) are the public face
    "taskctl.backends": 1,
    # 2: operations (the library), settings and the renderer
    "taskctl.config": 2,
    "taskctl.output": 2,
    "taskctl.tables": 2,
    "taskctl.results": 2,
    "taskctl.queues": 2,
    "taskctl.tasks": 2,
    "taskctl.revokes": 2,
    "taskctl.rpc": 2,
    "taskctl.transfer": 2,
    "taskctl.workers": 2,
    "taskctl.monitor": 2,
    "taskctl.topview": 2,
    "taskctl.doctor": 2,
    "taskctl.local": 2,
    "taskctl.localserver": 2,
    # 3: one thin module per command group
    "taskctl.commands": 3,
    # 4: entry points and dev-only code
    "taskctl.cli": 4,
    "taskctl.cli_usage": 4,
    "taskctl.__main__": 4,
    "taskctl.devtools": 4,
    "taskctl.demo": 4,
    "taskctl.demo_app": 4,
}
#: what layers 2 and 3 may import from layer 1
PUBLIC_LAYER1 = {"taskctl.backends", "taskctl.backends.base"}
SDKS = {"boto3", "botocore", "kombu", "amqp", "redis", "vine"}
LAZY_OK_LAYER0 = {"kombu.utils.url", "msgpack", "yaml", "zlib", "bz2", "lzma", "gzip", "brotli", "zstandard"}
#: a "module:Attr" string the registry imports on first use
DOTTED = re.compile(r"^(taskctl(?:\.\w+)+):\w+$")

#: Known exceptions to the arrows, each with why; (importer, imported) -> reason. Remove an entry once fixed
#: (test_allowances_are_still_needed fails on one that no longer matches any import).
ALLOWANCES: dict[tuple[str, str], str] = {
    ("taskctl.backends", "taskctl.config"): "the registry is the one layer-1 place that reads Settings",
}


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(mod: str) -> int | None:
    """The layer LAYERS gives MOD (its longest covering entry), or None when no entry covers it."""
    if mod == "taskctl":
        return LAYERS["taskctl"]
    best = max((k for k in LAYERS if k != "taskctl" and (mod == k or mod.startswith(k + "."))), key=len, default=None)
    return None if best is None else LAYERS[best]


def _unknown(mod: str) -> str:
    return (
        f"{mod} is in no layer: add it (or its package) to LAYERS in tests/test_layering.py "
        "(0 stdlib-only values and codecs, 1 adapters, 2 operations, 3 commands, 4 entry points)"
    )


@dataclass(frozen=True)
class Import:
    module: str
    line: int
    #: "top" (at import time), "nested" (inside a function), "typing" (TYPE_CHECKING) or "lazy" (a string:
    #: lazy_module("taskctl.x"), importlib.import_module("..."), the registry's "taskctl.x:Class")
    kind: str


LAZY_CALLS = {"lazy_module", "import_module"}


def imports(path: Path, name: str | None = None) -> list[Import]:
    """Every import of PATH (module NAME), type-only ones and lazy strings included."""
    tree = ast.parse(path.read_text())
    out: list[Import] = []
    pkg = name or module_name(path)
    is_pkg = path.name == "__init__.py"

    def add_from(child: ast.ImportFrom, kind: str) -> None:
        if child.level:
            base = pkg.split(".") if is_pkg else pkg.split(".")[:-1]
            base = base[: len(base) - (child.level - 1)] if child.level > 1 else base
            mod = ".".join([*base, child.module] if child.module else base)
        else:
            mod = child.module or ""
        out.append(Import(mod, child.lineno, kind))
        if mod.startswith("taskctl"):
            folder = PKG.parent.joinpath(*mod.split("."))
            out.extend(
                Import(f"{mod}.{a.name}", child.lineno, kind)
                for a in child.names
                if (folder / f"{a.name}.py").is_file() or (folder / a.name).is_dir()
            )

    def visit(node: ast.AST, kind: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = kind
            if kind == "top" and isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                inner = "nested"
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for c in child.body:
                    if isinstance(c, ast.Import):
                        out.extend(Import(a.name, c.lineno, "typing") for a in c.names)
                    elif isinstance(c, ast.ImportFrom):
                        add_from(c, "typing")
                    else:
                        visit(c, "typing")
                for c in child.orelse:
                    visit(c, kind)
                continue
            if isinstance(child, ast.Import):
                out.extend(Import(a.name, child.lineno, inner) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                add_from(child, inner)
            elif isinstance(child, ast.Call) and child.args and isinstance(child.args[0], ast.Constant):
                func = child.func
                name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
                arg = child.args[0].value
                if name in LAZY_CALLS and isinstance(arg, str) and not arg.startswith("."):
                    out.append(Import(arg, child.lineno, "lazy"))
            elif isinstance(child, ast.Constant) and isinstance(child.value, str):
                m = DOTTED.match(child.value)
                if m:
                    out.append(Import(m[1], child.lineno, "lazy"))
            visit(child, inner)

    visit(tree, "top")
    return out


FILES = sorted(p for p in PKG.rglob("*.py"))


def test_every_module_has_a_layer() -> None:
    missing = [_unknown(module_name(p)) for p in FILES if layer_of(module_name(p)) is None]
    assert not missing, "\n".join(missing)


def problems_of(path: Path, name: str | None = None) -> list[str]:
    """What in PATH (module NAME) breaks the arrows, one line each; ALLOWANCES are not problems."""
    me = name or module_name(path)
    my_layer = layer_of(me)
    if my_layer is None:
        return [_unknown(me)]
    problems = []
    for imp in imports(path, me):
        mod, line = imp.module, imp.line
        where = f"line {line} ({imp.kind})"
        top = mod.split(".")[0]
        if top == "click":
            problems.append(f"{where}: imports click (use typer)")
        lazy_ok = my_layer == 0 and imp.kind == "nested" and mod in LAZY_OK_LAYER0
        if top in SDKS and my_layer != 1 and not lazy_ok and me not in ("taskctl.demo", "taskctl.demo_app"):
            problems.append(f"{where}: layer {my_layer} imports the SDK {mod}")
        renders = me == "taskctl.output" or me.startswith("taskctl.output.")
        if top in ("rich", "tabulate") and not renders and my_layer < 4:
            problems.append(f"{where}: only taskctl.output renders (imports {mod})")
        if top == "typer" and my_layer < 3:
            problems.append(f"{where}: layer {my_layer} imports typer")
        if top == "celery" and me not in ("taskctl.demo_app", "taskctl.demo"):
            problems.append(f"{where}: celery is a test/demo dependency only ({mod})")
        if top != "taskctl" or mod == "taskctl" or (me, mod) in ALLOWANCES:
            continue
        target = layer_of(mod)
        if target is None:
            problems.append(f"{where}: imports {_unknown(mod)}")
            continue
        if target > my_layer:
            problems.append(f"{where}: layer {my_layer} imports {mod} (layer {target})")
        if my_layer in (2, 3) and target == 1 and mod not in PUBLIC_LAYER1:
            problems.append(f"{where}: layer {my_layer} imports the adapter {mod}; use the registry and base")
    return problems


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PKG)))
def test_imports_point_down(path: Path) -> None:
    problems = problems_of(path)
    assert not problems, f"{module_name(path)}:\n" + "\n".join(problems)


def test_allowances_are_still_needed() -> None:
    """An allowance whose import is gone is stale: remove it so the exception cannot hide a new one."""
    used = {(module_name(p), imp.module) for p in FILES for imp in imports(p)}
    stale = [f"{a} -> {b}" for (a, b) in ALLOWANCES if (a, b) not in used and (a, b)[0] in map(module_name, FILES)]
    assert not stale, "remove from ALLOWANCES in tests/test_layering.py: " + ", ".join(stale)


def test_the_checker_sees_type_only_imports_lazy_strings_and_unknown_modules(tmp_path: Path) -> None:
    """The blind spots of the first version: each now produces a problem."""
    sample = tmp_path / "probe.py"
    sample.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from taskctl.backends.base import Broker\n"
        "def f():\n"
        "    return lazy_module('taskctl.queues')\n"
        "ADAPTER = 'taskctl.backends.redis:RedisResultStore'\n"
        "import taskctl.nowhere\n"
    )
    found = "\n".join(problems_of(sample, "taskctl.formats.probe"))
    assert "line 3 (typing): layer 0 imports taskctl.backends.base (layer 1)" in found
    assert "line 5 (lazy): layer 0 imports taskctl.queues (layer 2)" in found
    assert "line 6 (lazy): layer 0 imports taskctl.backends.redis (layer 1)" in found
    assert "taskctl.nowhere is in no layer: add it (or its package) to LAYERS in tests/test_layering.py" in found
    assert layer_of("taskctl.formats.anything_new") == 0 and layer_of("taskctl.results.reader") == 2
    assert layer_of("taskctl.brand_new") is None


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
