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
