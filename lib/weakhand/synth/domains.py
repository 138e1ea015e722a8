"""Domain styles: every knob of the synthetic generator, and the two built-in domains.

`render` imitates a clean rendered dataset (RHD-like): broad viewpoints and poses, varied
characters, studio shading, perfect depth, full 3D labels.
`render_gap` is `render` with only the open/fist/point/pinch/grasp pose templates: a source
that lacks the target's counting gestures (a pose-coverage gap; see `RENDER_GAP`).
`sensor` imitates an RGB-D camera recording (STB/RealSense-like): other intrinsics and image
size, a few subjects, frontal viewpoints and counting-style gestures, colour casts, blur, noise
and JPEG artefacts in RGB; depth with distance-dependent noise, holes at silhouettes and
grazing angles, dropouts and 1 mm quantisation.

New domains need no code: `make_style("sensor", name="sensor_far", distance_mm=(600, 900))`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass(frozen=True)
class DomainStyle:
    """Every knob of the synthetic generator for one domain; units in the knob names and
    comments (``_px`` px, ``_mm`` mm, ``_deg`` degrees, ``p_*`` probabilities); ``image_wh`` is
    the full frame (width, height) px, most other pairs are (lo, hi) ranges drawn per sample."""

    name: str
    # camera of the full frame the crop comes from
    image_wh: tuple[int, int] = (320, 320)       # full-frame size, px
    focal_px: tuple[float, float] = (260.0, 330.0)  # fx range (fy = fx · aspect jitter)
    principal_jitter_px: float = 4.0              # (cx, cy) = centre + uniform jitter
    distance_mm: tuple[float, float] = (350.0, 900.0)  # wrist z
    # viewpoint: "uniform" = any rotation; "frontal" = palm/back towards the camera ± jitter
    viewpoint: str = "uniform"
    view_jitter_deg: tuple[float, float, float] = (60.0, 40.0, 40.0)  # yaw, pitch, roll (frontal)
    p_left: float = 0.5                           # fraction of left hands
    crop_margin: tuple[float, float] = (1.25, 1.6)  # crop side / keypoint bbox side
    crop_jitter: float = 0.06                     # crop centre jitter, fraction of side
    # subjects and poses
    n_subjects: int = 0                           # 0 = a new subject per sample
    skin_weights: tuple[float, ...] = (1, 1, 1, 1, 1, 1)  # over anatomy.SKIN_TONES
    size_scale: float = 1.0
    family_weights: dict = field(default_factory=lambda: {
        "random": 6, "open": 1, "fist": 1, "point": 1, "pinch": 1, "count1": 0.5,
        "count2": 0.5, "count3": 0.5, "count4": 0.5, "count5": 0.5, "grasp": 1})
    pose_jitter_deg: float = 8.0
    p_sleeve: float = 0.5
    # scene
    p_occluder: float = 0.3
    n_clutter: tuple[int, int] = (3, 10)
    bg_distance_mm: tuple[float, float] = (250.0, 1500.0)  # behind the wrist
    bg_saturation: float = 1.0                    # 0 = grey backgrounds
    bg_brightness: tuple[float, float] = (0.0, 1.0)
    # lighting (studio) and texture
    ambient: tuple[float, float] = (0.25, 0.45)
    diffuse: tuple[float, float] = (0.55, 0.85)
    specular: tuple[float, float] = (0.03, 0.15)
    light_cone_deg: float = 70.0                  # light direction spread around the view axis
    skin_texture: float = 0.12
    # RGB sensor model
    rgb_blur_sigma_px: tuple[float, float] = (0.0, 0.4)
    rgb_noise_std: tuple[float, float] = (0.0, 0.0)   # in [0,255] units
    jpeg_quality: tuple[int, int] = (0, 0)            # 0 = no JPEG
    white_balance_std: float = 0.0
    gamma: tuple[float, float] = (1.0, 1.0)
    # depth sensor model
    depth_noise_mm: tuple[float, float] = (0.0, 0.0)  # sigma = a + b (z/1000 m)^2
    depth_quant_mm: float = 0.0                       # 0 = keep float precision
    depth_edge_threshold_mm: float = 25.0
    p_depth_edge_hole: float = 0.0
    p_depth_grazing_hole: float = 0.0
    p_depth_dropout: float = 0.0
    depth_max_mm: float = 6000.0
    # labels
    withhold_3d_splits: tuple[str, ...] = ()      # splits whose 3D labels are not stored

    def replace(self, **changes) -> "DomainStyle":
        """A copy with knobs changed (in the fields' units: px, mm, degrees); ValueError on an
        unknown knob."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown style knobs {sorted(unknown)}; known: "
                             f"{sorted(f.name for f in dataclasses.fields(self))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The knobs as a plain dict (units as the fields: px, mm, degrees, probabilities)."""
        return dataclasses.asdict(self)


RENDER = DomainStyle(name="render")

SENSOR = DomainStyle(
    name="sensor",
    image_wh=(640, 480),
    focal_px=(607.9, 607.9),        # RealSense F200 colour camera as in STB
    principal_jitter_px=0.0,
    distance_mm=(300.0, 600.0),
    viewpoint="frontal",
    view_jitter_deg=(50.0, 35.0, 45.0),
    p_left=1.0,                     # STB records left hands only
    crop_margin=(1.2, 1.4),
    crop_jitter=0.04,
    n_subjects=4,
    skin_weights=(0.5, 2, 2, 1, 0.3, 0.1),
    family_weights={"random": 3, "count1": 1, "count2": 1, "count3": 1, "count4": 1,
                    "count5": 1, "fist": 0.5, "open": 0.5, "point": 0.5},
    pose_jitter_deg=6.0,
    p_sleeve=0.8,
    p_occluder=0.05,
    n_clutter=(6, 14),
    bg_distance_mm=(300.0, 900.0),
    bg_saturation=0.35,
    bg_brightness=(0.15, 0.8),
    ambient=(0.45, 0.6),
    diffuse=(0.35, 0.55),
    specular=(0.0, 0.05),
    light_cone_deg=25.0,
    skin_texture=0.08,
    rgb_blur_sigma_px=(0.6, 1.3),
    rgb_noise_std=(2.0, 6.0),
    jpeg_quality=(35, 80),
    white_balance_std=0.08,
    gamma=(0.8, 1.25),
    depth_noise_mm=(0.8, 2.5),
    depth_quant_mm=1.0,
    p_depth_edge_hole=0.6,
    p_depth_grazing_hole=0.5,
    p_depth_dropout=0.01,
    withhold_3d_splits=("train",),
)

# `render_gap`: the render source with a pose-coverage gap. Its poses come only from the
# templates open, fist, point, pinch and grasp (with the render style's jitter), without the
# broad "random" family and without the counting gestures count1..count5; every other knob is
# the render style's. More than half of the sensor target's hands make counting gestures,
# which the render source covers through its broad random poses (and its own count
# templates); this source does not (count1 has the same template as "point" and count5 nearly
# that of "open", so those two stay covered; two, three and four raised fingers do not). It
# models the pose-coverage gap that separates a synthetic set's random poses from STB's
# counting gestures: a source that lacks the target's gestures, not only one that looks
# different.
GAP_STYLE_NAME = "render_gap"
RENDER_GAP = RENDER.replace(name=GAP_STYLE_NAME, family_weights={
    "open": 1, "fist": 1, "point": 1, "pinch": 1, "grasp": 1})

DOMAINS = {"render": RENDER, "sensor": SENSOR, GAP_STYLE_NAME: RENDER_GAP}


def make_style(base: str | DomainStyle = "render", **changes) -> DomainStyle:
    """A built-in domain (by name) or a given style, with knobs changed (units as the
    :class:`DomainStyle` fields: px, mm, degrees)."""
    if isinstance(base, str):
        if base not in DOMAINS:
            raise ValueError(f"unknown domain {base!r}; built-in: {sorted(DOMAINS)}")
        base = DOMAINS[base]
    return base.replace(**changes) if changes else base


def style_diff(a: DomainStyle, b: DomainStyle) -> list[dict]:
    """Rows {knob, a.name, b.name} for every knob where the two styles differ (values as str,
    in the knob's unit); no arrays."""
    da, db = a.to_dict(), b.to_dict()
    return [{"knob": k, a.name: str(da[k]), b.name: str(db[k])}
            for k in da if k != "name" and da[k] != db[k]]


def parse_style_overrides(text: str, base: str | DomainStyle) -> DomainStyle:
    """A built-in domain with knobs overridden from a string, e.g.
    ``"distance_mm=(450, 800); viewpoint=uniform"`` (``;``-separated ``knob=value``; values are
    Python literals — numbers, tuples, dicts — or bare words for strings).

    Each value is checked against the knob's current value: same kind (number, string, tuple of
    the same length, dict), numbers finite, ranges ordered lo <= hi. Raises ValueError naming the
    knob and what is wrong. An empty string returns the base style unchanged.
    """
    import ast
    import math

    style = make_style(base) if isinstance(base, str) else base
    if not text or not text.strip():
        return style
    known = {f.name: getattr(style, f.name) for f in dataclasses.fields(style)}
    changes = {}
    for item in text.split(";"):
        if not item.strip():
            continue
        if "=" not in item:
            raise ValueError(f"style override {item.strip()!r} for {style.name!r}: expected knob=value")
        key, raw = (x.strip() for x in item.split("=", 1))
        if key == "name" or key not in known:
            raise ValueError(f"unknown knob {key!r} of domain {style.name!r}; knobs: "
                             + ", ".join(k for k in known if k != "name"))
        try:
            val = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            val = raw                                  # a bare word: a string knob
        old = known[key]
        if isinstance(old, tuple) and all(isinstance(o, str) for o in old):
            val = (val,) if isinstance(val, str) else val
            if not isinstance(val, (tuple, list)) or not all(isinstance(v, str) for v in val):
                raise ValueError(f"{style.name}.{key} takes a tuple of strings like {old}, got {raw!r}")
            val = tuple(val)
        elif isinstance(old, tuple):
            if not isinstance(val, (tuple, list)) or len(val) != len(old):
                raise ValueError(f"{style.name}.{key} takes {len(old)} values like {old}, got {raw!r}")
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                       for v in val):
                raise ValueError(f"{style.name}.{key}: every value must be a finite number, got {raw!r}")
            val = tuple(type(o)(v) if isinstance(o, int) and float(v).is_integer() else float(v)
                        for o, v in zip(old, val))
            if len(val) == 2 and key not in ("image_wh",) and val[0] > val[1]:
                raise ValueError(f"{style.name}.{key} is a range (lo, hi) and needs lo <= hi, got {val}")
        elif isinstance(old, dict):
            if not isinstance(val, dict):
                raise ValueError(f"{style.name}.{key} takes a dict like {old}, got {raw!r}")
        elif isinstance(old, str):
            if not isinstance(val, str):
                raise ValueError(f"{style.name}.{key} takes a string, got {raw!r}")
        elif isinstance(old, (int, float)) and not isinstance(old, bool):
            if isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(val):
                raise ValueError(f"{style.name}.{key} takes a finite number, got {raw!r}")
            val = type(old)(val) if isinstance(old, int) and float(val).is_integer() else float(val)
        changes[key] = val
    new = style.replace(**changes)
    if "viewpoint" in changes and new.viewpoint not in ("uniform", "frontal"):
        raise ValueError(f"{style.name}.viewpoint must be 'uniform' or 'frontal', got {new.viewpoint!r}")
    return new
