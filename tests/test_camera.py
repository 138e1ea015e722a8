"""Tests for weakhand.camera: projection, crops (against cv2.warpAffine), mirroring, rotations."""
import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from weakhand import camera as cam
from weakhand.skeleton import mirror

FAST = settings(max_examples=40, deadline=None)


def make_K(fx=600.0, fy=580.0, cx=320.5, cy=240.25, s=0.0):
    return np.array([[fx, s, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def random_K(rng, batch=()):
    K = np.zeros(batch + (3, 3))
    K[..., 0, 0] = rng.uniform(300, 1500, batch)
    K[..., 1, 1] = K[..., 0, 0] * rng.uniform(0.9, 1.1, batch)
    K[..., 0, 1] = rng.uniform(-5, 5, batch)  # skew
    K[..., 0, 2] = rng.uniform(100, 500, batch)
    K[..., 1, 2] = rng.uniform(100, 400, batch)
    K[..., 2, 2] = 1.0
    return K


def random_points(rng, batch=(), J=21):
    """Points (..., J, 3) in mm with 200 <= z <= 1200."""
    X = rng.normal(0, 80, batch + (J, 3))
    X[..., 2] = rng.uniform(200, 1200, batch + (J,))
    return X


seeds = st.integers(0, 2**32 - 1)


# ------------------------------------------------------------------ project / backproject


def test_project_known_values():
    K = make_K(500, 500, 320, 240)
    uv = cam.project(K, np.array([[100.0, 50.0, 1000.0], [0.0, 0.0, 2.0]]))
    np.testing.assert_allclose(uv, [[370.0, 265.0], [320.0, 240.0]])


def test_project_matches_cv2_projectPoints():
    rng = np.random.default_rng(0)
    K, X = make_K(), random_points(rng)
    ref, _ = cv2.projectPoints(X, np.zeros(3), np.zeros(3), K, None)
    np.testing.assert_allclose(cam.project(K, X), ref[:, 0], rtol=1e-12)


def test_project_nonpositive_depth_is_nan():
    X = torch.tensor([[10.0, 20.0, 500.0], [1.0, 2.0, 0.0], [1.0, 2.0, -300.0]], requires_grad=True)
    uv = cam.project(torch.from_numpy(make_K()).float(), X)
    assert torch.isfinite(uv[0]).all() and torch.isnan(uv[1:]).all()
    uv[0].sum().backward()
    assert torch.isfinite(X.grad).all() and (X.grad[1:] == 0).all()


@FAST
@given(seed=seeds)
def test_project_backproject_round_trip(seed):
    rng = np.random.default_rng(seed)
    K, X = random_K(rng, (2,)), random_points(rng, (2,))
    uv = cam.project(K, X)
    np.testing.assert_allclose(cam.backproject(K, uv, X[..., 2]), X, rtol=1e-9, atol=1e-8)
    np.testing.assert_allclose(cam.project(K, cam.backproject(K, uv, X[..., 2] * 2)), uv, rtol=1e-10)


def test_batch_broadcasting():
    rng = np.random.default_rng(1)
    K = random_K(rng, (4, 1))  # (B, 1, 3, 3)
    X = random_points(rng, (5,), J=7)  # (T, J, 3)
    uv = cam.project(K, X)
    assert uv.shape == (4, 5, 7, 2)
    for b in range(4):
        for t in range(5):
            np.testing.assert_allclose(uv[b, t], cam.project(K[b, 0], X[t]), rtol=1e-12)
    assert cam.project(K[0, 0], random_points(rng, (2, 3))).shape == (2, 3, 21, 2)
    Xb = cam.backproject(K, uv, X[..., 2])
    assert Xb.shape == (4, 5, 7, 3)
    np.testing.assert_allclose(Xb, np.broadcast_to(X, Xb.shape), rtol=1e-9, atol=1e-8)


# ------------------------------------------------------------------ crops


def test_crop_transform_formula_and_edges():
    box = np.array([10.0, 20.0, 110.0, 70.0])
    A = cam.crop_transform(box, (64, 32))
    assert A.shape == (3, 3) and A.dtype == np.float64
    u, v = 37.3, 41.0
    exp = [(u - 10 + 0.5) * 64 / 100 - 0.5, (v - 20 + 0.5) * 32 / 50 - 0.5]
    np.testing.assert_allclose(cam.apply_homography(A, np.array([[u, v]]))[0], exp)
    # box edges (edge coords x0, x1 = centre coords x0 - 0.5, x1 - 0.5) -> crop edges -0.5, W - 0.5
    corners = np.array([[9.5, 19.5], [109.5, 69.5]])
    np.testing.assert_allclose(cam.apply_homography(A, corners), [[-0.5, -0.5], [63.5, 31.5]])
    # full-image box at native size is the identity
    np.testing.assert_allclose(cam.crop_transform([0, 0, 640, 480], (640, 480)), np.eye(3), atol=1e-12)
    np.testing.assert_allclose(cam.crop_transform([0, 0, 50, 50], 100), cam.crop_transform([0, 0, 50, 50], (100, 100)))


def test_crop_transform_batched_and_errors():
    rng = np.random.default_rng(2)
    xy = rng.uniform(0, 300, (2, 3, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(20, 200, (2, 3, 2))], -1)
    A = cam.crop_transform(boxes, (128, 96))
    assert A.shape == (2, 3, 3, 3)
    np.testing.assert_allclose(A[1, 2], cam.crop_transform(boxes[1, 2], (128, 96)))
    with pytest.raises(ValueError, match="x1 > x0"):
        cam.crop_transform([10, 10, 10, 20], 64)
    with pytest.raises(ValueError):
        cam.crop_transform(np.array([[0, 0, 5, 5], [0, 9, 5, 5]]), 64)


BOXES = [
    (10.0, 20.0, 110.0, 120.0),  # downsample x0.64
    (40.0, 30.0, 72.0, 62.0),  # upsample x2
    (33.3, 17.9, 131.1, 77.7),  # fractional, anisotropic
    (-20.0, -10.0, 60.0, 70.0),  # partly outside the image
]


@pytest.mark.parametrize("box", BOXES)
def test_crop_matches_warpAffine_ramp(box):
    """Bilinear warping reproduces linear images exactly: the crop of u (or v) shows A^-1's u (or v)."""
    h, w, out = 160, 200, (64, 48)
    vv, uu = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = np.dstack([uu, vv, np.zeros_like(uu)])
    A = cam.crop_transform(np.array(box), out)
    crop = cv2.warpAffine(ramp, A[:2], out, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=-1)
    yy, xx = np.mgrid[0 : out[1], 0 : out[0]]
    src = cam.apply_homography(np.linalg.inv(A), np.stack([xx, yy], -1).reshape(-1, 2).astype(float))
    inside = ((src >= 0) & (src <= [w - 1, h - 1])).all(-1)
    assert inside.sum() > 100
    err = np.abs(crop[..., :2].reshape(-1, 2)[inside] - src[inside])
    assert err.max() < 1 / 32 + 1e-4  # cv2 quantises sample positions to 1/32 px


@pytest.mark.parametrize("interp", [cv2.INTER_NEAREST, cv2.INTER_LINEAR])
def test_crop_matches_warpAffine_dot(interp):
    """A dot at a known pixel lands where crop_transform says (box chosen so it is an integer)."""
    img = np.zeros((100, 120), np.float32)
    img[37, 53] = 1.0
    box = np.array([10.5, 4.5, 138.5, 68.5])  # scale 1/2: u' = (u - 10.5 + 0.5) / 2 - 0.5
    A = cam.crop_transform(box, (64, 32))
    u, v = cam.apply_homography(A, np.array([[53.0, 37.0]]))[0]
    assert (u, v) == (21.0, 16.0)
    crop = cv2.warpAffine(img, A[:2], (64, 32), flags=interp)
    assert list(zip(*np.nonzero(crop))) == [(16, 21)]  # (row v, column u)
    assert crop[16, 21] == pytest.approx(1.0)


@FAST
@given(seed=seeds)
def test_crop_K_consistency(seed):
    rng = np.random.default_rng(seed)
    K, X = random_K(rng, (3,)), random_points(rng, (3,))
    xy = rng.uniform(-50, 400, (3, 2))
    box = np.concatenate([xy, xy + rng.uniform(10, 300, (3, 2))], -1)
    size = (int(rng.integers(16, 300)), int(rng.integers(16, 300)))
    uv_crop = cam.apply_homography(cam.crop_transform(box, size), cam.project(K, X))
    np.testing.assert_allclose(cam.project(cam.crop_K(K, box, size), X), uv_crop, rtol=1e-9, atol=1e-7)


# ------------------------------------------------------------------ mirror, rotation, scaling


@FAST
@given(seed=seeds, width=st.integers(32, 2000))
def test_mirror_consistency(seed, width):
    rng = np.random.default_rng(seed)
    K, X = random_K(rng), random_points(rng)
    uv, uvm = cam.project(K, X), cam.project(cam.mirror_K(K, width), mirror(X))
    np.testing.assert_allclose(uvm[..., 0], width - 1 - uv[..., 0], rtol=1e-10, atol=1e-8)
    np.testing.assert_allclose(uvm[..., 1], uv[..., 1], rtol=1e-12)
    np.testing.assert_allclose(cam.mirror_K(cam.mirror_K(K, width), width), K, atol=1e-9)


def test_mirror_matches_cv2_flip():
    K, W = make_K(), 640
    X = np.array([[30.0, -20.0, 400.0]])
    u, v = np.round(cam.project(K, X)[0]).astype(int)
    X = cam.backproject(K, np.array([[u, v]], float), X[:, 2])  # on a pixel centre
    img = np.zeros((480, W), np.uint8)
    img[v, u] = 255
    um, vm = cam.project(cam.mirror_K(K, W), mirror(X))[0]
    assert cv2.flip(img, 1)[round(vm), round(um)] == 255 and abs(um - round(um)) < 1e-9


def test_rotation_z():
    th = np.array([[0.0, 0.3], [np.pi / 2, -2.0]])
    R = cam.rotation_z(th)
    assert R.shape == (2, 2, 3, 3)
    np.testing.assert_allclose(R @ R.swapaxes(-1, -2), np.broadcast_to(np.eye(3), R.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(R), 1.0)
    np.testing.assert_allclose(R[0, 0], np.eye(3))
    np.testing.assert_allclose(R[1, 0] @ [1.0, 0, 0], [0, 1.0, 0], atol=1e-12)  # x -> y (clockwise on screen)
    np.testing.assert_allclose(cam.rotation_z(0.3) @ cam.rotation_z(-2.0), cam.rotation_z(-1.7), atol=1e-12)


@FAST
@given(seed=seeds, theta=st.floats(-np.pi, np.pi))
def test_homography_equals_rotated_projection(seed, theta):
    rng = np.random.default_rng(seed)
    K, X = random_K(rng), random_points(rng)
    H = cam.homography_rotate_about_axis(K, theta)
    RX = X @ cam.rotation_z(theta).T
    np.testing.assert_allclose(cam.apply_homography(H, cam.project(K, X)), cam.project(K, RX), rtol=1e-9, atol=1e-7)


def test_homography_fixes_principal_point():
    K = make_K(500, 500, 320, 240)
    H = cam.homography_rotate_about_axis(K, np.array([0.1, 1.0, 3.0]))
    assert H.shape == (3, 3, 3)
    np.testing.assert_allclose(cam.apply_homography(H, np.array([[320.0, 240.0]])), [[[320, 240]]] * 3, atol=1e-9)


def test_scale_about_center():
    A = cam.scale_about_center(2.0, np.array([100.0, 50.0]), (3.0, -4.0))
    pts = np.array([[100.0, 50.0], [110.0, 45.0]])
    np.testing.assert_allclose(cam.apply_homography(A, pts), [[103, 46], [123, 36]])
    Ab = cam.scale_about_center(np.array([1.0, 0.5]), np.array([[0.0, 0.0], [10.0, 10.0]]))
    assert Ab.shape == (2, 3, 3)
    np.testing.assert_allclose(Ab[0], np.eye(3))
    np.testing.assert_allclose(cam.apply_homography(Ab[1], np.array([[20.0, 0.0]])), [[15.0, 5.0]])


# ------------------------------------------------------------------ numpy / torch parity


def _cases():
    rng = np.random.default_rng(3)
    K, X = random_K(rng, (2,)), random_points(rng, (2,))
    box = np.array([[10.0, 20.0, 200.0, 180.0], [0.0, 5.0, 64.0, 100.0]])
    th = np.array([0.4, -1.2])
    return {
        "project": (cam.project, (K, X)),
        "backproject": (cam.backproject, (K, cam.project(K, X), X[..., 2])),
        "apply_homography": (cam.apply_homography, (K, X[..., :2])),
        "crop_transform": (lambda b: cam.crop_transform(b, (64, 48)), (box,)),
        "crop_K": (lambda k, b: cam.crop_K(k, b, (64, 48)), (K, box)),
        "mirror_K": (cam.mirror_K, (K, np.array([640.0, 320.0]))),
        "rotation_z": (cam.rotation_z, (th,)),
        "homography_rotate_about_axis": (cam.homography_rotate_about_axis, (K, th)),
        "scale_about_center": (cam.scale_about_center, (np.array([1.5, 0.7]), X[:, 0, :2], X[:, 1, :2])),
    }


@pytest.mark.parametrize("name", sorted(_cases()))
def test_numpy_torch_agree(name):
    f, args = _cases()[name]
    ref = f(*args)
    out = f(*[torch.from_numpy(a) for a in args])
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64 and tuple(out.shape) == ref.shape
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-12, atol=1e-9)
    out32 = f(*[torch.from_numpy(a).float() for a in args])
    assert out32.dtype == torch.float32
    np.testing.assert_allclose(out32.numpy(), ref, rtol=1e-4, atol=1e-2)


def test_mixed_numpy_torch_inputs():
    rng = np.random.default_rng(4)
    K, X = random_K(rng), random_points(rng)
    out = cam.project(K, torch.from_numpy(X).float())  # numpy K adopts the tensor's dtype
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), cam.project(K, X), rtol=1e-5)
    Kc = cam.crop_K(torch.from_numpy(K).float(), np.array([0.0, 0.0, 100.0, 100.0]), 64)
    assert Kc.dtype == torch.float32
