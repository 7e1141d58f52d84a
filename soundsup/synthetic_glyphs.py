"""Procedural glyphs of the 20 PASCAL VOC classes for the synthetic world.

Each class has a distinctive shape and colour scheme (a car is a rounded body with two dark
wheels, a boat a hull with a triangular sail, ...). Shapes are written in unit coordinates
(u to the right, v down, both in [0, 1]) of the object's box; :class:`Pen` maps them to pixels,
mirrored when the object faces the other way. Instances vary in size, aspect, colour and pose.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PIL import ImageDraw

Colour = tuple[int, int, int]
DARK: Colour = (25, 25, 28)


class Pen:
    """Draws unit-coordinate shapes into the pixel box (x, y, width, height), optionally mirrored."""

    def __init__(
        self, draw: ImageDraw.ImageDraw, x: float, y: float, width: float, height: float, flip: bool
    ):
        self.draw, self.x, self.y, self.width, self.height, self.flip = draw, x, y, width, height, flip

    def point(self, u: float, v: float) -> tuple[float, float]:
        return self.x + (1.0 - u if self.flip else u) * self.width, self.y + v * self.height

    def _box(self, u0: float, v0: float, u1: float, v1: float) -> list[float]:
        (x0, y0), (x1, y1) = self.point(u0, v0), self.point(u1, v1)
        return [min(x0, x1), min(y0, y1), max(x0, x1) + 0.01, max(y0, y1) + 0.01]

    def _width(self, fraction: float) -> int:
        return max(1, int(round(fraction * self.height)))

    def ellipse(
        self, u0: float, v0: float, u1: float, v1: float, fill: Colour | None, outline=None, width=0.0
    ):
        self.draw.ellipse(self._box(u0, v0, u1, v1), fill=fill, outline=outline, width=self._width(width))

    def rect(self, u0: float, v0: float, u1: float, v1: float, fill: Colour):
        self.draw.rectangle(self._box(u0, v0, u1, v1), fill=fill)

    def polygon(self, points: Sequence[tuple[float, float]], fill: Colour):
        self.draw.polygon([self.point(u, v) for u, v in points], fill=fill)

    def line(self, points: Sequence[tuple[float, float]], fill: Colour, width: float):
        self.draw.line([self.point(u, v) for u, v in points], fill=fill, width=self._width(width))


def _aeroplane(pen: Pen, c: Sequence[Colour], variant: Sequence[float]) -> None:
    body, accent = c[0], c[1]
    pen.polygon([(0.36, 0.45), (0.56, 0.45), (0.44, 0.0), (0.34, 0.0)], body)
    pen.polygon([(0.36, 0.55), (0.56, 0.55), (0.44, 1.0), (0.34, 1.0)], body)
    pen.polygon([(0.02, 0.46), (0.12, 0.46), (0.06, 0.22), (0.0, 0.22)], body)
    pen.polygon([(0.02, 0.54), (0.12, 0.54), (0.06, 0.78), (0.0, 0.78)], body)
    pen.ellipse(0.0, 0.4, 1.0, 0.6, body)
    pen.ellipse(0.84, 0.43, 1.0, 0.57, accent)
    pen.line([(0.15, 0.5), (0.8, 0.5)], accent, 0.04)


def _bicycle(pen: Pen, c: Sequence[Colour], variant: Sequence[float]) -> None:
    frame = c[0]
    pen.ellipse(0.0, 0.42, 0.38, 1.0, None, outline=DARK, width=0.07)
    pen.ellipse(0.62, 0.42, 1.0, 1.0, None, outline=DARK, width=0.07)
    pen.line([(0.19, 0.71), (0.45, 0.71), (0.81, 0.71)], frame, 0.06)
    pen.line([(0.45, 0.71), (0.33, 0.3), (0.19, 0.71)], frame, 0.06)
    pen.line([(0.33, 0.3), (0.72, 0.3), (0.81, 0.71)], frame, 0.06)
    pen.line([(0.45, 0.71), (0.72, 0.3)], frame, 0.06)
    pen.line([(0.72, 0.3), (0.74, 0.12), (0.84, 0.1)], DARK, 0.05)
    pen.line([(0.26, 0.24), (0.4, 0.24)], DARK, 0.07)


def _bird(pen: Pen, c: Sequence[Colour], variant: Sequence[float]) -> None:
    body, beak = c[0], c[1]
    pen.polygon([(0.22, 0.5), (0.0, 0.32), (0.0, 0.68)], body)
    pen.ellipse(0.12, 0.35, 0.8, 0.82, body)
    pen.ellipse(0.6, 0.18, 0.92, 0.56, body)
    pen.polygon([(0.89, 0.32), (1.0, 0.4), (0.89, 0.47)], beak)
    wing_tip = 0.0 + 0.25 * variant[0]
    pen.polygon([(0.28, 0.52), (0.45, wing_tip), (0.62, 0.55)], tuple(max(0, v - 30) for v in body))
    pen.ellipse(0.76, 0.28, 0.82, 0.34, (235, 235, 235))


def _boat(pen: Pen, c: Sequence[Colour], variant: Sequence[float]) -> None:
    hull, sail = c[0], c[1]
    pen.polygon([(0.0, 0.7), (1.0, 0.7), (0.83, 1.0), (0.14, 1.0)], hull)
    pen.line([(0.5, 0.03), (0.5, 0.72)], DARK, 0.035)
    pen.polygon([(0.53, 0.05), (0.53, 0.66), (0.95, 0.66)], sail)
    pen.polygon([(0.47, 0.18), (0.47, 0.66), (0.16, 0.66)], sail)


def _bottle(pen: Pen, c: Sequence[Colour], variant: Sequence[float]) -> None:
    glass, label = c[0], c[1]
    pen.rect(0.08, 0.4, 0.92, 1.0, glass)
    pen.polygon([(0.08, 0.41), (0.92, 0.41), (0.66, 0.22), (0.34, 0.22)], glass)
    pen.rect(0.34, 0.04, 0.66, 0.24, glass)
    pen.rect(0.3, 0.0, 0.7, 0.07, DARK)
    pen.rect(0.08, 0.55, 0.92, 0.8, label)


def _bus(pen: Pen, c: Sequence[Colour], variant: Sequence[float]) -> None:
    body, window = c[0], c[1]
    pen.draw.rounded_rectangle(
        pen._box(0.0, 0.04, 1.0, 0.86), radius=max(1, int(0.1 * pen.height)), fill=body
    )
    for index in range(6):
        left = 0.05 + index * 0.155
        pen.rect(left, 0.15, left + 0.11, 0.45, window)
    pen.line([(0.02, 0.6), (0.98, 0.6)], DARK, 0.04)
    pen.ellipse(0.1, 0.7, 0.26, 1.0, DARK)
    pen.ellipse(0.72, 0.7, 0.88, 1.0, DARK)


def _car(pen: Pen, c: Sequence[Colour], variant: Sequence[float]) -> None:
    body, window = c[0], c[1]
    pen.polygon([(0.2, 0.42), (0.32, 0.05), (0.7, 0.05), (0.84, 0.42)], body)
    pen.draw.rounded_rectangle(
        pen._box(0.0, 0.38, 1.0, 0.82), radius=max(1, int(0.15 * pen.height)), fill=body
    )
    pen.polygon([(0.28, 0.38), (0.36, 0.12), (0.49, 0.12), (0.49, 0.38)], window)
    pen.polygon([(0.53, 0.38), (0.53, 0.12), (0.67, 0.12), (0.77, 0.38)], window)
    for left in (0.1, 0.66):
        pen.ellipse(left, 0.6, left + 0.22, 1.0, DARK)
        pen.ellipse(left + 0.07, 0.73, left + 0.15, 0.87, (150, 150, 155))


def _cat(pen: Pen, c: Sequence[Colour], variant: Sequence[float]) -> None:
    fur = c[0]
    pen.line([(0.1, 0.62), (0.0, 0.35 - 0.2 * variant[0])], fur, 0.08)
    for left in (0.15, 0.28, 0.5, 0.62):
        pen.rect(left, 0.7, left + 0.07, 1.0, fur)
    pen.ellipse(0.05, 0.4, 0.75, 0.88, fur)
    pen.ellipse(0.58, 0.15, 0.96, 0.56, fur)
    pen.polygon([(0.6, 0.28), (0.65, 0.0), (0.75, 0.2)], fur)
    pen.polygon([(0.8, 0.2), (0.9, 0.0), (0.94, 0.3)], fur)
    pen.ellipse(0.68, 0.28, 0.74, 0.36, (90, 200, 90))
    pen.ellipse(0.82, 0.28, 0.88, 0.36, (90, 200, 90))


def _chair(pen: Pen, c: Sequence[Colour], variant: Sequence[float]) -> None:
    wood = c[0]
    pen.rect(0.08, 0.0, 0.26, 0.56, wood)
    pen.rect(0.08, 0.5, 0.96, 0.62, wood)
    pen.line([(0.14, 0.6), (0.14, 1.0)], wood, 0.07)
    pen.line([(0.9, 0.6), (0.9, 1.0)], wood, 0.07)
    pen.line([(0.62, 0.6), (0.6, 0.95)], tuple(max(0, v - 40) for v in wood), 0.06)


def _cow(pen: Pen, c: Sequence[Colour], variant: Sequence[float]) -> None:
    hide, patch = c[0], c[1]
    for left in (0.15, 0.27, 0.58, 0.7):
        pen.rect(left, 0.6, left + 0.07, 1.0, DARK)
    pen.ellipse(0.08, 0.18, 0.86, 0.72, hide)
    for index in range(3):
        u, v = 0.18 + 0.5 * variant[index], 0.25 + 0.3 * variant[index + 3]
        pen.ellipse(u, v, u + 0.16, v + 0.16, patch)
    pen.ellipse(0.76, 0.12, 1.0, 0.5, hide)
    pen.line([(0.8, 0.14), (0.76, 0.02)], (220, 220, 200), 0.04)
    pen.ellipse(0.86, 0.3, 1.0, 0.5, (235, 170, 170))


def _diningtable(pen: Pen, c: Sequence[Colour], variant: Sequence[float]) -> None:
    top, cloth = c[0], c[1]
    pen.rect(0.04, 0.34, 0.12, 1.0, top)
    pen.rect(0.88, 0.34, 0.96, 1.0, top)
    pen.rect(0.0, 0.22, 1.0, 0.36, top)
    pen.polygon([(0.1, 0.22), (0.9, 0.22), (0.94, 0.55), (0.06, 0.55)], cloth)
    pen.ellipse(0.25 + 0.3 * variant[0], 0.1, 0.45 + 0.3 * variant[0], 0.24, (245, 245, 245))


def _dog(pen: Pen, c: Sequence[Colour], variant: Sequence[float]) -> None:
    fur, ear = c[0], c[1]
    pen.line([(0.17, 0.42), (0.02, 0.12 + 0.2 * variant[0])], fur, 0.07)
    for left in (0.2, 0.3, 0.58, 0.67):
        pen.rect(left, 0.6, left + 0.07, 1.0, fur)
    pen.ellipse(0.12, 0.3, 0.78, 0.72, fur)
    pen.ellipse(0.62, 0.08, 0.92, 0.46, fur)
    pen.rect(0.86, 0.24, 1.0, 0.4, fur)
    pen.ellipse(0.64, 0.1, 0.74, 0.5, ear)
    pen.ellipse(0.95, 0.24, 1.0, 0.31, DARK)


def _horse(pen: Pen, c: Sequence[Colour], variant: Sequence[float]) -> None:
    coat, mane = c[0], c[1]
    pen.line([(0.12, 0.36), (0.02, 0.72)], mane, 0.07)
    for left in (0.16, 0.26, 0.58, 0.67):
        pen.rect(left, 0.5, left + 0.06, 1.0, coat)
    pen.ellipse(0.1, 0.28, 0.78, 0.62, coat)
    pen.polygon([(0.6, 0.42), (0.7, 0.05), (0.84, 0.05), (0.8, 0.46)], coat)
    pen.polygon([(0.7, 0.0), (0.86, 0.0), (1.0, 0.2), (0.95, 0.28), (0.8, 0.18)], coat)
    pen.line([(0.7, 0.04), (0.62, 0.38)], mane, 0.05)


def _motorbike(pen: Pen, c: Sequence[Colour], variant: Sequence[float]) -> None:
    body = c[0]
    pen.ellipse(0.0, 0.45, 0.38, 1.0, None, outline=DARK, width=0.13)
    pen.ellipse(0.62, 0.45, 1.0, 1.0, None, outline=DARK, width=0.13)
    pen.polygon([(0.2, 0.6), (0.38, 0.36), (0.72, 0.36), (0.82, 0.62), (0.5, 0.72)], body)
    pen.ellipse(0.42, 0.26, 0.66, 0.46, body)
    pen.rect(0.22, 0.3, 0.44, 0.38, DARK)
    pen.line([(0.72, 0.38), (0.8, 0.08)], DARK, 0.05)
    pen.ellipse(0.8, 0.3, 0.9, 0.42, (250, 230, 120))


def _person(pen: Pen, c: Sequence[Colour], variant: Sequence[float]) -> None:
    shirt, trousers, skin = c[0], c[1], c[2]
    pen.line([(0.16, 0.22), (0.02, 0.55)], shirt, 0.055)
    pen.line([(0.84, 0.22), (0.98, 0.55 - 0.3 * variant[0])], shirt, 0.055)
    pen.rect(0.2, 0.58, 0.48, 1.0, trousers)
    pen.rect(0.52, 0.58, 0.8, 1.0, trousers)
    pen.rect(0.15, 0.19, 0.85, 0.6, shirt)
    pen.ellipse(0.27, 0.0, 0.73, 0.19, skin)
    pen.ellipse(0.27, 0.0, 0.73, 0.07, DARK)


def _pottedplant(pen: Pen, c: Sequence[Colour], variant: Sequence[float]) -> None:
    pot, leaf = c[0], c[1]
    darker = tuple(max(0, v - 45) for v in leaf)
    pen.ellipse(0.2, 0.0, 0.55, 0.45, leaf)
    pen.ellipse(0.45, 0.0, 0.8, 0.45, darker)
    pen.ellipse(0.0, 0.2, 0.45, 0.62, darker)
    pen.ellipse(0.55, 0.2, 1.0, 0.62, leaf)
    pen.ellipse(0.3, 0.18, 0.7, 0.64, leaf)
    pen.polygon([(0.2, 0.62), (0.8, 0.62), (0.7, 1.0), (0.3, 1.0)], pot)
    pen.rect(0.15, 0.58, 0.85, 0.67, pot)


def _sheep(pen: Pen, c: Sequence[Colour], variant: Sequence[float]) -> None:
    wool = c[0]
    for left in (0.2, 0.3, 0.58, 0.67):
        pen.rect(left, 0.6, left + 0.05, 1.0, DARK)
    for index in range(7):
        u = 0.05 + 0.1 * index + 0.04 * variant[index]
        v = 0.15 + 0.18 * (index % 2)
        pen.ellipse(u, v, u + 0.28, v + 0.45, wool)
    pen.ellipse(0.74, 0.18, 1.0, 0.52, DARK)
    pen.ellipse(0.72, 0.22, 0.8, 0.3, DARK)


def _sofa(pen: Pen, c: Sequence[Colour], variant: Sequence[float]) -> None:
    fabric = c[0]
    darker = tuple(max(0, v - 40) for v in fabric)
    pen.rect(0.05, 0.85, 0.1, 1.0, DARK)
    pen.rect(0.9, 0.85, 0.95, 1.0, DARK)
    pen.draw.rounded_rectangle(
        pen._box(0.05, 0.0, 0.95, 0.6), radius=max(1, int(0.1 * pen.height)), fill=fabric
    )
    pen.rect(0.0, 0.48, 1.0, 0.86, fabric)
    pen.rect(0.0, 0.25, 0.12, 0.86, darker)
    pen.rect(0.88, 0.25, 1.0, 0.86, darker)
    pen.line([(0.5, 0.1), (0.5, 0.84)], darker, 0.03)


def _train(pen: Pen, c: Sequence[Colour], variant: Sequence[float]) -> None:
    body, stripe = c[0], c[1]
    pen.rect(0.0, 0.94, 1.0, 1.0, (110, 110, 115))
    pen.rect(0.0, 0.08, 0.82, 0.86, body)
    pen.polygon([(0.8, 0.08), (0.92, 0.16), (1.0, 0.55), (1.0, 0.86), (0.8, 0.86)], body)
    for index in range(6):
        left = 0.04 + index * 0.13
        pen.rect(left, 0.2, left + 0.08, 0.45, (40, 50, 70))
    pen.polygon([(0.84, 0.2), (0.92, 0.24), (0.97, 0.45), (0.84, 0.45)], (40, 50, 70))
    pen.line([(0.0, 0.62), (1.0, 0.62)], stripe, 0.08)
    for index in range(5):
        left = 0.05 + index * 0.2
        pen.ellipse(left, 0.8, left + 0.07, 0.98, DARK)


def _tvmonitor(pen: Pen, c: Sequence[Colour], variant: Sequence[float]) -> None:
    frame, screen = c[0], c[1]
    pen.polygon([(0.4, 0.8), (0.6, 0.8), (0.72, 1.0), (0.28, 1.0)], frame)
    pen.rect(0.0, 0.0, 1.0, 0.82, frame)
    pen.rect(0.07, 0.07, 0.93, 0.75, screen)
    bright = tuple(min(255, v + 70) for v in screen)
    pen.rect(0.07, 0.07 + 0.4 * variant[0], 0.93, 0.17 + 0.4 * variant[0], bright)


@dataclass(frozen=True)
class ClassStyle:
    """How a class looks: width/height aspect, height as a fraction of the image, vertical
    placement range (fraction of image height of the centre), colour schemes and whether it has
    a facing direction (VOC pose Left/Right)."""

    draw: Callable[[Pen, Sequence[Colour], Sequence[float]], None]
    aspect: float
    height_range: tuple[float, float]
    vertical_range: tuple[float, float]
    schemes: tuple[tuple[Colour, ...], ...]
    has_pose: bool = True


SKIN = ((240, 200, 170), (200, 150, 110), (140, 95, 65), (90, 60, 40))
CLASS_STYLES: dict[str, ClassStyle] = {
    "aeroplane": ClassStyle(
        _aeroplane,
        1.7,
        (0.22, 0.36),
        (0.2, 0.5),
        (((235, 235, 240), (30, 70, 170)), ((200, 205, 210), (190, 30, 30))),
    ),
    "bicycle": ClassStyle(
        _bicycle, 1.6, (0.3, 0.42), (0.55, 0.8), (((200, 30, 30),), ((30, 90, 200),), ((30, 150, 60),))
    ),
    "bird": ClassStyle(
        _bird,
        1.3,
        (0.12, 0.2),
        (0.2, 0.8),
        (((30, 30, 35), (240, 150, 20)), ((70, 45, 30), (240, 200, 30)), ((30, 40, 90), (240, 150, 20))),
    ),
    "boat": ClassStyle(
        _boat,
        1.1,
        (0.35, 0.5),
        (0.45, 0.7),
        (((120, 70, 35), (245, 245, 235)), ((150, 30, 30), (250, 240, 210)), ((25, 40, 90), (240, 140, 40))),
    ),
    "bottle": ClassStyle(
        _bottle,
        0.36,
        (0.3, 0.42),
        (0.5, 0.8),
        (((40, 130, 50), (245, 245, 240)), ((110, 60, 20), (220, 40, 40)), ((120, 170, 210), (250, 220, 60))),
        has_pose=False,
    ),
    "bus": ClassStyle(
        _bus,
        2.3,
        (0.26, 0.36),
        (0.55, 0.75),
        (
            ((245, 190, 20), (150, 200, 240)),
            ((230, 100, 20), (150, 200, 240)),
            ((200, 30, 40), (170, 210, 240)),
        ),
    ),
    "car": ClassStyle(
        _car,
        1.9,
        (0.2, 0.3),
        (0.6, 0.85),
        (
            ((210, 30, 30), (170, 210, 240)),
            ((30, 70, 200), (170, 210, 240)),
            ((240, 240, 240), (90, 120, 150)),
        ),
    ),
    "cat": ClassStyle(
        _cat, 1.3, (0.2, 0.3), (0.6, 0.85), (((230, 130, 40),), ((130, 130, 135),), ((30, 30, 30),))
    ),
    "chair": ClassStyle(
        _chair, 0.75, (0.3, 0.42), (0.55, 0.8), (((130, 80, 40),), ((30, 30, 30),), ((230, 230, 230),))
    ),
    "cow": ClassStyle(
        _cow,
        1.6,
        (0.28, 0.4),
        (0.55, 0.8),
        (((245, 245, 245), (25, 25, 25)), ((150, 90, 50), (245, 245, 245)), ((240, 240, 235), (120, 70, 40))),
    ),
    "diningtable": ClassStyle(
        _diningtable,
        1.7,
        (0.28, 0.38),
        (0.6, 0.8),
        (((120, 75, 40), (245, 245, 245)), ((90, 55, 30), (200, 50, 50))),
        has_pose=False,
    ),
    "dog": ClassStyle(
        _dog,
        1.4,
        (0.22, 0.32),
        (0.6, 0.85),
        (((160, 100, 50), (90, 55, 25)), ((35, 30, 30), (90, 70, 60)), ((225, 190, 110), (150, 110, 60))),
    ),
    "horse": ClassStyle(
        _horse,
        1.3,
        (0.36, 0.5),
        (0.5, 0.75),
        (((110, 60, 30), (30, 20, 15)), ((40, 30, 25), (15, 10, 10)), ((225, 225, 220), (140, 140, 140))),
    ),
    "motorbike": ClassStyle(
        _motorbike, 1.5, (0.28, 0.38), (0.6, 0.85), (((200, 20, 30),), ((30, 30, 40),), ((30, 80, 190),))
    ),
    "person": ClassStyle(
        _person,
        0.42,
        (0.4, 0.6),
        (0.5, 0.75),
        tuple(
            ((r, g, b), trousers, skin)
            for (r, g, b) in ((200, 40, 40), (40, 160, 70), (240, 200, 40), (60, 60, 190))
            for trousers in ((40, 50, 110), (50, 45, 40))
            for skin in SKIN
        ),
    ),
    "pottedplant": ClassStyle(
        _pottedplant,
        0.8,
        (0.3, 0.42),
        (0.55, 0.8),
        (((190, 95, 50), (50, 150, 50)), ((60, 80, 160), (70, 170, 60)), ((235, 235, 230), (40, 120, 45))),
        has_pose=False,
    ),
    "sheep": ClassStyle(
        _sheep, 1.35, (0.24, 0.34), (0.55, 0.8), (((245, 245, 240),), ((225, 220, 200),), ((200, 200, 200),))
    ),
    "sofa": ClassStyle(
        _sofa,
        2.0,
        (0.3, 0.42),
        (0.55, 0.8),
        (((170, 30, 40),), ((40, 70, 150),), ((110, 40, 130),), ((60, 110, 60),)),
    ),
    "train": ClassStyle(
        _train,
        3.0,
        (0.24, 0.32),
        (0.4, 0.7),
        (((190, 30, 30), (245, 245, 245)), ((30, 120, 60), (250, 220, 50)), ((30, 60, 160), (245, 245, 245))),
    ),
    "tvmonitor": ClassStyle(
        _tvmonitor,
        1.3,
        (0.28, 0.4),
        (0.35, 0.65),
        (((20, 20, 22), (40, 110, 220)), ((150, 150, 155), (40, 180, 200)), ((20, 20, 22), (200, 60, 160))),
        has_pose=False,
    ),
}


def draw_glyph(
    draw: ImageDraw.ImageDraw,
    class_name: str,
    x: float,
    y: float,
    width: float,
    height: float,
    colours: Sequence[Colour],
    flip: bool,
    variant: Sequence[float],
) -> None:
    """Draw one instance of ``class_name`` into the pixel box (x, y, width, height)."""
    style = CLASS_STYLES.get(class_name)
    if style is None:
        raise ValueError(f"no glyph for class {class_name!r}")
    style.draw(Pen(draw, x, y, width, height, flip), colours, variant)
