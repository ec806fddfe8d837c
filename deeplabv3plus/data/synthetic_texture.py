"""The ``texture`` synthetic set: classes that only shape and texture tell apart, never colour.

Every region of an image, background included, is painted with a two-colour pattern whose two
colours are drawn from one distribution shared by all classes (independent uniform RGB pairs with
a minimum contrast), plus pixel noise. A pixel's colour therefore carries no information about its
class; what does is

- the texture: horizontal stripes, vertical stripes, a checkerboard, a grid of dots, diagonal
  stripes for the objects, and aperiodic blobs (thresholded smooth noise) for the background;
- the shape: a ring, a plus-shaped cross, a five-pointed star, two or three parallel thin bars,
  a disc with a wavy (gear-like) outline.

Foreground class ``k`` (1..20) pairs shape ``(k - 1) % 5`` with texture ``(k - 1 + (k - 1) // 5) % 5``,
so every one of up to 20 classes is a distinct (shape, texture) pair and the default 5 classes use
each shape and each texture once. The shapes have thin parts (ring walls, cross arms, star tips,
bars 4-8 px wide with background gaps between them) and detailed outlines, where features at
stride 4 matter more than at stride 16. Period and orientation are jittered per object, and the
phase is random, so a class is a kind of pattern, not one exact image.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("ring", "cross", "star", "bars", "gear")
TEXTURES = ("hstripes", "vstripes", "checker", "dots", "diagonal")

MIN_CONTRAST = 90.0
"""Minimum Euclidean RGB distance between the two colours of a pattern, so that every texture is visible."""

NOISE_STD = 6.0
"""Per-pixel Gaussian noise (RGB units) added everywhere."""


def shape_and_texture(cls: int) -> tuple[str, str]:
    """The (shape, texture) names of foreground class ``cls`` (1..20)."""
    k = cls - 1
    return SHAPES[k % len(SHAPES)], TEXTURES[(k + k // len(SHAPES)) % len(TEXTURES)]


def colour_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two colours, each uniform in [20, 235]^3, at least :data:`MIN_CONTRAST` apart: (3,) float64 each.

    The one colour distribution of the set: it is called the same way for every region of every class.
    """
    a = rng.uniform(20, 235, size=3)
    while True:
        b = rng.uniform(20, 235, size=3)
        if np.linalg.norm(a - b) >= MIN_CONTRAST:
            break
    # A random order, so that neither colour is "the pattern" and the other "the gaps".
    return (a, b) if rng.random() < 0.5 else (b, a)


def texture_mask(rng: np.random.Generator, texture: str, h: int, w: int) -> np.ndarray:
    """A binary pattern over the whole (h, w) canvas: (h, w) bool. Random phase, jittered period/angle."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    if texture in ("hstripes", "vstripes", "diagonal"):
        angle = {"hstripes": 0.0, "vstripes": 90.0, "diagonal": 45.0}[texture] + rng.uniform(-8, 8)
        period = rng.uniform(5.5, 7.5)
        t = math.radians(angle)
        # Distance across the stripes: the stripes run along the angle's direction.
        u = -xx * math.sin(t) + yy * math.cos(t)
        return ((u / period + rng.random()) % 1.0) < 0.5
    if texture in ("checker", "dots"):
        period = rng.uniform(7.0, 9.0)
        t = math.radians(rng.uniform(-8, 8))
        u = (xx * math.cos(t) + yy * math.sin(t)) / period + rng.random()
        v = (-xx * math.sin(t) + yy * math.cos(t)) / period + rng.random()
        if texture == "checker":
            return (np.floor(u) + np.floor(v)) % 2 == 0
        du, dv = (u % 1.0) - 0.5, (v % 1.0) - 0.5
        return du * du + dv * dv < 0.3**2
    if texture == "blobs":
        cells = int(rng.integers(4, 8))
        coarse = rng.uniform(0, 1, size=(cells, cells)).astype(np.float32)
        smooth = np.asarray(Image.fromarray(coarse, mode="F").resize((w, h), Image.BICUBIC), dtype=np.float64)
        return smooth > np.median(smooth)
    raise ValueError(f"unknown texture {texture!r}")


def _rotate(points: np.ndarray, angle: float, cx: float, cy: float) -> list[tuple[float, float]]:
    c, s = math.cos(angle), math.sin(angle)
    x, y = points[:, 0], points[:, 1]
    return list(zip((cx + c * x - s * y).tolist(), (cy + s * x + c * y).tolist()))


def draw_shape(
    rng: np.random.Generator, draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill: int
) -> None:
    """Draw ``shape`` of outer radius ``r`` centred at (cx, cy) into a label image with value ``fill``."""
    angle = rng.uniform(0, 2 * math.pi)
    if shape == "ring":
        wall = max(3.0, rng.uniform(0.3, 0.45) * r)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        ri = r - wall
        draw.ellipse((cx - ri, cy - ri, cx + ri, cy + ri), fill=0)  # the hole shows the background
    elif shape == "cross":
        half = max(1.5, rng.uniform(0.15, 0.25) * r)
        arm = np.array([[-r, -half], [r, -half], [r, half], [-r, half]])
        draw.polygon(_rotate(arm, angle, cx, cy), fill=fill)
        draw.polygon(_rotate(arm, angle + math.pi / 2, cx, cy), fill=fill)
    elif shape == "star":
        k = np.arange(10)
        radius = np.where(k % 2 == 0, r, rng.uniform(0.4, 0.5) * r)
        theta = k * math.pi / 5
        draw.polygon(
            _rotate(np.stack([radius * np.cos(theta), radius * np.sin(theta)], 1), angle, cx, cy), fill=fill
        )
    elif shape == "bars":
        n = int(rng.integers(2, 4))
        width = rng.uniform(4.0, 8.0)
        gap = rng.uniform(4.0, 8.0)
        pitch = width + gap
        for i in range(n):
            off = (i - (n - 1) / 2) * pitch
            bar = np.array(
                [[-r, off - width / 2], [r, off - width / 2], [r, off + width / 2], [-r, off + width / 2]]
            )
            draw.polygon(_rotate(bar, angle, cx, cy), fill=fill)
    elif shape == "gear":
        teeth = int(rng.integers(5, 9))
        theta = np.linspace(0, 2 * math.pi, 8 * teeth, endpoint=False)
        radius = r * (0.78 + 0.22 * np.sign(np.sin(teeth * theta)) * rng.uniform(0.6, 1.0))
        draw.polygon(
            _rotate(np.stack([radius * np.cos(theta), radius * np.sin(theta)], 1), angle, cx, cy), fill=fill
        )
    else:
        raise ValueError(f"unknown shape {shape!r}")


def texture_image_and_label(
    rng: np.random.Generator, h: int, w: int, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """One (h, w) image and its label before the void band.

    Returns:
        image: (h, w, 3) uint8 RGB.
        label: (h, w) uint8 class indices 0..num_classes-1 (later objects occlude earlier ones).
    """
    label_img = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(label_img)
    side = min(h, w)
    for _ in range(int(rng.integers(2, 5))):
        cls = int(rng.integers(1, num_classes))
        r = rng.uniform(0.22, 0.4) * side
        cx, cy = rng.uniform(0.15 * w, 0.85 * w), rng.uniform(0.15 * h, 0.85 * h)
        draw_shape(rng, draw, shape_and_texture(cls)[0], cx, cy, r, cls)
    label = np.asarray(label_img, dtype=np.uint8).copy()

    image = np.empty((h, w, 3), dtype=np.float64)
    # Background first, then every class present; each region gets its own colour pair.
    for cls in [0] + [int(c) for c in np.unique(label) if c != 0]:
        region = label == cls
        texture = "blobs" if cls == 0 else shape_and_texture(cls)[1]
        pattern = texture_mask(rng, texture, h, w)
        a, b = colour_pair(rng)
        image[region] = np.where(pattern[region][:, None], a, b)
    image += rng.normal(0, NOISE_STD, size=image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), label
