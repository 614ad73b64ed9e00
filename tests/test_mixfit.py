import json

import numpy as np
import pytest

from curate.train.mixfit import (
    OnlineMixture,
    Run,
    RunsError,
    cli_main,
    critical_mixture_ratio,
    fit_cmr,
    load_runs,
)

# True laws L(T, r) = E + A * T^-alpha * exp(c * r): general loss rises with the domain ratio, domain loss falls.
GENERAL = dict(E=2.0, A=0.5 * 1e9**0.3, alpha=0.3, c=1.5)
DOMAIN = dict(E=1.5, A=1.0 * 1e9**0.25, alpha=0.25, c=-2.0)
TOKENS = [1e9, 2e9, 5e9, 1e10, 2e10]
RATIOS = [0.0, 0.1, 0.2, 0.3, 0.5, 0.7]


def law(p, ratio, tokens):
    return p["E"] + p["A"] * np.power(tokens, -p["alpha"]) * np.exp(p["c"] * np.asarray(ratio, dtype=float))


def synthetic_runs(seed=0, noise=0.002):
    rng = np.random.default_rng(seed)
    return [
        Run(r, t, float(law(GENERAL, r, t) + rng.normal(0, noise)), float(law(DOMAIN, r, t) + rng.normal(0, noise)))
        for t in TOKENS
        for r in RATIOS
    ]


def true_cmr(tokens, tolerance):
    grid = np.linspace(0, 1, 200_001)
    ok = law(GENERAL, grid, tokens) <= law(GENERAL, 0.0, tokens) * (1 + tolerance)
    return grid[ok][np.argmin(law(DOMAIN, grid[ok], tokens))]


def write_csv(path, runs):
    rows = [f"{r.ratio},{r.tokens:g},{r.general_loss!r},{r.domain_loss!r}" for r in runs]
    lines = ["ratio,tokens,general_loss,domain_loss"] + rows
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def fit():
    return fit_cmr(synthetic_runs())


def test_fit_recovers_law(fit):
    assert fit.r2_general > 0.99 and fit.r2_domain > 0.99
    assert fit.general.alpha == pytest.approx(GENERAL["alpha"], abs=0.02)
    assert fit.general.c == pytest.approx(GENERAL["c"], abs=0.05) and fit.domain.c == pytest.approx(DOMAIN["c"], abs=0.05)
    grid_r, grid_t = np.meshgrid(np.linspace(0, 1, 11), np.geomspace(1e9, 4e10, 7))  # includes extrapolation to 2x tokens
    for p, predict in ((GENERAL, fit.predict_general), (DOMAIN, fit.predict_domain)):
        assert np.abs(predict(grid_r, grid_t) - law(p, grid_r, grid_t)).max() < 0.01
    assert isinstance(fit.predict_general(0.2, 1e10), float)


@pytest.mark.parametrize("tokens", [5e9, 2e10, 4e10])
@pytest.mark.parametrize("tolerance", [0.01, 0.02, 0.05])
def test_critical_mixture_ratio_matches_true_law(fit, tokens, tolerance):
    cmr = critical_mixture_ratio(fit, tokens, tolerance)
    assert 0.0 <= cmr <= 1.0
    assert cmr == pytest.approx(true_cmr(tokens, tolerance), abs=0.02)


def test_critical_mixture_ratio_properties(fit):
    assert critical_mixture_ratio(fit, 1e10, 0.0) == pytest.approx(0.0, abs=1e-6)
    assert critical_mixture_ratio(fit, 1e10, 10.0) == 1.0  # nothing binds: all domain data
    by_tokens = [critical_mixture_ratio(fit, t, 0.02) for t in (1e9, 1e10, 1e11)]
    assert by_tokens == sorted(by_tokens) and by_tokens[0] < by_tokens[-1]  # CMR grows with the budget
    # The answer sits on the tolerance boundary.
    cmr = critical_mixture_ratio(fit, 1e10, 0.02)
    base = fit.predict_general(0.0, 1e10)
    assert fit.predict_general(cmr, 1e10) == pytest.approx(base * 1.02, rel=1e-9)
    absolute = critical_mixture_ratio(fit, 1e10, 0.02, relative=False)
    assert fit.predict_general(absolute, 1e10) == pytest.approx(base + 0.02, rel=1e-9)
    assert critical_mixture_ratio(fit, 1e10, 0.02, baseline_ratio=0.2) > cmr
    with pytest.raises(ValueError):
        critical_mixture_ratio(fit, 1e10, -0.1)
    with pytest.raises(ValueError):
        critical_mixture_ratio(fit, 0, 0.01)


def test_fit_needs_enough_runs():
    runs = synthetic_runs()
    with pytest.raises(ValueError, match="at least 5 runs"):
        fit_cmr(runs[:3])
    with pytest.raises(ValueError, match="2 distinct mixture ratios"):
        fit_cmr([r for r in runs if r.ratio == 0.3])


def test_load_runs_csv_and_jsonl(tmp_path):
    runs = synthetic_runs()[:8]
    assert load_runs(write_csv(tmp_path / "runs.csv", runs)) == runs
    jl = tmp_path / "runs.jsonl"
    jl.write_text("\n".join(json.dumps({**r.__dict__, "note": "extra columns are ignored"}) for r in runs) + "\n\n")
    assert load_runs(jl) == runs


def test_load_runs_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("ratio,tokens,general_loss\n0.1,1e9,2.5\n")
    with pytest.raises(RunsError, match=r"bad\.csv:1: missing column\(s\) domain_loss"):
        load_runs(bad)
    bad.write_text("ratio,tokens,general_loss,domain_loss\n0.1,1e9,2.5,2.0\n0.2,lots,2.6,1.9\n")
    with pytest.raises(RunsError, match=r"bad\.csv:3: column 'tokens': 'lots' is not a number"):
        load_runs(bad)
    bad.write_text("ratio,tokens,general_loss,domain_loss\n1.5,1e9,2.5,2.0\n")
    with pytest.raises(RunsError, match=r"bad\.csv:2: column 'ratio'.*outside \[0, 1\]"):
        load_runs(bad)
    jl = tmp_path / "bad.jsonl"
    jl.write_text('{"ratio": 0.1, "tokens": 1e9, "general_loss": 2.5, "domain_loss": 2.0}\n{"ratio": 0.2, "tokens": 1e9}\n')
    with pytest.raises(RunsError, match=r"bad\.jsonl:2: missing column\(s\) general_loss, domain_loss"):
        load_runs(jl)
    jl.write_text('{"ratio": 0.1, "tokens": 1e9, "general_loss": true, "domain_loss": 2.0}\n')
    with pytest.raises(RunsError, match=r"bad\.jsonl:1: column 'general_loss'"):
        load_runs(jl)


def test_cli_end_to_end(tmp_path, capsys):
    path = write_csv(tmp_path / "runs.csv", synthetic_runs())
    assert cli_main([str(path), "--tokens", "2e10", "--tolerance", "0.02"]) == 0
    out = capsys.readouterr().out
    cmr = critical_mixture_ratio(fit_cmr(load_runs(path)), 2e10, 0.02)
    assert f"{cmr:.4f}" in out and "critical mixture ratio" in out
    assert "R^2=" in out and "alpha=" in out
    assert abs(cmr - true_cmr(2e10, 0.02)) < 0.02


def test_cli_bad_input(tmp_path, capsys):
    assert cli_main([str(tmp_path / "missing.csv"), "--tokens", "1e9"]) == 2
    assert "error:" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("ratio,tokens\n0.1,1e9\n")
    assert cli_main([str(bad), "--tokens", "1e9"]) == 2
    assert "bad.csv:1: missing column(s) general_loss, domain_loss" in capsys.readouterr().err
    assert cli_main([str(bad)]) == 2  # --tokens is required (argparse usage error)
    assert "--tokens" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# OnlineMixture

DOMAINS = ["web", "code", "math"]


def test_online_mixture_update_rule():
    mix = OnlineMixture(DOMAINS, eta=0.5)
    assert mix.weights == pytest.approx({d: 1 / 3 for d in DOMAINS})
    losses = {"web": 2.0, "code": 3.0, "math": 2.5}
    w = mix.update(losses)
    assert sum(w.values()) == pytest.approx(1.0)
    assert w["code"] > w["math"] > w["web"]  # higher validation loss gains weight
    expected = np.exp(0.5 * np.array([2.0, 3.0, 2.5]))
    assert list(w.values()) == pytest.approx((expected / expected.sum()).tolist())
    w2 = mix.update(losses)  # multiplicative: a second identical round compounds the tilt
    assert w2["code"] / w2["web"] == pytest.approx(np.exp(2 * 0.5 * 1.0))
    assert mix.step == 2


def test_online_mixture_graph_and_initial_weights():
    # Row i: how much training on domain i helps each domain. Code helps math, so math's loss also boosts code.
    graph = np.array([[1.0, 0, 0], [0, 1.0, 0.5], [0, 0, 1.0]])
    mix = OnlineMixture(DOMAINS, {"web": 2, "code": 1, "math": 1}, eta=1.0, graph=graph)
    assert mix.weights["web"] == pytest.approx(0.5)
    w = mix.update({"web": 1.0, "code": 1.0, "math": 1.0})
    raw = np.array([0.5, 0.25, 0.25]) * np.exp(graph @ np.ones(3))
    assert list(w.values()) == pytest.approx((raw / raw.sum()).tolist())
    assert w["code"] > w["math"]


def test_online_mixture_eta_zero_is_identity():
    init = {"web": 0.6, "code": 0.3, "math": 0.1}
    mix = OnlineMixture(DOMAINS, init, eta=0.0)
    for _ in range(3):
        assert mix.update({"web": 1.0, "code": 9.0, "math": 4.0}) == pytest.approx(init)


def test_online_mixture_min_weight():
    mix = OnlineMixture(DOMAINS, eta=2.0, min_weight=0.1)
    for _ in range(10):
        w = mix.update({"web": 1.0, "code": 5.0, "math": 1.5})
        assert min(w.values()) >= 0.1 - 1e-12 and sum(w.values()) == pytest.approx(1.0)
    assert w["web"] == pytest.approx(0.1) and w["math"] == pytest.approx(0.1) and w["code"] == pytest.approx(0.8)
    # The floor applies to initial weights too, keeping the others' proportions.
    mix = OnlineMixture(DOMAINS, {"web": 0.0, "code": 3.0, "math": 1.0}, min_weight=0.2)
    assert mix.weights == pytest.approx({"web": 0.2, "code": 0.6, "math": 0.2})


def test_online_mixture_state_dict_round_trip():
    mix = OnlineMixture(DOMAINS, eta=0.7, min_weight=0.05, graph=np.eye(3) + 0.1)
    rounds = [{"web": 2.0 + i / 10, "code": 3.0 - i / 5, "math": 2.5} for i in range(6)]
    for losses in rounds[:3]:
        mix.update(losses)
    state = json.loads(json.dumps(mix.state_dict()))  # survives a JSON checkpoint
    resumed = OnlineMixture(DOMAINS)
    resumed.load_state_dict(state)
    assert resumed.weights == mix.weights and resumed.step == 3
    for losses in rounds[3:]:
        assert resumed.update(losses) == mix.update(losses)  # bit-exact continuation
    with pytest.raises(ValueError, match="domains"):
        OnlineMixture(["web", "code"]).load_state_dict(state)


def test_online_mixture_validation():
    with pytest.raises(ValueError, match="missing domain"):
        OnlineMixture(DOMAINS).update({"web": 1.0, "code": 1.0})
    with pytest.raises(ValueError, match="unknown domain"):
        OnlineMixture(DOMAINS).update({"web": 1.0, "code": 1.0, "math": 1.0, "wiki": 1.0})
    with pytest.raises(ValueError, match="min_weight"):
        OnlineMixture(DOMAINS, min_weight=0.5)
    with pytest.raises(ValueError, match="graph"):
        OnlineMixture(DOMAINS, graph=np.eye(2))
    with pytest.raises(ValueError, match="distinct"):
        OnlineMixture(["web", "web"])
