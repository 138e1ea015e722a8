"""PyTorch views of on-disk datasets: geometry-consistent augmentation and mixed batches.

All geometry follows the OpenCV pinhole convention of :mod:`weakhand.camera` (integer pixel
coordinates are pixel centres). One sample goes through, in this order:

1. optional horizontal flip (``mirror_left`` for left hands, or the random ``p_flip``):
   image u -> W-1-u, ``K -> camera.mirror_K(K, W)``, ``kp3d -> skeleton.mirror`` (x -> -x),
   ``side -> 1 - side``;
2. resize of the whole crop to ``out_size``: ``R = camera.crop_transform((0, 0, W, H), out)``,
   ``K -> R K``;
3. augmentation, as a pixel-space similarity ``A`` (rotation, zoom and shift) about the output
   centre: ``K -> A K`` (a general projective camera: every consumer of K uses its full inverse),
   kp3d and depth values unchanged. An earlier version rotated the scene about the optical axis,
   which swings crops whose principal point is far from their centre partly out of the image.

The composed pixel map is applied once with ``cv2.warpPerspective`` (bilinear for RGB, nearest for
depth / mask / parts, border 0). ``kp2d`` is ``project(K', kp3d')`` for joints with a finite 3D
label and the pixel map applied to the stored ``kp2d`` otherwise; both agree when the stored
labels are consistent. Colour jitter is applied to the source image before the warp (so the
border stays 0).
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from collections.abc import Mapping
from typing import Any, Iterator, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler

from .. import camera
from .format import HandData, load_dataset

#: Fields returned by default. "parts" and extra arrays (e.g. "subject") can be requested too.
DEFAULT_FIELDS: tuple[str, ...] = ("image", "depth", "mask", "kp2d", "kp3d", "vis", "K", "side",
                                   "has_2d", "has_3d", "has_depth", "in_crop", "mirrored", "index")
_BUILTIN_FIELDS = set(DEFAULT_FIELDS) | {"parts"}
_IDENTITY = np.eye(3)


@dataclass
class AugmentConfig:
    """Random augmentation. Geometry keeps K, kp2d, kp3d and depth consistent (module docstring).

    rot_deg: in-plane rotation angle uniform in [-rot_deg, rot_deg] degrees (about the optical
    axis); scale: zoom factor uniform in [lo, hi] (> 1 zooms in); shift_px: translation uniform in
    [-shift_px, shift_px] per axis, in output pixels; brightness/contrast/saturation: factors
    uniform in [1-x, 1+x]; hue: chroma rotation uniform in [-hue, hue] turns (YIQ, "hue-lite");
    p_flip: probability of a horizontal flip (turns the hand's side; off by default).
    """

    rot_deg: float = 30.0
    scale: tuple[float, float] = (0.9, 1.1)
    shift_px: float = 8.0
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.02
    p_flip: float = 0.0

    def __post_init__(self):
        lo, hi = (float(v) for v in self.scale)
        if not 0 < lo <= hi:
            raise ValueError(f"AugmentConfig.scale must be 0 < lo <= hi, got {self.scale}")
        self.scale = (lo, hi)
        for name in ("rot_deg", "shift_px", "brightness", "contrast", "saturation", "hue"):
            if float(getattr(self, name)) < 0:
                raise ValueError(f"AugmentConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.p_flip <= 1:
            raise ValueError(f"AugmentConfig.p_flip must be in [0, 1], got {self.p_flip}")

    @classmethod
    def geometry_only(cls, **kw) -> "AugmentConfig":
        """Rotation (degrees) / scale / shift (px) with the colour jitter switched off."""
        return cls(**{"brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "hue": 0.0, **kw})

    def to_dict(self) -> dict:
        """The fields as a plain dict (rot_deg in degrees, shift_px in output px)."""
        return asdict(self)


def _flip_matrix(width: int) -> np.ndarray:
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


# camera.mirror_K(K, width) = _mirror_u(width) @ K @ _MIRROR_X (the same matrices it builds)
_mirror_u = _flip_matrix
_MIRROR_X = np.array([[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
# np.allclose(warp, _IDENTITY, atol=1e-12) is |warp - I| <= 1e-12 + 1e-5 |I| elementwise
_IDENTITY_TOL = 1e-12 + 1e-5 * np.abs(_IDENTITY)


_RGB2YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ2RGB = np.linalg.inv(_RGB2YIQ)
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def colour_jitter(img: np.ndarray, brightness: float, contrast: float, saturation: float,
                  hue_turns: float) -> np.ndarray:
    """Apply given jitter factors to a float32 (H, W, 3) RGB image in [0, 1]; returns a new image."""
    return _jitter_inplace(img * np.float32(brightness), contrast, saturation, hue_turns)


def _jitter_inplace(out: np.ndarray, contrast: float, saturation: float,
                    hue_turns: float) -> np.ndarray:
    """:func:`colour_jitter` after the brightness factor, overwriting `out` (a float32 array the
    caller owns). Element for element the same float32 operations as the textbook form
    ``(x - mean) * c + mean`` and ``gray + (x - gray) * s``, but in place and with the grey
    level expanded to three channels once (a broadcast over the 3-long last axis is slow)."""
    if contrast != 1.0:
        mean = float((out @ _LUMA).mean())
        out -= mean
        out *= np.float32(contrast)
        out += np.float32(mean)
    if saturation != 1.0:
        g = out @ _LUMA
        gray = np.empty_like(out)
        for c in range(gray.shape[-1]):
            gray[..., c] = g
        out -= gray
        out *= np.float32(saturation)
        out += gray
    if hue_turns != 0.0:
        a = 2.0 * math.pi * hue_turns
        rot = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
        m = (_YIQ2RGB @ rot @ _RGB2YIQ).astype(np.float32)
        out = out @ m.T
    return np.clip(out, 0.0, 1.0, out=out).astype(np.float32, copy=False)


class HandDataset(Dataset):
    """Torch dataset over a :class:`~weakhand.data.format.HandData` (or a dataset path).

    Each item is a dict of tensors (S = output size, default the stored crop size):
    ``image`` float32 (3,S,S) RGB in [0,1]; ``depth`` float32 (1,S,S) mm (0 = missing);
    ``mask`` float32 (1,S,S); ``parts`` int64 (S,S) if requested; ``kp2d`` float32 (21,2) px;
    ``kp3d`` float32 (21,3) mm (NaN where absent); ``vis`` bool (21,); ``K`` float32 (3,3);
    ``side`` int64 (); ``has_2d``/``has_3d``/``has_depth`` bool (); ``in_crop`` bool (21,) (the
    kp2d lies inside the output image, edges at -0.5 and S-0.5); ``mirrored`` bool () (the image
    was flipped horizontally relative to the stored one); ``index`` int64 (); plus any extra
    array named in `fields` (as stored, e.g. ``subject``).

    out_size: None, an int (square) or (H, W). Augmentation randomness comes from
    ``np.random.default_rng([seed, epoch, index])``: reproducible, independent of worker count
    and order; call :meth:`set_epoch` each epoch (with ``persistent_workers=False``, the default,
    the new epoch reaches the workers).
    """

    def __init__(self, data: HandData | str | os.PathLike, out_size: int | Sequence[int] | None = None,
                 augment: AugmentConfig | None = None, mirror_left: bool = False, seed: int = 0,
                 fields: Sequence[str] = DEFAULT_FIELDS):
        self.data = data if isinstance(data, HandData) else load_dataset(data)
        h, w = self.data.image_size
        if out_size is None:
            self.out_size = (h, w)
        elif np.ndim(out_size) == 0:
            self.out_size = (int(out_size), int(out_size))
        else:
            oh, ow = out_size
            self.out_size = (int(oh), int(ow))
        if min(self.out_size) <= 0:
            raise ValueError(f"out_size must be positive, got {out_size}")
        self.augment = augment
        self.mirror_left = bool(mirror_left)
        self.seed = int(seed)
        if self.seed < 0:
            raise ValueError("seed must be >= 0")
        self.epoch = 0
        self.fields = tuple(fields)
        unknown = [f for f in self.fields if f not in _BUILTIN_FIELDS and f not in self.data.arrays]
        if unknown:
            raise ValueError(f"unknown field(s) {unknown}; built-in fields are {sorted(_BUILTIN_FIELDS)}, "
                             f"stored arrays are {sorted(self.data.arrays)}")
        if "parts" in self.fields and "parts" not in self.data.arrays:
            raise ValueError(f"field 'parts' requested but {self.data.path} has no parts array")
        if (h, w) == self.out_size:
            self._resize = _IDENTITY
        else:
            self._resize = np.asarray(camera.crop_transform(np.array([0.0, 0.0, w, h]),
                                                            (self.out_size[1], self.out_size[0])))

    def __len__(self) -> int:
        return len(self.data)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch that seeds the augmentation draws (no arrays)."""
        self.epoch = int(epoch)

    # -- fast access to the stored arrays
    def _arrays(self) -> dict:
        """``self.data.arrays`` with memory maps as plain ndarray views of the same pages:
        indexing an ``np.memmap`` costs several microseconds of Python per call. Rebuilt when
        `data` or its arrays dict is replaced; never pickled (workers rebuild it)."""
        cache = self.__dict__.get("_array_cache")
        if cache is None or cache[0] is not self.data or cache[1] is not self.data.arrays:
            arrays = self.data.arrays
            views = {k: (v.view(np.ndarray) if isinstance(v, np.memmap) else v)
                     for k, v in arrays.items()}
            cache = (self.data, arrays, views)
            self.__dict__["_array_cache"] = cache
        return cache[2]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_array_cache", None)
        return state

    # -- random parameters
    def sample_params(self, index: int) -> dict[str, Any]:
        """The random draws for sample `index` in the current epoch (all drawn, used or not):
        ``flip`` bool, ``theta`` rad, ``scale`` unitless factor, ``shift`` (dx, dy) output px,
        ``jitter`` (brightness, contrast, saturation factors, hue turns) or None."""
        a = self.augment
        if a is None:
            return {"flip": False, "theta": 0.0, "scale": 1.0, "shift": (0.0, 0.0), "jitter": None}
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        u = rng.random(9)
        lo, hi = a.scale
        return {
            "flip": bool(u[0] < a.p_flip),
            "theta": math.radians(a.rot_deg * (2 * u[1] - 1)),
            "scale": lo + (hi - lo) * u[2],
            "shift": (a.shift_px * (2 * u[3] - 1), a.shift_px * (2 * u[4] - 1)),
            "jitter": (1 + a.brightness * (2 * u[5] - 1), 1 + a.contrast * (2 * u[6] - 1),
                       1 + a.saturation * (2 * u[7] - 1), a.hue * (2 * u[8] - 1)),
        }

    # -- geometry of one sample
    def geometry(self, index: int) -> dict[str, Any]:
        """Labels and pixel maps of sample `index` (current epoch), without touching the images.

        Returns numpy float64 ``warp`` (3,3): stored-crop pixels -> output pixels (the matrix given
        to cv2.warpPerspective), ``K`` (3,3), ``kp3d`` (21,3), ``kp2d`` (21,2), ``in_crop`` (21,),
        ``side`` int, ``mirrored`` bool, and ``params`` (the random draws).

        The maps are those of :func:`camera.mirror_K`, :func:`camera.homography_rotate_about_axis`,
        :func:`camera.rotation_z`, :func:`camera.scale_about_center`, :func:`camera.project` and
        :func:`camera.apply_homography`, written out for one sample with the same floating-point
        operations in the same order (bit-identical results), without their numpy/torch dispatch
        (which cost more than the image warps).
        """
        index = self._check_index(index)
        arr = self._arrays()
        h, w = self.data.image_size
        oh, ow = self.out_size
        p = self.sample_params(index)

        K = np.asarray(arr["K"][index], np.float64)
        X = np.asarray(arr["kp3d"][index], np.float64)
        uv = np.asarray(arr["kp2d"][index], np.float64)
        side = int(arr["side"][index])

        flip = p["flip"]
        if self.mirror_left and (side ^ int(flip)) == 0:
            flip = not flip
        P = _IDENTITY
        if flip:
            # camera.mirror_K: F K M (u -> w - 1 - u; x -> -x); skeleton.mirror: x -> -x
            K = _mirror_u(w) @ K @ _MIRROR_X
            X = np.concatenate([-X[..., :1], X[..., 1:]], -1)
            uv = uv.copy()
            uv[:, 0] = (w - 1) - uv[:, 0]
            side, P = 1 - side, _flip_matrix(w)

        K1 = self._resize @ K
        A = _IDENTITY
        if self.augment is not None:
            # camera.similarity_about_center(scale, theta, centre, shift): a pixel-space rotation
            # and zoom about the output centre, K -> A K, kp3d and depth values unchanged. (A
            # rotation about the optical axis instead would swing a crop whose principal point lies
            # far outside it, e.g. a hand at a frame corner, partly out of the image.)
            A = camera.similarity_about_center(p["scale"], p["theta"], ((ow - 1) / 2.0, (oh - 1) / 2.0),
                                               p["shift"])
            K1 = A @ K1
        label_map = A @ self._resize          # stored (possibly flipped) pixels -> output pixels

        # camera.apply_homography(label_map, uv) and camera.project(K1, X)
        q = np.concatenate([uv, uv[..., :1] * 0 + 1], -1) @ label_map.swapaxes(-1, -2)
        uv_lab = q[..., :2] / q[..., 2:3]
        q = X @ K1.swapaxes(-1, -2)
        valid = X[..., 2:3] > 0
        uv_3d = np.where(valid, q[..., :2] / np.where(valid, q[..., 2:3], 1.0), float("nan"))
        kp2d = np.where(np.isfinite(uv_3d), uv_3d, uv_lab)
        in_crop = (np.isfinite(kp2d).all(1) & (kp2d[:, 0] >= -0.5) & (kp2d[:, 0] < ow - 0.5)
                   & (kp2d[:, 1] >= -0.5) & (kp2d[:, 1] < oh - 0.5))
        return {"warp": label_map @ P, "K": K1, "kp3d": X, "kp2d": kp2d, "in_crop": in_crop,
                "side": side, "mirrored": bool(flip), "params": p}

    # -- one sample
    def _check_index(self, index: int) -> int:
        index, n = int(index), len(self.data)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} samples")
        return index % n

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index = self._check_index(index)
        arr = self._arrays()
        h, w = self.data.image_size
        oh, ow = self.out_size
        g = self.geometry(index)
        p, warp = g["params"], g["warp"]
        kp2d, X, K1, in_crop, side, flip = (g["kp2d"], g["kp3d"], g["K"], g["in_crop"], g["side"],
                                            g["mirrored"])

        # np.allclose(warp, I, atol=1e-12) without its overhead (rtol 1e-5 as allclose's default)
        identity = (oh, ow) == (h, w) and bool((np.abs(warp - _IDENTITY) <= _IDENTITY_TOL).all())

        def _warp(img: np.ndarray, interp: int) -> np.ndarray:
            if identity:
                return np.array(img)
            return cv2.warpPerspective(np.ascontiguousarray(img), warp, (ow, oh), flags=interp,
                                       borderMode=cv2.BORDER_CONSTANT, borderValue=0)

        out: dict[str, torch.Tensor] = {}
        for f in self.fields:
            if f == "image":
                # = np.asarray(rgb, float32) * float32(1/255): uint8 -> float32 is exact
                img = np.multiply(arr["rgb"][index], np.float32(1 / 255), dtype=np.float32)
                if p["jitter"] is not None:
                    b, c, s, hue = p["jitter"]
                    img *= np.float32(b)
                    img = _jitter_inplace(img, c, s, hue)
                img = _warp(img, cv2.INTER_LINEAR)
                out[f] = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
            elif f == "depth":
                d = _warp(arr["depth"][index], cv2.INTER_NEAREST)
                out[f] = torch.from_numpy((d * self.data.depth_scale_mm).astype(np.float32)[None])
            elif f == "mask":
                m = _warp(arr["mask"][index], cv2.INTER_NEAREST)
                out[f] = torch.from_numpy(m.astype(np.float32)[None])
            elif f == "parts":
                out[f] = torch.from_numpy(_warp(arr["parts"][index],
                                                cv2.INTER_NEAREST).astype(np.int64))
            elif f == "kp2d":
                out[f] = torch.from_numpy(kp2d.astype(np.float32))
            elif f == "kp3d":
                out[f] = torch.from_numpy(X.astype(np.float32))
            elif f == "K":
                out[f] = torch.from_numpy(K1.astype(np.float32))
            elif f == "vis":
                out[f] = torch.from_numpy(np.array(arr["vis"][index], dtype=bool))
            elif f == "side":
                out[f] = torch.from_numpy(np.array(side, dtype=np.int64))
            elif f in ("has_2d", "has_3d", "has_depth"):
                out[f] = torch.from_numpy(np.array(bool(arr[f][index])))
            elif f == "in_crop":
                out[f] = torch.from_numpy(in_crop)
            elif f == "mirrored":
                out[f] = torch.from_numpy(np.array(bool(flip)))
            elif f == "index":
                out[f] = torch.from_numpy(np.array(index, dtype=np.int64))
            else:  # stored extra array
                out[f] = torch.as_tensor(np.array(arr[f][index]))
        return out

    def __repr__(self) -> str:
        return (f"HandDataset({self.data!r}, out_size={self.out_size}, augment={self.augment}, "
                f"mirror_left={self.mirror_left}, seed={self.seed}, epoch={self.epoch})")


class MixedBatchSampler(Sampler[list[int]]):
    """Batches mixing two datasets concatenated as ``ConcatDataset([source, target])``.

    Every batch holds ``n_source = floor(batch_size * source_fraction + 0.5)`` source indices
    (0..len_source-1) followed by ``batch_size - n_source`` target indices (offset by len_source).
    Each stream walks through random permutations of its indices, drawing a fresh permutation when
    one is exhausted (so within each consecutive block of len_source source draws every source
    index appears once). The permutations depend only on (seed, epoch, stream, cycle); call
    :meth:`set_epoch` each epoch. ``len`` is `num_batches`, or by default enough batches for the
    longer stream (in draws per batch) to be seen once: ``max(ceil(len_s / n_s), ceil(len_t / n_t))``
    over the streams with a non-zero share. Yields lists of batch_size int indices (no arrays).
    """

    def __init__(self, len_source: int, len_target: int, batch_size: int,
                 num_batches: int | None = None, seed: int = 0, source_fraction: float = 0.5):
        self.len_source, self.len_target = int(len_source), int(len_target)
        self.batch_size = int(batch_size)
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not 0.0 <= source_fraction <= 1.0:
            raise ValueError(f"source_fraction must be in [0, 1], got {source_fraction}")
        self.n_source = int(math.floor(self.batch_size * source_fraction + 0.5))
        self.n_target = self.batch_size - self.n_source
        if self.n_source and self.len_source <= 0:
            raise ValueError("the source stream is empty but the batch needs source samples")
        if self.n_target and self.len_target <= 0:
            raise ValueError("the target stream is empty but the batch needs target samples")
        self.num_batches = None if num_batches is None else int(num_batches)
        if self.num_batches is not None and self.num_batches < 0:
            raise ValueError(f"num_batches must be >= 0, got {num_batches}")
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch that seeds the permutations (no arrays)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self.num_batches is not None:
            return self.num_batches
        counts = [math.ceil(length / k) for length, k in
                  ((self.len_source, self.n_source), (self.len_target, self.n_target)) if k > 0]
        return max(counts)

    def _stream(self, stream: int, length: int) -> Iterator[int]:
        cycle = 0
        while True:
            rng = np.random.default_rng([self.seed, self.epoch, stream, cycle])
            yield from rng.permutation(length).tolist()
            cycle += 1

    def __iter__(self) -> Iterator[list[int]]:
        src = self._stream(0, self.len_source) if self.n_source else None
        tgt = self._stream(1, self.len_target) if self.n_target else None
        for _ in range(len(self)):
            batch = [next(src) for _ in range(self.n_source)]
            batch += [self.len_source + next(tgt) for _ in range(self.n_target)]
            yield batch


def make_mixed_loader(source: HandDataset, target: HandDataset, batch_size: int,
                      source_fraction: float = 0.5, num_batches: int | None = None, seed: int = 0,
                      **loader_kw) -> DataLoader:
    """DataLoader over ``ConcatDataset([source, target])`` with a :class:`MixedBatchSampler`.

    In each batch the first ``sampler.n_source`` items come from `source`. To advance the epoch
    call ``loader.batch_sampler.set_epoch(e)`` and ``set_epoch(e)`` on both datasets (see
    :func:`set_loader_epoch`). Extra keyword arguments go to ``DataLoader``. source_fraction:
    fraction in [0, 1] of each batch taken from `source`.
    """
    sampler = MixedBatchSampler(len(source), len(target), batch_size, num_batches=num_batches,
                                seed=seed, source_fraction=source_fraction)
    return DataLoader(ConcatDataset([source, target]), batch_sampler=sampler, **loader_kw)


#: the training notebooks' augmentation: rotation ±30°, zoom 0.9-1.1, shift ±4 output px
TRAIN_AUGMENT = AugmentConfig(rot_deg=30, scale=(0.9, 1.1), shift_px=4)
#: batch size of every evaluation loader (validation and test)
EVAL_BATCH_SIZE = 64


def split_dataset(root: str | os.PathLike, split: str | HandData,
                  size: int | Sequence[int] | None = None, *, augment: AugmentConfig | None = None,
                  seed: int = 0, fields: Sequence[str] = DEFAULT_FIELDS) -> HandDataset:
    """One split as the notebooks read it: ``HandDataset(root/split, out_size=size,
    mirror_left=True)`` (left hands mirrored to right ones), with `augment` and its `seed`
    (the seed only matters with augmentation). `split` may also be a
    :class:`~weakhand.data.format.HandData` held in memory (`root` is then unused).
    size: output side in px."""
    data = split if isinstance(split, HandData) else os.path.join(root, split)
    return HandDataset(data, out_size=size, augment=augment, mirror_left=True, seed=seed,
                       fields=fields)


@dataclass
class Loaders:
    """The loaders of one training notebook: ``train`` (shuffled, last partial batch dropped,
    batch order from ``torch.Generator().manual_seed(seed)``; None without a train split),
    ``val`` (the first `n_val` samples of the validation split, in order; None without one) and
    ``test`` ({label: loader} in order). Evaluation loaders use :data:`EVAL_BATCH_SIZE`. No arrays:
    the batches are :class:`HandDataset` items (images (B, 3, S, S) in [0, 1], joints in px / mm)."""
    train: DataLoader | None
    val: DataLoader | None
    test: dict[str, DataLoader]


def eval_loader(root: str | os.PathLike, split: str | HandData,
                size: int | Sequence[int] | None = None) -> DataLoader:
    """An evaluation loader over one split (no augmentation, in order, batches of
    :data:`EVAL_BATCH_SIZE`); arguments as :func:`split_dataset` (size: output side in px)."""
    return DataLoader(split_dataset(root, split, size), batch_size=EVAL_BATCH_SIZE)


def loaders(root: str | os.PathLike, size: int | Sequence[int] | None = None, *,
            train: str | None = None, val: str | None = None,
            test: Mapping[str, str] | Sequence[str] = (), batch_size: int = 32, seed: int = 0,
            n_val: int | None = None, augment: AugmentConfig | None = TRAIN_AUGMENT) -> Loaders:
    """The training / validation / test loaders of a notebook over the splits under `root`
    (a run's ``data/`` folder), every image resized to `size` px and left hands mirrored.

    train: split trained on, augmented with `augment` (seeded by `seed`); val: validation split,
    cut to its first `n_val` samples (None: all); test: split names, or {label: split}.
    Returns :class:`Loaders`."""
    tr = None
    if train is not None:
        ds = split_dataset(root, train, size, augment=augment, seed=seed)
        tr = DataLoader(ds, batch_size=batch_size, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(seed))
    va = None
    if val is not None:
        full = split_dataset(root, val, size)
        n = len(full) if n_val is None else min(n_val, len(full))
        va = DataLoader(torch.utils.data.Subset(full, range(n)), batch_size=EVAL_BATCH_SIZE)
    named = dict(test) if isinstance(test, Mapping) else {t: t for t in test}
    return Loaders(tr, va, {k: eval_loader(root, s, size) for k, s in named.items()})


def set_loader_epoch(loader: DataLoader, epoch: int) -> None:
    """Set the epoch on a loader's batch sampler / sampler and on every HandDataset inside it
    (no arrays)."""
    for obj in (loader.batch_sampler, getattr(loader, "sampler", None)):
        if hasattr(obj, "set_epoch"):
            obj.set_epoch(epoch)
    ds = loader.dataset
    parts = ds.datasets if isinstance(ds, ConcatDataset) else [ds]
    for d in parts:
        if hasattr(d, "set_epoch"):
            d.set_epoch(epoch)


def to_device(obj: Any, device: torch.device | str, non_blocking: bool = False) -> Any:
    """Move every tensor in a (nested) dict / list / tuple / namedtuple batch to `device`
    (other leaves unchanged); each tensor keeps its shape (...), dtype, units and values."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=non_blocking)
    if isinstance(obj, Mapping):
        return {k: to_device(v, device, non_blocking) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(to_device(v, device, non_blocking) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device, non_blocking) for v in obj)
    return obj
