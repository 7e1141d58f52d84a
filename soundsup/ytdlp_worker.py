"""A yt-dlp worker process: fetches one section at a time for :mod:`soundsup.fetchers`.

Run as a script (``python ytdlp_worker.py``) by the downloader, one process per download
thread, in a session of its own so that the downloader can kill it together with the ffmpeg
it started when a clip runs past its deadline (a blocking HTTP read cannot be interrupted
inside a thread). It imports only yt-dlp and the standard library.

Protocol, one JSON object per line:

- stdin, first line: ``{"options": {...}}``, the ``YoutubeDL`` parameters; answered
  ``{"event": "ready"}`` (or ``{"event": "error", ...}`` and exit);
- stdin, then per clip: ``{"id", "url", "start", "end", "outtmpl"}``;
- stdout, per clip: any number of ``{"id", "event": "stage", "text"}`` (yt-dlp's progress
  messages), then ``{"id", "event": "done", "filepath", "duration"}`` or ``{"id", "event":
  "error", "kind", "message", "status", "errno", "filename"}``. Before the last line the
  marker ``\\0end <id>\\n`` is written to stderr, so everything ffmpeg printed for the clip
  (it inherits stderr) is known to have arrived before the answer is read.

The process exits at the end of stdin, or within a second of its parent's death. Its own
stdout is sent to stderr, so that nothing but the protocol reaches the downloader's pipe.

:class:`WorkerProcess` is the downloader's side: it starts the script, sends one clip, reads
the answer with a deadline and, past it, says what was still running and kills the process
group.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

STDERR_KEPT_BYTES = 256 * 1024
MARKER_WAIT_S = 2.0


class WorkerStartError(RuntimeError):
    """The worker process could not start (yt-dlp missing or broken): no clip is to blame."""


class WorkerTimeout(Exception):
    """A clip ran past its deadline; ``message`` says what was still running when it was killed."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class WorkerDied(Exception):
    """The worker process ended while fetching a clip (killed from outside, out of memory ...)."""


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, command name) of the direct children of ``pid`` (Linux ``/proc``; else empty)."""
    found = []
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            name, rest = stat.split("(", 1)[1].rsplit(")", 1)
            if int(rest.split()[1]) == pid:
                found.append((int(entry.name), name))
        except (OSError, ValueError, IndexError):
            continue
    return found


class WorkerProcess:
    """One worker process; :meth:`fetch` sends one clip and waits for its answer, at most
    ``timeout_s``. Not thread-safe: one per download thread."""

    def __init__(self, options: dict, startup_timeout_s: float = 120.0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-u", str(Path(__file__).resolve())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            bufsize=0,
        )
        self._stdout = b""
        self._stderr = bytearray()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.process.stdout, selectors.EVENT_READ, "out")
        self._selector.register(self.process.stderr, selectors.EVENT_READ, "err")
        self._stdout_ended = False
        self._next_id = 0
        try:
            self._send({"options": options})
            event = self._next_event(time.monotonic() + startup_timeout_s)
        except (OSError, WorkerDied) as error:
            self.kill()
            tail = self._stderr_tail()
            raise WorkerStartError(f"the yt-dlp worker did not start: {error}: {tail}") from error
        if event is None or event.get("event") != "ready":
            self.kill()
            detail = event.get("message") if event else f"no answer in {startup_timeout_s:g} s"
            raise WorkerStartError(f"the yt-dlp worker did not start: {detail} {self._stderr_tail()}")

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def fetch(self, request: dict, timeout_s: float, progress: Path | None = None) -> dict:
        """Send ``request`` (url, start, end, outtmpl); return the worker's last event.

        The event is ``done`` or ``error`` (see the module docstring) with two more keys:
        ``stderr`` (what the worker and its ffmpeg printed for this clip) and ``stage`` (yt-dlp's
        last message). Raises :class:`WorkerTimeout` after killing the process when no answer
        came within ``timeout_s`` (``progress``: a folder whose partial files tell how much was
        written), :class:`WorkerDied` when the process ended.
        """
        self._next_id += 1
        clip_id = self._next_id
        self._stderr.clear()
        stage = "starting"
        began = time.monotonic()
        deadline = began + timeout_s
        try:
            self._send({**request, "id": clip_id})
        except OSError as error:
            self.kill()
            raise WorkerDied(f"the yt-dlp worker is gone ({error}): {self._stderr_tail()}") from error
        while True:
            try:
                event = self._next_event(deadline)
            except WorkerDied:
                self.kill()  # and whatever it started: its process group
                raise
            if event is None:
                message = self._describe_late(stage, timeout_s, request, progress)
                self.kill()
                raise WorkerTimeout(message)
            if event.get("id") != clip_id:
                continue
            if event.get("event") == "stage":
                stage = str(event.get("text", ""))
                continue
            marker = f"\0end {clip_id}\n".encode()
            wait_until = time.monotonic() + MARKER_WAIT_S
            while marker not in self._stderr and time.monotonic() < wait_until and self._selector.get_map():
                self._pump(wait_until)
            text = bytes(self._stderr).split(marker, 1)[0]
            return {**event, "stderr": text.decode("utf-8", errors="replace"), "stage": stage}

    def kill(self) -> None:
        """Kill the worker and everything it started (its process group)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        self._close_pipes()

    def close(self) -> None:
        """End the worker: end of its input, then a kill if it does not exit within 5 s."""
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    # -- internals -------------------------------------------------------------------------

    def _send(self, payload: dict) -> None:
        self.process.stdin.write((json.dumps(payload) + "\n").encode())
        self.process.stdin.flush()

    def _pump(self, deadline: float) -> None:
        """Read what either pipe has until ``deadline`` or the first chunk, whichever comes first."""
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not self._selector.get_map():
            return
        for key, _ in self._selector.select(timeout=remaining):
            chunk = os.read(key.fd, 65536)
            if not chunk:
                self._selector.unregister(key.fileobj)
                if key.data == "out":
                    self._stdout_ended = True
            elif key.data == "out":
                self._stdout += chunk
            else:
                self._stderr += chunk
                if len(self._stderr) > STDERR_KEPT_BYTES:
                    del self._stderr[: len(self._stderr) - STDERR_KEPT_BYTES]

    def _next_event(self, deadline: float) -> dict | None:
        """The next protocol line as a dict; None at the deadline; raises WorkerDied at its end."""
        while b"\n" not in self._stdout:
            if self._stdout_ended:
                try:
                    code = self.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    code = None
                raise WorkerDied(f"the yt-dlp worker ended (exit code {code}): {self._stderr_tail()}")
            if time.monotonic() >= deadline:
                return None
            self._pump(deadline)
        line, self._stdout = self._stdout.split(b"\n", 1)
        return json.loads(line)

    def _describe_late(self, stage: str, timeout_s: float, request: dict, progress: Path | None) -> str:
        ffmpeg = [pid for pid, name in _children(self.process.pid) if "ffmpeg" in name]
        if ffmpeg:
            written = 0
            if progress is not None:
                stem = Path(str(request.get("outtmpl", ""))).name.split(".")[0]
                written = sum(path.stat().st_size for path in progress.glob(f"{stem}.*") if path.is_file())
            return (
                f"no result within the {timeout_s:g}-s limit: ffmpeg (pid {ffmpeg[0]}) was still "
                f"fetching the section ({written / 1024:.0f} KB of it written); yt-dlp and ffmpeg were killed"
            )
        return (
            f"no result within the {timeout_s:g}-s limit: yt-dlp was still extracting {request.get('url')} "
            f"(last step: {stage!r}; no ffmpeg had started); it was killed"
        )

    def _stderr_tail(self) -> str:
        lines = [line for line in bytes(self._stderr).decode("utf-8", "replace").splitlines() if line.strip()]
        return " | ".join(lines[-3:])[-600:]

    def _close_pipes(self) -> None:
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.close()
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.close()
        self._stdout_ended = True


# -- the worker's side ---------------------------------------------------------------------


_PROTOCOL: list = []


def _send(payload: dict) -> None:
    channel = _PROTOCOL[0]
    channel.write(json.dumps(payload) + "\n")
    channel.flush()


class _Logger:
    """yt-dlp's messages, forwarded as stages of the clip in progress."""

    def __init__(self) -> None:
        self.clip_id: int | None = None

    def _stage(self, text: str) -> None:
        if self.clip_id is not None:
            _send({"id": self.clip_id, "event": "stage", "text": str(text)[:300]})

    def debug(self, message: str) -> None:
        if not message.startswith("[debug]"):
            self._stage(message)

    def info(self, message: str) -> None:
        self._stage(message)

    def warning(self, message: str) -> None:
        self._stage(f"WARNING: {message}")

    def error(self, message: str) -> None:
        self._stage(message)


def _error_event(error: BaseException) -> dict:
    """What the downloader needs to classify a failure: message, HTTP status, errno, file."""
    cause = error
    exc_info = getattr(error, "exc_info", None)
    if exc_info and exc_info[1] is not None:
        cause = exc_info[1]
    inner = getattr(cause, "__cause__", None) or getattr(cause, "__context__", None)
    os_error = next((e for e in (cause, inner) if isinstance(e, OSError) and e.errno is not None), None)
    status = getattr(cause, "status", None)
    if status is None:
        status = getattr(getattr(cause, "response", None), "status", None)
    return {
        "event": "error",
        "kind": type(error).__name__,
        "cause": type(cause).__name__,
        "message": re.sub(r"^ERROR:\s*", "", str(error))[:1000],
        "status": status if isinstance(status, int) else None,
        "errno": os_error.errno if os_error is not None else None,
        "filename": str(os_error.filename) if os_error is not None and os_error.filename else None,
    }


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os.killpg(0, signal.SIGKILL)


def main() -> None:
    """The worker: answer clips read from stdin until its end (see the module docstring)."""
    _PROTOCOL.append(os.fdopen(os.dup(1), "w", buffering=1))  # os.dup: not inherited by ffmpeg
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    first = sys.stdin.readline()
    if not first:
        return
    logger = _Logger()
    try:
        import yt_dlp
        from yt_dlp.utils import download_range_func

        options = json.loads(first)["options"]
        ydl = yt_dlp.YoutubeDL({**options, "logger": logger})
        if options.get("cookiefile"):
            # Read the cookies once and forget the file: yt-dlp would otherwise write its jar
            # back to the user's file when it closes (cookie contents are never ours to write).
            ydl.cookiejar  # noqa: B018 - the property loads the file
            ydl.params["cookiefile"] = None
    except Exception as error:  # noqa: BLE001 - reported to the downloader, which fails the job
        _send(_error_event(error))
        return
    _send({"event": "ready", "version": yt_dlp.version.__version__})
    for line in sys.stdin:
        request = json.loads(line)
        clip_id = int(request["id"])
        logger.clip_id = clip_id
        answer: dict
        try:
            ydl.params["outtmpl"] = {"default": request["outtmpl"]}
            ydl.params["download_ranges"] = download_range_func(
                None, [(float(request["start"]), float(request["end"]))]
            )
            info = ydl.extract_info(request["url"], download=True) or {}
            downloads = info.get("requested_downloads") or [{}]
            answer = {
                "event": "done",
                "filepath": downloads[0].get("filepath"),
                "duration": info.get("duration"),
            }
        except Exception as error:  # noqa: BLE001 - every failure of one clip is answered, never fatal
            answer = _error_event(error)
        logger.clip_id = None
        sys.stderr.flush()
        os.write(2, f"\n\0end {clip_id}\n".encode())
        _send({"id": clip_id, **answer})


if __name__ == "__main__":
    main()
