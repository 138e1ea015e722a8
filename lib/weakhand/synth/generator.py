"""Synthetic hand sample generator: subjects → poses → camera → capsule scene → ray cast →
shading, background and sensor effects → labelled crops.

Determinism: samples are produced in fixed-size blocks; block b of (seed, domain, split) draws
from `np.random.default_rng([seed, crc(domain), crc(split), b])`, so the same seed, style and
block size give byte-identical data however the work is chunked or resumed.
"""
from __future__ import annotations

import threading
import zlib
from typing import Iterator

import numpy as np

from .. import camera
from . import anatomy, effects, poses, raycast
from .anatomy import (HAND_PARTS, NUM_PARTS, PART_ARM, PART_FINGER0, PART_OCCLUDER, PART_PALM,
                      PART_SLEEVE)
from .domains import DomainStyle

BLOCK = 256          # samples per deterministic block
MAX_CAPSULES = 26
DEG = np.pi / 180.0


_WORKSPACE: dict = {}


def _workspace(name: str, shape: tuple) -> np.ndarray:
    """A reused float32 scratch buffer (per thread), so big intermediates are not page-faulted
    in afresh for every block. Contents are garbage; callers overwrite what they read."""
    key = (threading.get_ident(), name)
    buf = _WORKSPACE.get(key)
    if buf is None or buf.size < int(np.prod(shape)):
        buf = _WORKSPACE[key] = np.empty(int(np.prod(shape)), np.float32)
    return buf[: int(np.prod(shape))].reshape(shape)


def _crc(s: str) -> int:
    return zlib.crc32(s.encode())


def block_rng(seed: int, style: DomainStyle, split: str, block: int) -> np.random.Generator:
    """The generator of one block, seeded by (seed, style name, split, block); no arrays."""
    return np.random.default_rng([seed, _crc(style.name), _crc(split), block])


def subject_pool(style: DomainStyle, seed: int) -> anatomy.Subjects | None:
    """The fixed subject pool of a domain (shared by its splits): :class:`Subjects` with
    B = ``style.n_subjects`` (lengths in mm), or None (fresh subjects)."""
    if style.n_subjects <= 0:
        return None
    rng = np.random.default_rng([seed, _crc(style.name), _crc("subjects")])
    return anatomy.sample_subjects(rng, style.n_subjects, style.skin_weights, style.size_scale)


def sample_hand_poses(style: DomainStyle, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """3D joints only (no rendering): (n, 21, 3) mm in the hand frame and side (n,) uint8
    (1 right, 0 left, mirrored), drawn from `style`'s subjects and pose families."""
    rng = np.random.default_rng([seed, _crc(style.name), _crc("poses-only")])
    subj = anatomy.sample_subjects(rng, n, style.skin_weights, style.size_scale)
    pose = poses.sample_poses(rng, n, style.family_weights, style.pose_jitter_deg)
    side = (rng.random(n) >= style.p_left).astype(np.uint8)
    kp = anatomy.forward_kinematics(subj, pose["angles"], pose["palm_cup"], side)
    return kp, side


def random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n,3,3) rotations uniform on SO(3) (normalised Gaussian quaternions)."""
    q = rng.standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1)], -2)


def _viewpoints(rng: np.random.Generator, style: DomainStyle, n: int) -> np.ndarray:
    if style.viewpoint == "uniform":
        return random_rotations(rng, n)
    if style.viewpoint != "frontal":
        raise ValueError(f"style {style.name!r}: unknown viewpoint {style.viewpoint!r} "
                         "(use 'uniform' or 'frontal')")
    # fingers up in the image; back of the hand (or palm, half the time) towards the camera
    back = np.array([[1.0, 0, 0], [0, -1, 0], [0, 0, -1]])
    palm = np.array([[-1.0, 0, 0], [0, -1, 0], [0, 0, 1]])
    base = np.where((rng.random(n) < 0.5)[:, None, None], back, palm)
    yaw, pitch, roll = (rng.uniform(-1, 1, (3, n)) * np.array(style.view_jitter_deg)[:, None] * DEG)
    return anatomy.rot_z(roll) @ anatomy.rot_x(pitch) @ anatomy.rot_y(yaw) @ base


def _capsules_hand_frame(subj: anatomy.Subjects, kp: np.ndarray, sleeve_at: np.ndarray):
    """Capsules (n,24,7) and part labels (24,) of a right hand in its own frame, plus the
    per-joint radius (n,21) used by the visibility test."""
    n = len(kp)
    B, L = subj.breadth[:, None], subj.length[:, None]
    caps = np.zeros((n, 24, 7))
    parts = np.zeros(24, np.uint8)
    k = 0

    def add(a, b, r, label):
        nonlocal k
        caps[:, k, :3], caps[:, k, 3:6], caps[:, k, 6] = a, b, np.broadcast_to(r, (n,))
        parts[k] = label
        k += 1

    def pt(x, y, z):
        return np.concatenate([x * B, y * L, z * B], 1)

    wrist = kp[:, 0]
    add(pt(-0.22, 0.10, -0.02), pt(0.24, 0.10, -0.02), 0.17 * B[:, 0], PART_PALM)   # heel
    for f, xs in zip(range(1, 5), (-0.10, 0.0, 0.10, 0.19)):
        mcp = kp[:, 1 + 4 * f]
        add(pt(xs, 0.13, -0.01), mcp, 0.15 * B[:, 0] * (1, 1, 0.95, 0.85)[f - 1], PART_PALM)
    add(kp[:, 5], kp[:, 17], 0.13 * B[:, 0], PART_PALM)                             # knuckles
    add(pt(-0.18, 0.12, -0.07), kp[:, 2], 0.15 * B[:, 0], PART_PALM)                # thenar
    for f in range(5):
        for s in range(3):
            a, b = kp[:, 1 + 4 * f + s], kp[:, 2 + 4 * f + s]
            r = subj.radius[:, f, s]
            if s == 2:  # fingertip keypoint is on the skin: end the capsule r short of it
                d = b - a
                b = b - d / np.linalg.norm(d, axis=1, keepdims=True) * r[:, None]
            add(a, b, r, PART_FINGER0 + 3 * f + s)
    arm_dir = np.array([0.0, -1.0, 0.0])
    add(wrist, wrist + sleeve_at[:, None] * L * arm_dir, 0.30 * B[:, 0], PART_ARM)
    add(wrist + sleeve_at[:, None] * L * arm_dir, wrist + 1.6 * L * arm_dir, 0.40 * B[:, 0],
        PART_SLEEVE)
    jr = np.empty((n, 21))
    jr[:, 0] = 0.30 * B[:, 0]  # the wrist centre sits inside the forearm capsule
    jr[:, 1:] = np.concatenate([subj.radius, subj.radius[..., 2:]], 2).reshape(n, 20)
    return caps, parts, jr


def _palette(rng, subj_skin: np.ndarray, n: int) -> np.ndarray:
    pal = np.zeros((n, NUM_PARTS, 3), np.float32)
    skin = subj_skin * rng.normal(1.0, 0.02, (n, 3))
    for lab in (PART_ARM, PART_PALM, *range(PART_FINGER0, PART_FINGER0 + 15)):
        pal[:, lab] = skin
    tips = [PART_FINGER0 + 3 * f + 2 for f in range(5)]
    pal[:, tips] = skin[:, None] * np.array([1.04, 0.94, 0.94])  # pinker fingertips
    pal[:, PART_PALM] = skin * np.array([1.03, 0.98, 0.97])
    pal[:, PART_SLEEVE] = rng.uniform(0.05, 0.9, (n, 3))
    pal[:, PART_OCCLUDER] = rng.uniform(0.05, 0.95, (n, 3))
    return pal


def _occluder_draws(rng, style, kp_cam: np.ndarray):
    """Draw a sphere or rod in front of a random joint for a fraction of samples: returns the
    indices (m,) of samples that get one, its axis ends a, b (m,3) mm camera frame and radius
    r (m,) mm. The draws do not depend on the values of `kp_cam` (n,21,3) mm, only on n."""
    n = len(kp_cam)
    has = rng.random(n) < style.p_occluder
    j = rng.integers(0, 21, n)
    target = kp_cam[np.arange(n), j]
    dist = np.linalg.norm(target, axis=1, keepdims=True)
    c = target * (1 - rng.uniform(30, 110, (n, 1)) / dist) + rng.uniform(-15, 15, (n, 3))
    r = rng.uniform(8, 28, n)
    rod = rng.random(n) < 0.5
    d = rng.standard_normal((n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    half = np.where(rod, rng.uniform(20, 70, n), 0.0)[:, None]
    a, b = c - half * d, c + half * d
    ok = has & (np.minimum(a[:, 2], b[:, 2]) - r > 60)
    idx = np.flatnonzero(ok)
    return idx, a[idx], b[idx], r[idx]


def _occluders(rng, style, kp_cam: np.ndarray, caps: np.ndarray, parts: np.ndarray,
               ncaps: np.ndarray) -> None:
    """Add a sphere or a rod in front of a random joint for a fraction of samples (in place)."""
    idx, a, b, r = _occluder_draws(rng, style, kp_cam)
    caps[idx, ncaps[idx], :3] = a
    caps[idx, ncaps[idx], 3:6] = b
    caps[idx, ncaps[idx], 6] = r
    parts[idx, ncaps[idx]] = PART_OCCLUDER
    ncaps[idx] += 1


def _background(rng, style, n: int, size: int, wrist_z: np.ndarray, center_ray: np.ndarray):
    def muted(c):  # pull colours towards their grey level by (1 - saturation)
        grey = c.mean(-1, keepdims=True)
        return grey + style.bg_saturation * (c - grey)

    base = muted(rng.uniform(*style.bg_brightness, (n, 2, 3)))
    bg_colors = np.zeros((n, 3, 3), np.float32)
    bg_colors[:, :2] = np.clip(base, 0, 1)
    ang = rng.uniform(0, 2 * np.pi, n)
    strength = rng.uniform(0.0, 1.5, n)
    bg_colors[:, 2, 0], bg_colors[:, 2, 1] = np.cos(ang) * strength, np.sin(ang) * strength
    bg_colors[:, 2, 2] = rng.uniform(0.0, 0.08, n)
    smax = style.n_clutter[1]
    clutter = np.zeros((n, max(smax, 1), 10), np.float32)
    ncl = rng.integers(style.n_clutter[0], smax + 1, n).astype(np.int32)
    clutter[..., 0] = rng.integers(0, 3, (n, max(smax, 1)))
    clutter[..., 1:3] = rng.uniform(-0.2, 1.2, (n, max(smax, 1), 2)) * size
    clutter[..., 3:5] = rng.uniform(0.03, 0.35, (n, max(smax, 1), 2)) * size
    th = rng.uniform(0, np.pi, (n, max(smax, 1)))
    clutter[..., 5], clutter[..., 6] = np.cos(th), np.sin(th)
    clutter[..., 7:10] = muted(rng.uniform(*style.bg_brightness, (n, max(smax, 1), 3)))
    # background plane behind the hand, tilted up to 35 degrees
    tilt = random_rotations(rng, n)[:, :, 2] * rng.uniform(0, np.sin(35 * DEG), (n, 1))
    normal = np.concatenate([tilt[:, :2], np.ones((n, 1))], 1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    z_bg = wrist_z + rng.uniform(*style.bg_distance_mm, n)
    x0 = center_ray * z_bg[:, None]
    plane = np.concatenate([normal, (normal * x0).sum(1, keepdims=True)], 1)
    return bg_colors, clutter, ncl, plane.astype(np.float32)


def _lights(rng, style, n: int) -> np.ndarray:
    light = np.zeros((n, 10), np.float32)
    ang = rng.uniform(0, style.light_cone_deg * DEG, n)
    az = rng.uniform(0, 2 * np.pi, n)
    light[:, 0] = np.sin(ang) * np.cos(az)
    light[:, 1] = np.sin(ang) * np.sin(az) - 0.2 * np.sin(ang)  # slight bias: light from above
    light[:, 2] = -np.cos(ang)
    light[:, :3] /= np.linalg.norm(light[:, :3], axis=1, keepdims=True)
    light[:, 3] = rng.uniform(*style.ambient, n)
    light[:, 4] = rng.uniform(*style.diffuse, n)
    light[:, 5] = rng.uniform(*style.specular, n)
    light[:, 6] = rng.uniform(8, 30, n)
    light[:, 7] = 0.35                      # wrap lighting: soft, skin-like terminator
    light[:, 8] = style.skin_texture
    light[:, 9] = rng.uniform(1.5, 3.0, n)  # texture cell, mm
    return light


def sample_scene(style: DomainStyle, rng: np.random.Generator, n: int, size: int,
                 pool: anatomy.Subjects | None = None, K_full: np.ndarray | None = None,
                 full_frame: bool = False, geometry: bool = True) -> dict:
    """Everything of :func:`generate_block` before rendering: subjects, poses, sides, full-frame
    camera, viewpoint and placement, sleeve and occluder draws, and the crop. Makes exactly the
    RNG draws `generate_block` makes before it renders, in the same order.

    With ``geometry=False`` the capsule scene (pure geometry, no draws) is not built: the
    labels and the RNG state afterwards are the same, only ``caps``/``cap_parts``/``ncaps``/
    ``joint_r`` are missing (a fast label-only path).

    Returns a dict: subj (:class:`anatomy.Subjects`, mm), subject (n,) int32 (-1 = unique),
    family (n,) int16, side (n,) uint8 (0 left, 1 right), kp_cam (n,21,3) float64 mm camera
    frame, T (n,3) mm (hand centroid placement), K_full (n,3,3) float64 full-frame px,
    box (n,4) float64 full-frame px, K (n,3,3) float64 crop px, kp2d (n,21,2) float64 crop px,
    out_wh (W, H) px of the output image; with geometry also caps (n,MAX_CAPSULES,7) float32
    (a, b mm, radius mm), cap_parts (n,MAX_CAPSULES) uint8, ncaps (n,) int32, joint_r (n,21) mm.
    """
    if pool is not None:
        sid = rng.integers(0, len(pool), n).astype(np.int32)
        subj = pool.take(sid)
    else:
        subj = anatomy.sample_subjects(rng, n, style.skin_weights, style.size_scale)
        sid = np.full(n, -1, np.int32)
    pose = poses.sample_poses(rng, n, style.family_weights, style.pose_jitter_deg)
    side = (rng.random(n) >= style.p_left).astype(np.uint8)  # 1 = right
    kp_hand = anatomy.forward_kinematics(subj, pose["angles"], pose["palm_cup"],
                                         np.ones(n, np.uint8))
    sleeve = np.where(rng.random(n) < style.p_sleeve, rng.uniform(0.2, 0.6, n), 1.6)
    mirror = np.where(side == 1, 1.0, -1.0)[:, None, None]
    if geometry:
        caps_h, part_ids, joint_r = _capsules_hand_frame(subj, kp_hand, sleeve)
        caps_h[..., 0:1] *= mirror
        caps_h[..., 3:4] *= mirror
    kp_hand[..., 0:1] *= mirror

    # camera of the full frame
    W, H = style.image_wh
    fx = rng.uniform(*style.focal_px, n)
    fy = fx * rng.uniform(0.997, 1.003, n)
    cx = (W - 1) / 2 + rng.uniform(-1, 1, n) * style.principal_jitter_px
    cy = (H - 1) / 2 + rng.uniform(-1, 1, n) * style.principal_jitter_px
    if K_full is None:
        K_full = np.zeros((n, 3, 3))
        K_full[:, 0, 0], K_full[:, 1, 1], K_full[:, 0, 2], K_full[:, 1, 2] = fx, fy, cx, cy
        K_full[:, 2, 2] = 1.0
    else:
        K_full = np.broadcast_to(np.asarray(K_full, np.float64), (n, 3, 3)).copy()

    # pose the hand: rotation about its centroid, centroid at a random pixel and distance
    R = _viewpoints(rng, style, n)
    centroid = kp_hand.mean(1)
    z = rng.uniform(*style.distance_mm, n)
    target = np.stack([rng.uniform(0.25, 0.75, n) * W, rng.uniform(0.25, 0.75, n) * H,
                       np.ones(n)], 1)
    ray = np.einsum("nij,nj->ni", np.linalg.inv(K_full), target)
    T = ray * z[:, None] - np.einsum("nij,nj->ni", R, centroid)
    kp_cam = np.einsum("nij,nkj->nki", R, kp_hand) + T[:, None]
    scene = {}
    if geometry:
        caps_cam = np.zeros((n, MAX_CAPSULES, 7), np.float32)
        caps_cam[:, :24, :3] = np.einsum("nij,nkj->nki", R, caps_h[..., :3]) + T[:, None]
        caps_cam[:, :24, 3:6] = np.einsum("nij,nkj->nki", R, caps_h[..., 3:6]) + T[:, None]
        caps_cam[:, :24, 6] = caps_h[..., 6]
        cap_parts = np.zeros((n, MAX_CAPSULES), np.uint8)
        cap_parts[:, :24] = part_ids
        ncaps = np.full(n, 24, np.int32)
        _occluders(rng, style, kp_cam, caps_cam, cap_parts, ncaps)
        scene.update(caps=caps_cam, cap_parts=cap_parts, ncaps=ncaps, joint_r=joint_r)
    else:
        _occluder_draws(rng, style, kp_cam)  # same draws, nothing to place them in

    # square crop around the projected keypoints
    uv = camera.project(K_full, kp_cam)
    lo, hi = uv.min(1), uv.max(1)
    side_px = (hi - lo).max(1) * rng.uniform(*style.crop_margin, n)
    ctr = (lo + hi) / 2 + rng.uniform(-1, 1, (n, 2)) * style.crop_jitter * side_px[:, None]
    box = np.concatenate([ctr - side_px[:, None] / 2, ctr + side_px[:, None] / 2], 1)
    if full_frame:
        (ow, oh), box = style.image_wh, np.tile([0.0, 0.0, *style.image_wh], (n, 1))
    else:
        ow = oh = size
    K = camera.crop_K(K_full, box, (ow, oh))
    scene.update(subj=subj, subject=sid, family=pose["family"], side=side, kp_cam=kp_cam, T=T,
                 K_full=K_full, box=box, K=K, kp2d=camera.project(K, kp_cam), out_wh=(ow, oh))
    return scene


def render_scene(style: DomainStyle, rng: np.random.Generator, scene: dict,
                 with_3d: bool = True) -> dict:
    """Render a :func:`sample_scene` dict (built with geometry): ray cast, visibility, shading,
    background and sensor effects, drawing from `rng` where `sample_scene` left it. Returns
    :func:`generate_block`'s dict."""
    if "caps" not in scene:
        raise ValueError("render_scene needs a scene sampled with geometry=True")
    subj, kp_cam, K, kp2d, T = (scene[k] for k in ("subj", "kp_cam", "K", "kp2d", "T"))
    caps_cam, cap_parts, ncaps = scene["caps"], scene["cap_parts"], scene["ncaps"]
    ow, oh = scene["out_wh"]
    n = len(kp_cam)
    cam = np.stack([K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2]], 1)

    depth = np.empty((n, oh, ow), np.float32)
    parts = np.empty((n, oh, ow), np.uint8)
    normal = _workspace("normal", (n, oh, ow, 3))
    raycast.cast_capsules(caps_cam, cap_parts, ncaps, cam, depth, parts, normal)
    hit_depth = depth.copy()

    # visibility: the surface seen at the joint's pixel is not well in front of the joint
    pix = np.rint(kp2d).astype(np.int64)
    in_crop = (pix >= 0).all(-1) & (pix < [ow, oh]).all(-1)
    pc = np.clip(pix, 0, [ow - 1, oh - 1])
    seen = hit_depth[np.arange(n)[:, None], pc[..., 1], pc[..., 0]]
    label = parts[np.arange(n)[:, None], pc[..., 1], pc[..., 0]]
    vis = (in_crop & (seen > 0) & (seen >= kp_cam[..., 2] - scene["joint_r"] - 4.0)
           & (label != PART_OCCLUDER))

    # shading and background
    center_ray = np.einsum("nij,nj->ni", np.linalg.inv(K),
                           np.stack([np.full(n, (ow - 1) / 2), np.full(n, (oh - 1) / 2),
                                     np.ones(n)], 1))
    bg_colors, clutter, ncl, plane = _background(rng, style, n, max(ow, oh), T[:, 2], center_ray)
    rgbf = _workspace("rgbf", (n, oh, ow, 3))
    seeds = rng.integers(0, 2**31 - 1, n)
    raycast.shade(depth, parts, normal, cam, _palette(rng, subj.skin, n), _lights(rng, style, n),
                  bg_colors, clutter, ncl, plane, seeds, rgbf)
    rgb = effects.rgb_sensor(rng, style, rgbf)
    depth = effects.depth_sensor(rng, style, depth, np.where(parts > 0, normal[..., 2], 0.0)
                                 .astype(np.float32), cam)

    mask = ((parts >= HAND_PARTS[0]) & (parts <= HAND_PARTS[-1])).astype(np.uint8)
    kp3d = kp_cam.astype(np.float32) if with_3d else np.full((n, 21, 3), np.nan, np.float32)
    return {
        "rgb": rgb, "depth": depth, "mask": mask, "parts": parts,
        "kp2d": kp2d.astype(np.float32), "kp3d": kp3d, "vis": vis, "K": K.astype(np.float32),
        "side": scene["side"], "has_2d": np.ones(n, bool), "has_3d": np.full(n, with_3d),
        "has_depth": np.ones(n, bool), "subject": scene["subject"], "family": scene["family"],
        "crop_box": scene["box"].astype(np.float32),
    }


def generate_block(style: DomainStyle, rng: np.random.Generator, n: int, size: int,
                   pool: anatomy.Subjects | None = None, with_3d: bool = True,
                   K_full: np.ndarray | None = None, full_frame: bool = False) -> dict:
    """Generate `n` labelled crops of `size`×`size` pixels: :func:`sample_scene` (all draws
    up to the crop) then :func:`render_scene`.

    `K_full` (3,3) or (n,3,3) replaces the style's sampled full-frame intrinsics; with
    `full_frame=True` the whole `style.image_wh` frame is rendered instead of a crop (used to
    write test fixtures in the raw formats of real datasets; `size` is then ignored).

    Returns a dict of arrays: rgb (n,S,S,3) uint8, depth (n,S,S) float32 mm (0 = missing),
    mask (n,S,S) uint8, parts (n,S,S) uint8, kp2d (n,21,2) float32 crop px, kp3d (n,21,3)
    float32 mm camera frame (NaN if not with_3d), vis (n,21) bool, K (n,3,3) float32,
    side (n,) uint8 (0 left, 1 right), has_2d/has_3d/has_depth (n,) bool, subject (n,) int32
    (-1 = unique), family (n,) int16 (poses.FAMILIES), crop_box (n,4) float32 (full-frame px).
    """
    scene = sample_scene(style, rng, n, size, pool, K_full, full_frame)
    return render_scene(style, rng, scene, with_3d)


def generate(style: DomainStyle, n: int, seed: int, split: str = "train", size: int = 128,
             with_3d: bool | None = None, start_block: int = 0) -> Iterator[tuple[int, dict]]:
    """Yield (start index, block dict) for `n` samples in deterministic blocks of BLOCK; each
    block is :func:`generate_block`'s dict for m <= BLOCK samples of `size` px: rgb
    (m, S, S, 3) uint8, depth (m, S, S) float32 mm, kp2d (m, 21, 2) px, kp3d (m, 21, 3) mm, ..."""
    if with_3d is None:
        with_3d = split not in style.withhold_3d_splits
    pool = subject_pool(style, seed)
    nblocks = -(-n // BLOCK)
    for b in range(start_block, nblocks):
        m = min(BLOCK, n - b * BLOCK)
        yield b * BLOCK, generate_block(style, block_rng(seed, style, split, b), m, size, pool,
                                        with_3d)
