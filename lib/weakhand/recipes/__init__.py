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
    """"rhd:/data/RHD_published_v2; stb:/data/STB" -> {"rhd": ..., "stb": ...} (validated);
    per-dataset recipe options are dropped here (see :func:`parse_source_options`).

    NAME=PATH is accepted too (but not in notebook parameter defaults: papermill drops
    parameter lines with a second '=')."""
    return {name: path for name, (path, _) in parse_source_options(spec).items()}


def parse_source_options(spec: str) -> dict[str, tuple[str, dict[str, str]]]:
    """Like :func:`parse_sources`, with recipe options in brackets after the name:
    ``"rhd:/data/RHD; stb[root=wrist]:/data/STB"`` -> {"rhd": ("/data/RHD", {}),
    "stb": ("/data/STB", {"root": "wrist"})} (the same options as ``weakhand data convert --opt``)."""
    out = {}
    for part in (p.strip() for p in spec.replace("\n", ";").split(";")):
        if not part:
            continue
        options: dict[str, str] = {}
        head = part
        if "[" in part.split(":", 1)[0] or "[" in part.split("=", 1)[0]:
            lb, rb = part.find("["), part.find("]")
            if rb < lb:
                raise ValueError(f"expected NAME[OPT=VALUE,...]:PATH, got {part!r}")
            for item in (x.strip() for x in part[lb + 1:rb].split(",") if x.strip()):
                k, eq, v = (y.strip() for y in item.partition("="))
                if not eq or not k:
                    raise ValueError(f"recipe option {item!r} in {part!r} is not OPT=VALUE")
                options[k] = v
            head = part[:lb] + part[rb + 1:]
        cut = min((i for i in (head.find(":"), head.find("=")) if i > 0), default=-1)
        if cut < 0 or not head[cut + 1:].strip():
            raise ValueError(f"expected NAME:PATH, got {part!r}")
        name, path = head[:cut].strip(), head[cut + 1:]
        if name not in RECIPES:
            raise ValueError(f"unknown dataset {name!r}; recipes: {sorted(RECIPES)}")
        out[name] = (path.strip(), options)
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
    for name, (src, own) in parse_source_options(spec).items():
        out = Path(data_dir) / name
        manifests = sorted(out.glob("*/manifest.json"))
        options = {**kw.get("options", {}), **own}
        want = {**get_recipe(name).OPTIONS, **options}
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
        rep = convert_dataset(name, src, out, size=size, **{**kw, "options": options})
        for split, r in rep.items():
            if isinstance(r, dict):  # per-split reports; "seconds" and a format "notice" are not
                rows.append({"dataset": name, "split": split, "count": r["written"],
                             "rejected": sum(r["rejected"].values()), "path": str(out / split),
                             "notice": rep.get("notice", "")})
    return rows
