"""Tests for weakhand.skeleton: constants, dataset orders, normalisation, numpy/torch parity."""
import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from weakhand import skeleton as sk

FAST = settings(max_examples=40, deadline=None)
ORDER_NAMES = sorted(sk.ORDERS)


def random_hand(rng, batch=()):
    """Random plausible-scale poses (..., 21, 3) in mm, in front of the camera."""
    return rng.normal(0, 40, size=batch + (21, 3)) + np.array([0.0, 0.0, 600.0])


poses = hnp.arrays(
    np.float64,
    st.tuples(st.integers(1, 3), st.just(21), st.just(3)),
    elements=st.floats(-1000, 1000, allow_nan=False, allow_subnormal=False),
)


# ------------------------------------------------------------------ constants


def test_joint_names():
    assert len(sk.JOINT_NAMES) == sk.NUM_JOINTS == 21 and len(set(sk.JOINT_NAMES)) == 21
    assert sk.JOINT_NAMES[:2] == ("wrist", "thumb_mcp") and sk.JOINT_NAMES[-1] == "little_tip"
    assert sk.JOINT_NAMES[sk.SCALE_BONE[0]] == "middle_mcp" and sk.JOINT_NAMES[sk.SCALE_BONE[1]] == "middle_pip"
    for f, name in enumerate(sk.FINGER_NAMES):
        assert all(sk.JOINT_NAMES[j].startswith(name + "_") for j in sk.FINGERS[f])
    assert [sk.JOINT_NAMES[j] for j in sk.TIPS] == [f"{f}_tip" for f in sk.FINGER_NAMES]


def test_parents_form_tree_rooted_at_wrist():
    P = sk.PARENTS
    assert P.shape == (21,) and P[sk.ROOT] == -1
    assert np.all(P[1:] >= 0) and np.all(P[1:] < np.arange(1, 21))  # topological => acyclic, single root
    assert np.all(P[sk.MCPS] == 0)
    assert np.all(P[sk.FINGERS[:, 1:]] == sk.FINGERS[:, :-1])
    # every joint reaches the root
    for j in range(21):
        while j != 0:
            j = P[j]
    assert sorted(np.concatenate([[0], sk.FINGERS.ravel()])) == list(range(21))


def test_bones_consistent():
    B = sk.BONES
    assert B.shape == (20, 2)
    assert np.array_equal(B[:, 1], np.arange(1, 21))  # bone b has child b + 1
    assert np.array_equal(B[:, 0], sk.PARENTS[B[:, 1]])
    assert np.array_equal(B[sk.ROOT_BONES], np.stack([np.zeros(5, int), sk.MCPS], 1))
    for layer, ids in enumerate([sk.ROOT_BONES, sk.PIP_BONES, sk.DIP_BONES, sk.TIP_BONES]):
        assert np.array_equal(B[ids, 1], sk.FINGERS[:, layer])
    assert tuple(B[sk.SCALE_BONE_ID]) == sk.SCALE_BONE == (9, 10)
    assert sk.BONE_NAMES[sk.SCALE_BONE_ID] == "middle_pip"


def test_constants_read_only():
    with pytest.raises(ValueError):
        sk.ORDERS["rhd"][0] = 3
    with pytest.raises(ValueError):
        sk.PARENTS[0] = 0


# ------------------------------------------------------------------ orders


@pytest.mark.parametrize("name", ORDER_NAMES)
def test_maps_are_permutations(name):
    m = sk.ORDERS[name]
    assert m.shape == (21,) and sorted(m.tolist()) == list(range(21))
    assert m[0] == 0  # joint 0 stays joint 0 (wrist; palm centre for STB)


def test_identity_and_involution_orders():
    for name in ("canonical", "freihand", "mediapipe"):
        assert np.array_equal(sk.ORDERS[name], np.arange(21))
    for name in ("rhd", "stb"):  # their maps are their own inverses
        m = sk.ORDERS[name]
        assert np.array_equal(m[m], np.arange(21))
    assert np.array_equal(sk.ORDERS["mano"], sk.ORDERS["ho3d"])


@FAST
@given(name=st.sampled_from(ORDER_NAMES), kp=poses, d=st.integers(1, 4))
def test_round_trips_exact(name, kp, d):
    kp = np.ascontiguousarray(np.resize(kp, kp.shape[:-1] + (d,)))
    assert np.array_equal(sk.from_canonical(sk.to_canonical(kp, name), name), kp)
    assert np.array_equal(sk.to_canonical(sk.from_canonical(kp, name), name), kp)


def test_convention_common_from_source():
    src = np.arange(21)[:, None] * np.ones(3)
    for name, m in sk.ORDERS.items():
        assert np.array_equal(sk.to_canonical(src, name)[:, 0], m)  # common[i] = source[MAP[i]]


@pytest.mark.parametrize(
    "order, source_idx, canonical_idx",
    [
        ("rhd", 4, 1),  # RHD thumb MCP (fingers tip->MCP)
        ("rhd", 1, 4),  # RHD thumb tip
        ("rhd", 17, 20),  # RHD little tip
        ("stb", 1, 17),  # STB little MCP (fingers little->thumb)
        ("stb", 20, 4),  # STB thumb tip
        ("ho3d", 16, 4),  # HO-3D thumb tip (MANO order + tips)
        ("ho3d", 13, 1),  # MANO thumb1
        ("ho3d", 17, 8),  # index tip appended after MANO joints
        ("ait", 8, 10),  # ait middle PIP
        ("ait", 5, 17),  # ait little MCP
        ("ait", 16, 4),  # ait thumb tip
        ("mediapipe", 12, 12),
    ],
)
def test_semantic_indices(order, source_idx, canonical_idx):
    src = np.zeros((21, 3))
    src[source_idx] = 1.0
    out = sk.to_canonical(src, order)
    assert out[canonical_idx, 0] == 1.0 and out[:, 0].sum() == 1.0
    back = sk.from_canonical(out, order)
    assert back[source_idx, 0] == 1.0


def test_rhd_right_hand_slice():
    rng = np.random.default_rng(0)
    kp42 = rng.normal(size=(2, 42, 3))
    right = sk.to_canonical(kp42[..., 21:, :], "rhd")
    assert np.array_equal(right, kp42[..., sk.ORDERS["rhd"] + 21, :])
    with pytest.raises(ValueError, match="42"):
        sk.to_canonical(kp42, "rhd")


def test_order_errors():
    with pytest.raises(ValueError, match="unknown keypoint order 'nyu'.*ait.*stb"):
        sk.to_canonical(np.zeros((21, 3)), "nyu")
    with pytest.raises(ValueError, match="expected 21 joints"):
        sk.from_canonical(np.zeros((16, 3)), "mano")
    with pytest.raises(ValueError, match="expected 21 joints"):
        sk.to_canonical(np.zeros(3), "rhd")
    assert np.array_equal(sk.to_canonical(np.eye(21), "RHD"), sk.to_canonical(np.eye(21), "rhd"))


def test_axis_argument_for_per_joint_flags():
    vis = np.random.default_rng(1).random((4, 21)) > 0.5
    out = sk.to_canonical(vis, "stb", axis=-1)
    assert out.dtype == bool and np.array_equal(out, vis[:, sk.ORDERS["stb"]])
    assert np.array_equal(sk.from_canonical(out, "stb", axis=-1), vis)


# ------------------------------------------------------------------ geometry


def test_bone_vectors_and_lengths():
    kp = random_hand(np.random.default_rng(2), (2, 3))
    bv = sk.bone_vectors(kp)
    assert bv.shape == (2, 3, 20, 3) and sk.bone_lengths(kp).shape == (2, 3, 20)
    assert np.allclose(bv[..., 9, :], kp[..., 10, :] - kp[..., 9, :])
    assert np.allclose(bv[..., 4, :], kp[..., 5, :] - kp[..., 0, :])
    assert np.allclose(sk.bone_lengths(kp)[..., sk.SCALE_BONE_ID], sk.scale_length(kp))


def test_root_relative():
    kp = random_hand(np.random.default_rng(3), (5,))
    rr = sk.root_relative(kp)
    assert np.all(rr[:, 0] == 0) and np.allclose(rr + kp[:, :1], kp)


@FAST
@given(seed=st.integers(0, 2**32 - 1), size=st.floats(1e-2, 1e3), shift=st.floats(-1e3, 1e3))
def test_normalize_inverse(seed, size, shift):
    kp = random_hand(np.random.default_rng(seed), (2,)) * size + shift
    kn, root, scale = sk.normalize(kp)
    assert root.shape == kp.shape[:-2] + (3,) and scale.shape == kp.shape[:-2]
    np.testing.assert_allclose(sk.scale_length(kn), 1.0, rtol=1e-9)
    assert np.allclose(kn[..., 0, :], 0.0)
    np.testing.assert_allclose(sk.denormalize(kn, root, scale), kp, rtol=1e-9, atol=1e-9)


def test_normalize_degenerate_raises():
    kp = np.zeros((2, 21, 3))
    kp[0] = random_hand(np.random.default_rng(4))
    with pytest.raises(ValueError, match="degenerate"):
        sk.normalize(kp)


@FAST
@given(kp=poses)
def test_mirror_involution_preserves_lengths(kp):
    m = sk.mirror(kp)
    assert np.array_equal(sk.mirror(m), kp)
    assert np.array_equal(m[..., 0], -kp[..., 0]) and np.array_equal(m[..., 1:], kp[..., 1:])
    np.testing.assert_allclose(sk.bone_lengths(m), sk.bone_lengths(kp), rtol=1e-12)


def test_palm_and_wrist():
    kp = random_hand(np.random.default_rng(5), (3,))
    palm = sk.palm_from_wrist(kp)
    assert np.allclose(palm, 0.5 * (kp[:, 0] + kp[:, 9]))
    palm_kp = sk.replace_root(kp, palm)
    assert np.array_equal(palm_kp[:, 1:], kp[:, 1:]) and np.array_equal(palm_kp[:, 0], palm)
    assert np.allclose(sk.wrist_from_palm_stb(palm_kp, mcp=sk.MIDDLE_MCP), kp[:, 0])  # PeCLR's inverse
    # Z&B / Ge: palm midway between wrist and ring MCP -> wrist recovered
    stb_like = sk.replace_root(kp, 0.5 * (kp[:, 0] + kp[:, 13]))
    assert np.allclose(sk.wrist_from_palm_stb(stb_like), kp[:, 0])
    w = sk.wrist_from_palm_stb(stb_like, factor=2.2, mcp=9)
    assert np.allclose(w, kp[:, 9] + 2.2 * (stb_like[:, 0] - kp[:, 9]))
    # unbatched root broadcast over a batch
    assert np.array_equal(sk.replace_root(kp, np.zeros(3))[:, 0], np.zeros((3, 3)))


# ------------------------------------------------------------------ numpy / torch parity

FUNCS = {
    "to_canonical": lambda kp: sk.to_canonical(kp, "ait"),
    "from_canonical": lambda kp: sk.from_canonical(kp, "ho3d"),
    "bone_vectors": sk.bone_vectors,
    "bone_lengths": sk.bone_lengths,
    "scale_length": sk.scale_length,
    "root_relative": sk.root_relative,
    "normalize": lambda kp: sk.normalize(kp)[0],
    "denormalize": lambda kp: sk.denormalize(kp, kp[..., 3, :], sk.scale_length(kp)),
    "mirror": sk.mirror,
    "palm_from_wrist": sk.palm_from_wrist,
    "wrist_from_palm_stb": sk.wrist_from_palm_stb,
    "replace_root": lambda kp: sk.replace_root(kp, kp[..., 5, :]),
}


@pytest.mark.parametrize("name", sorted(FUNCS))
def test_numpy_torch_agree(name):
    kp = random_hand(np.random.default_rng(6), (2, 3))
    f = FUNCS[name]
    ref = f(kp)
    out = f(torch.from_numpy(kp))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    assert tuple(out.shape) == ref.shape
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-12, atol=1e-9)
    out32 = f(torch.from_numpy(kp).float())
    assert out32.dtype == torch.float32
    np.testing.assert_allclose(out32.numpy(), ref, rtol=1e-4, atol=1e-2)


def test_torch_gradients_finite():
    kp = torch.from_numpy(random_hand(np.random.default_rng(7))).requires_grad_()
    kn, _, _ = sk.normalize(kp)
    (kn.sum() + sk.bone_lengths(sk.mirror(kp)).sum()).backward()
    assert torch.isfinite(kp.grad).all()
    z = torch.zeros(21, 3, requires_grad=True)  # zero-length bones: finite subgradient
    sk.bone_lengths(z).sum().backward()
    assert torch.isfinite(z.grad).all()


def test_joint_bend_angles_straight_and_right_angle():
    kp = np.zeros((21, 3))
    kp[1:] = np.arange(1, 21)[:, None] * np.array([0.0, 10.0, 0.0])  # degenerate but straight
    for f in range(5):  # each finger straight along +y from its own MCP
        mcp = sk.FINGERS[f, 0]
        kp[sk.FINGERS[f]] = np.array([f * 20.0, 50.0, 0.0]) + np.arange(4)[:, None] * [0, 20.0, 0]
    ang = sk.joint_bend_angles(kp)
    assert ang.shape == (15,)
    # PIP and DIP joints are straight; the MCP angle is the wrist->MCP vs MCP->PIP angle
    np.testing.assert_allclose(ang.reshape(5, 3)[:, 1:], 0.0, atol=1e-12)
    expected_mcp = np.arctan2(np.arange(5) * 20.0, 50.0)
    np.testing.assert_allclose(ang.reshape(5, 3)[:, 0], expected_mcp, atol=1e-12)
    # bend the index PIP by 90 degrees: DIP->tip and PIP->DIP turn to +z
    kp[7] = kp[6] + [0, 0, 20.0]
    kp[8] = kp[7] + [0, 0, 20.0]
    ang = sk.joint_bend_angles(kp).reshape(5, 3)
    np.testing.assert_allclose(ang[1, 1], np.pi / 2, atol=1e-12)
    np.testing.assert_allclose(ang[1, 2], 0.0, atol=1e-12)
    t = sk.joint_bend_angles(torch.as_tensor(kp))
    np.testing.assert_allclose(t.numpy().reshape(5, 3), ang, atol=1e-12)
