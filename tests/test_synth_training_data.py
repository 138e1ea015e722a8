"""The synthetic datasets feed the training Dataset: geometry stays consistent under
augmentation, and mixed batches are half rendered, half sensor (Cai et al.)."""
import numpy as np
import pytest
import torch

from weakhand import camera
from weakhand.data import AugmentConfig, HandDataset, load_dataset, make_mixed_loader
from weakhand.synth.dataset import make_dataset


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    make_dataset(root / "render", "render", 24, seed=0, split="train", size=64, show_progress=False)
    make_dataset(root / "sensor", "sensor", 16, seed=0, split="train", size=64, show_progress=False)
    return load_dataset(root / "render"), load_dataset(root / "sensor")


def test_augmented_samples_keep_keypoints_on_the_hand(datasets):
    render, _ = datasets
    ds = HandDataset(render, out_size=48, mirror_left=True, seed=1,
                     augment=AugmentConfig(rot_deg=45, scale=(0.8, 1.2), shift_px=4))
    on_mask, total = 0, 0
    for i in range(len(ds)):
        s = ds[i]
        assert int(s["side"]) == 1                        # left hands mirrored to right
        uv = camera.project(s["K"].double(), s["kp3d"].double())
        torch.testing.assert_close(uv.float(), s["kp2d"], atol=1e-3, rtol=0)
        pix = s["kp2d"].round().long()
        ok = s["vis"] & s["in_crop"]
        ok[[0, 4, 8, 12, 16, 20]] = False                 # wrist and tips sit on the boundary
        m = s["mask"][0][pix[ok, 1].clamp(0, 47), pix[ok, 0].clamp(0, 47)]
        on_mask += int(m.sum())
        total += int(ok.sum())
    assert total > 50 and on_mask / total > 0.85


def test_mixed_loader_gives_half_source_half_target_batches(datasets):
    render, sensor = datasets
    loader = make_mixed_loader(HandDataset(render), HandDataset(sensor), batch_size=8,
                               num_batches=3)
    for batch in loader:
        has3 = batch["has_3d"]
        assert has3[:4].all() and not has3[4:].any()     # sensor train split has no 3D on disk
        assert torch.isnan(batch["kp3d"][4:]).all()
