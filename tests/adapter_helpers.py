"""Run a rule's adapter (``workflow_scripts/<rule>.py``) as Snakemake would, with a stand-in job."""

from __future__ import annotations

import logging
import runpy
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "workflow_scripts"


class Job(dict):
    """Snakemake's job object as the adapters use it: attributes, and a dict for the wildcards."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@contextmanager
def _logging_restored() -> Iterator[None]:
    """The adapters configure the root logger (``force=True``); put pytest's handlers back after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(level)


def run_adapter(rule: str, job: Job) -> None:
    """Execute ``workflow_scripts/{rule}.py`` with ``snakemake`` bound to ``job``."""
    added = str(SCRIPTS) not in sys.path
    if added:
        sys.path.insert(0, str(SCRIPTS))
    try:
        with _logging_restored():
            runpy.run_path(str(SCRIPTS / f"{rule}.py"), init_globals={"snakemake": job})
    finally:
        if added:
            sys.path.remove(str(SCRIPTS))


SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "config.schema.yaml"


def workflow_config(**sections: dict) -> dict:
    """A validated workflow config (the schema's defaults plus ``sections``), as Snakemake hands
    it to an adapter in ``snakemake.config``."""
    from soundsup.config import validate_config

    return validate_config(sections, SCHEMA_PATH)


def rule_params_of(config: dict, section: str, exclude: tuple[str, ...] = ()) -> dict:
    """What ``params_of(section)`` in rules/common.smk hands the rule (x-rerun false keys out)."""
    from soundsup.config import load_schema, rule_params

    return rule_params(config, load_schema(SCHEMA_PATH), section, exclude)
