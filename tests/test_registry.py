"""The lazy stage registry knows every built-in stage, and each module registers what it claims."""
import importlib
import subprocess
import sys

from curate.core.registry import MODULES, STAGES, all_stages


def test_every_builtin_module_registers_its_stages():
    for module in set(MODULES.values()):
        importlib.import_module(module)
    builtin = {n for n, cls in STAGES.items() if cls.__module__.startswith(("curate.stages", "curate.scorers", "curate.refine"))}
    assert builtin == set(MODULES), builtin ^ set(MODULES)
    for name, module in MODULES.items():
        assert STAGES[name].__module__ == module
    assert set(MODULES) <= set(all_stages())


def test_a_recipe_imports_only_its_stages():
    code = ("import sys; from curate.core.recipe import parse_recipe; import tempfile, os; d = tempfile.mkdtemp(); "
            "open(os.path.join(d, 'a.jsonl'), 'w').write('{\"text\": \"x\"}\\n'); "
            "parse_recipe(f'input: {d}/a.jsonl\\noutput: {d}/o\\nstages:\\n  - length_filter: {{}}\\n'); "
            "print(sorted(m for m in sys.modules if m.startswith(('curate.stages', 'curate.scorers'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "curate.stages.length" in out and "heuristics" not in out and "fasttext" not in out
