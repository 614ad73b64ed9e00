"""curate picks Arrow's allocator (jemalloc, which returns freed memory) unless the user chose one."""
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="jemalloc is the choice on Linux only")

CODE = ("import curate, pyarrow as pa, pyarrow.compute as pc; "
        "pc.add(pa.array([1]), 1); print(pa.default_memory_pool().backend_name)")


def _backend(env_value=None, code=CODE):
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    if env_value:
        env["ARROW_DEFAULT_MEMORY_POOL"] = env_value
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_curate_chooses_jemalloc():
    assert _backend() == "jemalloc"


def test_the_users_choice_wins():
    assert _backend("system") == "system"


def test_pyarrow_loaded_first_still_switches_its_default():
    code = "import pyarrow as pa; import curate.schema; print(pa.default_memory_pool().backend_name)"
    assert _backend(code=code) == "jemalloc"


def test_worker_processes_inherit_the_choice():
    code = ("import curate, subprocess, sys; print(subprocess.run([sys.executable, '-c', "
            "'import pyarrow as pa; print(pa.default_memory_pool().backend_name)'], capture_output=True, "
            "text=True).stdout.strip())")
    assert _backend(code=code) == "jemalloc"


def test_worker_processes_get_two_malloc_arenas_unless_the_user_chose():
    code = "import curate, os; print(os.environ['MALLOC_ARENA_MAX'])"
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}  # this process imported curate too
    for given, want in ((None, "2"), ("4", "4")):
        if given:
            env["MALLOC_ARENA_MAX"] = given
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == want
