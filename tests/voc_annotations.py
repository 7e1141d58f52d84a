"""Reading VOC annotation XML, for the tests that check a VOC folder's label lists against
its annotations (the workflow itself reads the devkit's per-class ImageSets lists)."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from soundsup.names import VOC_CLASSES
from soundsup.voc import VOCFormatError, _checked_id


def _int_field(node: ElementTree.Element, tag: str, path: Path) -> int:
    text = node.findtext(tag)
    if text is None:
        raise VOCFormatError(f"{path}: an object lacks <{tag}>")
    try:
        return int(round(float(text)))
    except ValueError as error:
        raise VOCFormatError(f"{path}: <{tag}> is {text!r}, not a number") from error


def read_annotation(voc_root: str | Path, image_id: str) -> list[dict]:
    """The objects of ``Annotations/<id>.xml``: dicts with ``name`` (str), ``difficult`` (bool)
    and ``bbox`` ((xmin, ymin, xmax, ymax) ints, 1-based pixels as in the devkit)."""
    path = Path(voc_root) / "Annotations" / f"{_checked_id(image_id)}.xml"
    if not path.is_file():
        raise FileNotFoundError(f"VOC annotation {path} does not exist")
    try:
        tree = ElementTree.parse(path)
    except ElementTree.ParseError as error:
        raise VOCFormatError(f"{path}: not valid XML ({error})") from error
    objects = []
    for node in tree.getroot().iter("object"):
        name = (node.findtext("name") or "").strip()
        if not name:
            raise VOCFormatError(f"{path}: an object has no <name>")
        box = node.find("bndbox")
        if box is None:
            raise VOCFormatError(f"{path}: object {name!r} has no <bndbox>")
        bbox = tuple(_int_field(box, tag, path) for tag in ("xmin", "ymin", "xmax", "ymax"))
        difficult = (node.findtext("difficult") or "0").strip() == "1"
        objects.append({"name": name, "difficult": difficult, "bbox": bbox})
    return objects


def labels_from_annotations(objects: Sequence[dict]) -> np.ndarray:
    """The devkit's image label per class from an annotation: (20,) int8.

    1 if the class has a non-difficult object, 0 if only difficult ones, -1 if none.
    """
    labels = np.full(len(VOC_CLASSES), -1, dtype=np.int8)
    for item in objects:
        if item["name"] not in VOC_CLASSES:
            continue
        column = VOC_CLASSES.index(item["name"])
        labels[column] = max(labels[column], 0 if item["difficult"] else 1)
    return labels
