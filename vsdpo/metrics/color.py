"""Colour difference as both benchmarks score it: sRGB -> CIE L*a*b* (D65) -> CIEDE2000.

ChartMimic and Design2Code both turn a colour difference into a similarity with
``max(0, 1 - dE00 / 100)``; :func:`color_similarity` is that function. The conversion follows the
sRGB standard (IEC 61966-2-1) with the D65 white of the CIE 1931 2-degree observer, and CIEDE2000
follows Sharma, Wu and Dalal (2005), "The CIEDE2000 color-difference formula: implementation notes".
"""

from __future__ import annotations

import math
from functools import lru_cache

import matplotlib.colors as mcolors

# D65 reference white, 2-degree observer (X, Y, Z with Y = 1).
D65_WHITE = (0.95047, 1.0, 1.08883)
# CIE constants of the L*a*b* transfer function.
_LAB_EPSILON = 216 / 24389
_LAB_KAPPA = 24389 / 27

RGB = tuple[float, float, float]
Lab = tuple[float, float, float]


def to_rgb255(color, *, scale: float = 255.0) -> RGB:
    """A colour as 0..255 RGB: a matplotlib/CSS string ("#rrggbb", "red"), or channels (r, g, b[, a]).

    Channels are read on the scale ``scale`` says (0..255 by default, as both benchmarks hand them;
    ``scale=1.0`` for matplotlib's 0..1 tuples). The scale is never guessed from the values: (1, 1, 1)
    is a near-black 0..255 colour, not white.
    """
    if isinstance(color, str):
        r, g, b, _ = mcolors.to_rgba(color)
        return (r * 255.0, g * 255.0, b * 255.0)
    values = [float(v) for v in color][:3]
    if len(values) != 3:
        raise ValueError(f"color: expected 3 or 4 channels, got {color!r}")
    if scale <= 0:
        raise ValueError(f"scale: expected a positive channel maximum, got {scale!r}")
    factor = 255.0 / scale
    return (values[0] * factor, values[1] * factor, values[2] * factor)


def _srgb_to_linear(channel: float) -> float:
    c = channel / 255.0
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def rgb_to_lab(rgb: RGB) -> Lab:
    """0..255 sRGB -> CIE L*a*b* relative to D65."""
    r, g, b = (_srgb_to_linear(c) for c in rgb)
    x = 0.4124564 * r + 0.3575761 * g + 0.1804375 * b
    y = 0.2126729 * r + 0.7151522 * g + 0.0721750 * b
    z = 0.0193339 * r + 0.1191920 * g + 0.9503041 * b

    def f(t: float) -> float:
        return t ** (1 / 3) if t > _LAB_EPSILON else (_LAB_KAPPA * t + 16) / 116

    fx, fy, fz = f(x / D65_WHITE[0]), f(y / D65_WHITE[1]), f(z / D65_WHITE[2])
    return (116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz))


def ciede2000(lab1: Lab, lab2: Lab, *, kl: float = 1.0, kc: float = 1.0, kh: float = 1.0) -> float:
    """The CIEDE2000 colour difference between two L*a*b* colours."""
    l1, a1, b1 = lab1
    l2, a2, b2 = lab2
    # Chroma-dependent stretch of a* (the G factor) before computing hue.
    c_bar = (math.hypot(a1, b1) + math.hypot(a2, b2)) / 2
    c_bar7 = c_bar**7
    g = 0.5 * (1 - math.sqrt(c_bar7 / (c_bar7 + 25**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = math.hypot(a1p, b1), math.hypot(a2p, b2)
    h1p = math.degrees(math.atan2(b1, a1p)) % 360 if c1p else 0.0
    h2p = math.degrees(math.atan2(b2, a2p)) % 360 if c2p else 0.0

    delta_lp = l2 - l1
    delta_cp = c2p - c1p
    if c1p * c2p == 0:
        delta_hp = 0.0
    else:
        delta_hp = h2p - h1p
        if delta_hp > 180:
            delta_hp -= 360
        elif delta_hp < -180:
            delta_hp += 360
    delta_big_hp = 2 * math.sqrt(c1p * c2p) * math.sin(math.radians(delta_hp) / 2)

    l_bar_p = (l1 + l2) / 2
    c_bar_p = (c1p + c2p) / 2
    if c1p * c2p == 0:
        h_bar_p = h1p + h2p
    elif abs(h1p - h2p) <= 180:
        h_bar_p = (h1p + h2p) / 2
    elif h1p + h2p < 360:
        h_bar_p = (h1p + h2p + 360) / 2
    else:
        h_bar_p = (h1p + h2p - 360) / 2

    t = (
        1
        - 0.17 * math.cos(math.radians(h_bar_p - 30))
        + 0.24 * math.cos(math.radians(2 * h_bar_p))
        + 0.32 * math.cos(math.radians(3 * h_bar_p + 6))
        - 0.20 * math.cos(math.radians(4 * h_bar_p - 63))
    )
    delta_theta = 30 * math.exp(-(((h_bar_p - 275) / 25) ** 2))
    c_bar_p7 = c_bar_p**7
    r_c = 2 * math.sqrt(c_bar_p7 / (c_bar_p7 + 25**7))
    s_l = 1 + 0.015 * (l_bar_p - 50) ** 2 / math.sqrt(20 + (l_bar_p - 50) ** 2)
    s_c = 1 + 0.045 * c_bar_p
    s_h = 1 + 0.015 * c_bar_p * t
    r_t = -math.sin(math.radians(2 * delta_theta)) * r_c

    dl = delta_lp / (kl * s_l)
    dc = delta_cp / (kc * s_c)
    dh = delta_big_hp / (kh * s_h)
    return math.sqrt(dl * dl + dc * dc + dh * dh + r_t * dc * dh)


@lru_cache(maxsize=65536)
def _lab_of_hex(hex_color: str) -> Lab:
    return rgb_to_lab(to_rgb255(hex_color))


def color_similarity(color1, color2) -> float:
    """``max(0, 1 - CIEDE2000 / 100)`` between two colours (hex strings, names or 0..255 RGB tuples)."""
    if isinstance(color1, str) and isinstance(color2, str):
        lab1, lab2 = _lab_of_hex(color1.lower()), _lab_of_hex(color2.lower())
    else:
        lab1, lab2 = rgb_to_lab(to_rgb255(color1)), rgb_to_lab(to_rgb255(color2))
    return max(0.0, 1.0 - ciede2000(lab1, lab2) / 100.0)
