"""The package's shape: imports flow one way, down a fixed order of modules by role, and none hides inside a function.

A module may import only modules above it in `ORDER`. Imports inside functions count too (a lazy import that
dodges a cycle is still a cycle), and none is allowed: every dependency is visible at the top of the file.
The `baselines` package has an order of its own: the shared core, then one file per GAN (each importing only the
core), then `__init__`, which imports them all.
"""
import ast
from pathlib import Path

import surgdiff

PACKAGE = Path(surgdiff.__file__).parent
ORDER = ["data", "io", "diffusion", "layers", "unet", "samplers", "model", "cascade", "fit", "train", "baselines", "segment", "metrics",
         "bench", "widgets", "cli"]
BASELINES_ORDER = ["core", "pix2pix", "spade", "cyclegan", "__init__"]  # inside surgdiff/baselines/


def files() -> list[tuple[str, Path]]:
    "(name in ORDER, file) for every module of the package; a subpackage's files all carry the subpackage's name."
    out = [(p.stem, p) for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "_modidx")]
    for d in sorted(PACKAGE.iterdir()):
        if d.is_dir() and any(d.glob("*.py")):
            out += [(d.name, p) for p in sorted(d.rglob("*.py"))]
    return out


def modules() -> set[str]:
    return {name for name, _ in files()}


def subpackage_imports(path: Path) -> list[tuple[str, int]]:
    "(sibling module, line) for every `from .x import` / `from . import x` / `from surgdiff.<pkg>.x import` in a file."
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found.extend([(node.module.split(".")[0], node.lineno)] if node.module else [(a.name, node.lineno) for a in node.names])
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(f"surgdiff.{path.parent.name}."):
            found.append((node.module.split(".")[2], node.lineno))
    return found


def package_imports(tree: ast.Module, in_subpackage: bool = False) -> list[tuple[str, int, bool]]:
    """(imported top-level surgdiff module, line, inside a function?) for every such import in `tree`. In a subpackage
    `from ..x` names a top-level module and `from .x` a sibling (left to `subpackage_imports`)."""
    found = []
    top = 2 if in_subpackage else 1  # the relative level that reaches the package's top

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.ImportFrom):
                if child.level == top and child.module:
                    found.append((child.module.split(".")[0], child.lineno, in_function))
                elif child.level == top:  # from . import x  /  from .. import x
                    found.extend((a.name, child.lineno, in_function) for a in child.names)
                elif child.level == 0 and child.module and child.module.split(".")[0] == "surgdiff":
                    parts = child.module.split(".")
                    found.extend([(parts[1], child.lineno, in_function)] if len(parts) > 1 else
                                 [(a.name, child.lineno, in_function) for a in child.names])
            elif isinstance(child, ast.Import):
                found.extend((a.name.split(".")[1], child.lineno, in_function) for a in child.names
                             if a.name.startswith("surgdiff."))
            visit(child, inner)

    visit(tree, False)
    return found


def imports_of(path: Path) -> list[tuple[str, int, bool]]:
    return package_imports(ast.parse(path.read_text(), str(path)), in_subpackage=path.parent != PACKAGE)


def test_every_module_has_a_place_in_the_order():
    assert sorted(modules()) == sorted(ORDER)
    shadowed = [p.name for p in PACKAGE.glob("*.py") if (PACKAGE / p.stem).is_dir()]
    assert not shadowed, f"a module beside a package of the same name (left over from a move?): {shadowed}"


def test_imports_flow_one_way_down_the_order():
    bad = [f"{path.relative_to(PACKAGE)}:{line} imports {dep}" for m, path in files() for dep, line, _ in imports_of(path)
           if dep in ORDER and ORDER.index(dep) >= ORDER.index(m)]
    assert not bad, "imports against the order " + " → ".join(ORDER) + ":\n" + "\n".join(bad)


def test_the_baselines_package_flows_from_core_to_each_gan_to_init():
    files_ = {p.stem: p for p in (PACKAGE / "baselines").glob("*.py")}
    assert sorted(files_) == sorted(BASELINES_ORDER)
    bad = [f"baselines/{m}.py:{line} imports {dep}" for m in BASELINES_ORDER for dep, line in subpackage_imports(files_[m])
           if dep not in BASELINES_ORDER or BASELINES_ORDER.index(dep) >= BASELINES_ORDER.index(m)
           or (m in ("pix2pix", "spade", "cyclegan") and dep != "core")]  # a GAN's file needs only the core
    assert not bad, "\n".join(bad)


#: The only deferred imports allowed, each named here with its reason (the layer order above still holds for them).
LAZY = {("cli.py", "bench"): "the metrics stack costs 0.5-0.9 s of every other command's start"}


def test_no_package_import_hides_inside_a_function():
    hidden = [f"{path.relative_to(PACKAGE)}:{line} imports {dep} inside a function" for _, path in files()
              for dep, line, inside in imports_of(path) if inside and (str(path.relative_to(PACKAGE)), dep) not in LAZY]
    assert not hidden, "\n".join(hidden)


def test_the_checker_sees_what_it_must():
    "The checks above could fail: a lazy back-import is found, with its line and as hidden; in a subpackage too."
    tree = ast.parse("import torch\nfrom .data import IGNORE\ndef f():\n    from surgdiff.cli import main\n")
    assert package_imports(tree) == [("data", 2, False), ("cli", 4, True)]
    sub = ast.parse("from .core import X\nfrom ..train import T\nfrom .. import cli\ndef f():\n    from ..bench import b\n")
    assert package_imports(sub, in_subpackage=True) == [("train", 2, False), ("cli", 3, False), ("bench", 5, True)]
