"""``curate score``: attach score columns to a dataset without dropping anything.

Each ``--scorer NAME[=MODEL]`` is a registered stage run in annotate mode: filters keep every
document and add their statistic columns (``add_scores``) and their would-be drop reason;
scorers add their columns; ``=MODEL`` sets the stage's ``model`` parameter.
"""
from __future__ import annotations

import dataclasses

from curate.core.recipe import OutputSpec, Recipe, RecipeError, configure
from curate.core.registry import StageLoadError, all_stages, is_reference
from curate.io.readers import InputSpec


def scoring_stage(spec: str):
    name, _, model = spec.partition("=")
    registry = all_stages()
    if name not in registry:
        import difflib

        close = difflib.get_close_matches(name, list(registry), n=1)
        raise RecipeError([f"--scorer {spec}: unknown stage {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")])
    try:
        cls = registry[name]
    except StageLoadError as e:
        raise RecipeError([f"--scorer {spec}: {e}"]) from None
    if is_reference(name):  # 'package.module:Class': columns are named after the class's stage name
        name = cls.stage or cls.__name__
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    params: dict = {}
    if "mode" in fields:
        params["mode"] = "annotate"
    if "add_scores" in fields:
        params["add_scores"] = True
    if model:
        if "model" not in fields:
            raise RecipeError([f"--scorer {spec}: stage {name!r} takes no model"])
        params["model"] = model
    obj, problems = configure(cls, params, "--scorer", {}, (), f"scorer {name!r}")
    if problems:
        raise RecipeError(problems)
    if getattr(obj, "kind", "") == "mapper":
        raise RecipeError([f"--scorer {spec}: {name!r} rewrites text; use it in a recipe, not as a scorer"])
    return name, obj


def score_recipe(inputs: list[str], scorers: list[str], output: str, **input_options) -> Recipe:
    import os

    from curate.core.recipe import _input_problems
    from curate.core.safety import UserError, resolve_input

    problems = [f"input: {p}" for pattern in inputs for p in _input_problems(pattern, "auto")]
    if problems:
        raise RecipeError(problems)
    stages = [scoring_stage(s) for s in scorers]
    names = [n for n, _ in stages]
    if len(set(names)) != len(names):
        raise RecipeError([f"each scorer once: {names}"])
    try:
        paths = [p if "://" in p else resolve_input(os.path.abspath(p)) for p in inputs]
    except UserError as e:
        raise RecipeError([str(e)]) from None
    spec = InputSpec(path=paths, **input_options)
    return Recipe("curate score", spec, OutputSpec(path=output if "://" in output else os.path.abspath(output)), stages)
