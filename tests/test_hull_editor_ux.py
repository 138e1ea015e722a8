"""Hull editor usability (issue 17), headless: one vocabulary (bone by its joints + JSON key),
sliders over the data's range with 0.5° steps and number boxes, clicks anywhere in the plot
(an invisible grid), ignored clicks explained, target angles in a second colour."""
from __future__ import annotations

import numpy as np
import pytest

from weakhand import bmc
from weakhand.bmc import editor as hull_editor
from weakhand.bmc import figures as bf
from weakhand.bmc import geometry as g
from weakhand.synth.domains import RENDER, SENSOR
from weakhand.synth.generator import sample_hand_poses


@pytest.fixture(scope="module")
def data():
    kp, side = sample_hand_poses(RENDER, 1500, seed=1)
    tkp, tside = sample_hand_poses(SENSOR, 300, seed=2)
    limits = bmc.fit_limits(kp, side == 0, dataset="synth_render", split="train")
    angles = bmc.bmc_features(kp, side == 0)["angles"]
    target = bmc.bmc_features(tkp, tside == 0)["angles"]
    return limits, angles, target, hull_editor.preview_base_pose(kp, side == 0)


@pytest.fixture()
def model(data, tmp_path):
    limits, angles, target, base = data
    return hull_editor.HullEditorModel(limits, angles, base, path=tmp_path / "limits.json",
                               target_angles=target)


def test_one_vocabulary_bone_by_its_joints_and_json_key(model):
    assert bf.LAYER_LABELS == ("MCP→PIP", "PIP→DIP", "DIP→tip")
    model.select_bone("index", "pip")            # the dropdown value: joint where the angle is
    assert model.bone_name == "index_dip"        # limits.json's key of that hull
    assert model.bone_label == "index PIP→DIP (index_dip)"
    assert model.summary().startswith("index PIP→DIP (index_dip): ")
    assert model.click(model.hull[0] * 1.0, "select")
    c = model.hull.mean(0)
    model.move_vertex(model.hull[0] + 0.2 * (model.hull[0] - c))
    assert model.message.startswith("move on index PIP→DIP (index_dip): ok")
    for k in range(15):
        f, layer = divmod(k, 3)
        assert bf.bone_label(k).startswith(f"{g.sk.FINGER_NAMES[f]} {bf.LAYER_LABELS[layer]}")
        assert bf.bone_label(k).endswith(f"({g.ANGLE_BONE_NAMES[k]})")


def test_angle_range_covers_the_data_with_a_margin(model):
    for k in range(15):
        model.select(k)
        (x0, x1), (y0, y1) = model.angle_range(margin_deg=10)
        a = np.degrees(np.vstack([model.angles[:, k], model.target_angles[:, k], model.hull]))
        assert x0 <= a[:, 0].min() - 10 and x1 >= a[:, 0].max() + 10
        assert y0 <= a[:, 1].min() - 10 and y1 >= a[:, 1].max() + 10
        assert x0 % 5 == 0 and y1 % 5 == 0 and -180 <= x0 < x1 <= 180
        assert x1 - x0 < 300                     # the data's range, not -180..180


def test_click_anywhere_moves_adds_selects_or_says_why(model):
    model.select_bone("middle", "mcp")
    c = model.hull.mean(0)
    i = int(np.argmax(model.hull[:, 0]))
    model.select_vertex(i)
    empty = model.hull[i] + 0.25 * (model.hull[i] - c)      # an empty point outside the hull
    assert model.click(empty, "move here")
    np.testing.assert_allclose(model.hull[model.vertex], empty)
    assert model.limits.edits[-1]["op"] == "move"
    n = len(model.limits.edits)
    # the same click again changes nothing, and says so
    assert not model.click(empty, "move here") and "already there" in model.message
    # select: a click far from every vertex is ignored with the reason
    assert not model.click(c, "select")
    assert "ignored" in model.message and "no vertex within" in model.message
    # add inside the hull is refused with the reason; add outside works
    assert not model.click(c, "add here") and "inside the hull" in model.message
    assert len(model.limits.edits) == n
    far = c + 3.0 * (model.hull[0] - c)
    assert model.click(far, "add here") and model.limits.edits[-1]["op"] == "insert"
    # a move that would dent the hull is refused by the model, with the reason
    model.select_vertex(0)
    assert not model.click(c + 0.01 * (model.hull[0] - c), "move here")
    assert "refused" in model.message


def test_target_angles_coverage_and_validation(model, data):
    assert 0.0 <= model.target_coverage() <= 1.0
    assert "target angles" in model.summary()
    limits, angles, _, base = data
    plain = hull_editor.HullEditorModel(limits, angles, base)
    assert plain.target_coverage() is None and "target" not in plain.summary()
    with pytest.raises(ValueError, match="target_angles"):
        hull_editor.HullEditorModel(limits, angles, base, target_angles=np.zeros((3, 14, 2)))


def test_view_sliders_boxes_grid_and_colours(model):
    pytest.importorskip("ipywidgets")
    pytest.importorskip("anywidget")
    view = hull_editor.HullEditor(model)
    assert view.layer.description == "bone"
    assert [lbl for lbl, _ in view.layer.options] == list(bf.LAYER_LABELS)
    view.finger.value = "index"
    view.layer.value = "pip"
    assert view.fig.layout.title.text.startswith("index PIP→DIP (index_dip): coverage")
    assert "target" in view.fig.layout.title.text
    assert view.fig.layout.title.xanchor == "left" and view.fig.layout.modebar.orientation == "v"
    (x0, x1), (y0, y1) = model.angle_range()
    assert (view.flex.min, view.flex.max, view.flex.step) == (x0, x1, 0.5)
    assert (view.abd.min, view.abd.max, view.abd.step) == (y0, y1, 0.5)
    assert (view.flex_box.min, view.flex_box.max) == (-180, 180) and view.flex_box.step == 0.5
    assert tuple(view.fig.layout.xaxis.range) == (x0, x1)
    # the click grid covers the plotted range
    grid = view.fig.data[5]
    assert grid.name == "click grid" and min(grid.x) == x0 and max(grid.x) >= x1 - 1
    assert min(grid.y) == y0 and max(grid.y) >= y1 - 1
    # source and target dots: legible, two colours
    src, tgt = view.fig.data[0], view.fig.data[4]
    assert src.marker.size >= 5 and tgt.marker.size >= 5 and src.marker.color != tgt.marker.color
    assert len(tgt.x) > 0 and tgt.visible
    # the number box moves the vertex like the slider does (exact value, other coordinate kept)
    i = int(np.argmax(model.hull[:, 0]))
    view.vertex.value = i
    old = model.hull[i].copy()
    view.flex_box.value = round(float(np.degrees(old[0])) + 7.25, 2)
    np.testing.assert_allclose(np.degrees(model.hull[model.vertex, 0]),
                               round(float(np.degrees(old[0])) + 7.25, 2))
    assert model.hull[model.vertex, 1] == old[1]
    assert view.flex.value == pytest.approx(np.round(2 * view.flex_box.value) / 2)
    # a typed value beyond the slider's range is taken (the slider's range grows to show it)
    view.flex_box.value = x1 + 20.0
    assert np.degrees(model.hull[model.vertex, 0]) == pytest.approx(x1 + 20.0)
    assert view.flex.max >= x1 + 20.0 and view.flex.value == pytest.approx(x1 + 20.0)
    old = model.hull[model.vertex].copy()
    # a click callback on the grid (what plotly sends for an empty point) moves the vertex
    view.click_mode.value = "move here"

    class Pts:
        point_inds = [0]
        xs = [float(np.degrees(old[0])) + 12.0]
        ys = [float(np.degrees(old[1]))]
    view._on_plot_click(grid, Pts())
    np.testing.assert_allclose(np.degrees(model.hull[model.vertex]), [Pts.xs[0], Pts.ys[0]])
    view.click_mode.value = "select"
    Pts.xs = [float(np.mean(view.fig.data[2].x))]
    Pts.ys = [float(np.mean(view.fig.data[2].y))]
    view._on_plot_click(grid, Pts())
    assert "ignored" in view.status.value
