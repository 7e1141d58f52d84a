"""PASCAL VOC 2007 classification data: the official tarballs, label files, images, annotations.

The layout is the devkit's, read as is::

    VOCdevkit/VOC2007/ImageSets/Main/<class>_<split>.txt   lines "<id> <label>", label 1 / -1 / 0
    VOCdevkit/VOC2007/ImageSets/Main/<split>.txt            the ids of a split (checked when present)
    VOCdevkit/VOC2007/JPEGImages/<id>.jpg
    VOCdevkit/VOC2007/Annotations/<id>.xml

Label 0 means the image holds only "difficult" objects of the class: it is left out of the
loss and of the AP. The label files pad with spaces (``000005 -1``, ``000007  1``) and some
public copies have CRLF line endings; both are read. Anything else that is off (a missing file,
a bad label, ids that differ between classes) raises an error naming the file and line.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tarfile
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from soundsup.names import VOC_CLASSES

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "trainval", "test")
VOC07_FILES = {"trainval": "VOCtrainval_06-Nov-2007.tar", "test": "VOCtest_06-Nov-2007.tar"}
# MD5 sums of the official tarballs, as torchvision.datasets.VOCClassification pins them.
VOC07_MD5 = {
    "VOCtrainval_06-Nov-2007.tar": "c52e279531787c972589f7e41ab4ae64",
    "VOCtest_06-Nov-2007.tar": "b6e924de25625d8de591ea690078ad9f",
}
LABEL_VALUES = {"1": 1, "-1": -1, "0": 0}
_ID_PATTERN = re.compile(r"[A-Za-z0-9_]+")


class VOCFormatError(ValueError):
    """A VOC file does not have the devkit's format (the message names the file and line)."""


# ---------------------------------------------------------------------------------------------
# tarballs


def file_md5(path: str | Path, chunk_bytes: int = 1 << 22) -> str:
    """Hex MD5 of a file (to compare with :data:`VOC07_MD5`)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def check_known_md5(path: str | Path) -> None:
    """Raise :class:`VOCFormatError` if ``path`` is an official tarball (by name) with a wrong MD5."""
    expected = VOC07_MD5.get(Path(path).name)
    if expected is None:
        return
    actual = file_md5(path)
    if actual != expected:
        raise VOCFormatError(f"{path}: MD5 {actual} differs from the official {expected}")


def _check_members(tar_path: Path, members: list[tarfile.TarInfo]) -> None:
    """Reject members that would land outside the destination or are not plain files/folders."""
    for member in members:
        name = PurePosixPath(member.name)
        if name.is_absolute() or member.name.startswith(("/", "\\")) or ".." in name.parts:
            raise VOCFormatError(f"{tar_path}: unsafe member path {member.name!r}")
        if not (member.isfile() or member.isdir()):
            raise VOCFormatError(f"{tar_path}: member {member.name!r} is not a regular file or folder")


def _move_tree(source: Path, target: Path) -> None:
    """Move every file under ``source`` to the same place under ``target`` (one rename per file)."""
    for folder, _, files in os.walk(source):
        relative = Path(folder).relative_to(source)
        (target / relative).mkdir(parents=True, exist_ok=True)
        for name in files:
            os.replace(Path(folder) / name, target / relative / name)


def unpack_voc(tar_paths: list[Path], destination: Path) -> Path:
    """Unpack the VOC 2007 tarballs into ``destination``; return ``destination/VOCdevkit/VOC2007``.

    Members with absolute paths, ``..`` components, links or devices are rejected before
    anything is written. Each tarball is unpacked into a temporary folder inside
    ``destination`` and its files are renamed into place, so a killed job leaves no half-written
    file under the VOC root.
    """
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    for tar_path in map(Path, tar_paths):
        if not tar_path.is_file():
            raise FileNotFoundError(f"VOC tarball {tar_path} does not exist")
        try:
            with tarfile.open(tar_path) as archive:
                members = archive.getmembers()
                _check_members(tar_path, members)
                with tempfile.TemporaryDirectory(prefix=".unpack-", dir=destination) as scratch:
                    archive.extractall(scratch, members=members, filter="data")
                    _move_tree(Path(scratch), destination)
        except tarfile.TarError as error:
            raise VOCFormatError(f"{tar_path}: not a readable tar archive ({error})") from error
        log.info("unpacked %s (%d members) into %s", tar_path, len(members), destination)
    root = destination / "VOCdevkit" / "VOC2007"
    if not (root / "ImageSets" / "Main").is_dir():
        raise VOCFormatError(
            f"{', '.join(map(str, tar_paths))}: no VOCdevkit/VOC2007/ImageSets/Main inside; "
            "not the VOC 2007 tarballs"
        )
    return root


# ---------------------------------------------------------------------------------------------
# labels


def _read_id_label_file(path: Path) -> dict[str, int]:
    """``{id: label}`` from one ``<class>_<split>.txt`` file, in file order."""
    if not path.is_file():
        raise FileNotFoundError(f"VOC label file {path} does not exist")
    entries: dict[str, int] = {}
    with open(path, encoding="utf-8-sig", newline=None) as handle:
        for line_number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2:
                raise VOCFormatError(
                    f"{path}, line {line_number}: expected '<id> <label>', got {line.rstrip()!r}"
                )
            image_id, label = fields
            if not _ID_PATTERN.fullmatch(image_id):
                raise VOCFormatError(f"{path}, line {line_number}: bad image id {image_id!r}")
            if label not in LABEL_VALUES:
                raise VOCFormatError(f"{path}, line {line_number}: label {label!r} is not 1, -1 or 0")
            if image_id in entries:
                raise VOCFormatError(f"{path}, line {line_number}: image id {image_id} appears twice")
            entries[image_id] = LABEL_VALUES[label]
    if not entries:
        raise VOCFormatError(f"{path}: no entries")
    return entries


def _read_id_file(path: Path) -> list[str]:
    """The ids of a split file ``<split>.txt`` (one id per line)."""
    ids = []
    with open(path, encoding="utf-8-sig", newline=None) as handle:
        for line_number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 1 or not _ID_PATTERN.fullmatch(fields[0]):
                raise VOCFormatError(
                    f"{path}, line {line_number}: expected one image id, got {line.rstrip()!r}"
                )
            ids.append(fields[0])
    return ids


def _id_difference(path: Path, found: Sequence[str], reference: Sequence[str], reference_path: Path) -> str:
    extra = sorted(set(found) - set(reference))
    missing = sorted(set(reference) - set(found))
    parts = []
    if extra:
        parts.append(f"{len(extra)} ids not in {reference_path.name} (first {extra[0]})")
    if missing:
        parts.append(f"{len(missing)} ids of {reference_path.name} missing (first {missing[0]})")
    return f"{path}: image ids differ from {reference_path}: " + "; ".join(parts)


def read_labels(voc_root: str | Path, split: str) -> tuple[list[str], np.ndarray]:
    """Ids and labels of a split: ``(ids, labels)``, labels (N, 20) int8 in {1, -1, 0}.

    Columns follow :data:`VOC_CLASSES`; rows follow the first class file (the devkit's order).
    Every class file must list the same ids (the order may differ); ``<split>.txt``, when it
    exists, must hold the same ids too.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown VOC split {split!r}; expected one of {SPLITS}")
    main = Path(voc_root) / "ImageSets" / "Main"
    if not main.is_dir():
        raise FileNotFoundError(f"{main} does not exist: {voc_root} is not a VOC2007 root")
    first_path = main / f"{VOC_CLASSES[0]}_{split}.txt"
    per_class = {name: _read_id_label_file(main / f"{name}_{split}.txt") for name in VOC_CLASSES}
    ids = list(per_class[VOC_CLASSES[0]])
    labels = np.empty((len(ids), len(VOC_CLASSES)), dtype=np.int8)
    for column, name in enumerate(VOC_CLASSES):
        entries = per_class[name]
        path = main / f"{name}_{split}.txt"
        if entries.keys() != per_class[VOC_CLASSES[0]].keys():
            raise VOCFormatError(_id_difference(path, list(entries), ids, first_path))
        labels[:, column] = [entries[image_id] for image_id in ids]
    split_file = main / f"{split}.txt"
    if split_file.is_file():
        listed = _read_id_file(split_file)
        if set(listed) != set(ids) or len(listed) != len(ids):
            raise VOCFormatError(_id_difference(split_file, listed, ids, first_path))
    return ids, labels


# ---------------------------------------------------------------------------------------------
# images and annotations


def _checked_id(image_id: str) -> str:
    if not isinstance(image_id, str) or not _ID_PATTERN.fullmatch(image_id):
        raise ValueError(f"bad VOC image id {image_id!r}")
    return image_id


def _shrunk_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(width, height) after shrinking so that the longer side is at most ``max_side``."""
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def load_image(path: Path, max_side: int | None) -> np.ndarray:
    """One RGB image (H, W, 3) uint8, shrunk (bilinear, antialiased) so max(H, W) <= ``max_side``."""
    try:
        with Image.open(path) as image:
            image.load()
            rgb = image.convert("RGB")
    except FileNotFoundError as error:
        raise FileNotFoundError(f"VOC image {path} does not exist") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise VOCFormatError(f"VOC image {path} cannot be decoded ({error})") from error
    size = _shrunk_size(rgb.width, rgb.height, max_side)
    if size != rgb.size:
        rgb = rgb.resize(size, Image.Resampling.BILINEAR)
    return np.array(rgb, dtype=np.uint8)  # a writable copy (torch.from_numpy wants one)


def _image_paths(voc_root: str | Path, ids: Sequence[str]) -> list[Path]:
    folder = Path(voc_root) / "JPEGImages"
    return [folder / f"{_checked_id(image_id)}.jpg" for image_id in ids]


def _parallel_map(function, items: Sequence, n_threads: int) -> list:
    """``[function(item) for item in items]`` on ``n_threads`` threads (Pillow, numpy and hashlib
    release the GIL for the heavy part)."""
    if n_threads <= 1 or len(items) <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=n_threads) as pool:
        return list(pool.map(function, items))


def load_images(
    voc_root: str | Path, ids: Sequence[str], max_side: int | None, n_threads: int = 1
) -> list[np.ndarray]:
    """``JPEGImages/<id>.jpg`` for each id: a list of (H_i, W_i, 3) uint8 RGB arrays.

    With ``max_side`` an image whose longer side exceeds it is shrunk to that side (bounding
    memory: VOC's images are at most 500 px). ``n_threads`` decoders run in parallel (Pillow
    releases the GIL while decoding). A missing or corrupt file raises an error naming it.
    """
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be positive or None; got {max_side}")
    paths = _image_paths(voc_root, ids)
    return _parallel_map(lambda path: load_image(path, max_side), paths, n_threads)


@dataclass(frozen=True)
class PackedImages:
    """Images of different sizes in one zero-padded array, as fine-tuning crops them.

    ``pixels`` (N, H_max, W_max, 3) uint8 holds image i in ``pixels[i, :H_i, :W_i]``; ``sizes``
    (N, 2) int64 holds (H_i, W_i); ``digest`` is the SHA-256 (hex) of every image's own pixels
    and size, in order (what a fine-tuning checkpoint is checked against).
    """

    pixels: np.ndarray
    sizes: np.ndarray
    digest: str

    def __len__(self) -> int:
        return len(self.sizes)

    def image(self, index: int) -> np.ndarray:
        """Image ``index`` (H_i, W_i, 3) uint8, a view into ``pixels``."""
        height, width = self.sizes[index]
        return self.pixels[index, :height, :width]


def _combined_digest(sizes: np.ndarray, digests: Sequence[bytes]) -> str:
    combined = hashlib.sha256(np.ascontiguousarray(sizes, dtype=np.int64).tobytes())
    for digest in digests:
        combined.update(digest)
    return combined.hexdigest()


def _pixel_digest(image: np.ndarray) -> bytes:
    return hashlib.sha256(memoryview(np.ascontiguousarray(image)).cast("B")).digest()


def pack_images(images: Sequence[np.ndarray]) -> PackedImages:
    """Pack (H_i, W_i, 3) uint8 arrays into one :class:`PackedImages` (copies them)."""
    if not len(images):
        raise ValueError("no images to pack")
    for index, image in enumerate(images):
        if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3):
            raise ValueError(f"image {index}: expected an (H, W, 3) uint8 array, got {_describe(image)}")
        if image.shape[2] != 3 or min(image.shape[:2]) < 1:
            raise ValueError(f"image {index}: expected an (H, W, 3) uint8 array, got {_describe(image)}")
    sizes = np.array([image.shape[:2] for image in images], dtype=np.int64)
    pixels = np.zeros((len(images), *sizes.max(axis=0), 3), dtype=np.uint8)
    for index, image in enumerate(images):
        pixels[index, : image.shape[0], : image.shape[1]] = image
    return PackedImages(pixels, sizes, _combined_digest(sizes, [_pixel_digest(image) for image in images]))


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}"
    return type(value).__name__


def _header_size(path: Path, max_side: int | None) -> tuple[int, int]:
    """(height, width) that :func:`load_image` will return for ``path``, from the file header."""
    try:
        with Image.open(path) as image:
            width, height = _shrunk_size(image.width, image.height, max_side)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"VOC image {path} does not exist") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise VOCFormatError(f"VOC image {path} cannot be decoded ({error})") from error
    return height, width


def load_packed_images(
    voc_root: str | Path, ids: Sequence[str], max_side: int | None, n_threads: int = 1
) -> PackedImages:
    """``JPEGImages/<id>.jpg`` for each id, decoded once, straight into a :class:`PackedImages`.

    The sizes come from the file headers first, so the padded array is allocated once and each
    of ``n_threads`` decoders writes its images into their slots (no second copy of the data
    set). Shrinking to ``max_side``, the errors and the pixels are those of :func:`load_images`.
    """
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be positive or None; got {max_side}")
    if not len(ids):
        raise ValueError(f"no image ids to load from {voc_root}")
    paths = _image_paths(voc_root, ids)
    sizes = np.array(_parallel_map(lambda path: _header_size(path, max_side), paths, n_threads), np.int64)
    pixels = np.zeros((len(paths), *sizes.max(axis=0), 3), dtype=np.uint8)

    def decode(index: int) -> bytes:
        image = load_image(paths[index], max_side)
        if image.shape[:2] != tuple(sizes[index]):
            raise VOCFormatError(
                f"VOC image {paths[index]}: decodes to {image.shape[:2]}, "
                f"its header says {tuple(sizes[index])}"
            )
        pixels[index, : image.shape[0], : image.shape[1]] = image
        return _pixel_digest(image)

    digests = _parallel_map(decode, range(len(paths)), n_threads)
    log.info(
        "decoded %d images from %s into %s uint8 (%d threads)", len(paths), voc_root, pixels.shape, n_threads
    )
    return PackedImages(pixels, sizes, _combined_digest(sizes, digests))
