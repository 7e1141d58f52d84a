"""The conda environments named by the rules (``--use-conda``) really hold what their jobs import.

Static: for every rule, the modules its adapter imports, followed through the package's own
modules, must come from packages its env file lists; and every version pinned there must be
the version ``pyproject.toml`` pins (the default run uses the project's venv, so the two must
not drift apart). conda itself cannot be obtained on these machines, so the envs are checked
as files.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from functools import cache
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
RULE = re.compile(r"^\s*rule (\w+):\n(.*?)(?=^\s*rule \w+:|\Z)", re.M | re.S)
PROVIDED = {"soundsup", "_common", "snakemake"}  # the package itself and Snakemake's preamble


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def rules() -> dict[str, tuple[Path, Path]]:
    """rule -> (adapter script, env file), from every rules/*.smk."""
    found = {}
    for path in sorted((REPO / "rules").glob("*.smk")):
        for name, body in RULE.findall(path.read_text()):
            script = re.search(r'script:\s*\n\s*"([^"]+)"', body)
            env = re.search(r'conda:\s*\n\s*"([^"]+)"', body)
            assert env, f"rule {name} names no conda env"
            if script:
                adapter = (path.parent / script.group(1)).resolve()
                found[name] = (adapter, (path.parent / env.group(1)).resolve())
    return found


def _optional(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Whether an import sits in a ``try`` that catches ImportError (an optional dependency)."""
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.Try):
            for handler in node.handlers:
                caught = ast.unparse(handler.type) if handler.type else "BaseException"
                if "ImportError" in caught or "ModuleNotFoundError" in caught:
                    return True
    return False


@cache
def imports_of(path: Path) -> frozenset[str]:
    """Top-level names of the modules ``path`` imports unconditionally (anywhere in the file)."""
    tree = ast.parse(path.read_text())
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and not _optional(node, parents):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and not _optional(node, parents):
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return frozenset(names)


def third_party(script: Path) -> set[str]:
    """Top-level third-party modules an adapter needs, through the package's own modules."""
    seen, todo, needed = set(), [script, REPO / "workflow_scripts" / "_common.py"], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imports_of(path):
            top = name.split(".")[0]
            if top == "soundsup":
                module = REPO.joinpath(*name.split("."))
                for candidate in (module.with_suffix(".py"), module / "__init__.py"):
                    if candidate.is_file():
                        todo.append(candidate)
            elif top not in PROVIDED and top not in sys.stdlib_module_names:
                needed.add(top)
    return needed


@cache
def distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def env_packages(env_file: Path) -> dict[str, str]:
    """Normalised package name -> pinned version of a conda env file (conda and pip entries)."""
    env = yaml.safe_load(env_file.read_text())
    pins = {}
    for entry in env["dependencies"]:
        for item in entry["pip"] if isinstance(entry, dict) else [entry]:
            if item == "pip":
                continue
            name, version = re.fullmatch(r"([A-Za-z0-9_.\-\[\],]+?)\s*==?\s*([\w.]+)", item).groups()
            pins[_normal(re.sub(r"\[.*\]", "", name))] = version
    return pins


def pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = {}
    for requirement in project["dependencies"] + project["optional-dependencies"]["dev"]:
        name, version = re.fullmatch(r"([A-Za-z0-9_.\-]+)(?:\[[\w,]+\])?==([\w.]+)", requirement).groups()
        pins[_normal(name)] = version
    return pins


RULES = rules()


@pytest.mark.parametrize("rule", sorted(RULES))
def test_the_env_of_each_rule_holds_what_its_adapter_imports(rule):
    script, env_file = RULES[rule]
    listed = env_packages(env_file)
    missing = []
    for module in sorted(third_party(script)):
        packages = {_normal(name) for name in distributions().get(module, [module])}
        if not packages & set(listed):
            missing.append(f"{module} (from {', '.join(sorted(packages))})")
    assert not missing, f"rule {rule}: {env_file.name} lacks {missing}"


@pytest.mark.parametrize("env_file", sorted((REPO / "envs").glob("*.yaml")), ids=lambda path: path.name)
def test_env_pins_agree_with_pyproject(env_file):
    pins = pyproject_pins()
    for name, version in env_packages(env_file).items():
        if name == "python":
            continue
        assert name in pins, f"{env_file.name}: {name} is not a dependency in pyproject.toml"
        assert version == pins[name], f"{env_file.name}: {name}={version}, pyproject.toml pins {pins[name]}"


@pytest.mark.parametrize("env_file", sorted((REPO / "envs").glob("*.yaml")), ids=lambda path: path.name)
def test_a_conda_channel_is_named_only_where_a_package_comes_from_it(env_file):
    env = yaml.safe_load(env_file.read_text())
    conda_packages = {item for item in env["dependencies"] if isinstance(item, str) and item != "pip"}
    if "pytorch" in env["channels"]:
        assert any(item.startswith(("pytorch", "torchvision")) for item in conda_packages), env_file.name


def test_the_import_graph_is_followed():
    # The check above is only worth something if it sees the package's own imports.
    needed = third_party(REPO / "workflow_scripts" / "train_pretext.py")
    assert {"torch", "numpy", "pandas", "jsonschema", "yaml"} <= needed
