"""Which datasets a run studies: the notebooks' ``source`` and ``target`` parameters, resolved once.

Every notebook that reads training or test data declares ``source`` and ``target`` (defaults: the
synthetic pair ``synth_render`` → ``synth_sensor``) and opens them with :func:`open_study`::

    study = study_data.open_study(run, source, target, notebook="20_train_stage1_pose")
    study.require({"source train": ("2d", "3d"), "target test": ("3d",)})
    dl = loaders(study.data_dir, size, train=study.data("source train"), val=study.data("source val"), ...)

A parameter names a dataset folder under the run's ``data/`` (what notebook 00 or
``weakhand data convert`` wrote), optionally with its splits: ``"rhd"``, ``"rhd:test=eval"``,
``"stb:train=train,test=test"``. Roles and their default splits:

- ``source train`` / ``source test``: ``train`` / ``test`` (else ``eval``);
- ``source val``: ``val`` when the dataset has one, else the last 10 % of the training split
  (at most 1,000 samples), which ``source train`` then leaves out;
- ``target train`` / ``target test``: as the source's.

The checks run before anything trains and fail with :class:`StudyError`, whose message names the
dataset, the split and what is missing: a split that is not there, a label a notebook needs, a
variant whose labels the target lacks (with the variants that can run), and a source and target
whose joint 0 differs (STB's palm centre against the wrist the models predict).

**The target's 3D stays hidden**: :meth:`Study.weak_target` is the target training split with
``kp3d`` NaN and ``has_3d`` False (a real target ships 3D); only :meth:`Study.full3d_target`
(the upper bound) reads its 3D, or the synthetic target's labelled twin when 3D was withheld on disk.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..data.format import MANIFEST, HandData, data_view, load_dataset

#: the embedded default pair (notebook 00's synthetic datasets)
DEFAULT_SOURCE = "synth_render"
DEFAULT_TARGET = "synth_sensor"
#: role -> candidate split names, first present wins
SPLIT_CANDIDATES = {"train": ("train",), "val": ("val",), "test": ("test", "eval")}
#: the splits notebook 00 writes for the synthetic pair (its missing-artifact errors name 00)
SYNTHETIC_SPLITS = {DEFAULT_SOURCE: {"train": "train", "val": "val", "test": "test"},
                    DEFAULT_TARGET: {"train": "train", "test": "test"}}
ROLES = ("source train", "source val", "source test", "target train", "target test")
#: a source without a validation split holds out this fraction of its training split (at most VAL_MAX)
VAL_FRACTION, VAL_MAX = 0.1, 1000
#: label name -> (per-sample flag array, what the message calls it)
LABELS = {"2d": ("has_2d", "2D keypoints"), "3d": ("has_3d", "3D labels"), "depth": ("has_depth", "depth maps")}


class StudyError(ValueError):
    """A source/target choice the notebook cannot run with (the message says what to do; no arrays)."""


@dataclass(frozen=True)
class SplitRef:
    """One resolved role: dataset folder `dataset`, split folder `split` under ``data/``, and
    `rows` (start, stop) sample indices when the role uses part of the split (a held-out
    validation slice); no arrays."""
    dataset: str
    split: str
    rows: tuple[int, int] | None = None

    @property
    def key(self) -> str:
        """``dataset/split`` (+ ``[a:b]`` for a slice): how tables and metrics name it (no arrays)."""
        base = f"{self.dataset}/{self.split}"
        return base + (f"[{self.rows[0]}:{self.rows[1]}]" if self.rows else "")


def parse_spec(spec: str, what: str) -> tuple[str, dict[str, str]]:
    """``"rhd"`` / ``"rhd:test=eval,train=train"`` -> ("rhd", {"test": "eval", ...}); StudyError
    naming the parameter `what` on a malformed value (no arrays)."""
    if not isinstance(spec, str) or not spec.strip():
        raise StudyError(f"{what}: expected a dataset name under data/ such as 'synth_render' or "
                         f"'rhd:test=eval', got {spec!r}")
    name, _, rest = spec.strip().partition(":")
    name = name.strip()
    if not name or "/" in name or name.startswith("."):
        raise StudyError(f"{what}: {spec!r} does not start with a dataset folder name")
    splits: dict[str, str] = {}
    for item in (p.strip() for p in rest.split(",") if p.strip()):
        role, eq, split = (x.strip() for x in item.partition("="))
        if not eq or role not in SPLIT_CANDIDATES or not split or "/" in split:
            raise StudyError(f"{what}: {item!r} in {spec!r} is not ROLE=SPLIT with ROLE one of "
                             f"{', '.join(SPLIT_CANDIDATES)}")
        splits[role] = split
    return name, splits


@dataclass
class Study:
    """The resolved source and target of a run (no arrays until :meth:`data` is called).

    data_dir: the run's ``data/`` folder; source / target: dataset folder names; refs: role ->
    :class:`SplitRef` for the roles of :data:`ROLES` that exist."""
    data_dir: Path
    source: str
    target: str
    refs: dict[str, SplitRef]
    notebook: str = ""
    _cache: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ names and data
    def key(self, role: str) -> str:
        """``dataset/split`` of a role (see :attr:`SplitRef.key`; no arrays)."""
        return self._ref(role).key

    def _ref(self, role: str) -> SplitRef:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        if role not in self.refs:
            side = role.split()[0]
            raise StudyError(f"{side} {getattr(self, side)}: no {role.split()[1]} split under "
                             f"{self.data_dir / getattr(self, side)} ({self._listing(getattr(self, side))})")
        return self.refs[role]

    def split_name(self, role: str) -> str:
        """The split folder's name of a role (``train``, ``eval``…; a held-out slice names its split; no arrays)."""
        return self._ref(role).split

    def has(self, role: str, label: str) -> bool:
        """Whether the role's samples carry `label` ("2d", "3d", "depth") on at least one sample (bool)."""
        return role in self.refs and self.data(role).label_counts.get(LABELS[label][0], 0) > 0

    def path(self, role: str) -> Path:
        """Folder of the split behind a role (a held-out slice shares its split's folder; no arrays)."""
        ref = self._ref(role)
        return self.data_dir / ref.dataset / ref.split

    def data(self, role: str) -> HandData:
        """The split of a role, memory-mapped (a slice view for a held-out validation set and the
        training split it was cut from); opened once per Study. Arrays as :class:`HandData`: rgb
        (N, H, W, 3), kp2d (N, 21, 2) px, kp3d (N, 21, 3) mm, depth in ``depth_scale_mm`` units."""
        if role not in self._cache:
            ref = self._ref(role)
            d = load_dataset(self.path(role))
            self._cache[role] = d if ref.rows is None else data_view(d, slice(*ref.rows))
        return self._cache[role]

    def manifest(self, role: str) -> dict:
        """The manifest of a role's split (no arrays)."""
        return json.loads((self.path(role) / MANIFEST).read_text())

    def is_synthetic(self, role: str) -> bool:
        """Whether the role's split was made by the synthetic generator (notebook 00); bool."""
        return (self.manifest(role).get("source") or {}).get("kind") == "synthetic"

    def weak_target(self) -> HandData:
        """The target training split as weak supervision sees it: 2D, visibility, depth, mask and
        K; ``kp3d`` (N, 21, 3) all NaN and ``has_3d`` (N,) False whatever the split stores."""
        return data_view(self.data("target train"), hide_3d=True, name=f"{self.target}_weak")

    def full3d_target(self, labelled_twin=None) -> HandData:
        """The target training split with its 3D labels (the full-3D upper bound only). A synthetic
        target whose 3D was withheld on disk gets its labelled twin ``<split>_3d`` (regenerated by
        `labelled_twin(src, out)`, :func:`weakhand.synth.dataset.make_labelled_twin`); any other
        target must carry 3D (StudyError otherwise). kp3d (N, 21, 3) mm."""
        d = self.data("target train")
        counts = d.label_counts
        if counts.get("has_3d", 0) > 0:
            return d
        if self.is_synthetic("target train") and labelled_twin is not None:
            src = self.path("target train")
            out = src.with_name(src.name + "_3d")
            labelled_twin(src, out)
            return load_dataset(out)
        raise StudyError(f"target {self.key('target train')} has no 3D labels: the variant full3d needs them; "
                         "leave it out of the variant list")

    def test_data(self, *labels: str) -> dict[str, HandData]:
        """The notebooks' test sets {"render test": source test, "sensor test": target test} (the
        metric keys keep the synthetic names), each only when it carries every one of `labels`
        ("2d", "3d", "depth"): a target test split without depth maps cannot score a depth model.
        Arrays as :meth:`data`: kp2d (N, 21, 2) px, kp3d (N, 21, 3) mm."""
        roles = {"render test": "source test", "sensor test": "target test"}
        return {name: self.data(role) for name, role in roles.items() if all(self.has(role, lab) for lab in labels)}

    def target_training_data(self, variants: Iterable[str], table: Mapping, labelled_twin=None) -> dict[str, HandData]:
        """The target training sets the `variants` (rows of a method's ``VARIANTS`` `table`) read,
        by the name in ``Variant.target``: always "weak" (:meth:`weak_target`: no 3D), plus
        "full3d" (:meth:`full3d_target`) when a variant is the upper bound. "teacher" sets are the
        notebooks' (pseudo-labels put on the weak view); "source" needs no target set. Weak kp3d
        (N, 21, 3) is all NaN."""
        out = {"weak": self.weak_target()}
        if any(table[v].target == "full3d" for v in variants):
            out["full3d"] = self.full3d_target(labelled_twin)
        return out

    def source_constant_split(self) -> Path:
        """Folder of the source's whole training split (held-out validation rows included): where
        the constant pose, the mean depth profile and the BMC limits are fitted (no arrays)."""
        ref = self._ref("source train")
        return self.data_dir / ref.dataset / ref.split

    def provenance(self) -> dict:
        """{"source", "target", role: "dataset/split", "root"}: what results record (no arrays)."""
        return {"source": self.source, "target": self.target, **{r: ref.key for r, ref in self.refs.items()},
                "root": self.manifest("source train").get("root", "wrist")}

    def describe(self) -> list[dict]:
        """One row per role for a notebook table: split, samples, samples with 2D / 3D / depth,
        joint 0, crop size px, focal length range px, depth unit mm (no arrays)."""
        import numpy as np

        rows = []
        for role in ROLES:
            if role not in self.refs:
                continue
            d, m = self.data(role), self.manifest(role)
            c = d.label_counts
            f = np.asarray(d.arrays["K"][:, 0, 0], np.float64)
            rows.append({"role": role, "split": self.key(role), "samples": d.count, "2D": c.get("has_2d", 0),
                         "3D": c.get("has_3d", 0), "depth": c.get("has_depth", 0),
                         "left / right": f"{c.get('left', 0)} / {c.get('right', 0)}", "joint 0": m.get("root", "wrist"),
                         "crop px": "×".join(str(x) for x in d.image_size),
                         "focal px": f"{f.min():.0f}–{f.max():.0f}" if f.size else "—",
                         "depth unit mm": d.depth_scale_mm})
        return rows

    # ------------------------------------------------------------------ checks
    def _listing(self, dataset: str) -> str:
        folder = self.data_dir / dataset
        if not folder.is_dir():
            return "no such folder"
        have = sorted(p.parent.name for p in folder.glob(f"*/{MANIFEST}"))
        return "splits there: " + (", ".join(have) if have else "none")

    def require(self, needs: Mapping[str, Sequence[str]], why: str = "") -> None:
        """StudyError unless every role in `needs` exists and carries each label ("2d", "3d",
        "depth") on at least one sample; the message names the dataset, the split, the label and `why` (no arrays)."""
        problems = []
        for role, labels in needs.items():
            ref = self._ref(role)
            counts = self.data(role).label_counts
            for lab in labels:
                flag, words = LABELS[lab]
                if counts.get(flag, 0) == 0:
                    problems.append(f"{role.split()[0]} {ref.key} has no {words}"
                                    + (f" ({self.notebook} needs them for the {role} split{': ' + why if why else ''})"
                                       if self.notebook else ""))
        if problems:
            raise StudyError("; ".join(problems))

    def check_variants(self, variants: Iterable[str], table: Mapping, parameter: str) -> None:
        """StudyError, before any training, when the target training split lacks a label that a
        requested variant needs (``table[v].target_labels``: "2d", "depth", "3d"). The message
        names the split, the missing label, the variants that need it and the ``-p`` line that
        runs the others. A synthetic target's withheld 3D counts as present (its twin supplies it); no arrays."""
        variants = list(variants)
        counts = self.data("target train").label_counts
        have = {lab for lab, (flag, _) in LABELS.items() if counts.get(flag, 0) > 0}
        if "3d" not in have and self.is_synthetic("target train"):
            have.add("3d")
        missing: dict[str, list[str]] = {}
        for v in variants:
            for lab in table[v].target_labels:
                if lab not in have:
                    missing.setdefault(lab, []).append(v)
        if not missing:
            return
        blocked = {v for vs in missing.values() for v in vs}
        others = [v for v in variants if v not in blocked]
        why = "; ".join(f"target {self.key('target train')} has no {LABELS[lab][1]}: "
                        + (f"the variant {vs[0]} needs them" if len(vs) == 1 else f"the variants {', '.join(vs)} need them")
                        for lab, vs in missing.items())
        hint = (f"run the others with -p {parameter}={','.join(others)}" if others
                else f"none of the requested variants can run on this target (-p {parameter}=...)")
        raise StudyError(f"{why}; {hint}")

    def check_roots(self) -> None:
        """StudyError when the source's and the target's joint 0 differ (e.g. STB converted with its
        palm centre against RHD's wrist): 2D labels, root-relative depth and the constant pose
        would then mean different points (no arrays)."""
        roots = {}
        for role in ("source train", "target train", "target test"):
            if role in self.refs:
                roots[role] = self.manifest(role).get("root", "wrist")
        if len(set(roots.values())) > 1:
            got = ", ".join(f"{r} {self.key(r)}: {v}" for r, v in roots.items())
            raise StudyError(f"joint 0 differs between source and target ({got}); the models predict depth "
                             "relative to the wrist: convert STB with `weakhand data convert stb --opt root=wrist` "
                             "(joint 0 = the wrist extrapolated from the palm centre) so both sides use the wrist")


def _resolve_side(data_dir: Path, name: str, overrides: Mapping[str, str], side: str,
                  roles: Sequence[str], what: str) -> dict[str, SplitRef]:
    folder = data_dir / name
    if not folder.is_dir():
        have = sorted(p.name for p in data_dir.iterdir() if p.is_dir()) if data_dir.is_dir() else []
        raise StudyError(f"{what}: no dataset {name!r} under {data_dir} (datasets there: "
                         f"{', '.join(have) or 'none'}); convert it with notebook 00's real_data or "
                         f"`weakhand data convert {name} --src RAW --out {folder}`")
    present = {p.parent.name for p in folder.glob(f"*/{MANIFEST}")}
    refs: dict[str, SplitRef] = {}
    for role in roles:
        if role in overrides:
            if overrides[role] not in present:
                raise StudyError(f"{what}: {name} has no split {overrides[role]!r} (splits there: "
                                 f"{', '.join(sorted(present)) or 'none'})")
            refs[role] = SplitRef(name, overrides[role])
            continue
        split = next((s for s in SPLIT_CANDIDATES[role] if s in present), None)
        if split is not None:
            refs[role] = SplitRef(name, split)
    return {f"{side} {r}": ref for r, ref in refs.items()}


def open_study(run_or_dir, source: str = DEFAULT_SOURCE, target: str = DEFAULT_TARGET, *,
               notebook: str = "") -> Study:
    """Resolve `source` and `target` (parameter strings, see the module doc) under the run's
    ``data/`` (`run_or_dir`: a :class:`~weakhand.workbook.runs.Run` or a run folder). Raises
    StudyError before anything is read when a dataset or a train/test split is missing, or when
    source and target disagree on joint 0. A source without a ``val`` split gets a held-out slice
    (the last :data:`VAL_FRACTION` of its training split, at most :data:`VAL_MAX` samples); no arrays."""
    run_dir = Path(getattr(run_or_dir, "path", run_or_dir))
    data_dir = run_dir / "data"
    src_name, src_over = parse_spec(source, "source")
    tgt_name, tgt_over = parse_spec(target, "target")
    if hasattr(run_or_dir, "require"):  # notebook 00's datasets: the run's usual missing-artifact error
        for name, over, roles in ((src_name, src_over, ("train", "val", "test")), (tgt_name, tgt_over, ("train", "test"))):
            if name in SYNTHETIC_SPLITS:
                for role in roles:
                    split = over.get(role, SYNTHETIC_SPLITS[name].get(role))
                    if split:
                        run_or_dir.require(f"data/{name}/{split}/{MANIFEST}", producer="00_make_data")
    refs = {**_resolve_side(data_dir, src_name, src_over, "source", ("train", "val", "test"), "source"),
            **_resolve_side(data_dir, tgt_name, tgt_over, "target", ("train", "test"), "target")}
    for role in ("source train", "target train", "target test"):
        if role not in refs:
            side, split = role.split()
            name = src_name if side == "source" else tgt_name
            have = sorted(p.parent.name for p in (data_dir / name).glob(f"*/{MANIFEST}"))
            raise StudyError(f"{side} {name}: no {split} split (splits there: {', '.join(have) or 'none'}); "
                             f"name one with {side}='{name}:{split}=SPLIT'")
    if "source val" not in refs:
        tr = refs["source train"]
        n = int(json.loads((data_dir / tr.dataset / tr.split / MANIFEST).read_text())["count"])
        n_val = min(VAL_MAX, max(1, int(round(n * VAL_FRACTION)))) if n > 1 else 0
        if n_val == 0:
            raise StudyError(f"source {tr.key} has {n} sample(s): too few to hold out a validation set")
        refs["source val"] = SplitRef(tr.dataset, tr.split, (n - n_val, n))
        refs["source train"] = SplitRef(tr.dataset, tr.split, (0, n - n_val))
    study = Study(data_dir, src_name, tgt_name, refs, notebook)
    study.check_roots()
    return study


__all__ = ["DEFAULT_SOURCE", "DEFAULT_TARGET", "ROLES", "Study", "StudyError", "SplitRef", "open_study",
           "parse_spec"]
