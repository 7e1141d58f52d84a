"""Locate the ffmpeg binary that every stage uses.

ffmpeg is the binary shipped by the ``imageio-ffmpeg`` wheel unless ``FFMPEG_BINARY`` names
another. yt-dlp decides whether it can cut sections by looking for an executable called
``ffmpeg`` on ``PATH``, so :func:`ffmpeg_on_path` exposes the chosen binary under that name.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path


@functools.cache
def ffmpeg_binary() -> str:
    """Absolute path of the ffmpeg executable (``FFMPEG_BINARY`` first, then imageio-ffmpeg)."""
    override = os.environ.get("FFMPEG_BINARY")
    if override:
        if not os.access(override, os.X_OK):
            raise FileNotFoundError(f"FFMPEG_BINARY={override!r} is not an executable file")
        return override
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@functools.cache
def ffmpeg_on_path() -> Path:
    """A folder holding an executable named ``ffmpeg`` (a link to :func:`ffmpeg_binary`).

    The folder is prepended to ``PATH`` of this process, so child processes and yt-dlp's
    availability check find the same binary.
    """
    binary = Path(ffmpeg_binary())
    if binary.name == "ffmpeg":
        folder = binary.parent
    else:
        folder = Path(tempfile.mkdtemp(prefix="soundsup-ffmpeg-"))
        (folder / "ffmpeg").symlink_to(binary)
    path_entries = os.environ.get("PATH", "").split(os.pathsep)
    if str(folder) not in path_entries:
        os.environ["PATH"] = os.pathsep.join([str(folder), *path_entries])
    return folder
