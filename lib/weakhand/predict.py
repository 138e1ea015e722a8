"""3D hand joints from a folder of images with a trained pose checkpoint (`weakhand predict`).

::

    from weakhand.predict import load_predictor, predict_folder
    pred = load_predictor("runs/cpu/stage3_2d/last.pt")            # or pose25d_2d/last.pt, ...
    summary = predict_folder(pred, "my_crops/", "my_crops_pred/", K="K.json")

    weakhand predict runs/cpu/pose25d_2d/last.pt my_crops/ --out my_crops_pred/

**Checkpoints.** The RGB pose networks: :class:`weakhand.models.CaiPoseNet` (Cai family,
``stage1_pose/`` and ``stage3_<variant>/``) and :class:`weakhand.models.pose25d_net.Pose25DNet`
(2.5D family, ``pose25d_stage1/`` and ``pose25d_<variant>/``). Other kinds (the depth teacher,
the stage-2 regulariser) are refused with a message naming what the file holds. A run folder's
sub-folder may be given instead of a file (``best.pt``, else ``last.pt``). The network is
rebuilt from the checkpoint's own description (kind and configuration) by
:func:`weakhand.models.registry.build_model`; older checkpoints fall back to ``config["net"]``,
and those written without it (older Cai stage-3 runs) to the run's stage-1 checkpoint
(``<run>/stage1_pose/best.pt``, found next to the checkpoint's folder or under
``config["run_dir"]``): see :func:`weakhand.train.checkpoint.model_specs`. The input size is
``config["train_size"]``.

**Images.** Inputs must be *hand-centred crops*, like the training data: the hand roughly
centred, its keypoints spanning about 60-80 % of the side (the synthetic crops are the
keypoint box × 1.25-1.6).
There is no hand detector here: crop full frames first (out of scope). Any size is accepted;
non-square images are padded to a square with black borders (centred), then resized to the
network's ``train_size`` (``cv2.INTER_AREA`` when shrinking, ``INTER_LINEAR`` when enlarging).
Grey images are replicated to RGB, an alpha channel is ignored, 16-bit images are scaled to
8 bit; EXIF orientation is *not* applied (pixels as stored). Images over ``MAX_IMAGE_PIXELS``
(40 Mpx) are refused (from the file header, before decoding, for PNG/JPEG/BMP/PNM/WebP), and
images over ``MAX_WORK_SIDE`` (1024 px a side) are downsized right after decoding, so a batch
never holds full-size images (uv, K and image_size still refer to the image as given). Files whose extension is not an
image format are skipped and listed; an unreadable or corrupt image fails alone (its name and
the reason are reported) and the others still go through. The networks were trained on right
hands (left ones mirrored): ``left=True`` / ``--left`` mirrors every image for the network and
mirrors the result back, so the outputs refer to the image as given.

**Camera intrinsics K** (3×3, pixels of the image *as given*, OpenCV convention: integer
coordinates are pixel centres): a JSON file holding a 3×3 list, ``{"K": 3×3}``, or per image
``{"name.png": 3×3, ..., "default": 3×3}`` (an image with no entry and no ``"default"`` fails).
K is adjusted for the pad/resize (and the mirror) exactly. Default (:func:`default_K`):
fx = fy = 3.41 × side, principal point at the image centre ((W-1)/2, (H-1)/2), side =
max(W, H): the median focal length of the synthetic source crops (render domain, 6,000 crops:
fx / crop width median 3.41, i.e. a 16.7° field of view across the crop).

**Absolute 3D** needs a root (wrist) depth and the hand's size. The networks predict (u, v) and
the root-relative depth zⁿ in units of the scale bone (middle MCP→PIP); then
Z_k = Z_root + zⁿ_k · s and (X, Y, Z)_k = Z_k K⁻¹(u_k, v_k, 1).

* scale s (``scale_mm`` / ``--scale-mm``): default 50.3 mm, the mean middle proximal phalanx of
  the synthetic hands (Buchholz ratio 0.277 × the mean hand length 181.5 mm of Pheasant's men and
  women; measured 50.3 ± 3.8 mm on the render training split). Real adult hands: ≈ 45-55 mm.
* root depth (``root_depth_mm`` / ``--root-depth-mm``): a number (mm) is used as given;
  ``"closed-form"`` solves for it from the 2.5D pose, K and s (Iqbal et al.; see
  :mod:`weakhand.models.root_depth`: needs a good K and good predictions); default: the 2.5D
  family *recovers* it (closed form + the trained refinement MLP, × s), the Cai family uses the
  nominal 624 mm, the mean wrist depth of the synthetic source data (render training split).
  With the default K the nominal depth gives hands of the right size: in both synthetic domains
  Z_root / (fx / crop width) ≈ 183-186 mm, and 624 / 3.41 = 183. With a real camera's K, give
  the root depth or use ``"closed-form"``.

**Outputs** (folder `out_dir`, built under a temporary name and moved into place when complete,
so a failed run leaves the previous output or nothing; an existing `out_dir` must be empty or
an earlier predict output, of which only the files it wrote (listed in its
``.weakhand-predict.json``) are replaced or removed: notes or analysis folders you added there
are kept; any other non-empty folder needs ``overwrite=True`` / ``--overwrite``, which also
touches nothing but the output files):

* ``predictions.json``: checkpoint (path, kind ``"cai"``/``"pose25d"``, class, trainer name,
  step, input size), conventions, the defaults, and per image (input order) ``image``, ``ok``,
  ``kind``, ``image_size`` [W, H], ``hand``, ``K``, ``uv`` (21×2, pixels of the image as given),
  ``zn`` (21), ``kp3d_mm`` (21×3, camera frame, OpenCV axes), ``kp3d_root_rel_mm``
  (= kp3d_mm − kp3d_mm[wrist]), ``root_depth_mm``, ``assumptions`` (root depth and its source,
  scale and its source, K source, hand side), ``warnings``, ``overlay``; failed images carry
  ``error`` instead; ``skipped`` lists non-image files with the reason;
* ``overlays/<stem>.png``: the skeleton drawn on the image (upscaled to ≥ 256 px);
* ``view3d.html``: a self-contained (offline) interactive plotly view of every predicted
  skeleton, root-relative in a grid or all in the camera frame.

Joint order, units and axes: see ``README.md`` (Conventions).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from . import camera

CLI_HELP = ("predict 3D hand joints for a folder of hand-centred image crops with a trained "
            "checkpoint")

FORMAT = "weakhand.predictions"
VERSION = 1

#: fx / crop side of the synthetic source crops (render training split median; 16.7° across).
DEFAULT_FOCAL_PER_SIDE = 3.41
#: Mean wrist depth of the synthetic source data (render training split), mm.
DEFAULT_ROOT_DEPTH_MM = 624.0
#: Mean middle MCP→PIP bone of the synthetic hands (0.277 × 181.5 mm), mm.
DEFAULT_SCALE_MM = 50.3
CLOSED_FORM = "closed-form"

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".dib", ".tif", ".tiff",
                              ".webp", ".pbm", ".pgm", ".ppm", ".pnm", ".jp2"})
MIN_IMAGE_SIDE = 8
OVERLAY_MIN_SIDE = 256
#: images with more pixels are refused, from their header when it can be read (PNG, JPEG, BMP,
#: PNM, WebP) before anything is decoded: a 10000×10000 RGB image alone is 300 MB decoded
MAX_IMAGE_PIXELS = 40_000_000
#: larger images are downsized (INTER_AREA) to this longest side right after decoding and only
#: that copy is kept for the batch and the overlay (the network sees train_size px anyway); K,
#: uv and image_size still refer to the image as given
MAX_WORK_SIDE = 1024
#: the manifest of what a predict run wrote into --out (only these files are ever replaced)
OUTPUT_MANIFEST = ".weakhand-predict.json"
OUTPUT_MANIFEST_FORMAT = "weakhand.predict-output"

_OTHER_KINDS = {
    "DenseDepthNet": "the dense depth model / depth teacher of notebook 40 (it reads depth "
                     "images, not RGB)",
    "DepthRegularizer": "the Cai stage-2 depth regulariser of notebook 30 (it renders depth maps "
                        "from joints; it does not see images)",
}
_ACCEPTED_TEXT = ("weakhand predict accepts the RGB pose networks: CaiPoseNet (stage1_pose/, "
                  "stage3_<variant>/) and Pose25DNet (pose25d_stage1/, pose25d_<variant>/)")

__all__ = ["PredictError", "Predictor", "load_predictor", "predict_images", "predict_folder",
           "default_K", "read_K", "list_images", "load_image", "DEFAULT_FOCAL_PER_SIDE",
           "DEFAULT_ROOT_DEPTH_MM", "DEFAULT_SCALE_MM", "CLOSED_FORM", "IMAGE_EXTENSIONS"]


class PredictError(ValueError):
    """A usage error: unusable checkpoint, no images, bad K file or option, bad output folder."""


# ============================================================================================
# checkpoint -> predictor

@dataclass
class Predictor:
    """A loaded pose network ready for batched inference (see :func:`load_predictor`)."""

    model: Any                    # torch.nn.Module in eval mode on `device`
    kind: str                     # "cai" | "pose25d"
    model_class: str
    train_size: int               # network input side, px
    checkpoint: Path
    device: str
    name: str | None = None       # trainer name, e.g. "stage3_2d"
    step: int | None = None
    net_config: dict = field(default_factory=dict)
    net_config_source: str = "checkpoint"
    batch_size: int = 32

    @property
    def has_root(self) -> bool:
        """Whether the network recovers the root depth itself (2.5D with a refiner)."""
        return self.kind == "pose25d" and getattr(self.model, "refiner", None) is not None

    def describe(self) -> dict:
        return {"path": str(self.checkpoint), "kind": self.kind, "model_class": self.model_class,
                "name": self.name, "step": self.step, "train_size": self.train_size,
                "net_config": self.net_config, "net_config_source": self.net_config_source}

    def run(self, images: np.ndarray, K_net: np.ndarray) -> dict[str, np.ndarray]:
        """Network outputs for images (B, S, S, 3) uint8 RGB at ``train_size`` and their
        intrinsics K_net (B, 3, 3) (pixels of those images): float64 numpy ``uv`` (B, 21, 2)
        (input px), ``zn`` (B, 21), and for the 2.5D family with a refiner ``z_root`` /
        ``z_root_closed`` (B,) (scale-normalised). Batched by ``batch_size``."""
        import torch

        images = np.asarray(images)
        S = self.train_size
        if images.ndim != 4 or images.shape[1:] != (S, S, 3):
            raise ValueError(f"images must be (B, {S}, {S}, 3), got {images.shape}")
        out: dict[str, list] = {}
        with torch.inference_mode():
            for i in range(0, len(images), self.batch_size):
                x = torch.from_numpy(np.ascontiguousarray(
                    images[i:i + self.batch_size].transpose(0, 3, 1, 2))).to(self.device)
                batch = {"image": x.float().div_(255.0)}
                if self.kind == "pose25d":
                    batch["K"] = torch.as_tensor(np.asarray(K_net[i:i + self.batch_size]),
                                                 dtype=torch.float32, device=self.device)
                res = self.model(batch)
                for k in ("uv", "zn", "z_root", "z_root_closed"):
                    if k in res:
                        out.setdefault(k, []).append(res[k].double().cpu().numpy())
        return {k: np.concatenate(v) for k, v in out.items()}


def _resolve_checkpoint_path(path: Path) -> Path:
    if path.is_dir():
        for f in ("best.pt", "last.pt"):
            if (path / f).is_file():
                return path / f
        raise PredictError(f"{path} is a folder without best.pt or last.pt; give a checkpoint file")
    return path


def load_predictor(checkpoint: str | os.PathLike, device: str = "auto",
                   batch_size: int = 32) -> Predictor:
    """Load a pose checkpoint (CaiPoseNet or Pose25DNet, written by :class:`weakhand.train.Trainer`)
    into a :class:`Predictor` (the model rebuilt by :func:`weakhand.models.registry.build_model`).
    Raises :class:`PredictError` with the reason for a missing, corrupt or other-kind
    checkpoint, or one whose network configuration cannot be found. The predictor's
    ``train_size`` is the network's input side in px."""
    from .models.registry import POSE_FAMILIES, build_model, describe
    from .device import resolve_device
    from .train.checkpoint import CheckpointError, model_specs, read_checkpoint

    path = _resolve_checkpoint_path(Path(checkpoint))
    try:
        ckpt = read_checkpoint(path)
    except CheckpointError as e:
        raise PredictError(str(e)) from e
    specs = model_specs(ckpt, path)
    classes = {k: s["kind"] for k, s in specs.items()}
    accepted = [k for k, c in classes.items() if c in POSE_FAMILIES]
    name = ckpt.get("name")
    if not accepted:
        held = (", ".join(f"{c or 'an unrecognised model'} ({k!r})" for k, c in classes.items())
                or "no model")
        why = "; ".join(f"{c} is {_OTHER_KINDS[c]}" for c in classes.values() if c in _OTHER_KINDS)
        raise PredictError(f"{path} is a {name!r} checkpoint holding {held}, not a pose network"
                           f"{': ' + why if why else ''}. {_ACCEPTED_TEXT}.")
    key = next((k for k in ("model", "pose") if k in accepted), accepted[0])
    spec = specs[key]
    try:
        dev = resolve_device(device)
    except (RuntimeError, ValueError) as e:
        raise PredictError(str(e)) from e
    try:
        model = build_model(ckpt, key, device=dev, path=path)
    except CheckpointError as e:
        raise PredictError(str(e)) from e
    if not spec["input_size"]:
        raise PredictError(f"{path} does not record the network input size (config['train_size'])")
    return Predictor(model=model, kind=POSE_FAMILIES[spec["kind"]], model_class=spec["kind"],
                     train_size=int(spec["input_size"]), checkpoint=path, device=dev, name=name,
                     step=ckpt.get("step"), net_config=describe(model)["config"],
                     net_config_source=spec["source"], batch_size=max(1, int(batch_size)))


# ============================================================================================
# images and intrinsics

def list_images(images: str | os.PathLike | Sequence[str | os.PathLike]
                ) -> tuple[list[Path], list[dict]]:
    """Image files from a folder (not recursive, sorted by name), a file, or a list of both:
    ``(files, skipped)`` where skipped lists ``{"file", "reason"}`` for non-image files and
    sub-folders. Missing paths raise :class:`PredictError`."""
    items = [images] if isinstance(images, (str, os.PathLike)) else list(images)
    files, skipped = [], []
    for item in items:
        p = Path(item)
        if p.is_dir():
            entries = sorted(p.iterdir(), key=lambda q: q.name)
        elif p.exists():
            entries = [p]
        else:
            raise PredictError(f"no such image file or folder: {p}")
        for q in entries:
            if q.is_dir():
                skipped.append({"file": str(q), "reason": "folder (predict does not search "
                                "sub-folders)"})
            elif q.suffix.lower() not in IMAGE_EXTENSIONS:
                skipped.append({"file": str(q), "reason": f"not an image file (extension "
                                f"{q.suffix or 'none'!r}; images: "
                                f"{', '.join(sorted(IMAGE_EXTENSIONS))})"})
            else:
                files.append(q)
    return files, skipped


def _quiet_imdecode(cv2, data: np.ndarray):
    """cv2.imdecode without OpenCV's own warnings on stderr (the reason is reported instead)."""
    log = getattr(getattr(cv2, "utils", None), "logging", None)
    try:
        old = log.getLogLevel()
        log.setLogLevel(log.LOG_LEVEL_ERROR)
    except AttributeError:
        return cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    try:
        return cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    finally:
        log.setLogLevel(old)


def image_header_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from the first bytes of a PNG, JPEG, BMP, PNM or WebP file, without
    decoding it; None when the format is not one of these or the header is unreadable."""
    import struct

    try:
        if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
            return struct.unpack(">II", head[16:24])
        if head.startswith(b"BM") and len(head) >= 26:
            w, h = struct.unpack("<ii", head[18:26])
            return abs(w), abs(h)
        if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            kind = head[12:16]
            if kind == b"VP8X":
                return (1 + int.from_bytes(head[24:27], "little"),
                        1 + int.from_bytes(head[27:30], "little"))
            if kind == b"VP8L":
                b = int.from_bytes(head[21:25], "little")
                return 1 + (b & 0x3FFF), 1 + ((b >> 14) & 0x3FFF)
            if kind == b"VP8 ":
                w, h = struct.unpack("<HH", head[26:30])
                return w & 0x3FFF, h & 0x3FFF
        if head[:1] == b"P" and head[1:2] in b"123456" and len(head) > 3:
            tokens, text = [], head[2:].split(b"\n")
            for line in text:
                line = line.split(b"#", 1)[0]
                tokens += line.split()
                if len(tokens) >= 2:
                    return int(tokens[0]), int(tokens[1])
        if head.startswith(b"\xff\xd8"):
            i = 2
            while i + 9 < len(head):
                if head[i] != 0xFF:
                    return None
                marker = head[i + 1]
                if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                    i += 2
                    continue
                seg = struct.unpack(">H", head[i + 2:i + 4])[0]
                if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                    h, w = struct.unpack(">HH", head[i + 5:i + 9])
                    return w, h
                i += 2 + seg
    except (struct.error, ValueError, IndexError):
        return None
    return None


def _check_pixels(w: int, h: int, max_pixels: int) -> None:
    if w * h > max_pixels:
        raise ValueError(f"image too large: {w}×{h} px = {w * h / 1e6:.0f} Mpx, more than the "
                         f"{max_pixels / 1e6:.0f} Mpx weakhand predict decodes (it would take "
                         f"{w * h * 3 / 1e9:.1f} GB); give a hand-centred crop, or downsize it "
                         "first (the network sees only a few dozen pixels a side)")


def load_image(path: str | os.PathLike, max_pixels: int = MAX_IMAGE_PIXELS
               ) -> tuple[np.ndarray, list[str]]:
    """Read an image as uint8 RGB (H, W, 3): grey replicated, alpha dropped, 16 bit scaled.
    Returns (image, notes). Raises ValueError with the reason when it cannot be used (also for
    more than `max_pixels` pixels: checked from the header, before decoding, where possible)."""
    import cv2

    path = Path(path)
    try:
        with open(path, "rb") as fh:
            size = image_header_size(fh.read(1 << 16))
        if size is not None:
            _check_pixels(*size, max_pixels)
        data = np.frombuffer(path.read_bytes(), np.uint8)
    except OSError as e:
        raise ValueError(f"cannot read the file ({e.strerror or e})") from e
    if data.size == 0:
        raise ValueError("empty file")
    img = _quiet_imdecode(cv2, data)
    if img is None:
        raise ValueError("not a readable image (corrupt, truncated or an unsupported format)")
    notes = []
    if img.dtype == np.uint16:
        img = np.round(img / 257.0).astype(np.uint8)
        notes.append("16-bit image scaled to 8 bit")
    elif img.dtype in (np.float32, np.float64):
        img = np.round(np.clip(np.nan_to_num(img), 0.0, 1.0) * 255).astype(np.uint8)
        notes.append("floating-point image clipped to [0, 1] and scaled to 8 bit")
    elif img.dtype != np.uint8:
        raise ValueError(f"unsupported pixel type {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
        notes.append("greyscale image replicated to RGB")
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
        notes.append("alpha channel ignored")
    elif img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    else:
        raise ValueError(f"unsupported image layout {img.shape}")
    h, w = img.shape[:2]
    _check_pixels(w, h, max_pixels)  # formats whose header was not read
    if min(h, w) < MIN_IMAGE_SIDE:
        raise ValueError(f"image too small ({w}×{h} px; at least {MIN_IMAGE_SIDE} px a side)")
    return np.ascontiguousarray(img), notes


def default_K(width: int, height: int) -> np.ndarray:
    """Nominal intrinsics of a hand-centred crop of width × height px: fx = fy =
    DEFAULT_FOCAL_PER_SIDE × max(W, H), principal point at the centre ((W-1)/2, (H-1)/2)."""
    f = DEFAULT_FOCAL_PER_SIDE * max(width, height)
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def _check_K(K: Any, what: str) -> np.ndarray:
    if isinstance(K, Mapping) and "K" in K:
        K = K["K"]
    try:
        arr = np.asarray(K, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what}: not a 3×3 matrix of numbers ({e})") from e
    return camera.check_pinhole_K(arr, f"{what}: K")


def read_K(K: Any) -> Any:
    """Normalise a K argument: None (default K), a 3×3 array-like or ``{"K": 3×3}`` (every
    image), ``{name: 3×3, ..., "default": 3×3}`` (per image), or a path to a JSON file holding
    one of these. Returns None, an (3, 3) array, or a dict name -> (3, 3) array.
    Raises :class:`PredictError` for an unreadable file or a malformed matrix."""
    src = "K"
    if isinstance(K, (str, os.PathLike)):
        p = Path(K)
        try:
            K = json.loads(p.read_text())
        except OSError as e:
            raise PredictError(f"cannot read the K file {p}: {e.strerror or e}") from e
        except json.JSONDecodeError as e:
            raise PredictError(f"K file {p} is not valid JSON: {e}") from e
        src = f"K file {p}"
    if K is None:
        return None
    try:
        if isinstance(K, Mapping) and "K" not in K:
            if not K:
                raise ValueError("empty mapping (expected 3×3, {'K': 3×3} or {image name: 3×3})")
            return {str(k): _check_K(v, f"{src}, entry {k!r}") for k, v in K.items()}
        return _check_K(K, src)
    except ValueError as e:
        raise PredictError(str(e)) from e


def _K_for(Kspec: Any, name: str, width: int, height: int, k_label: str) -> tuple[np.ndarray, str]:
    if Kspec is None:
        return default_K(width, height), (f"default: fx = fy = {DEFAULT_FOCAL_PER_SIDE} × "
                                          f"{max(width, height)} px, centre principal point")
    if isinstance(Kspec, dict):
        if name in Kspec:
            return Kspec[name], f"{k_label} (entry {name!r})"
        if "default" in Kspec:
            return Kspec["default"], f"{k_label} (entry 'default')"
        raise ValueError(f"no K for this image in the {k_label} (it has entries for "
                         f"{len(Kspec)} image(s) and no 'default')")
    return Kspec, k_label


def _prepare(img: np.ndarray, K: np.ndarray, size: int, left: bool
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(net image (S,S,3) uint8, K_net (3,3), M (3,3): image-as-given px -> net px)."""
    import cv2

    h, w = img.shape[:2]
    F = np.eye(3)
    if left:
        img = img[:, ::-1]
        K = np.asarray(camera.mirror_K(K, w))
        F = np.array([[-1.0, 0.0, w - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    side = max(w, h)
    lft, top = (side - w) // 2, (side - h) // 2
    if (w, h) != (side, side):
        img = cv2.copyMakeBorder(np.ascontiguousarray(img), top, side - h - top, lft,
                                 side - w - lft, cv2.BORDER_CONSTANT, value=0)
    if side != size:
        interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
        img = cv2.resize(np.ascontiguousarray(img), (size, size), interpolation=interp)
    A = np.asarray(camera.crop_transform(np.array([-lft, -top, side - lft, side - top], float),
                                         size))
    return np.ascontiguousarray(img), A @ K, A @ F


# ============================================================================================
# inference on arrays

def _root_option(root_depth_mm: Any) -> float | str | None:
    if root_depth_mm is None:
        return None
    if isinstance(root_depth_mm, str):
        t = root_depth_mm.strip().lower().replace("_", "-")
        if t in (CLOSED_FORM, "closed"):
            return CLOSED_FORM
        if t in ("auto", "default", ""):
            return None
        try:
            root_depth_mm = float(t)
        except ValueError:
            raise PredictError(f"root depth must be a number of mm, 'closed-form' or 'auto', got "
                               f"{root_depth_mm!r}") from None
    v = float(root_depth_mm)
    if not math.isfinite(v) or v <= 0:
        raise PredictError(f"root depth must be a positive number of mm, got {root_depth_mm!r}")
    return v


def _scale_option(scale_mm: Any) -> float:
    if scale_mm is None:
        return DEFAULT_SCALE_MM
    v = float(scale_mm)
    if not math.isfinite(v) or v <= 0:
        raise PredictError(f"scale must be a positive number of mm, got {scale_mm!r}")
    return v


def predict_images(predictor: Predictor, images: Sequence[np.ndarray],
                   names: Sequence[str] | None = None, K: Any = None,
                   root_depth_mm: float | str | None = None, scale_mm: float | None = None,
                   left: bool = False, K_label: str = "K argument") -> list[dict]:
    """Predictions for in-memory images (uint8 RGB (H, W, 3), hand-centred crops, any size), one
    network call per ``predictor.batch_size`` images. K: see :func:`read_K` (per-image dicts
    are keyed by `names`). Returns one record per image (the per-image entries of
    ``predictions.json``, numpy arrays instead of lists); an image that cannot be used gets
    ``ok: False`` and ``error``."""
    from .models.root_depth import root_depth_closed_form
    from .skeleton import JOINT_NAMES, ROOT, mirror

    import torch

    root_opt = _root_option(root_depth_mm)
    scale = _scale_option(scale_mm)
    Kspec = read_K(K)
    names = [f"#{i}" for i in range(len(images))] if names is None else list(names)
    if len(names) != len(images):
        raise ValueError(f"{len(images)} images but {len(names)} names")
    S = predictor.train_size
    records: list[dict] = [{} for _ in images]
    net_imgs, K_nets, good = [], [], []
    for i, (img, name) in enumerate(zip(images, names)):
        rec = records[i]
        rec.update({"image": name, "kind": predictor.kind, "ok": False})
        try:
            img = np.asarray(img)
            if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
                raise ValueError(f"expected uint8 RGB (H, W, 3), got {img.dtype} {img.shape}")
            h, w = img.shape[:2]
            Ki, k_src = _K_for(Kspec, name, w, h, K_label)
            x, K_net, M = _prepare(img, Ki, S, left)
        except ValueError as e:
            rec["error"] = str(e)
            continue
        rec.update({"image_size": [int(w), int(h)], "hand": "left" if left else "right",
                    "K": Ki, "_M": M, "_K_net": K_net, "_K_source": k_src, "warnings": []})
        if w != h:
            rec["warnings"].append(f"not square ({w}×{h}): padded to {max(w, h)}×{max(w, h)} "
                                   f"with black borders")
        net_imgs.append(x)
        K_nets.append(K_net)
        good.append(i)
    if not good:
        return [_public(r) for r in records]
    out = predictor.run(np.stack(net_imgs), np.stack(K_nets))
    uv_net, zn = out["uv"], out["zn"]
    K_net = np.stack(K_nets)
    closed = None
    if root_opt == CLOSED_FORM or (root_opt is None and predictor.kind == "pose25d"
                                   and "z_root" not in out):
        closed = root_depth_closed_form(torch.as_tensor(uv_net), torch.as_tensor(zn),
                                        torch.as_tensor(K_net)).numpy()
    for j, i in enumerate(good):
        rec = records[i]
        if isinstance(root_opt, float):
            z_root, src = root_opt, "given"
        elif closed is not None:
            z_root = float(closed[j]) * scale
            src = ("closed form from the predicted 2.5D pose, K and the scale"
                   + ("" if root_opt == CLOSED_FORM else " (this 2.5D network has no refiner)"))
        elif predictor.kind == "pose25d":
            z_root = float(out["z_root"][j]) * scale
            src = "recovered by the 2.5D network (closed form + refinement MLP) × scale"
        else:
            z_root, src = DEFAULT_ROOT_DEPTH_MM, ("nominal: mean wrist depth of the synthetic "
                                                  "source data")
        u, z = uv_net[j], zn[j]
        if not (np.isfinite(u).all() and np.isfinite(z).all() and math.isfinite(z_root)):
            rec["error"] = "the network's prediction is not finite"
            continue
        if z_root <= 0:
            rec["error"] = f"root depth {z_root:.1f} mm is not in front of the camera ({src})"
            continue
        Z = z_root + z * scale
        ray = np.linalg.solve(K_net[j], np.concatenate([u, np.ones((21, 1))], 1).T).T
        X = ray * (Z / ray[:, 2])[:, None]
        if left:
            X = np.asarray(mirror(X))
        M = rec.pop("_M")
        hom = np.linalg.solve(M, np.concatenate([u, np.ones((21, 1))], 1).T).T
        uv = hom[:, :2] / hom[:, 2:3]
        if (Z <= 0).any():
            bad = [JOINT_NAMES[k] for k in np.flatnonzero(Z <= 0)]
            rec["warnings"].append(f"joints behind the camera with this root depth and scale: "
                                   f"{', '.join(bad)}")
        rec.update({
            "ok": True, "uv": uv, "zn": z, "kp3d_mm": X, "kp3d_root_rel_mm": X - X[ROOT],
            "root_depth_mm": float(X[ROOT, 2]),
            "assumptions": {"root_depth_mm": float(z_root), "root_depth_source": src,
                            "scale_mm": scale,
                            "scale_source": "given" if scale_mm is not None else
                            "default: mean middle MCP→PIP bone of the synthetic hands",
                            "K_source": rec["_K_source"],
                            "hand": ("left: mirrored for the network (trained on right hands), "
                                     "results mirrored back") if left else "right"},
        })
    return [_public(r) for r in records]


def _apply(M: np.ndarray, uv: np.ndarray) -> np.ndarray:
    hom = np.concatenate([np.asarray(uv, float), np.ones((len(uv), 1))], 1) @ np.asarray(M).T
    return hom[:, :2] / hom[:, 2:3]


def _to_given_pixels(rec: dict, A: np.ndarray, K: np.ndarray, k_src: str, w: int, h: int
                     ) -> dict:
    """A record predicted on a downsized copy (A: given px -> downsized px), in the pixels of
    the image as given (uv, K, image_size; the 3D joints do not change)."""
    rec = dict(rec)
    rec["image_size"] = [int(w), int(h)]
    rec["K"] = np.asarray(K, float)
    if rec.get("ok"):
        rec["uv"] = _apply(np.linalg.inv(A), rec["uv"])
        rec["assumptions"] = {**rec["assumptions"], "K_source": k_src}
    return rec


def _public(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if not k.startswith("_")}


# ============================================================================================
# drawing

def _bgr(hex_color: str) -> tuple[int, int, int]:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return (b, g, r)


def draw_overlay(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """The skeleton (fingers coloured like :mod:`weakhand.viz`) drawn on an RGB image, upscaled
    so that its longer side is at least 256 px. Returns uint8 RGB."""
    import cv2

    from . import skeleton as sk
    from .viz import FINGER_COLORS

    h, w = image.shape[:2]
    k = max(1, math.ceil(OVERLAY_MIN_SIDE / max(h, w)))
    canvas = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
    if k > 1:
        canvas = cv2.resize(canvas, (w * k, h * k), interpolation=cv2.INTER_LINEAR)
    p = (np.asarray(uv, float) + 0.5) * k - 0.5
    shift = 4
    pts = np.round(p * (1 << shift)).astype(np.int64)
    thick = max(1, round(max(canvas.shape[:2]) / 200))
    for f, color in enumerate(FINGER_COLORS):
        chain = [sk.ROOT, *sk.FINGERS[f]]
        c = _bgr(color)
        for a, b in zip(chain[:-1], chain[1:]):
            cv2.line(canvas, tuple(map(int, pts[a])), tuple(map(int, pts[b])), c, thick,
                     cv2.LINE_AA, shift)
        for j in chain[1:]:
            cv2.circle(canvas, tuple(map(int, pts[j])), (thick + 1) << shift, c, -1, cv2.LINE_AA,
                       shift)
    cv2.circle(canvas, tuple(map(int, pts[sk.ROOT])), (thick + 2) << shift, (255, 255, 255), -1,
               cv2.LINE_AA, shift)
    return cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)


def figure_3d(records: Sequence[Mapping], title: str = ""):
    """Plotly figure of the successful predictions: root-relative skeletons in a grid (named)
    and, behind a button, all skeletons in the camera frame. Axes as in
    :func:`weakhand.viz.skeletons_3d` (x, z, −y: up is up)."""
    import plotly.graph_objects as go

    from . import skeleton as sk
    from .viz import FINGER_COLORS

    ok = [r for r in records if r.get("ok")]
    fig = go.Figure()
    if not ok:
        fig.add_annotation(text="no successful prediction", showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper")
        fig.update_layout(title=title)
        return fig
    ncol = math.ceil(math.sqrt(len(ok)))
    spacing = 260.0
    views = {}
    for view in ("grid", "camera"):
        traces = []
        for f, color in enumerate(FINGER_COLORS):
            chain = [sk.ROOT, *sk.FINGERS[f]]
            xs, ys, zs, txt = [], [], [], []
            for n, r in enumerate(ok):
                cam = np.asarray(r["kp3d_mm"], float)
                if view == "grid":
                    p = np.asarray(r["kp3d_root_rel_mm"], float).copy()
                    p[:, 0] += (n % ncol) * spacing
                    p[:, 1] += (n // ncol) * spacing
                else:
                    p = cam
                for j in chain:
                    xs.append(p[j, 0]); ys.append(p[j, 2]); zs.append(-p[j, 1])  # noqa: E702
                    txt.append(f"{r['image']}<br>{sk.JOINT_NAMES[j]}<br>camera (mm): "
                               f"{cam[j, 0]:.1f}, {cam[j, 1]:.1f}, {cam[j, 2]:.1f}")
                xs.append(None); ys.append(None); zs.append(None); txt.append(None)  # noqa: E702
            traces.append(go.Scatter3d(x=xs, y=ys, z=zs, mode="lines+markers", hovertext=txt,
                                       hoverinfo="text", line=dict(color=color, width=5),
                                       marker=dict(size=2, color=color),
                                       name=sk.FINGER_NAMES[f], showlegend=view == "grid",
                                       legendgroup=sk.FINGER_NAMES[f], visible=view == "grid"))
        if view == "grid":
            lab = [np.asarray(r["kp3d_root_rel_mm"], float)[sk.ROOT] for r in ok]
            traces.append(go.Scatter3d(
                x=[p[0] + (n % ncol) * spacing for n, p in enumerate(lab)],
                y=[p[2] for p in lab],
                z=[-(p[1] + (n // ncol) * spacing) - 25 for n, p in enumerate(lab)],
                mode="text", text=[r["image"] for r in ok], hoverinfo="skip", showlegend=False,
                visible=True))
        views[view] = traces
    n_grid = len(views["grid"])
    for t in views["grid"] + views["camera"]:
        fig.add_trace(t)
    vis_grid = [True] * n_grid + [False] * len(views["camera"])
    vis_cam = [False] * n_grid + [True] * len(views["camera"])
    fig.update_layout(
        title=title, height=720, margin=dict(l=0, r=0, t=60, b=0),
        scene=dict(aspectmode="data", xaxis_title="x (mm)", yaxis_title="z (mm)",
                   zaxis_title="-y (mm)",
                   camera=dict(eye=dict(x=0.25, y=-2.2, z=0.6))),  # from behind the camera
        updatemenus=[dict(type="buttons", direction="right", x=0.0, y=0.0, xanchor="left",
                          yanchor="bottom", buttons=[
                              dict(label="root-relative grid", method="update",
                                   args=[{"visible": vis_grid}]),
                              dict(label="camera frame", method="update",
                                   args=[{"visible": vis_cam}])])])
    return fig


# ============================================================================================
# folder -> output folder

def _output_names(files: Sequence[Path]) -> list[str]:
    """Unique overlay file names: <stem>.png, <name>.png where stems collide, then _2, _3."""
    stems: dict[str, int] = {}
    for f in files:
        stems[f.stem] = stems.get(f.stem, 0) + 1
    used, out = set(), []
    for f in files:
        base = f.stem if stems[f.stem] == 1 else f.name
        cand, k = f"{base}.png", 2
        while cand in used:
            cand, k = f"{base}_{k}.png", k + 1
        used.add(cand)
        out.append(cand)
    return out


def _safe_rel(rel: Any) -> str | None:
    """A relative POSIX path inside the output folder, or None (absolute, '..', not a str)."""
    if not isinstance(rel, str) or not rel:
        return None
    p = Path(rel)
    if p.is_absolute() or ".." in p.parts:
        return None
    return p.as_posix()


def previous_outputs(out: str | os.PathLike) -> set[str] | None:
    """The files (relative paths) an earlier ``weakhand predict`` wrote into `out`, from its
    manifest (``.weakhand-predict.json``) and its ``predictions.json`` (outputs of versions
    without a manifest: predictions.json, view3d.html and the overlays it lists); None when
    `out` holds no predict output."""
    out = Path(out)
    owned: set[str] = set()
    found = False
    try:
        man = json.loads((out / OUTPUT_MANIFEST).read_text())
        if isinstance(man, dict) and man.get("format") == OUTPUT_MANIFEST_FORMAT:
            found = True
            owned |= {r for r in map(_safe_rel, man.get("files") or []) if r}
    except (OSError, ValueError):
        pass
    try:
        doc = json.loads((out / "predictions.json").read_text())
        if isinstance(doc, dict) and doc.get("format") == FORMAT:
            found = True
            owned |= {"predictions.json", "view3d.html"}
            for r in doc.get("images") or []:
                rel = _safe_rel(r.get("overlay")) if isinstance(r, dict) else None
                if rel:
                    owned.add(rel)
    except (OSError, ValueError):
        pass
    if found:
        owned.add(OUTPUT_MANIFEST)
    return owned if found else None


def _check_out_dir(out: Path, files: Sequence[Path], inputs: Sequence[Path],
                   new_files: Sequence[str], overwrite: bool) -> set[str]:
    """Refuse an unusable --out; returns the files of an earlier predict output there."""
    if out.exists() and not out.is_dir():
        raise PredictError(f"--out {out} exists and is not a folder")
    ro = out.resolve()
    for p in list(inputs) + list(files):
        rp = Path(p).resolve()
        if rp == ro or ro in rp.parents:
            raise PredictError(f"the output folder {out} contains the input {p}; choose another "
                               "--out")
    if not out.is_dir() or not any(out.iterdir()):
        return set()
    owned = previous_outputs(out)
    if owned is None and not overwrite:
        raise PredictError(
            f"--out {out} exists and is not empty nor an earlier `weakhand predict` output; "
            "choose a new or empty folder, or pass --overwrite to write into it anyway (only "
            "predictions.json, view3d.html, overlays/<image>.png and "
            f"{OUTPUT_MANIFEST} are written there; nothing else is touched)")
    owned = owned or set()
    if not overwrite:
        clash = [r for r in new_files if r not in owned and (out / r).exists()]
        if clash:
            raise PredictError(
                f"--out {out}: {', '.join(clash[:5])}{' ...' if len(clash) > 5 else ''} "
                "exist(s) there but were not written by weakhand predict; move them away or "
                "pass --overwrite to replace them")
    return owned


def _commit_outputs(tmp: Path, out: Path, new_files: Sequence[str], owned: set[str]) -> None:
    """Move the finished outputs from `tmp` into `out`: every new file replaces its namesake
    (predictions.json last), files of the earlier predict output that this run did not write
    again are removed, nothing else in `out` is touched."""
    from .io import atomic_write_json

    manifest = {"format": OUTPUT_MANIFEST_FORMAT,
                "note": "files written by `weakhand predict`; a later predict into this folder "
                        "replaces or removes only these",
                "files": sorted(set(new_files) | {OUTPUT_MANIFEST})}
    if not out.exists():
        atomic_write_json(tmp / OUTPUT_MANIFEST, manifest)
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out)
        return
    order = sorted(new_files, key=lambda r: (r == "predictions.json", r))
    for rel in order:
        dst = out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.is_dir():
            raise PredictError(f"--out {out}: {rel} is a folder; cannot write the output file")
        os.replace(tmp / rel, dst)
    atomic_write_json(out / OUTPUT_MANIFEST, manifest)
    keep = set(new_files) | {OUTPUT_MANIFEST}
    for rel in sorted(owned - keep):
        target = out / rel
        if target.is_file() or target.is_symlink():
            target.unlink()
    ov = out / "overlays"
    if ov.is_dir() and not any(ov.iterdir()):
        ov.rmdir()


def _downsize(img: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(image with longest side <= max_side, A: original px -> downsized px (None: as is))."""
    import cv2

    h, w = img.shape[:2]
    if max(h, w) <= max_side:
        return img, None
    k = max_side / max(h, w)
    nw, nh = max(MIN_IMAGE_SIDE, round(w * k)), max(MIN_IMAGE_SIDE, round(h * k))
    small = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
    sx, sy = nw / w, nh / h  # pixel centres: u' = sx (u + 0.5) - 0.5
    A = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
    return np.ascontiguousarray(small), A


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return np.round(x.astype(np.float64), 6).tolist()
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


def predict_folder(checkpoint_or_predictor: Predictor | str | os.PathLike,
                   images: str | os.PathLike | Sequence[str | os.PathLike],
                   out_dir: str | os.PathLike, K: Any = None,
                   root_depth_mm: float | str | None = None, scale_mm: float | None = None,
                   left: bool = False, device: str = "auto", batch_size: int | None = None,
                   show_progress: bool = True, overwrite: bool = False) -> dict:
    """Predict every image of a folder (or a list of files/folders) and write `out_dir`
    (``predictions.json``, ``overlays/``, ``view3d.html``; see the module docstring).
    `checkpoint_or_predictor`: a :class:`Predictor` or a checkpoint path (loaded on `device`);
    `batch_size` overrides the predictor's images per network call.

    Returns a summary: ``n_images, n_ok, n_failed, n_skipped, failed`` ([{image, error}]),
    ``skipped`` ([{file, reason}]), ``kind``, ``out_dir``, ``predictions``, ``overlays``,
    ``view3d`` (paths). Usage errors (checkpoint, no image files, K file, options, output folder)
    raise :class:`PredictError` before anything is written; bad images are reported, not raised.

    `out_dir` may be new, empty, or an earlier predict output: then only the files that output
    wrote (its ``.weakhand-predict.json`` manifest) are replaced or removed, never other files
    (notes, analysis folders). Any other non-empty folder is refused unless `overwrite`, which
    writes the outputs into it and still touches nothing else. The outputs are built in a
    temporary sibling folder and moved in only when complete.
    """
    import shutil

    from .io import (_tmp_sibling, atomic_write_bytes, atomic_write_json, atomic_write_text,
                     clean_stale_temporaries)
    from .progress import progress
    from .skeleton import JOINT_NAMES

    import cv2

    pred = (checkpoint_or_predictor if isinstance(checkpoint_or_predictor, Predictor)
            else load_predictor(checkpoint_or_predictor, device=device))
    if batch_size is not None:
        pred.batch_size = max(1, int(batch_size))
    inputs = [images] if isinstance(images, (str, os.PathLike)) else list(images)
    files, skipped = list_images(inputs)
    if not files:
        where = ", ".join(str(p) for p in inputs) or "(no input given)"
        extra = f" ({len(skipped)} other file(s) skipped)" if skipped else ""
        raise PredictError(f"no image files in {where}{extra}; images: "
                           f"{', '.join(sorted(IMAGE_EXTENSIONS))}")
    k_label = f"K file {K}" if isinstance(K, (str, os.PathLike)) else "K argument"
    Kspec = read_K(K)
    root_opt = _root_option(root_depth_mm)
    _scale_option(scale_mm)
    out = Path(out_dir)
    overlay_names = _output_names(files)
    owned = _check_out_dir(out, files, [Path(p) for p in inputs],
                           ["predictions.json", "view3d.html",
                            *(f"overlays/{n}" for n in overlay_names)], overwrite)
    names = [f.name for f in files]
    if isinstance(Kspec, dict) and len(set(names)) < len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise PredictError(f"per-image K entries are keyed by file name, but these names occur "
                           f"more than once: {dup}")

    records: list[dict] = []
    clean_stale_temporaries(out)
    tmp = _tmp_sibling(out, is_dir=True)
    try:
        (tmp / "overlays").mkdir()
        bar = progress(total=len(files), desc="predict", unit="img",
                       disable=not show_progress or len(files) <= pred.batch_size)
        try:
            for start in range(0, len(files), pred.batch_size):
                chunk = files[start:start + pred.batch_size]
                loaded, load_err, notes, big = [], {}, {}, {}
                for i, f in enumerate(chunk):
                    try:
                        img, note = load_image(f)
                        h, w = img.shape[:2]
                        img, A = _downsize(img, MAX_WORK_SIDE)  # the full image is dropped
                        if A is not None:
                            Ki, k_src = _K_for(Kspec, f.name, w, h, k_label)
                            big[i] = (A, Ki, k_src, (w, h))
                            note = note + [f"downsized from {w}×{h} to {img.shape[1]}×"
                                           f"{img.shape[0]} px before prediction (images are "
                                           f"capped at {MAX_WORK_SIDE} px a side; uv, K and "
                                           "image_size refer to the image as given)"]
                    except ValueError as e:
                        load_err[f] = str(e)
                        img, note = None, []
                    loaded.append(img)
                    notes[f] = note
                idx = [i for i, img in enumerate(loaded) if img is not None and i not in big]
                res = predict_images(pred, [loaded[i] for i in idx], [chunk[i].name for i in idx],
                                     K=Kspec, root_depth_mm=root_opt, scale_mm=scale_mm,
                                     left=left, K_label=k_label)
                by_pos = dict(zip(idx, res))
                for i, (A, Ki, k_src, (w, h)) in big.items():  # one call each, in its own px
                    rec = predict_images(pred, [loaded[i]], [chunk[i].name], K=A @ Ki,
                                         root_depth_mm=root_opt, scale_mm=scale_mm, left=left,
                                         K_label=k_src)[0]
                    by_pos[i] = _to_given_pixels(rec, A, Ki, k_src, w, h)
                for i, f in enumerate(chunk):
                    if i in by_pos:
                        rec = by_pos[i]
                    else:
                        rec = {"image": f.name, "kind": pred.kind, "ok": False,
                               "error": load_err[f]}
                    rec = {"image": f.name, "path": str(f), **rec}
                    if rec.get("ok"):
                        rec["warnings"] = notes[f] + rec.get("warnings", [])
                        uv_shown = (rec["uv"] if i not in big
                                    else _apply(big[i][0], rec["uv"]))  # the downsized copy
                        ov = draw_overlay(loaded[i], uv_shown)
                        ok, buf = cv2.imencode(".png", cv2.cvtColor(ov, cv2.COLOR_RGB2BGR))
                        if not ok:
                            raise RuntimeError(f"PNG encoding of the overlay of {f} failed")
                        rel = f"overlays/{overlay_names[start + i]}"
                        atomic_write_bytes(tmp / rel, buf.tobytes())
                        rec["overlay"] = rel
                    records.append(rec)
                    bar.update(1)
        finally:
            bar.close()

        n_ok = sum(bool(r.get("ok")) for r in records)
        desc = pred.describe()
        title = (f"{n_ok} prediction(s) · {pred.model_class} ({pred.name or pred.kind}) · "
                 f"{Path(pred.checkpoint).name}")
        html = figure_3d(records, title).to_html(include_plotlyjs=True, full_html=True)
        atomic_write_text(tmp / "view3d.html", html)
        doc = {
            "format": FORMAT, "version": VERSION,
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "checkpoint": desc,
            "options": {"K": str(K) if isinstance(K, (str, os.PathLike)) else
                        ("given" if K is not None else "default"),
                        "root_depth_mm": root_opt if root_opt is not None else "auto",
                        "scale_mm": scale_mm, "left": bool(left)},
            "defaults": {"focal_per_side": DEFAULT_FOCAL_PER_SIDE,
                         "root_depth_mm": DEFAULT_ROOT_DEPTH_MM, "scale_mm": DEFAULT_SCALE_MM},
            "conventions": {
                "joints": "FreiHAND/MediaPipe order (0 wrist; thumb 1-4, index 5-8, middle 9-12, "
                          "ring 13-16, little 17-20)",
                "joint_names": list(JOINT_NAMES),
                "uv": "pixels of the image as given; integer coordinates are pixel centres",
                "kp3d_mm": "camera frame in mm, OpenCV axes (x right, y down, z forward)",
                "zn": "root-relative depth in units of the scale bone (middle MCP->PIP)",
                "inputs": "hand-centred crops (no hand detector); padded to square, resized to "
                          "the network input size; K adjusted accordingly",
            },
            "n_images": len(records), "n_ok": n_ok, "n_failed": len(records) - n_ok,
            "n_skipped": len(skipped),
            "images": [_jsonable(r) for r in records],
            "skipped": skipped,
        }
        atomic_write_json(tmp / "predictions.json", doc)
        _commit_outputs(tmp, out, ["predictions.json", "view3d.html",
                                   *(r["overlay"] for r in records if r.get("overlay"))], owned)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    failed = [{"image": r["image"], "error": r["error"]} for r in records if not r.get("ok")]
    return {"n_images": len(records), "n_ok": n_ok, "n_failed": len(failed),
            "n_skipped": len(skipped), "failed": failed, "skipped": skipped, "kind": pred.kind,
            "out_dir": str(out), "predictions": str(out / "predictions.json"),
            "overlays": str(out / "overlays"), "view3d": str(out / "view3d.html")}


# ============================================================================================
# CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Predict 3D hand joints for hand-centred image crops (no hand detector: crop full "
        "frames first) with a trained CaiPoseNet or Pose25DNet checkpoint. Writes "
        "OUT/predictions.json, OUT/overlays/*.png and OUT/view3d.html. Exit status 0: every "
        "image went through; 1: some images failed (the others are written); 2: usage error.")
    parser.add_argument("checkpoint", help="pose checkpoint (.pt file, or a run sub-folder: "
                        "best.pt, else last.pt)")
    parser.add_argument("images", nargs="+", metavar="IMAGES",
                        help="image folder(s) (not recursive) and/or image files")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder (new, empty, or an earlier predict output: only "
                        "the files it wrote are replaced; other files there are kept)")
    parser.add_argument("--K", dest="K", metavar="K.json",
                        help="intrinsics JSON in pixels of the images as given: a 3×3 list, "
                        "{\"K\": 3×3} or {\"name.png\": 3×3, ..., \"default\": 3×3} "
                        f"(default: fx = fy = {DEFAULT_FOCAL_PER_SIDE} × image side, centred "
                        "principal point)")
    parser.add_argument("--root-depth-mm", default=None, metavar="MM|closed-form",
                        help="wrist depth in mm, or 'closed-form' (solve from the 2.5D pose, K "
                        "and the scale); default: recovered by 2.5D networks, "
                        f"{DEFAULT_ROOT_DEPTH_MM:g} mm (synthetic mean) for the Cai family")
    parser.add_argument("--scale-mm", type=float, default=None, metavar="MM",
                        help=f"middle MCP→PIP bone length (default {DEFAULT_SCALE_MM} mm, the "
                        "synthetic hands' mean)")
    parser.add_argument("--left", action="store_true",
                        help="the images show left hands (mirrored for the network, which was "
                        "trained on right hands; results refer to the images as given)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default auto)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per network call")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty --out that is not an earlier predict output, "
                        "replacing files named like the outputs (nothing else is touched)")


def cli_main(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    err = sys.stderr
    try:
        pred = load_predictor(args.checkpoint, device=args.device, batch_size=args.batch_size)
        summary = predict_folder(pred, args.images, args.out, K=args.K,
                                 root_depth_mm=args.root_depth_mm, scale_mm=args.scale_mm,
                                 left=args.left, show_progress=not args.quiet,
                                 overwrite=args.overwrite)
    except PredictError as e:
        print(f"weakhand predict: {e}", file=err)
        return 2
    for s in summary["skipped"]:
        print(f"skipped {s['file']}: {s['reason']}", file=err)
    for f in summary["failed"]:
        print(f"FAILED {f['image']}: {f['error']}", file=err)
    print(f"{summary['n_ok']}/{summary['n_images']} image(s) predicted with a {pred.model_class} "
          f"checkpoint ({pred.checkpoint}); {summary['n_failed']} failed, "
          f"{summary['n_skipped']} skipped")
    print(f"wrote {summary['predictions']}, {summary['overlays']}/, {summary['view3d']}")
    return 0 if summary["n_failed"] == 0 else 1
