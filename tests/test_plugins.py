"""Stages from outside curate: a tiny plugin package, installed the way pip installs one (the package plus a
``.dist-info`` with ``entry_points.txt``, group ``curate.stages``) into a folder on the path, and
``package.module:Class`` names in recipes. Run on the local runner and on the multi-process one."""
import importlib
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import prose, read_output, write_jsonl

from curate.core.recipe import RecipeError, parse_recipe
from curate.core.registry import STAGES, all_stages

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = "curate_demo_plugin"

FILTERS = '''
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate import schema as S
from curate.core.keydedup import KeyDedupStage
from curate.core.stage import Filter, Scorer


@dataclass(kw_only=True)
class HasWord(Filter):
    """Keep documents that contain a word."""

    stage = "has_word"
    reason = "missing_word"
    word: str

    def filter(self, batch, scores):
        return pc.match_substring(batch.column(S.TEXT), self.word)


@dataclass(kw_only=True)
class Shout(Scorer):
    """The number of capital letters."""

    stage = "shout"

    def score(self, batch):
        caps = pc.count_substring_regex(batch.column(S.TEXT), "[A-Z]")
        return {"n_capitals": caps}


@dataclass(kw_only=True)
class FirstWordDedup(KeyDedupStage):
    """Keep one document per first word (a global stage: a shuffle over the whole corpus)."""

    stage = "first_word_dedup"
    reason = "same_first_word"

    def keys(self, batch):
        first = pc.utf8_slice_codeunits(batch.column(S.TEXT), 0, 12)
        return S.hash_strings128(first), None, None


class NotAStage:
    pass


@dataclass(kw_only=True)
class NoHook(Filter):
    stage = "no_hook"


class Undecorated(Filter):
    threshold: float = 0.5

    def filter(self, batch, scores):
        return np.ones(batch.num_rows, dtype=bool)
'''

ENTRY_POINTS = f"""[curate.stages]
has_word = {PKG}.filters:HasWord
shout = {PKG}.filters:Shout
first_word_dedup = {PKG}.filters:FirstWordDedup
length_filter = {PKG}.filters:HasWord
broken_plugin = {PKG}.missing:Nothing
"""


def install_plugin(site) -> str:
    """What ``pip install`` leaves in site-packages: the package and its .dist-info (METADATA, entry_points.txt)."""
    pkg = site / PKG
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "filters.py").write_text(FILTERS)
    (pkg / "boom.py").write_text("raise RuntimeError('the plugin is broken at import')\n")
    info = site / f"{PKG}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {PKG.replace('_', '-')}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    (info / "top_level.txt").write_text(PKG + "\n")
    return str(site)


@pytest.fixture
def plugin(tmp_path):
    """The plugin on sys.path of this process only (not PYTHONPATH): worker processes must get it from curate."""
    site = install_plugin(tmp_path / "site")
    sys.path.insert(0, site)
    importlib.invalidate_caches()
    yield site
    sys.path.remove(site)
    for name in [m for m in sys.modules if m == PKG or m.startswith(PKG + ".")]:
        del sys.modules[name]
    for name in [n for n, cls in STAGES.items() if cls.__module__.startswith(PKG)]:
        del STAGES[name]


def _corpus(tmp_path, n=240):
    docs = []
    for i in range(n):
        text = prose(i % 50, 3 + i % 3)
        if i % 4 == 0:
            text = "Shouting LOUD words here. " + text
        if i % 5:
            text += " keepme"
        docs.append({"id": f"d{i}", "text": text})
    write_jsonl(tmp_path / "in.jsonl", docs)
    return docs


def _recipe(tmp_path, out, first=f"{PKG}.filters:HasWord"):
    return f"""
input: {{path: {tmp_path}/in.jsonl, batch_size: 40}}
output: {{path: {out}, write_rejected: true}}
stages:
  - {first}: {{word: "keepme"}}
  - has_word: {{word: "river", name: river}}
  - shout: {{}}
  - first_word_dedup: {{}}
"""


def _expected(docs):
    """What the recipe keeps, computed here in plain Python."""
    kept, seen = [], set()
    for d in docs:
        t = d["text"]
        if "keepme" not in t or "river" not in t:
            continue
        if t[:12] in seen:
            continue
        seen.add(t[:12])
        kept.append(d["id"])
    return kept


def test_entry_points_and_references_resolve_and_are_listed(plugin):
    registry = all_stages()
    assert {"has_word", "shout", "first_word_dedup", "broken_plugin"} <= set(registry)
    assert registry["has_word"].__module__ == f"{PKG}.filters"
    assert registry[f"{PKG}.filters:Shout"] is registry["shout"]
    # a plugin cannot take a built-in name
    assert registry["length_filter"].__module__ == "curate.stages.length"
    from curate.core.registry import origin, plugin_clashes

    assert origin("has_word") == f"plugin curate-demo-plugin ({PKG}.filters:HasWord)"
    assert any(c.startswith("length_filter (from curate-demo-plugin)") for c in plugin_clashes())


@pytest.mark.parametrize("ref, message", [
    ("nosuch_pkg_xyz.mod:Thing", "no module named 'nosuch_pkg_xyz.mod'"),
    (f"{PKG}.filters:Missing", "module 'curate_demo_plugin.filters' has no 'Missing' (its stage classes: FirstWordDedup, "
                               "HasWord, NoHook, Shout, Undecorated)"),
    (f"{PKG}.filters:NotAStage", "curate_demo_plugin.filters.NotAStage is not a stage class: subclass"),
    (f"{PKG}.filters:NoHook", "NoHook is a Filter but does not define filter()"),
    (f"{PKG}.filters:Undecorated", "Undecorated declares threshold but these are not parameters: decorate the class with "
                                   "@dataclass(kw_only=True)"),
    (f"{PKG}.boom:Anything", "importing module 'curate_demo_plugin.boom' failed: RuntimeError: the plugin is broken at import"),
    ("curate.core.stage:Filter", "Filter is a base class"),
    ("broken_plugin", "stage 'broken_plugin' (plugin curate-demo-plugin, curate_demo_plugin.missing:Nothing): cannot load it: "
                      "ModuleNotFoundError"),
])
def test_a_bad_stage_name_is_a_recipe_error_with_its_line(plugin, tmp_path, ref, message):
    (tmp_path / "in.jsonl").write_text('{"text": "x"}\n')
    text = f"input: {tmp_path}/in.jsonl\noutput: {tmp_path}/out\nstages:\n  - length_filter: {{}}\n  - {ref}: {{}}\n"
    with pytest.raises(RecipeError) as e:
        parse_recipe(text, "r.yaml")
    assert len(e.value.problems) == 1
    assert e.value.problems[0].startswith("r.yaml:5: "), e.value.problems
    assert message in e.value.problems[0], e.value.problems[0]


def test_plugin_params_are_checked_like_builtin_ones(plugin, tmp_path):
    (tmp_path / "in.jsonl").write_text('{"text": "x"}\n')
    text = f"input: {tmp_path}/in.jsonl\noutput: {tmp_path}/out\nstages:\n  - has_word: {{wrod: 3}}\n"
    with pytest.raises(RecipeError) as e:
        parse_recipe(text, "r.yaml")
    assert e.value.problems == ["r.yaml:4: stage 'has_word': unknown parameter 'wrod' (did you mean 'word'?)",
                                "r.yaml:4: stage 'has_word': missing required parameter 'word'"]


@pytest.mark.parametrize("workers", [1, 2])
def test_plugin_stages_run_on_the_local_and_the_multiprocess_runner(plugin, tmp_path, workers):
    import curate

    docs = _corpus(tmp_path)
    before = os.environ.get("PYTHONPATH")
    res = curate.run(_write(tmp_path, _recipe(tmp_path, tmp_path / "out")), workers=workers)
    assert os.environ.get("PYTHONPATH") == before  # the plugin's folder was on it for the run only
    assert res.ledger_ok and not res.failed
    assert res.names == ["read", "has_word", "river", "shout", "input_ids", "first_word_dedup"]
    st = res.stats
    assert st["has_word"].dropped == {"missing_word": sum("keepme" not in d["text"] for d in docs)}
    assert st["river"].dropped["missing_word"] > 0 and st["first_word_dedup"].dropped["same_first_word"] > 0
    data = res.data()
    assert data.column("id").to_pylist() == _expected(docs)
    caps = {d["id"]: sum(c.isupper() for c in d["text"]) for d in docs}
    assert data.column("n_capitals").to_pylist() == [caps[i] for i in data.column("id").to_pylist()]
    assert set(res.rejected().column("drop_stage").to_pylist()) == {"has_word", "river", "first_word_dedup"}


def _write(tmp_path, text):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return str(path)


def test_curate_stages_lists_an_installed_plugin(plugin, capsys):
    from curate.cli import main

    assert main(["stages"]) == 0
    out = capsys.readouterr().out
    assert f"has_word  [filter]  Keep documents that contain a word.  (plugin curate-demo-plugin ({PKG}.filters:HasWord))" \
        in out
    assert "    word: str = 'required'" in out
    assert "first_word_dedup  [global]" in out
    assert "broken_plugin  [cannot load]" in out and "ModuleNotFoundError" in out
    assert "ignored plugin stage: length_filter (from curate-demo-plugin)" in out
    assert "length_filter  [filter]" in out and "exact_dedup  [global]" in out  # the built-in ones as before


def test_a_module_in_the_current_folder_is_found_by_the_console_script(tmp_path):
    """``curate run`` (the installed script, whose sys.path lacks the current folder) finds ``my_rules:Cls``
    beside the recipe, as uvicorn finds ``module:app``."""
    script = os.path.join(os.path.dirname(sys.executable), "curate")
    if not os.path.exists(script):
        pytest.skip("no curate console script in this environment")
    (tmp_path / "my_rules.py").write_text(textwrap.dedent('''
        from dataclasses import dataclass
        import pyarrow.compute as pc
        from curate.core.stage import Mapper

        @dataclass(kw_only=True)
        class Upper(Mapper):
            """Upper-case the text."""
            def map(self, batch):
                return pc.utf8_upper(batch.column("text"))
    '''))
    write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "hello there"}, {"id": "b", "text": "general kenobi"}])
    (tmp_path / "r.yaml").write_text(f"input: {tmp_path}/in.jsonl\noutput: {tmp_path}/out\nstages:\n  - my_rules:Upper\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([script, "run", "r.yaml", "--quiet"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "Upper" in r.stdout
    assert read_output(tmp_path / "out").column("text").to_pylist() == ["HELLO THERE", "GENERAL KENOBI"]


def test_a_referenced_scorer_names_its_columns_after_its_stage(plugin, tmp_path):
    from curate.score import score_recipe

    (tmp_path / "in.jsonl").write_text('{"text": "Hello River"}\n')
    r = score_recipe([str(tmp_path / "in.jsonl")], [f"{PKG}.filters:Shout"], str(tmp_path / "out"))
    assert [name for name, _ in r.stages] == ["shout"]
    with pytest.raises(RecipeError, match="no module named 'nosuch_pkg_xyz'"):
        score_recipe([str(tmp_path / "in.jsonl")], ["nosuch_pkg_xyz:Thing"], str(tmp_path / "out"))
