"""Recipes are validated as a whole before anything runs; messages name file:line."""
import pytest

from curate.core.recipe import RecipeError, load_recipe


def _problems(tmp_path, text):
    (tmp_path / "in.jsonl").write_text('{"text": "x"}\n')
    p = tmp_path / "r.yaml"
    p.write_text(text.replace("INPUT", str(tmp_path / "in.jsonl")))
    with pytest.raises(RecipeError) as e:
        load_recipe(str(p))
    return e.value.problems, str(p)


def test_unknown_stage_param_and_type_all_reported_with_lines(tmp_path):
    problems, path = _problems(tmp_path, """input: INPUT
output: out
stages:
  - lenght_filter: {min_words: 3}
  - length_filter:
      min_word: 3
  - sample: {fraction: "half"}
""")
    assert len(problems) == 3
    assert problems[0] == f"{path}:4: unknown stage 'lenght_filter' (did you mean 'length_filter'?)"
    assert problems[1] == f"{path}:6: stage 'length_filter': unknown parameter 'min_word' (did you mean 'min_words'?)"
    assert problems[2].startswith(f"{path}:7: stage 'sample': parameter 'fraction' must be float")


def test_missing_input_and_bad_values(tmp_path):
    problems, path = _problems(tmp_path, """input:
  path: /nonexistent/*.jsonl
  batch_size: many
output: out
stages:
  - sample: {fraction: 1.5}
""")
    assert f"{path}:2: input: '/nonexistent/*.jsonl' matches no file" in problems
    assert any(p.startswith(f"{path}:3: input: parameter 'batch_size' must be int") for p in problems)
    assert f"{path}:6: stage 'sample': parameter 'fraction' must be <= 1, got 1.5" in problems


def test_valid_recipe_and_overrides(tmp_path):
    (tmp_path / "in.jsonl").write_text('{"text": "x"}\n')
    p = tmp_path / "r.yaml"
    p.write_text(f"input: {tmp_path}/in.jsonl\noutput: out\nstages:\n  - sample: {{fraction: 1}}\n  - sample: {{name: again}}\n")
    r = load_recipe(str(p), output_override=str(tmp_path / "elsewhere"))
    assert [n for n, _ in r.stages] == ["sample", "again"]
    assert r.stages[0][1].fraction == 1.0 and r.output.path == str(tmp_path / "elsewhere")


def test_yaml_syntax_error_names_the_line(tmp_path):
    problems, path = _problems(tmp_path, "input: INPUT\noutput: out\nstages:\n  - sample: {fraction: 1\n")
    assert problems[0].startswith(f"{path}:") and "not valid YAML" in problems[0]
