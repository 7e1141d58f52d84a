"""Shared start-up of the rule adapters: logging to the rule's log, the package on the path.

Snakemake's ``script:`` preamble puts this folder on ``sys.path``, so adapters import this
module as ``_common``. The package is normally installed (``pip install -e .``); under
``--use-conda`` environments, which do not install it, the checkout's root is added instead.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

try:
    import soundsup  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "config.schema.yaml"


def runtime(snakemake: object, section: str) -> dict:
    """The keys of a config section that the schema marks ``x-rerun: false`` (how the job runs,
    where from), read from the validated config."""
    from soundsup.config import load_schema, runtime_settings

    return runtime_settings(snakemake.config, load_schema(SCHEMA_PATH), section)


def settings(snakemake: object, section: str, param: str | None = None) -> dict:
    """A rule's config slice: ``params[param]`` (default: the section's last name), which holds
    what shapes the results, plus the keys of the config section that the schema marks
    ``x-rerun: false`` (how the job runs), read from the validated config."""
    name = param or section.split(".")[-1]
    return {**getattr(snakemake.params, name), **runtime(snakemake, section)}


def run(main: Callable[[object], None], snakemake: object) -> None:
    """Route logging to the rule's log file (and stderr), then call ``main(snakemake)``.

    An exception is written to the log with its traceback before it ends the job, so the log
    alone tells what went wrong.
    """
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if snakemake.log:
        Path(snakemake.log[0]).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(snakemake.log[0], mode="w"))
    # Credentials never reach the log or the console, even inside an error message.
    from soundsup.redact import install_redaction

    proxy_env = (getattr(snakemake, "config", None) or {}).get("download", {}).get("proxy_env")
    install_redaction(handlers, extra_variables=[proxy_env] if proxy_env else [])
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, handlers=handlers, force=True)
    logging.captureWarnings(True)
    log = logging.getLogger(f"soundsup.rule.{snakemake.rule}")
    log.info(
        "rule %s, wildcards %s, threads %s", snakemake.rule, dict(snakemake.wildcards), snakemake.threads
    )
    try:
        main(snakemake)
    except BaseException:
        log.error("rule %s failed:\n%s", snakemake.rule, traceback.format_exc())
        raise
    log.info("rule %s done", snakemake.rule)
