"""Keep credentials out of everything the workflow writes: manifests, logs, the console.

Secrets never enter the configuration (a proxy URL lives in the environment, cookies in a
file the config names), so Snakemake never records them. What remains is a message that
quotes one: a proxy error that repeats the proxy URL, an ffmpeg line with a URL in it.
:func:`redact` removes the password of any URL (``scheme://user:password@host`` becomes
``scheme://user:***@host``) and every secret the environment holds for this run (the proxy
URLs of the standard variables and of ``download.proxy_env``, and their passwords);
:func:`install_redaction` applies it to every log record and to an uncaught exception's
traceback.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import traceback
from collections.abc import Iterable, Mapping
from urllib.parse import unquote, urlsplit

PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
MASK = "***"
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s/:@]*):([^\s/@]+)@")


def secrets_in_environment(
    extra_variables: Iterable[str] = (), environ: Mapping[str, str] | None = None
) -> list[str]:
    """The secret strings of this run: each proxy URL in the standard variables and in
    ``extra_variables``, its password, and the password's URL-decoded form."""
    environ = os.environ if environ is None else environ
    found: list[str] = []
    for name in (*PROXY_VARIABLES, *extra_variables):
        value = environ.get(name, "").strip()
        if not value:
            continue
        found.append(value)
        try:
            password = urlsplit(value if "://" in value else f"http://{value}").password
        except ValueError:
            password = None
        if password:
            found += [password, unquote(password)]
    return sorted({secret for secret in found if len(secret) >= 4}, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with URL passwords and every string of ``secrets`` replaced by ``***``."""
    text = _URL_PASSWORD.sub(rf"\1:{MASK}@", text)
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


class RedactingFilter(logging.Filter):
    """A handler filter that formats each record (message and traceback) and redacts it."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = list(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage(), self.secrets)
        record.args = ()
        if record.exc_info:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)), self.secrets)
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        return True


def install_redaction(handlers: Iterable[logging.Handler], extra_variables: Iterable[str] = ()) -> list[str]:
    """Redact what ``handlers`` write and what an uncaught exception prints; returns the secrets."""
    secrets = secrets_in_environment(extra_variables)
    for handler in handlers:
        handler.addFilter(RedactingFilter(secrets))

    def excepthook(kind, value, trace) -> None:
        sys.stderr.write(redact("".join(traceback.format_exception(kind, value, trace)), secrets))

    sys.excepthook = excepthook
    return secrets
