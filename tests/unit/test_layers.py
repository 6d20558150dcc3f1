"""The package's imports form no cycle, and every module imports on its own, whatever was imported before it.

`lint-imports` (the contract in pyproject.toml) keeps the layers pointing down; these tests catch what a layer
contract allows: a cycle between two modules of one package, or a module that only imports after another one.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import grimp

import chroma_ha


def all_modules() -> list[str]:
    """Every module but `__main__`, which runs the command when imported."""
    found = pkgutil.walk_packages(chroma_ha.__path__, "chroma_ha.")
    return sorted(m.name for m in found if m.name != "chroma_ha.__main__")


def ours() -> dict[str, object]:
    return {name: module for name, module in sys.modules.items() if name.split(".")[0] == "chroma_ha"}


def test_no_module_imports_one_that_imports_it_back() -> None:
    graph = grimp.build_graph("chroma_ha", exclude_type_checking_imports=False)
    cycles = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            if imported != "chroma_ha" and graph.chain_exists(importer=imported, imported=importer):
                cycles.append(graph.find_shortest_chain(importer=imported, imported=importer))
    assert cycles == []


def test_every_module_imports_first_in_a_fresh_package() -> None:
    failures = {}
    loaded = ours()  # put back afterwards: other tests hold the classes of these modules
    try:
        for order in (all_modules(), list(reversed(all_modules()))):
            for name in order:
                for fresh in ours():
                    del sys.modules[fresh]
                try:
                    importlib.import_module(name)
                except ImportError as exc:
                    failures[name] = str(exc)
    finally:
        for fresh in ours():
            del sys.modules[fresh]
        sys.modules.update(loaded)  # type: ignore[arg-type]
    assert failures == {}
    assert len(all_modules()) > 60
