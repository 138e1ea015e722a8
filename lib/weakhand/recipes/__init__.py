"""Dataset conversion: shared machinery (base) and the registry of recipes in data_recipes/."""
from __future__ import annotations

import importlib

from .base import (Candidate, RawDataError, RawLayoutError, Reject, Requirement, check_layout,
                   convert)

#: recipe name -> module (each a thin file in data_recipes/)
RECIPES = {
    "rhd": "data_recipes.rhd",
    "stb": "data_recipes.stb",
    "freihand": "data_recipes.freihand",
    "ho3d": "data_recipes.ho3d",
    "dexter_object": "data_recipes.dexter_object",
}


def get_recipe(name: str):
    """The recipe module for `name` (ValueError listing the known ones)."""
    if name not in RECIPES:
        raise ValueError(f"unknown dataset {name!r}; recipes: {sorted(RECIPES)}")
    return importlib.import_module(RECIPES[name])


def convert_dataset(name: str, src, out, **kw) -> dict:
    """Convert raw dataset `name` from `src` into `out/<split>`; see base.convert."""
    return convert(get_recipe(name), src, out, **kw)


__all__ = ["Candidate", "RawDataError", "RawLayoutError", "Reject", "Requirement", "RECIPES",
           "check_layout", "convert", "convert_dataset", "get_recipe"]


def parse_sources(spec: str) -> dict[str, str]:
    """"rhd:/data/RHD_published_v2; stb:/data/STB" -> {"rhd": ..., "stb": ...} (validated).

    NAME=PATH is accepted too (but not in notebook parameter defaults: papermill drops
    parameter lines with a second '=')."""
    out = {}
    for part in (p.strip() for p in spec.replace("\n", ";").split(";")):
        if not part:
            continue
        cut = min((i for i in (part.find(":"), part.find("=")) if i > 0), default=-1)
        if cut < 0 or not part[cut + 1:].strip():
            raise ValueError(f"expected NAME:PATH, got {part!r}")
        name, path = part[:cut].strip(), part[cut + 1:]
        if name not in RECIPES:
            raise ValueError(f"unknown dataset {name!r}; recipes: {sorted(RECIPES)}")
        out[name] = path.strip()
    return out


def convert_sources(spec: str, data_dir, size: int = 128, reuse: bool = True,
                    **kw) -> list[dict]:
    """Convert every `NAME=PATH` of `spec` into data_dir/NAME/<split> (notebook 00's hook).

    With reuse, a dataset already converted from the same source folder, size and options is
    kept. Returns one row per written split: dataset, split, count, rejected, path.
    """
    import json
    from pathlib import Path

    rows = []
    for name, src in parse_sources(spec).items():
        out = Path(data_dir) / name
        manifests = sorted(out.glob("*/manifest.json"))
        want = {**get_recipe(name).OPTIONS, **kw.get("options", {})}
        same = bool(manifests) and all(
            (m := json.loads(p.read_text())["source"]).get("src") == str(Path(src).resolve())
            and m.get("size") == size and m.get("options") == want for p in manifests)
        if reuse and same:
            for p in manifests:
                man = json.loads(p.read_text())
                rows.append({"dataset": name, "split": man["split"], "count": man["count"],
                             "rejected": "(reused)", "path": str(p.parent),
                             "notice": man.get("source", {}).get("pickle_notice", "")})
            continue
        rep = convert_dataset(name, src, out, size=size, **kw)
        for split, r in rep.items():
            if isinstance(r, dict):  # per-split reports; "seconds" and a format "notice" are not
                rows.append({"dataset": name, "split": split, "count": r["written"],
                             "rejected": sum(r["rejected"].values()), "path": str(out / split),
                             "notice": rep.get("notice", "")})
    return rows
