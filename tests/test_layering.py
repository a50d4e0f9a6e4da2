"""Import layering: a seo_export layer never imports a higher one, and seo_plugins (the lower
package) never imports seo_export. Imports inside functions count too."""

import ast
from pathlib import Path

import pytest

import seo_export
import seo_plugins

#: seo_export's layers, low to high. ops is below models: model layers call the seo ops. text
#: (tokenizer.json -> input ids) needs a model's config for its length limit. convert (Hugging Face
#: checkpoints -> the zoo) needs only models. serve (Triton model repositories and server) reads export
#: metadata and engine manifests, and its benchmark writes results through bench.
LAYERS = ("errors", "utils", "ops", "models", "text", "convert", "export", "backends", "parity", "bench", "serve",
          "cli")
RANK = {layer: i for i, layer in enumerate(LAYERS)}
ROOTS = {package.__name__: Path(package.__file__).parent for package in (seo_export, seo_plugins)}


def modules():
    """(module name, is a package, path) for every module of both packages."""
    for root in ROOTS.values():
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root.parent).with_suffix("").parts
            is_package = parts[-1] == "__init__"
            yield ".".join(parts[:-1] if is_package else parts), is_package, path


def imported(module: str, source: str, is_package: bool = False):
    """(line, absolute name) for each import in ``source``; ``from a import b`` gives ``a.b``,
    since b may be a submodule."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: climb from the module's package
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            yield from ((node.lineno, f"{base}.{alias.name}") for alias in node.names)


def layer(name: str) -> str | None:
    """The seo_export layer ``name`` belongs to; None outside them (e.g. the package's __version__)."""
    parts = name.split(".")
    return parts[1] if parts[0] == "seo_export" and len(parts) > 1 and parts[1] in LAYERS else None


def violations(module: str, source: str, is_package: bool = False) -> list[str]:
    own = layer(module)
    found = []
    for line, target in imported(module, source, is_package):
        if module.split(".")[0] == "seo_plugins" and target.split(".")[0] == "seo_export":
            found.append(f"{module}:{line} imports {target}: seo_plugins must not import seo_export")
        elif own and layer(target) and RANK[layer(target)] > RANK[own]:
            found.append(f"{module}:{line} imports {target}: {own} is below {layer(target)}")
    return found


@pytest.mark.parametrize("package", sorted(ROOTS))
def test_no_module_imports_a_higher_layer(package):
    checked = [(name, is_package, path) for name, is_package, path in modules() if name.split(".")[0] == package]
    assert len(checked) > 10  # the walk found the package
    found = [v for name, is_package, path in checked for v in violations(name, path.read_text(), is_package)]
    assert found == []


@pytest.mark.parametrize("module, source", [
    ("seo_export.parity.fake", "from seo_export.cli import main"),
    ("seo_export.parity.fake", "def f():\n    import seo_export.bench.timing"),
    ("seo_export.utils.fake", "from seo_export import ops"),
    ("seo_export.parity.report.fake", "from ...bench import sweep"),
    ("seo_plugins.trt.fake", "def f():\n    from seo_export.errors import UsageError"),
])
def test_the_checker_reports_a_violating_import(module, source):
    assert len(violations(module, source)) == 1


@pytest.mark.parametrize("module, source", [
    ("seo_export.bench.fake", "from seo_export.parity.report import bench_report"),
    ("seo_export.errors", "from seo_plugins.errors import UsageError"),
    ("seo_export.utils.fake", "from seo_export import __version__"),
    ("seo_export.parity.report.fake", "from ..metrics import plain_float"),
])
def test_the_checker_allows_imports_downwards(module, source):
    assert violations(module, source) == []
