"""The notebooks' source/target resolver (weakhand.workbook.study) and the weak view of a target.

Datasets are tiny synthetic splits written under a run's data/ with the names a converted real
pair would have ("rhd", "stb", "freihand"), 3D stored on the target's training split as a real
target ships it, and variants where it matters (no depth maps, a palm root, no val split)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from weakhand.data import TRAIN_AUGMENT, data_view, load_dataset, make_mixed_loader, split_dataset, write_dataset
from weakhand.methods import cai, lift, spurr_bmc
from weakhand.synth.dataset import make_dataset, make_labelled_twin
from weakhand.workbook import study as sd
from weakhand.workbook.runs import MissingArtifactError, open_run

SIZE = 32


def _copy(src, dst, *, drop_depth=False, root="wrist", name=None, rows=None):
    """Write a copy of split `src` at `dst` as a converted (non-synthetic) dataset."""
    d = load_dataset(src)
    sl = slice(None) if rows is None else slice(*rows)
    arrays = {k: np.asarray(a[sl]) for k, a in d.arrays.items() if k in ("rgb", "depth", "mask", "kp2d", "kp3d",
                                                                          "vis", "K", "side", "has_2d", "has_3d",
                                                                          "has_depth")}
    if drop_depth:
        arrays["depth"] = np.zeros_like(arrays["depth"])
        arrays["has_depth"] = np.zeros_like(arrays["has_depth"])
    return write_dataset(dst, arrays, name=name or dst.parent.name, domain="real", split=dst.name,
                         source={"kind": "converted", "recipe": name or dst.parent.name}, root=root)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run folder with the synthetic pair and a 'real' pair: rhd (train, eval: no val split),
    stb (train with 3D, test), freihand (no depth), stb_palm (joint 0 = palm)."""
    run = tmp_path_factory.mktemp("study") / "run"
    data = run / "data"
    for name, style, split, n, with_3d in (("synth_render", "render", "train", 24, True),
                                           ("synth_render", "render", "val", 8, True),
                                           ("synth_render", "render", "test", 8, True),
                                           ("synth_sensor", "sensor", "train", 16, False),
                                           ("synth_sensor", "sensor", "test", 8, True)):
        make_dataset(data / name / split, style, n, seed=3, split=split, size=SIZE, with_3d=with_3d,
                     show_progress=False)
    tmp = run.parent / "raw"
    make_dataset(tmp / "sensor3d", "sensor", 16, seed=3, split="train", size=SIZE, with_3d=True, show_progress=False)
    _copy(data / "synth_render/train", data / "rhd/train")
    _copy(data / "synth_render/test", data / "rhd/eval")
    _copy(tmp / "sensor3d", data / "stb/train")
    _copy(data / "synth_sensor/test", data / "stb/test")
    _copy(tmp / "sensor3d", data / "freihand/train", drop_depth=True)
    _copy(data / "synth_sensor/test", data / "freihand/eval", drop_depth=True)
    _copy(tmp / "sensor3d", data / "stb_palm/train", root="palm")
    _copy(data / "synth_sensor/test", data / "stb_palm/test", root="palm")
    return run


# ----------------------------------------------------------------------------- resolving

def test_defaults_resolve_the_synthetic_pair(run_dir):
    s = sd.open_study(run_dir)
    assert {r: s.key(r) for r in sd.ROLES} == {
        "source train": "synth_render/train", "source val": "synth_render/val", "source test": "synth_render/test",
        "target train": "synth_sensor/train", "target test": "synth_sensor/test"}
    assert s.is_synthetic("target train") and s.provenance()["source"] == "synth_render"


def test_real_pair_splits_and_held_out_validation(run_dir):
    s = sd.open_study(run_dir, "rhd", "stb")
    assert s.key("source test") == "rhd/eval" and s.key("target test") == "stb/test"
    tr, va = s.data("source train"), s.data("source val")
    # RHD has no val split: the last 10 % of train (here 2 of 24) is held out and left out of train
    assert (tr.count, va.count) == (22, 2) and s.key("source val") == "rhd/train[22:24]"
    full = load_dataset(run_dir / "data/rhd/train")
    np.testing.assert_array_equal(np.asarray(va.arrays["kp3d"]), np.asarray(full.arrays["kp3d"][22:]))
    np.testing.assert_array_equal(np.asarray(tr.arrays["rgb"]), np.asarray(full.arrays["rgb"][:22]))
    assert s.source_constant_split() == run_dir / "data/rhd/train"
    # explicit splits win
    s2 = sd.open_study(run_dir, "rhd:test=train", "stb:test=train")
    assert s2.key("source test") == "rhd/train" and s2.key("target test") == "stb/train"


@pytest.mark.parametrize("spec, words", [
    ("nosuch", "no dataset 'nosuch'"), ("rhd:test=nosplit", "has no split 'nosplit'"),
    ("rhd:bogus=eval", "is not ROLE=SPLIT"), ("", "expected a dataset name"), ("a/b", "does not start with")])
def test_bad_source_is_refused_with_a_message(run_dir, spec, words):
    with pytest.raises(sd.StudyError, match=words):
        sd.open_study(run_dir, spec, "stb")


def test_missing_synthetic_data_names_notebook_00(tmp_path):
    run = open_run(tmp_path / "empty")
    with pytest.raises(MissingArtifactError, match="00_make_data"):
        sd.open_study(run)


def test_palm_rooted_target_is_refused_with_the_conversion_to_use(run_dir):
    with pytest.raises(sd.StudyError, match=r"joint 0 differs.*--opt root=wrist"):
        sd.open_study(run_dir, "rhd", "stb_palm")


def test_require_names_dataset_split_and_label(run_dir):
    s = sd.open_study(run_dir, "rhd", "freihand", notebook="40_train_depth_teacher")
    s.require({"target train": ("2d", "3d")})
    with pytest.raises(sd.StudyError, match=r"target freihand/train has no depth maps \(40_train_depth_teacher"):
        s.require({"source train": ("depth",), "target train": ("depth",)})


# ----------------------------------------------------------------------------- variants a target supports

def test_target_without_depth_refuses_the_depth_variants_and_names_the_others(run_dir):
    s = sd.open_study(run_dir, "rhd", "freihand")
    todo = ["2d", "2d_depth", "2d_bmc", "2d_direct", "2d_teacher", "full3d"]
    with pytest.raises(sd.StudyError) as ei:
        s.check_variants(todo, cai.VARIANTS, "stage3_variants")
    assert str(ei.value) == ("target freihand/train has no depth maps: the variants 2d_depth, 2d_direct, 2d_teacher "
                             "need them; run the others with -p stage3_variants=2d,2d_bmc,full3d")
    s.check_variants(["2d", "2d_bmc", "2d_bmc_pinned", "full3d"], cai.VARIANTS, "stage3_variants")
    s.check_variants(["2d", "2d_bmc", "full3d"], spurr_bmc.VARIANTS, "pose25d_variants")
    with pytest.raises(sd.StudyError, match="the variant 2d_direct_bmc needs them; run the others with -p pose25d_variants=2d,2d_bmc"):
        s.check_variants(["2d", "2d_bmc", "2d_direct_bmc"], spurr_bmc.VARIANTS, "pose25d_variants")
    with pytest.raises(sd.StudyError, match="reg, direct_root need them"):
        s.check_variants(["source", "reg", "bmc", "direct_root", "full3d"], lift.VARIANTS, "lift_variants")


def test_every_variant_declares_the_labels_it_reads():
    for table in (cai.VARIANTS, spurr_bmc.VARIANTS, lift.VARIANTS):
        for name, v in table.items():
            need = set(v.target_labels)
            assert ("3d" in need) == (v.target == "full3d"), name
            reads_depth = v.target == "teacher" or bool({"regularizer", "direct", "direct_root"} & set(v.signals))
            assert ("depth" in need) == reads_depth, name
            assert ("2d" in need) == (v.target != "source"), name


def test_synthetic_target_counts_its_withheld_3d_as_present(run_dir):
    sd.open_study(run_dir).check_variants(list(cai.VARIANTS), cai.VARIANTS, "stage3_variants")


# ----------------------------------------------------------------------------- the target's 3D stays hidden

def _target_half(variant_table, variant, s, twin=make_labelled_twin, n=16):
    sets = s.target_training_data([variant], variant_table, twin)
    src = split_dataset(s.data_dir, s.data("source train"), SIZE, augment=TRAIN_AUGMENT, seed=0)
    tgt = split_dataset(s.data_dir, sets[variant_table[variant].target], SIZE, augment=TRAIN_AUGMENT, seed=1)
    batch = next(iter(make_mixed_loader(src, tgt, n, num_batches=1, seed=0)))
    half = n // 2
    assert torch.isfinite(batch["kp3d"][:half]).all() and batch["has_3d"][:half].all()  # the source half
    return {k: v[half:] for k, v in batch.items()}


@pytest.mark.parametrize("pair", [("rhd", "stb"), ("synth_render", "synth_sensor")])
@pytest.mark.parametrize("family", ["cai", "pose25d"])
def test_no_weak_variant_batch_carries_target_3d(run_dir, pair, family):
    table = cai.VARIANTS if family == "cai" else spurr_bmc.VARIANTS
    s = sd.open_study(run_dir, *pair)
    assert s.data("target train").label_counts["has_3d"] == (16 if pair[1] == "stb" else 0)
    for variant, v in table.items():
        if v.target != "weak":
            continue
        t = _target_half(table, variant, s)
        assert torch.isnan(t["kp3d"]).all() and not t["has_3d"].any(), variant
        assert torch.isfinite(t["kp2d"]).all() and t["has_depth"].all(), variant
    t = _target_half(table, "full3d", s)  # the upper bound reads the target's 3D
    assert torch.isfinite(t["kp3d"]).all() and t["has_3d"].all()


def test_lifting_weak_set_has_no_target_3d_and_full3d_has(run_dir):
    s = sd.open_study(run_dir, "rhd", "stb")
    variants = ["source", "bmc", "direct_root", "full3d"]
    sets = {k: lift.collate_dataset(split_dataset(s.data_dir, d, SIZE))
            for k, d in s.target_training_data(variants, lift.VARIANTS).items()}
    weak = sets["weak"]
    assert torch.isnan(weak["kp3d"]).all() and not weak["has_3d"].any()
    assert torch.isfinite(sets["full3d"]["kp3d"]).all()
    opts = lift.LiftOptions(stage3_steps=2, stage3_source_batch=4, stage3_target_batch=8)
    pool = lift.LabelPool(lift.collate_dataset(split_dataset(s.data_dir, s.data("source train"), SIZE)), "rhd/train")
    b = next(lift.mixed_batches(pool, weak, 0, opts, SIZE))
    assert torch.isnan(b["target"]["kp3d"]).all() and torch.isfinite(b["source"]["kp3d"]).all()


def test_weak_view_keeps_everything_but_3d(run_dir):
    d = load_dataset(run_dir / "data/stb/train")
    w = data_view(d, hide_3d=True)
    assert w.label_counts["has_3d"] == 0 and w.label_counts["has_depth"] == d.label_counts["has_depth"]
    for k in ("rgb", "depth", "mask", "kp2d", "vis", "K", "side"):
        np.testing.assert_array_equal(np.asarray(w.arrays[k]), np.asarray(d.arrays[k]))
    assert np.isfinite(np.asarray(d.arrays["kp3d"])).all()  # the stored split is untouched


def test_full3d_needs_3d_somewhere(run_dir):
    s = sd.open_study(run_dir, "rhd", "freihand")
    assert s.full3d_target().label_counts["has_3d"] == 16
    _copy(run_dir / "data/freihand/train", run_dir / "data/no3d/train")
    _copy(run_dir / "data/freihand/eval", run_dir / "data/no3d/test")
    d = load_dataset(run_dir / "data/no3d/train")
    arrays = {k: np.asarray(a) for k, a in d.arrays.items() if k != "parts"}
    arrays["kp3d"] = np.full_like(arrays["kp3d"], np.nan)
    arrays["has_3d"] = np.zeros_like(arrays["has_3d"])
    write_dataset(run_dir / "data/no3d/train", arrays, name="no3d", domain="real", split="train",
                  source={"kind": "converted"}, overwrite=True)
    s = sd.open_study(run_dir, "rhd", "no3d")
    with pytest.raises(sd.StudyError, match="no3d/train has no 3D labels: the variant full3d needs them"):
        s.check_variants(["2d", "full3d"], cai.VARIANTS, "stage3_variants")
    with pytest.raises(sd.StudyError, match="has no 3D labels"):
        s.full3d_target(make_labelled_twin)


def test_describe_lists_every_role(run_dir):
    rows = sd.open_study(run_dir, "rhd", "stb").describe()
    assert [r["role"] for r in rows] == list(sd.ROLES)
    assert rows[3]["3D"] == 16 and rows[0]["joint 0"] == "wrist"


def test_test_data_keeps_only_test_splits_with_the_labels_asked(run_dir):
    s = sd.open_study(run_dir, "rhd", "freihand")
    assert set(s.test_data("2d", "3d")) == {"render test", "sensor test"}
    only = s.test_data("3d", "depth")  # freihand/eval has no depth maps: a depth model cannot be scored there
    assert set(only) == {"render test"} and only["render test"].count == 8
