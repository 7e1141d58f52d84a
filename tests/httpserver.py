"""A threaded loopback HTTP server for tests: files from a folder, HTTP Range, and misbehaviours.

``MediaServer(root)`` serves ``root/<name>`` on ``127.0.0.1`` (port chosen by the system) with
correct ``Range``/``206`` support, as ffmpeg and yt-dlp expect from a media host. Per path, a
behaviour can replace the normal answer:

- ``("status", code)``: answer with that HTTP status and a short body (404, 410, 429, 500 ...);
- ``("truncate", n_bytes)``: announce the full length, send only the first ``n_bytes``, close;
- ``("stall", seconds)``: send the headers and ``Content-Length``, then nothing for ``seconds``
  (bounded, so a test always ends; released early when the server stops);
- ``("trickle", seconds)``: send the body 64 bytes every 0.1 s, for at most ``seconds`` (a
  transfer that never stalls long enough for a read timeout, yet never finishes);
- ``("silent", seconds)``: accept the connection and never answer (also bounded);
- ``("html", text)``: answer 200 with an HTML page;
- ``("drip", bytes_per_s, seconds)``: answer 200 with an HTML page announced at 1 MB and sent
  ``bytes_per_s`` a second, for at most ``seconds`` (a page that never ends, never stalls);
- ``("redirect", location)``: answer 302 to ``location`` (e.g. a ``file://`` URL);
- ``("redirect_ffmpeg", location)``: serve the file, except to ffmpeg (known by the
  ``Icy-MetaData`` header it sends), which gets 302 to ``location``: a redirect that only the
  media download sees.

Every request is logged as ``(method, path, range header)`` in :attr:`MediaServer.requests`.
"""

from __future__ import annotations

import http.server
import re
import socketserver
import threading
import time
from pathlib import Path
from typing import Any

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    media: MediaServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up early (ffmpeg seeking, yt-dlp sniffing) are normal here."""
        return


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        return

    def do_HEAD(self) -> None:  # noqa: N802 - name fixed by BaseHTTPRequestHandler
        self._answer(send_body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(send_body=True)

    def _answer(self, send_body: bool) -> None:
        media = self.server.media
        name = self.path.split("?", 1)[0].lstrip("/")
        media.log_request(self.command, "/" + name, self.headers.get("Range"))
        behaviour = media.behaviours.get(name)
        if behaviour is not None and behaviour[0] == "silent":
            media.stop_event.wait(behaviour[1])
            self.close_connection = True
            return
        if behaviour is not None and behaviour[0] == "status":
            self._send_plain(int(behaviour[1]), f"status {behaviour[1]} for {name}\n", send_body)
            return
        if behaviour is not None and behaviour[0] == "html":
            self._send_plain(200, str(behaviour[1]), send_body, content_type="text/html; charset=utf-8")
            return
        if behaviour is not None and behaviour[0] == "drip":
            self._drip(float(behaviour[1]), float(behaviour[2]), send_body)
            return
        from_ffmpeg = self.headers.get("Icy-MetaData") is not None
        if behaviour is not None and (
            behaviour[0] == "redirect" or (behaviour[0] == "redirect_ffmpeg" and from_ffmpeg)
        ):
            self.send_response(302)
            self.send_header("Location", str(behaviour[1]))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path = media.root / name
        if "/" in name or not name or not path.is_file():
            self._send_plain(404, f"no such file: {name}\n", send_body)
            return
        self._send_file(path, behaviour, send_body)

    def _send_plain(self, status: int, text: str, send_body: bool, content_type: str = "text/plain") -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _send_file(self, path: Path, behaviour: tuple | None, send_body: bool) -> None:
        data = path.read_bytes()
        size = len(data)
        first, last = 0, size - 1
        status = 200
        requested = self.headers.get("Range")
        if requested:
            match = _RANGE.match(requested.strip())
            if match is None or (not match.group(1) and not match.group(2)):
                self._send_plain(416, "bad range\n", send_body)
                return
            if match.group(1):
                first = int(match.group(1))
                last = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            else:
                first = max(0, size - int(match.group(2)))
            if first >= size or first > last:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        self.send_response(status)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(last - first + 1))
        if status == 206:
            self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.end_headers()
        if not send_body:
            return
        self._send_body(data, first, last, behaviour)

    def _send_body(self, data: bytes, first: int, last: int, behaviour: tuple | None) -> None:
        media = self.server.media
        if behaviour is not None and behaviour[0] == "stall":
            media.stop_event.wait(behaviour[1])
            self.close_connection = True
            return
        end = last + 1
        if behaviour is not None and behaviour[0] == "trickle":
            self._trickle(data[first:end], float(behaviour[1]))
            return
        if behaviour is not None and behaviour[0] == "truncate":
            end = min(end, int(behaviour[1]))
            self.close_connection = True
        try:
            if end > first:
                self.wfile.write(data[first:end])
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _drip(self, bytes_per_s: float, seconds: float, send_body: bool) -> None:
        media = self.server.media
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(1 << 20))
        self.end_headers()
        self.close_connection = True
        if not send_body:
            return
        piece = b"<p>" + b"x" * max(1, int(bytes_per_s / 10) - 7) + b"</p>\n"
        deadline = time.monotonic() + seconds
        try:
            self.wfile.write(b"<!DOCTYPE html><html><body>\n")
            while time.monotonic() < deadline and not media.stop_event.wait(0.1):
                self.wfile.write(piece)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return

    def _trickle(self, body: bytes, seconds: float) -> None:
        media = self.server.media
        deadline = time.monotonic() + seconds
        self.close_connection = True
        for offset in range(0, len(body), 64):
            if time.monotonic() > deadline or media.stop_event.wait(0.1):
                return
            try:
                self.wfile.write(body[offset : offset + 64])
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                return


class MediaServer:
    """Serve the files of ``root`` on 127.0.0.1; use as a context manager.

    ``behaviours`` maps a file name (no leading slash) to one of the behaviours of the module
    docstring; it may be changed while the server runs.
    """

    def __init__(self, root: str | Path, behaviours: dict[str, tuple] | None = None) -> None:
        self.root = Path(root)
        self.behaviours: dict[str, tuple] = dict(behaviours or {})
        self.requests: list[tuple[str, str, str | None]] = []
        self.stop_event = threading.Event()
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def log_request(self, method: str, path: str, byte_range: str | None) -> None:
        with self._lock:
            self.requests.append((method, path, byte_range))

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the server is not running")
        return self._server.server_address[1]

    def url(self, name: str = "") -> str:
        """The URL of ``name`` on this server."""
        return f"http://127.0.0.1:{self.port}/{name}"

    def start(self) -> MediaServer:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.media = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> MediaServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    """A forward proxy for plain-http URLs that requires Basic proxy credentials."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return

    def do_HEAD(self) -> None:  # noqa: N802
        self._forward()

    def do_GET(self) -> None:  # noqa: N802
        self._forward()

    def _client(self) -> str:
        """'ffmpeg' (known by the Icy-MetaData header it sends) or the User-Agent."""
        return "ffmpeg" if "Icy-MetaData" in self.headers else self.headers.get("User-Agent", "")

    def _forward(self) -> None:
        import base64
        import http.client
        from urllib.parse import urlsplit

        proxy: ProxyServer = self.server.media  # type: ignore[assignment]
        given = self.headers.get("Proxy-Authorization", "")
        expected = "Basic " + base64.b64encode(f"{proxy.user}:{proxy.password}".encode()).decode()
        target = urlsplit(self.path)
        if given != expected or target.scheme != "http":
            proxy.log(self.command, self.path, accepted=False, agent=self._client())
            self.send_response(407 if given != expected else 400)
            self.send_header("Proxy-Authenticate", 'Basic realm="soundsup-test"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        proxy.log(self.command, self.path, accepted=True, agent=self._client())
        headers = {
            key: value
            for key, value in self.headers.items()
            if key.lower() not in ("proxy-authorization", "proxy-connection", "connection", "host")
        }
        upstream = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=30)
        try:
            path = target.path + (f"?{target.query}" if target.query else "")
            upstream.request(self.command, path, headers=headers)
            response = upstream.getresponse()
            body = response.read() if self.command != "HEAD" else b""
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in ("connection", "transfer-encoding", "content-length"):
                    self.send_header(key, value)
            length = response.getheader("Content-Length") if self.command == "HEAD" else str(len(body))
            if length is not None:
                self.send_header("Content-Length", length)
            self.end_headers()
            if body:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            return
        finally:
            upstream.close()


class ProxyServer:
    """A forward HTTP proxy on 127.0.0.1 that asks for ``user:password`` (Basic); logs every
    request as ``(method, url, accepted, client)`` in :attr:`requests` (client: ``"ffmpeg"`` or
    the User-Agent). Use as a context
    manager."""

    def __init__(self, user: str, password: str) -> None:
        self.user, self.password = user, password
        self.requests: list[tuple[str, str, bool, str]] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def log(self, method: str, url: str, accepted: bool, agent: str) -> None:
        with self._lock:
            self.requests.append((method, url, accepted, agent))

    def url(self, user: str | None = None, password: str | None = None) -> str:
        """The proxy URL with credentials (these, or the ones it accepts)."""
        port = self._server.server_address[1] if self._server else 0
        return f"http://{user or self.user}:{password or self.password}@127.0.0.1:{port}"

    def __enter__(self) -> ProxyServer:
        server = _Server(("127.0.0.1", 0), _ProxyHandler)
        server.media = self  # type: ignore[assignment]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
