"""Fetch one URL to one file: streamed to a temporary name, checksummed, renamed into place.

A destination that already exists with the expected checksum (or, without one, at all) is
kept and nothing is requested. Transient failures (timeouts, dropped connections, short
bodies, HTTP 408/429/5xx) are retried with exponential back-off; other HTTP errors are not.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

from soundsup.io import OutputWriteError, atomic_path, file_sha256

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
RETRIED_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class ChecksumError(ValueError):
    """The fetched bytes do not have the expected SHA-256."""


class FetchError(OSError):
    """The URL could not be fetched (after the retries, where retrying made sense)."""


def _download(url: str, target: Path, timeout_s: float) -> str:
    """Stream ``url`` into ``target``; return the SHA-256 of the bytes. Raises on a short body."""
    digest = hashlib.sha256()
    request = urllib.request.Request(url, headers={"User-Agent": "soundsup", "Accept-Encoding": "identity"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response, open(target, "wb") as handle:
        expected = response.headers.get("Content-Length")
        received = 0
        while chunk := response.read(CHUNK_BYTES):
            handle.write(chunk)
            digest.update(chunk)
            received += len(chunk)
    if expected is not None and received != int(expected):
        raise FetchError(f"{url}: incomplete body, {received} of {expected} bytes")
    return digest.hexdigest()


def _retryable(error: Exception) -> bool:
    if isinstance(error, urllib.error.HTTPError):
        return error.code in RETRIED_STATUS
    return isinstance(
        error, urllib.error.URLError | TimeoutError | socket.timeout | ConnectionError | FetchError
    )


def fetch_url(
    url: str,
    destination: str | Path,
    sha256: str | None = None,
    timeout_s: float = 60,
    retries: int = 3,
    backoff_s: float = 1.0,
) -> Path:
    """Download ``url`` to ``destination`` atomically, checking ``sha256`` when given.

    ``sha256`` may be a prefix of the digest (torchvision names its weight files by the first
    8 hex digits). Raises :class:`ChecksumError` (naming the URL, the expected and the received
    digest), :class:`soundsup.io.OutputWriteError` when the destination cannot be written (disk
    full ...; not retried) or :class:`FetchError`. Retry ``k`` waits ``backoff_s * 2**k``
    seconds. Returns the destination.
    """
    destination = Path(destination)
    if not url.startswith(("http://", "https://", "file:")):
        raise ValueError(f"only http(s) and file URLs are fetched, got {url!r}")
    expected = sha256.lower() if sha256 else None
    if destination.is_file():
        if expected is None or file_sha256(destination).startswith(expected):
            log.info("%s is already there: not fetched again", destination)
            return destination
        log.warning("%s has the wrong checksum: fetching %s again", destination, url)
    for attempt in range(retries + 1):
        try:
            with atomic_path(destination) as temporary:
                got = _download(url, temporary, timeout_s)
                if expected is not None and not got.startswith(expected):
                    raise ChecksumError(f"{url}: SHA-256 mismatch: expected {expected}, got {got}")
            log.info("fetched %s -> %s", url, destination)
            return destination
        except (ChecksumError, OutputWriteError):
            raise  # a wrong file, or our disk: retrying the network would not help
        except Exception as error:  # noqa: BLE001 - every failure is reported or retried below
            if not _retryable(error) or attempt == retries:
                raise FetchError(f"could not fetch {url}: {error}") from error
            delay = backoff_s * 2**attempt
            log.warning(
                "fetching %s failed (%s); retry %d of %d in %.1f s", url, error, attempt + 1, retries, delay
            )
            time.sleep(delay)
    raise FetchError(f"could not fetch {url}")
