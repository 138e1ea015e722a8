"""Biomechanical constraints (Spurr et al., ECCV 2020): geometry, convex angle hulls, limits
fitted from 3D training poses and the differentiable BMC loss.

The interactive hull editor (:mod:`weakhand.bmc.editor`: ``HullEditor``, ``HullEditorModel``,
``preview_base_pose``) and the figures (:mod:`weakhand.bmc.figures`) are imported explicitly
where they are used, so that the training loss never pulls in plotly or ipywidgets.

    limits = bmc.fit_limits(kp3d_train, is_left, dataset="synth_render", split="train")
    bmc.save_limits(limits, run.artifact("bmc/limits.json"))
    terms = bmc.bmc_loss(pred_kp3d, limits, is_left)      # {"bmc", "bone_length", "root_bones", "angles"}
"""
from .geometry import (ANGLE_BONE_NAMES, ANGLE_BONES, LAYER_NAMES, PAIR_NAMES, angle_bone_index,
                       bmc_features, canonical_pose, joint_angles, palm_features, pose_from_angles)
from .limits import (SCHEMA, SCHEMA_VERSION, BMCLimits, LimitsError, apply_edit, fit_limits,
                     limits_table, load_limits, save_limits)
from .loss import (BMCWeights, bmc_loss, bmc_loss_25d, bmc_penalties, interval_penalty,
                   violation_rates)

__all__ = [
    "ANGLE_BONES", "ANGLE_BONE_NAMES", "LAYER_NAMES", "PAIR_NAMES", "SCHEMA", "SCHEMA_VERSION",
    "BMCLimits", "BMCWeights", "LimitsError", "angle_bone_index",
    "apply_edit", "bmc_features", "bmc_loss", "bmc_loss_25d", "bmc_penalties", "canonical_pose", "fit_limits",
    "interval_penalty", "joint_angles", "limits_table", "load_limits", "palm_features",
    "pose_from_angles", "save_limits", "violation_rates",
]
