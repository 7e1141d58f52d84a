"""Scenes of the synthetic world: what is in them, what they look like and what they sound like.

A scene couples an ambient sound texture (water, traffic, birdsong, wind, crowd, machinery,
rain) with the PASCAL VOC classes seen in it, so the sound of a clip predicts the objects in its
frames. The visual cue of a scene is its objects only: every scene draws its backgrounds from one
shared palette. One renderer (:func:`sample_layout` + :func:`draw_layout`, or
:func:`render_scene_image`) makes both the video frames and the VOC images; the sounds come from
:func:`synthesize_scene_audio`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from soundsup.synthetic_glyphs import CLASS_STYLES, draw_glyph


@dataclass(frozen=True)
class Scene:
    """A place: its ambient sound texture, its AudioSet labels and the VOC classes seen there."""

    name: str
    sound: str
    labels: tuple[str, ...]
    classes: tuple[str, ...]


SCENES: tuple[Scene, ...] = (
    Scene("river", "water", ("/m/0838f", "/m/0j6m2"), ("boat", "cow", "bird")),
    Scene("street", "traffic", ("/m/0btp2", "/t/dd00128"), ("car", "bus", "motorbike", "bicycle")),
    Scene("park", "birdsong", ("/m/020bb7", "/t/dd00129"), ("bird", "dog", "pottedplant", "bicycle")),
    Scene("pasture", "wind", ("/m/03m9d0z", "/m/09t49"), ("sheep", "horse", "cow", "aeroplane")),
    Scene("plaza", "crowd", ("/m/03qtwd", "/m/07qfr4h"), ("person", "chair", "diningtable", "bottle")),
    Scene("depot", "machinery", ("/t/dd00077", "/m/07rcgpl"), ("train", "aeroplane", "person")),
    Scene("home", "rain", ("/m/06mb1", "/t/dd00038"), ("sofa", "tvmonitor", "cat", "pottedplant")),
)

HORN_LABEL = "/m/0912c9"  # Vehicle horn, car horn, honking: added to traffic clips that honk

# Background colours shared by every scene (sky, grass, sand, asphalt, walls, water, soil...).
BACKGROUND_PALETTE = np.array(
    [
        (135, 180, 225), (170, 205, 235), (95, 150, 80), (130, 175, 95), (210, 190, 140),
        (120, 120, 125), (165, 160, 150), (225, 215, 195), (85, 120, 150), (140, 110, 80),
        (190, 170, 200), (200, 200, 205), (70, 90, 60), (230, 200, 170),
    ],
    dtype=np.float32,
)  # fmt: skip


def scene_by_name(name: str) -> Scene:
    """The scene called ``name``; ValueError naming the known scenes otherwise."""
    for scene in SCENES:
        if scene.name == name:
            return scene
    raise ValueError(f"unknown scene {name!r}; known: {[scene.name for scene in SCENES]}")


# --------------------------------------------------------------------------------------------
# Pictures


@dataclass(frozen=True)
class PlacedObject:
    """One object instance: its class, box at t = 0 (pixels, float), drift (pixels/s) and looks."""

    class_name: str
    x: float
    y: float
    width: float
    height: float
    velocity_x: float
    velocity_y: float
    colours: tuple[tuple[int, int, int], ...]
    flip: bool
    variant: tuple[float, ...]


@dataclass(frozen=True)
class Layout:
    """Everything needed to draw a scene at any time t: background, objects, pan and drift."""

    scene: Scene
    width: int
    height: int
    background: np.ndarray  # uint8 (height + margin) x (width + margin) x 3
    pan_x: float  # background pan, pixels/s
    pan_y: float
    objects: tuple[PlacedObject, ...]  # in drawing order (back to front)


def _background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A gradient between two palette colours, low-frequency texture and grain: uint8 H x W x 3."""
    top, bottom = BACKGROUND_PALETTE[rng.choice(len(BACKGROUND_PALETTE), size=2, replace=False)]
    horizon = rng.uniform(0.3, 0.7)
    sharpness = rng.uniform(2.0, 25.0)
    rows = np.linspace(0.0, 1.0, height, dtype=np.float32)
    mix = 1.0 / (1.0 + np.exp(-(rows - horizon) * sharpness))
    image = top[None, None, :] * (1 - mix)[:, None, None] + bottom[None, None, :] * mix[:, None, None]
    coarse = rng.normal(0.0, 1.0, size=(rng.integers(3, 7), rng.integers(3, 9), 3)).astype(np.float32)
    row_index = np.linspace(0, coarse.shape[0] - 1, height)
    col_index = np.linspace(0, coarse.shape[1] - 1, width)
    texture = _bilinear(coarse, row_index, col_index)
    image = image + texture * rng.uniform(6.0, 22.0)
    image = image + rng.normal(0.0, rng.uniform(2.0, 6.0), size=(height, width, 1)).astype(np.float32)
    image = image * rng.uniform(0.85, 1.1)
    return np.clip(image, 0, 255).astype(np.uint8)


def _bilinear(grid: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Sample ``grid`` (h x w x c) bilinearly at fractional ``rows`` x ``cols``: float32."""
    r0 = np.minimum(np.floor(rows).astype(int), grid.shape[0] - 2)
    c0 = np.minimum(np.floor(cols).astype(int), grid.shape[1] - 2)
    fr = (rows - r0)[:, None, None].astype(np.float32)
    fc = (cols - c0)[None, :, None].astype(np.float32)
    top = grid[r0][:, c0] * (1 - fc) + grid[r0][:, c0 + 1] * fc
    bottom = grid[r0 + 1][:, c0] * (1 - fc) + grid[r0 + 1][:, c0 + 1] * fc
    return top * (1 - fr) + bottom * fr


def _jitter_colour(colour: tuple[int, int, int], rng: np.random.Generator) -> tuple[int, int, int]:
    shifted = np.asarray(colour, dtype=float) * rng.uniform(0.85, 1.12) + rng.normal(0.0, 12.0, size=3)
    return tuple(int(value) for value in np.clip(shifted, 0, 255))


def _place_object(
    class_name: str, width: int, height: int, rng: np.random.Generator, scale: float = 1.0
) -> PlacedObject:
    style = CLASS_STYLES[class_name]
    object_height = rng.uniform(*style.height_range) * height * scale
    object_width = object_height * style.aspect * rng.uniform(0.85, 1.18)
    if object_width > 0.95 * width:
        object_height *= 0.95 * width / object_width
        object_width = 0.95 * width
    low_y, high_y = style.vertical_range
    centre_y = rng.uniform(low_y, high_y) * height
    x = rng.uniform(-0.12 * object_width, width - 0.88 * object_width)
    y = float(np.clip(centre_y - object_height / 2, -0.1 * object_height, height - 0.9 * object_height))
    speed = rng.uniform(0.8, 3.5) * width / 128.0 * rng.choice([-1.0, 1.0])
    scheme = style.schemes[rng.integers(len(style.schemes))]
    colours = tuple(_jitter_colour(colour, rng) for colour in scheme)
    flip = bool(rng.integers(2)) if style.has_pose else False
    variant = tuple(float(value) for value in rng.uniform(0.0, 1.0, size=8))
    return PlacedObject(
        class_name, float(x), y, float(object_width), float(object_height), float(speed),
        float(rng.uniform(-0.4, 0.4)), colours, flip, variant,
    )  # fmt: skip


def sample_layout(
    scene: Scene | str, width: int, height: int, rng: np.random.Generator, primary_class: str | None = None
) -> Layout:
    """Draw a scene's layout: background, 1-3 objects of its classes (+ sometimes a small one).

    ``primary_class`` (one of the scene's classes) forces one full-size object of that class,
    drawn in front, so a caller can guarantee that every class occurs.
    """
    scene = scene_by_name(scene) if isinstance(scene, str) else scene
    if primary_class is not None and primary_class not in scene.classes:
        raise ValueError(f"class {primary_class!r} is not seen in scene {scene.name!r}")
    margin_x, margin_y = max(4, width // 4), max(4, height // 4)
    background = _background(height + margin_y, width + margin_x, rng)
    n_objects = int(rng.choice([1, 2, 3], p=[0.35, 0.4, 0.25]))
    classes = [scene.classes[rng.integers(len(scene.classes))] for _ in range(n_objects)]
    if primary_class is not None:
        classes[0] = primary_class
    objects = [_place_object(name, width, height, rng) for name in classes]
    if rng.uniform() < 0.3:  # a distant, small instance: usually 'difficult' in VOC terms
        distant = scene.classes[rng.integers(len(scene.classes))]
        objects.append(_place_object(distant, width, height, rng, scale=rng.uniform(0.25, 0.45)))
    primary, others = objects[0], objects[1:]
    others.sort(key=lambda item: item.y + item.height)  # farther (higher up) first
    ordered = (*others, primary) if primary_class is not None else tuple(sorted(objects, key=_bottom))
    pan = rng.uniform(0.5, 2.0) * width / 128.0
    angle = rng.uniform(0, 2 * np.pi)
    return Layout(scene, width, height, background, pan * np.cos(angle), pan * np.sin(angle), ordered)


def _bottom(item: PlacedObject) -> float:
    return item.y + item.height


def _bounce(start: float, velocity: float, t: float, low: float, high: float) -> float:
    """Position at time t of a point moving at ``velocity`` that reflects off [low, high]."""
    span = high - low
    if span <= 0:
        return start
    travelled = (start - low + velocity * t) % (2 * span)
    return low + (travelled if travelled <= span else 2 * span - travelled)


def _object_box(item: PlacedObject, layout: Layout, t: float) -> tuple[float, float, float, float]:
    x = _bounce(item.x, item.velocity_x, t, -0.15 * item.width, layout.width - 0.85 * item.width)
    y = _bounce(item.y, item.velocity_y, t, -0.1 * item.height, layout.height - 0.9 * item.height)
    return x, y, item.width, item.height


def draw_layout(layout: Layout, t: float = 0.0) -> tuple[np.ndarray, list[dict]]:
    """Render ``layout`` at time ``t`` seconds: uint8 H x W x 3 image and its objects.

    Each object is a dict: ``class``; ``bbox`` (xmin, ymin, xmax, ymax) in VOC's 1-based,
    inclusive pixel convention, clipped to the image; ``truncated`` (the box left the image);
    ``difficult`` (small, or less than 35 % visible behind later objects); ``pose``.
    """
    margin_y = layout.background.shape[0] - layout.height
    margin_x = layout.background.shape[1] - layout.width
    offset_x = int(round(_bounce(margin_x / 2, layout.pan_x, t, 0, margin_x)))
    offset_y = int(round(_bounce(margin_y / 2, layout.pan_y, t, 0, margin_y)))
    crop = layout.background[offset_y : offset_y + layout.height, offset_x : offset_x + layout.width]
    image = Image.fromarray(np.ascontiguousarray(crop))
    draw = ImageDraw.Draw(image)
    boxes = []
    for item in layout.objects:
        x, y, w, h = _object_box(item, layout, t)
        draw_glyph(draw, item.class_name, x, y, w, h, item.colours, item.flip, item.variant)
        boxes.append((x, y, x + w, y + h))
    return np.asarray(image), _describe_objects(layout, boxes)


def _describe_objects(layout: Layout, boxes: list[tuple[float, float, float, float]]) -> list[dict]:
    described = []
    small = 0.1 * min(layout.width, layout.height)  # geometric-mean side of a 'small' object
    for index, (item, box) in enumerate(zip(layout.objects, boxes, strict=True)):
        x0, y0, x1, y1 = box
        cx0, cy0 = max(0.0, x0), max(0.0, y0)
        cx1, cy1 = min(float(layout.width), x1), min(float(layout.height), y1)
        truncated = cx0 > x0 + 0.5 or cy0 > y0 + 0.5 or cx1 < x1 - 0.5 or cy1 < y1 - 0.5
        visible = _visible_fraction((cx0, cy0, cx1, cy1), boxes[index + 1 :])
        extent = np.sqrt(max(0.0, cx1 - cx0) * max(0.0, cy1 - cy0))
        difficult = extent < small or visible < 0.35
        style = CLASS_STYLES[item.class_name]
        pose = ("Left" if item.flip else "Right") if style.has_pose else "Unspecified"
        bbox = (
            int(np.clip(np.floor(cx0) + 1, 1, layout.width)),
            int(np.clip(np.floor(cy0) + 1, 1, layout.height)),
            int(np.clip(np.ceil(cx1), 1, layout.width)),
            int(np.clip(np.ceil(cy1), 1, layout.height)),
        )
        described.append(
            {
                "class": item.class_name,
                "bbox": bbox,
                "truncated": truncated,
                "difficult": difficult,
                "pose": pose,
            }
        )
    return described


def _visible_fraction(box: tuple[float, float, float, float], front: list[tuple]) -> float:
    """Fraction of ``box`` not covered by the boxes drawn after it (a pixel-grid estimate)."""
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        return 0.0
    xs = np.linspace(x0, x1, 12)[:, None]
    ys = np.linspace(y0, y1, 12)[None, :]
    covered = np.zeros((12, 12), dtype=bool)
    for fx0, fy0, fx1, fy1 in front:
        covered |= (xs >= fx0) & (xs <= fx1) & (ys >= fy0) & (ys <= fy1)
    return float(1.0 - covered.mean())


def render_scene_image(
    scene: Scene | str, width: int, height: int, rng: np.random.Generator, t: float = 0.0
) -> tuple[np.ndarray, list[dict]]:
    """A random picture of ``scene``: uint8 H x W x 3 and its objects (see :func:`draw_layout`).

    The layout is drawn from ``rng``; ``t`` (seconds) moves objects and background, so calls with
    generators in the same state and different ``t`` give successive frames of one video.
    """
    return draw_layout(sample_layout(scene, width, height, rng), t)


# --------------------------------------------------------------------------------------------
# Sounds


def _band_noise(
    n: int, sample_rate: int, low: float, high: float, slope: float, rng: np.random.Generator
) -> np.ndarray:
    """Noise with power ~ f^-slope between ``low`` and ``high`` Hz (smooth edges), unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    frequencies = np.fft.rfftfreq(n, 1.0 / sample_rate)
    high = min(high, 0.48 * sample_rate)
    safe = np.maximum(frequencies, 1.0)
    gain = safe ** (-slope / 2.0)
    gain *= 1.0 / (1.0 + (low / safe) ** 8) / (1.0 + (safe / high) ** 8)
    signal = np.fft.irfft(spectrum * gain, n)
    return signal / (np.sqrt(np.mean(signal**2)) + 1e-12)


def _slow_noise(n: int, sample_rate: float, cutoff: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth random curve (variations slower than ``cutoff`` Hz), zero mean, unit std."""
    n_points = max(4, int(n / sample_rate * cutoff * 2) + 2)
    points = rng.standard_normal(n_points)
    curve = np.interp(np.linspace(0, n_points - 1, n), np.arange(n_points), points)
    return (curve - curve.mean()) / (curve.std() + 1e-12)


def _add_event(signal: np.ndarray, start: int, event: np.ndarray) -> None:
    if start >= len(signal):
        return
    stop = min(len(signal), start + len(event))
    signal[start:stop] += event[: stop - start]


def _water(n: int, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, tuple[str, ...]]:
    """Pink-ish noise swelling at 1-3 Hz, plus rising 'bubble' tones."""
    t = np.arange(n) / sr
    noise = _band_noise(n, sr, 80.0, 6000.0, 1.0, rng)
    swell = 1.0 + sum(
        0.35 * np.sin(2 * np.pi * rng.uniform(1.0, 3.0) * t + rng.uniform(0, 6.3)) for _ in range(2)
    )
    bubbles = np.zeros(n)
    for start in rng.integers(0, n, size=int(rng.uniform(6, 16) * n / sr)):
        decay = rng.uniform(0.012, 0.035)
        tt = np.arange(int(4 * decay * sr)) / sr
        frequency = rng.uniform(400, 1400) * (1 + 1.5 * tt / decay)
        _add_event(
            bubbles,
            start,
            rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * np.cumsum(frequency) / sr) * np.exp(-tt / decay),
        )
    return noise * np.maximum(swell, 0.15) + 0.8 * bubbles, ()


def _traffic(n: int, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, tuple[str, ...]]:
    """Low-passed rumble, passing 'whoosh' envelopes and sometimes a harmonic horn."""
    t = np.arange(n) / sr
    rumble = _band_noise(n, sr, 20.0, 250.0, 2.0, rng) * (1 + 0.2 * _slow_noise(n, sr, 0.3, rng))
    passes = np.zeros(n)
    for centre in rng.uniform(-1.0, n / sr + 1.0, size=max(2, int(rng.uniform(0.3, 0.8) * n / sr))):
        width = rng.uniform(0.5, 1.2)
        passes += rng.uniform(0.5, 1.5) * np.exp(-0.5 * ((t - centre) / width) ** 2)
    whoosh = _band_noise(n, sr, 150.0, 2500.0, 1.0, rng) * passes
    horn = np.zeros(n)
    labels: tuple[str, ...] = ()
    if rng.uniform() < 0.6:
        labels = (HORN_LABEL,)
        for _ in range(rng.integers(1, 4)):
            duration = rng.uniform(0.25, 0.7)
            tt = np.arange(int(duration * sr)) / sr
            fundamental = rng.uniform(350, 500)
            tone = sum(np.sin(2 * np.pi * k * fundamental * tt) / k for k in range(1, 6))
            envelope = np.minimum(1.0, np.minimum(tt, duration - tt) / 0.02)
            _add_event(horn, int(rng.uniform(0, n / sr - duration) * sr), tone * envelope)
    return 0.9 * rumble + 0.8 * whoosh + 0.35 * horn, labels


def _birdsong(n: int, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, tuple[str, ...]]:
    """Bouts of 2-6 kHz chirps with fast (8-15 Hz) frequency modulation over a faint low rustle."""
    song = np.zeros(n)
    for _ in range(rng.integers(2, 4)):  # birds, each with its own voice
        centre, fm_rate = rng.uniform(2000, 6000), rng.uniform(8, 15)
        depth, sweep = rng.uniform(200, 700), rng.uniform(-1500, 1500)
        onset = rng.uniform(0, 1.0)
        while onset < n / sr:
            for _ in range(rng.integers(3, 9)):
                duration = rng.uniform(0.04, 0.15)
                tt = np.arange(int(duration * sr)) / sr
                frequency = centre + depth * np.sin(2 * np.pi * fm_rate * tt) + sweep * (tt / duration - 0.5)
                chirp = np.sin(2 * np.pi * np.cumsum(frequency) / sr) * np.hanning(len(tt))
                _add_event(song, int(onset * sr), rng.uniform(0.4, 1.0) * chirp)
                onset += duration + rng.uniform(0.04, 0.2)
            onset += rng.uniform(0.3, 1.2)
    leaves = _band_noise(n, sr, 200.0, 2500.0, 1.0, rng) * 0.05  # a soft low rustle under the song
    return song + leaves, ()


def _wind(n: int, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, tuple[str, ...]]:
    """Band-pass 200-800 Hz noise with slow (~0.3 Hz) gusts."""
    t = np.arange(n) / sr
    noise = _band_noise(n, sr, rng.uniform(180, 250), rng.uniform(650, 900), 0.5, rng)
    gust = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.15, 0.45) * t + rng.uniform(0, 6.3))
    envelope = 0.3 + 0.7 * gust**1.5 + 0.1 * _slow_noise(n, sr, 0.5, rng)
    return noise * np.maximum(envelope, 0.1), ()


def _crowd(n: int, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, tuple[str, ...]]:
    """Babble: many 100-300 Hz harmonic voices with ~4 Hz syllabic modulation.

    The voices are made at half the sample rate (their formants lie below 4 kHz) and brought
    to full rate by zero-padding the spectrum that shapes the formants.
    """
    half_sr, m = sr / 2.0, (n + 1) // 2
    babble = np.zeros(m, dtype=np.float32)
    for _ in range(rng.integers(8, 13)):
        f0 = rng.uniform(100, 300) * (1 + 0.06 * _slow_noise(m, half_sr, 2.0, rng))
        voice = (2 * ((np.cumsum(f0) / half_sr + rng.uniform()) % 1.0) - 1).astype(np.float32)  # sawtooth
        syllable_rate = np.maximum(rng.uniform(3.0, 5.0) + 0.8 * _slow_noise(m, half_sr, 1.0, rng), 1.0)
        syllable = (
            np.sin(np.pi * (np.cumsum(syllable_rate) / half_sr + rng.uniform())).astype(np.float32) ** 2
        )
        talking = _slow_noise(m, half_sr, 0.4, rng) > -0.6
        babble += np.float32(rng.uniform(0.5, 1.0)) * voice * syllable * talking
    spectrum = np.fft.rfft(babble)
    frequencies = np.fft.rfftfreq(2 * m, 1.0 / sr)[: len(spectrum)]
    formants = sum(
        np.exp(-0.5 * ((frequencies - f) / bw) ** 2) for f, bw in ((600, 300), (1500, 500), (2600, 600))
    )
    shaped = np.fft.irfft(spectrum * (0.15 + formants) / (1 + (frequencies / 4000) ** 4), 2 * m)[:n]
    shaped /= np.sqrt(np.mean(shaped**2)) + 1e-12
    return shaped + 0.15 * _band_noise(n, sr, 300.0, 3000.0, 1.0, rng), ()


def _machinery(n: int, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, tuple[str, ...]]:
    """60-120 Hz hum with harmonics and metallic clanks repeating at 2-5 Hz."""
    fundamental = rng.uniform(60, 120)
    cycle = np.linspace(0.0, 1.0, 1025)
    period = sum(np.sin(2 * np.pi * k * cycle + rng.uniform(0, 6.3)) / k**0.7 for k in range(1, 9))
    hum = np.interp((np.arange(n) * (fundamental / sr)) % 1.0, cycle, period)  # one period, looked up
    clank_length = int(0.15 * sr)
    tt = np.arange(clank_length) / sr
    decay = rng.uniform(0.015, 0.04)
    partials = rng.uniform(1200, 4500, size=3)
    clank = sum(np.sin(2 * np.pi * f * tt) for f in partials) * np.exp(-tt / decay)
    clanks = np.zeros(n)
    interval, onset = 1.0 / rng.uniform(2.0, 5.0), rng.uniform(0, 0.3)
    while onset < n / sr:
        _add_event(clanks, int(onset * sr), rng.uniform(0.7, 1.3) * clank)
        onset += interval * rng.uniform(0.95, 1.05)
    floor = _band_noise(n, sr, 50.0, 4000.0, 1.0, rng)
    return hum / 3.0 + 0.9 * clanks + 0.08 * floor, ()


def _rain(n: int, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, tuple[str, ...]]:
    """Broadband high-frequency crackle: dense random clicks, drop 'pings' and hiss."""
    clicks = np.zeros(n)
    count = int(rng.uniform(300, 800) * n / sr)
    np.add.at(clicks, rng.integers(0, n, size=count), np.minimum(rng.pareto(2.5, size=count), 6.0))
    spectrum = np.fft.rfft(clicks * rng.choice([-1.0, 1.0], size=n))
    frequencies = np.fft.rfftfreq(n, 1.0 / sr)
    crackle = np.fft.irfft(spectrum / (1 + (1500 / np.maximum(frequencies, 1.0)) ** 4), n)
    crackle /= np.sqrt(np.mean(crackle**2)) + 1e-12
    pings = np.zeros(n)
    for start in rng.integers(0, n, size=int(rng.uniform(5, 15) * n / sr)):
        decay = rng.uniform(0.004, 0.01)
        tt = np.arange(int(5 * decay * sr)) / sr
        _add_event(pings, start, np.sin(2 * np.pi * rng.uniform(1500, 3500) * tt) * np.exp(-tt / decay))
    hiss = _band_noise(n, sr, 2000.0, 10000.0, 0.0, rng)
    return crackle + 1.5 * pings + 0.4 * hiss, ()


SOUND_TEXTURES = {
    "water": _water,
    "traffic": _traffic,
    "birdsong": _birdsong,
    "wind": _wind,
    "crowd": _crowd,
    "machinery": _machinery,
    "rain": _rain,
}


def synthesize_scene_audio(
    scene: Scene | str, seconds: float, sample_rate: int, rng: np.random.Generator
) -> tuple[np.ndarray, tuple[str, ...]]:
    """The ambient sound of ``scene``: float32 mono (n,) with peak in [0.3, 0.85], never silent.

    Returns the waveform and any AudioSet labels beyond the scene's own (e.g. a horn). Levels and
    rates vary with ``rng``.
    """
    scene = scene_by_name(scene) if isinstance(scene, str) else scene
    n = int(round(seconds * sample_rate))
    if n <= 0:
        raise ValueError(f"audio length must be positive, got {seconds} s at {sample_rate} Hz")
    signal, extra_labels = SOUND_TEXTURES[scene.sound](n, sample_rate, rng)
    signal = signal - signal.mean()
    peak = float(np.max(np.abs(signal)))
    level = rng.uniform(0.3, 0.85)
    return (signal * (level / peak)).astype(np.float32), extra_labels
