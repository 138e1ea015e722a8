"""Named size profiles ("smoke", "cpu", "gpu") and the derived-config object of a notebook.

A notebook's `parameters` cell declares its size knobs with the default `None` ("take it from
the profile"); the next cell calls :func:`resolve`, which fills those `None` values from the
chosen profile, resolves `profile="auto"`, `device="auto"` and `run_dir=""`, and returns a
:class:`Config` (a read-only mapping with attribute access that prints as a table and
remembers where each value came from)::

    cfg = profiles.resolve(profile, notebook="00_make_data", run_dir=run_dir, device=device,
                           seed=seed, n_render_train=n_render_train, image_size=image_size)
    cfg.n_render_train    # 6000 with the cpu profile unless the notebook/runner overrode it

Adding a knob = adding one row to ``_KNOB_TABLE`` (description + one value per profile).
"""
from __future__ import annotations

import html
import os
from collections.abc import Mapping
from typing import Any, Iterator

from ..device import resolve_device  # re-exported: profiles.resolve_device(...)

PROFILE_ENV = "WEAKHAND_PROFILE"
DEFAULT_PROFILE = "cpu"
PROFILE_NAMES = ("smoke", "cpu", "gpu")
PROFILE_DOCS = {
    "smoke": "tests and CI: same code path, tiny sizes, seconds per notebook",
    "cpu": "the README main job: minutes per notebook on 2 CPU cores",
    "gpu": "full-size runs on one CUDA GPU",
}

# knob: (description, smoke, cpu, gpu).  One row per knob; keep the rows grouped by the
# notebook that introduced them.  The cpu column is sized so that the whole workbook (the README
# main job) fits 45 min on 2 cores: it is a demonstration of every method, not a study (its
# networks are step-limited and lose to the constant pose; see README "Results").
_KNOB_TABLE: dict[str, tuple[str, Any, Any, Any]] = {
    # 00_make_data
    "n_render_train": ("rendered (synthetic) training images", 64, 6000, 100000),
    "n_render_val": ("rendered validation images", 16, 500, 5000),
    "n_render_test": ("rendered test images", 16, 1000, 5000),
    "n_sensor_train": ("simulated depth-sensor training frames (2D + depth labels)", 64, 6000,
                       100000),
    "n_sensor_test": ("simulated depth-sensor test frames (full labels)", 32, 1000, 10000),
    "image_size": ("square crop size in pixels", 64, 128, 128),
    "n_preview": ("samples shown in preview figures", 8, 16, 16),
    # 20_train_stage1_pose
    "train_size": ("network input size in pixels (a multiple of 4)", 32, 64, 128),
    "pose_width": ("2D network width (channels of the first encoder block)", 8, 16, 32),
    "pose_stages": ("CPM refinement stages", 2, 3, 6),
    "batch_size": ("training batch size", 8, 32, 64),
    "steps_stage1": ("optimizer steps of stage 1", 6, 1200, 20000),
    "val_every": ("validate every N steps", 3, 250, 1000),
    "n_val": ("validation samples used while training", 16, 500, 5000),
    # 30_train_stage2_depth_regularizer
    "reg_size": ("depth regulariser output size in pixels", 16, 32, 64),
    "steps_stage2": ("optimizer steps of stage 2", 6, 1500, 20000),
    # 40_train_depth_teacher
    "dense_width": ("stacked-hourglass width of the depth model", 8, 16, 64),
    "steps_dense": ("optimizer steps of the depth model", 6, 800, 20000),
    # 50_train_stage3_weak
    "steps_stage3": ("optimizer steps of each stage-3 variant", 4, 300, 10000),
    "stage3_variants": ("stage-3 variants trained by 50_train_stage3_weak (comma list of cai.VARIANTS)",
                        "2d,2d_depth,2d_depth_hand,2d_bmc,2d_bmc_pinned,2d_depth_bmc,2d_direct,2d_direct_bmc,2d_teacher,full3d",
                        "2d,2d_depth,full3d",
                        "2d,2d_depth,2d_depth_hand,2d_bmc,2d_bmc_pinned,2d_depth_bmc,2d_direct,2d_direct_bmc,2d_teacher,full3d"),
    "oracle_samples": ("target test hands in the oracle descent of each weak signal", 16, 64, 512),
    "oracle_steps": ("optimizer steps of the oracle descent (z only)", 10, 100, 300),
    # 65_train_depth_lifter
    "lift_seeds": ("lifter seeds of the lifting study (comma list; each: initial weights, source hands, batch order)",
                   "0,1", "0,1,2", "0,1,2"),
    "lift_variants": ("lifting variants trained per source and seed (comma list of methods.lift.VARIANTS)",
                      "source,reg,bmc,bmc_pinned,direct,direct_root,direct_bmc,direct_root_bmc,reg_bmc,teacher,full3d",
                      "source,reg,bmc,bmc_pinned,direct,direct_root,direct_bmc,direct_root_bmc,reg_bmc,teacher,full3d",
                      "source,reg,bmc,bmc_pinned,direct,direct_root,direct_bmc,direct_root_bmc,reg_bmc,teacher,full3d"),
    "lift_width": ("hidden units per layer of the lifter MLP", 32, 256, 512),
    "lift_source_steps": ("Adam steps of the lifter on source labels, per source and seed", 20, 1200, 20000),
    "lift_stage3_steps": ("Adam steps of each lifting variant on source + target", 5, 250, 3000),
    # 60_train_pose25d
    "pose25d_width": ("2.5D network width (channels of the first residual stage)", 8, 24, 48),
    "steps_25d_stage1": ("optimizer steps of the 2.5D model on the source domain", 6, 600, 20000),
    "pose25d_variants": ("stage-3 variants trained by 60_train_pose25d (comma list of spurr_bmc.VARIANTS)",
                         "2d,2d_bmc,2d_bmc_pinned,2d_direct_bmc,full3d", "2d,2d_bmc",
                         "2d,2d_bmc,2d_bmc_pinned,2d_direct_bmc,full3d"),
}

KNOB_DOCS: dict[str, str] = {k: row[0] for k, row in _KNOB_TABLE.items()}
PROFILES: dict[str, dict[str, Any]] = {
    name: {k: row[1 + i] for k, row in _KNOB_TABLE.items()} for i, name in enumerate(PROFILE_NAMES)
}

# Parameters every notebook declares and that resolve() turns into concrete values.
STANDARD_PARAMETERS = ("profile", "run_dir", "device", "seed")

# value sources recorded in Config.sources
SRC_PROFILE = "profile"      # None in the notebook -> profile value
SRC_OVERRIDE = "override"    # knob given explicitly (notebook default or runner -p)
SRC_RESOLVED = "resolved"    # "auto"/"" turned into a concrete value
SRC_GIVEN = "given"          # any other parameter, passed through unchanged


def profile_name(profile: str | None = "auto") -> str:
    """The concrete profile name: "auto"/None/"" -> $WEAKHAND_PROFILE, else "cpu"."""
    origin = "profile"
    if profile in (None, "", "auto"):
        env = os.environ.get(PROFILE_ENV, "").strip()
        profile, origin = (env, f"${PROFILE_ENV}") if env else (DEFAULT_PROFILE, "default")
    if profile not in PROFILES:
        raise ValueError(f"unknown {origin} {profile!r}: known profiles are "
                         + ", ".join(f"{n!r} ({PROFILE_DOCS.get(n, '')})" for n in PROFILES))
    return profile


class Config(Mapping):
    """Read-only mapping of a notebook's resolved parameters, with attribute access.

    `cfg.sources[key]` says where each value came from ("profile", "override", "resolved",
    "given"); `cfg.profile_values` holds the profile's value of every knob present.
    Prints as a small table (text and HTML).
    """

    def __init__(self, values: dict[str, Any], sources: dict[str, str], *, profile: str,
                 notebook: str | None = None, profile_values: dict[str, Any] | None = None,
                 requested: dict[str, Any] | None = None):
        object.__setattr__(self, "_values", dict(values))
        object.__setattr__(self, "sources", dict(sources))
        object.__setattr__(self, "profile_name", profile)
        object.__setattr__(self, "notebook", notebook)
        object.__setattr__(self, "profile_values", dict(profile_values or {}))
        object.__setattr__(self, "requested", dict(requested or {}))

    # mapping protocol ---------------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(f"config has no parameter {key!r} (known: {', '.join(self._values)})") from None

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("Config is read-only; change the notebook parameter instead")

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._values))

    # helpers ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the values (JSON-friendly when the values are)."""
        return dict(self._values)

    def overrides(self) -> dict[str, Any]:
        """Knobs whose value differs from the profile's (explicitly set)."""
        return {k: v for k, v in self._values.items() if self.sources.get(k) == SRC_OVERRIDE}

    def _rows(self) -> list[tuple[str, str, str]]:
        rows = []
        for k, v in self._values.items():
            src = self.sources.get(k, "")
            if src == SRC_PROFILE:
                note = f"profile {self.profile_name}"
            elif src == SRC_OVERRIDE:
                note = f"override (profile {self.profile_name}: {self.profile_values[k]!r})"
            elif src == SRC_RESOLVED:
                note = f"resolved from {self.requested.get(k)!r}"
            else:
                note = "parameter"
            rows.append((k, repr(v), note))
        return rows

    def _title(self) -> str:
        nb = f" {self.notebook}" if self.notebook else ""
        return f"Config{nb} (profile {self.profile_name!r})"

    def __repr__(self) -> str:
        rows = self._rows()
        wk = max([len("parameter")] + [len(r[0]) for r in rows])
        wv = max([len("value")] + [min(len(r[1]), 60) for r in rows])
        lines = [self._title(), f"  {'parameter':<{wk}}  {'value':<{wv}}  source"]
        for k, v, note in rows:
            v = v if len(v) <= 60 else v[:57] + "..."
            lines.append(f"  {k:<{wk}}  {v:<{wv}}  {note}")
        return "\n".join(lines)

    __str__ = __repr__

    def _repr_html_(self) -> str:
        esc = html.escape
        body = "".join(
            f"<tr><td style='text-align:left'><code>{esc(k)}</code></td>"
            f"<td style='text-align:left'><code>{esc(v)}</code></td>"
            f"<td style='text-align:left'>{'<b>' if n.startswith('override') else ''}{esc(n)}"
            f"{'</b>' if n.startswith('override') else ''}</td></tr>"
            for k, v, n in self._rows())
        return (f"<table><caption style='text-align:left'>{esc(self._title())}</caption>"
                "<thead><tr><th>parameter</th><th>value</th><th>source</th></tr></thead>"
                f"<tbody>{body}</tbody></table>")


def resolve(profile: str | None = "auto", notebook: str | None = None, **values: Any) -> Config:
    """Resolve a notebook's parameters against a profile.

    - `profile`: "smoke" | "cpu" | "gpu" | "auto" ("auto" = $WEAKHAND_PROFILE, else "cpu").
    - `values`: the notebook's parameters. A profile knob (see ``KNOB_DOCS``) given as None is
      filled from the profile; a non-None knob is kept and recorded as an override.
      `device` is resolved with :func:`resolve_device`, `run_dir` to an absolute path with
      :func:`weakhand.workbook.runs.resolve_run_dir`; any other parameter is passed through.
    - A parameter that is None but is not a profile knob raises ValueError (typo guard).
    """
    name = profile_name(profile)
    table = PROFILES[name]
    out: dict[str, Any] = {"profile": name}
    sources = {"profile": SRC_GIVEN if profile == name else SRC_RESOLVED}
    requested: dict[str, Any] = {"profile": profile}
    profile_values: dict[str, Any] = {}
    values.pop("profile", None)
    for key, value in values.items():
        requested[key] = value
        if key in table:
            profile_values[key] = table[key]
            if value is None:
                out[key], sources[key] = table[key], SRC_PROFILE
            else:
                why = check_knob_value(key, value)
                if why:
                    raise ValueError(f"parameter {why}")
                out[key] = value
                sources[key] = SRC_OVERRIDE if value != table[key] else SRC_PROFILE
        elif key == "device":
            out[key] = resolve_device(value)
            sources[key] = SRC_GIVEN if out[key] == value else SRC_RESOLVED
        elif key == "run_dir":
            from .runs import resolve_run_dir
            out[key] = str(resolve_run_dir(value or ""))
            sources[key] = SRC_GIVEN if out[key] == value else SRC_RESOLVED
        elif value is None:
            raise ValueError(
                f"parameter {key!r} is None but no profile defines it; known profile knobs: "
                f"{', '.join(sorted(KNOB_DOCS))} (add it to weakhand.workbook.profiles._KNOB_TABLE or "
                "give it a value)")
        else:
            out[key], sources[key] = value, SRC_GIVEN
    return Config(out, sources, profile=name, notebook=notebook, profile_values=profile_values,
                  requested=requested)


def describe_profiles() -> str:
    """A text table of every knob in every profile (for `--help-params` and docs)."""
    wk = max(len(k) for k in KNOB_DOCS)
    cols = [max(len(n), *(len(repr(PROFILES[n][k])) for k in KNOB_DOCS)) for n in PROFILE_NAMES]
    head = f"  {'knob':<{wk}}  " + "  ".join(f"{n:>{w}}" for n, w in zip(PROFILE_NAMES, cols)) + "  meaning"
    lines = [head]
    for k, doc in KNOB_DOCS.items():
        vals = "  ".join(f"{PROFILES[n][k]!r:>{w}}" for n, w in zip(PROFILE_NAMES, cols))
        lines.append(f"  {k:<{wk}}  {vals}  {doc}")
    return "\n".join(lines)


# --- validation of overrides (`weakhand run -p knob=value`) -------------------------------------
def _type_name(value: Any) -> str:
    return type(value).__name__


def check_knob_value(key: str, value: Any) -> str | None:
    """Why `value` cannot be given for the profile knob `key` (None when it can).

    The knob's type is that of its values in the profile table: int knobs need an int (not a
    bool, not 2.5, not a string), float knobs a number, bool knobs a bool, str knobs a string.
    Numeric knobs whose profile values are all >= 0 refuse negative values. None is allowed
    ("take it from the profile"). Unknown keys: None (not a knob; see :data:`KNOB_DOCS`).
    """
    if key not in _KNOB_TABLE or value is None:
        return None
    row = _KNOB_TABLE[key]
    examples = list(row[1:])
    shown = "/".join(repr(v) for v in examples)
    kinds = {type(v) for v in examples if v is not None}
    if kinds == {bool}:
        ok, want = isinstance(value, bool), "True or False"
    elif kinds and kinds <= {int}:
        ok, want = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif kinds and kinds <= {int, float}:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        want = "a number"
    elif kinds == {str}:
        ok, want = isinstance(value, str), "a string"
    else:
        return None
    if not ok:
        return (f"{key}={value!r} ({_type_name(value)}): {key} must be {want} (profiles "
                f"{'/'.join(PROFILE_NAMES)}: {shown}; {row[0]})")
    if (want in ("an integer", "a number") and all(v >= 0 for v in examples)
            and value < 0):
        return (f"{key}={value!r}: {key} must be >= 0 (profiles {'/'.join(PROFILE_NAMES)}: "
                f"{shown}; {row[0]})")
    if want == "a number" and not (value == value and abs(value) != float("inf")):
        return f"{key}={value!r}: {key} must be a finite number"
    return None


def check_parameter_value(key: str, value: Any, default: Any) -> str | None:
    """Why `value` cannot be given for a notebook parameter (None when it can): a profile knob
    is checked against the profile table (:func:`check_knob_value`); another parameter whose
    default is a bool needs a bool, an int default an int, a float default a number (other
    defaults, e.g. strings and None, accept any value)."""
    if key in _KNOB_TABLE:
        return check_knob_value(key, value)
    if value is None or default is None:
        return None
    if isinstance(default, bool):
        if not isinstance(value, bool):
            return f"{key}={value!r} ({_type_name(value)}): {key} must be True or False"
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            return (f"{key}={value!r} ({_type_name(value)}): {key} must be an integer "
                    f"(default {default!r})")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return (f"{key}={value!r} ({_type_name(value)}): {key} must be a number "
                    f"(default {default!r})")
    return None
