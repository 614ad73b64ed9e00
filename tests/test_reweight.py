import math

import pytest
import torch
import torch.nn.functional as F

from curate.train.reweight import (
    DEFAULT_R,
    STRATEGIES,
    ReweightConfig,
    per_sample_loss,
    sample_weights,
    weighted_loss,
)

LOSSES = torch.tensor([1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0])  # sorted, evenly spread: h = -1 .. 1


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("r", [0.1, DEFAULT_R, 1.0, 10.0])
def test_weights_nonnegative_mean_one_detached(strategy, r):
    torch.manual_seed(0)
    losses = (torch.rand(32) * 5).requires_grad_()
    w = sample_weights(losses, strategy, r)
    assert w.shape == losses.shape and not w.requires_grad
    assert (w >= 0).all()
    assert w.mean().item() == pytest.approx(1.0, abs=1e-5)


def test_none_and_constant_batch_are_uniform():
    assert torch.equal(sample_weights(LOSSES, "none", 0.4), torch.ones(9))
    for strategy in STRATEGIES:
        assert torch.allclose(sample_weights(torch.full((6,), 2.7), strategy, 0.4), torch.ones(6))
        assert sample_weights(torch.tensor([3.1]), strategy, 0.4).tolist() == [1.0]


def test_linupper_monotone_and_capped():
    r = 0.4
    w = sample_weights(LOSSES, "linupper", r)
    assert (w[1:] >= w[:-1] - 1e-6).all()  # never down-weights a higher loss
    assert (w[1:5] > w[:4]).all()  # strictly increasing below the middle of the loss range
    assert torch.allclose(w[4:], w[4].expand(5))  # capped: the upper half shares the maximum weight
    assert (w[-1] / w[0]).item() == pytest.approx(math.exp(1 / r), rel=1e-5)  # f spans [0, 1]
    # Scale and shift invariance: only positions within the batch's loss range matter.
    assert torch.allclose(sample_weights(LOSSES * 3 + 7, "linupper", r), w, atol=1e-5)


def test_extremes_upweights_both_tails():
    w = sample_weights(LOSSES, "extremes", 0.4)
    mid = 4
    assert w[0] > w[mid] and w[-1] > w[mid]
    assert w[0].item() == pytest.approx(w[-1].item(), rel=1e-5)  # symmetric in h
    assert (w[: mid + 1][1:] < w[: mid + 1][:-1]).all() and (w[mid:][1:] > w[mid:][:-1]).all()
    assert w[mid].item() == pytest.approx(w.min().item())


def test_quadratic_favors_middle_downweights_both_tails():
    w = sample_weights(LOSSES, "quadratic", 0.4)
    mid = 4
    assert w[mid].item() == pytest.approx(w.max().item())
    assert w[0].item() == pytest.approx(w[-1].item(), rel=1e-5) and w[0].item() == pytest.approx(w.min().item())
    assert (w[: mid + 1][1:] > w[: mid + 1][:-1]).all() and (w[mid:][1:] < w[mid:][:-1]).all()
    assert (w[mid] / w[0]).item() == pytest.approx(math.exp(1 / 0.4), rel=1e-5)


@pytest.mark.parametrize("strategy", ["linupper", "quadratic", "extremes"])
def test_larger_r_is_closer_to_uniform(strategy):
    spreads = [(sample_weights(LOSSES, strategy, r) - 1).abs().max().item() for r in (0.05, 0.2, 0.4, 1.0, 5.0, 100.0)]
    assert all(a > b for a, b in zip(spreads, spreads[1:]))
    assert spreads[-1] < 0.02
    # Very small r concentrates nearly all weight on the best-scored samples.
    w = sample_weights(LOSSES, strategy, 0.01)
    assert w.max().item() > 0.99 * len(LOSSES) / (w > 1e-3).sum().item()


def test_weighted_loss_warmup_and_strategies():
    losses = torch.tensor([0.5, 1.0, 3.0, 2.0], requires_grad=True)
    cfg = ReweightConfig("linupper", r=0.4, warmup_steps=10).validate()
    loss, w = weighted_loss(losses, cfg, step=3)
    assert torch.equal(w, torch.ones(4)) and loss.item() == pytest.approx(losses.mean().item())
    loss, w = weighted_loss(losses, cfg, step=10)
    assert torch.allclose(w, sample_weights(losses, "linupper", 0.4))
    assert loss.item() == pytest.approx((w * losses.detach()).mean().item())
    loss.backward()  # gradient flows through the losses only, scaled by the (constant) weights
    assert torch.allclose(losses.grad, w / 4)
    loss, w = weighted_loss(losses, ReweightConfig(), step=10_000)
    assert torch.equal(w, torch.ones(4)) and loss.item() == pytest.approx(losses.mean().item())


def test_config_validation():
    assert ReweightConfig().r == DEFAULT_R and ReweightConfig().strategy == "none"
    with pytest.raises(ValueError, match="valid strategies: none, linupper, quadratic, extremes"):
        ReweightConfig(strategy="upper").validate()
    with pytest.raises(ValueError, match="r must be"):
        ReweightConfig(strategy="linupper", r=0).validate()
    with pytest.raises(ValueError, match="warmup_steps"):
        ReweightConfig(warmup_steps=-1).validate()
    with pytest.raises(ValueError, match="valid strategies"):
        sample_weights(LOSSES, "mid", 0.4)
    with pytest.raises(ValueError, match="1-D"):
        sample_weights(LOSSES.view(3, 3), "linupper", 0.4)


def test_per_sample_loss_matches_loop_with_ignore_index():
    torch.manual_seed(0)
    b, t, v = 4, 7, 11
    logits = torch.randn(b, t, v, requires_grad=True)
    labels = torch.randint(0, v, (b, t))
    labels[0, :3] = -100  # prompt-style masking
    labels[2, 5:] = -100  # padding
    labels[3, 0] = -100  # first label is never a target anyway
    got = per_sample_loss(logits, labels)
    want = torch.stack([F.cross_entropy(logits[i, :-1], labels[i, 1:], ignore_index=-100) for i in range(b)])
    assert torch.allclose(got, want, atol=1e-6)
    got.sum().backward()
    assert logits.grad is not None and logits.grad[:, -1].abs().sum() == 0  # last position predicts nothing
    # Custom ignore index, and a row with no targets gives 0 rather than NaN.
    labels2 = labels.clone()
    labels2[labels2 == -100] = 5
    labels2[1, 1:] = 5
    got2 = per_sample_loss(logits.detach(), labels2, ignore_index=5)
    assert got2[1].item() == 0.0 and torch.isfinite(got2).all()
    i = 0
    assert got2[i].item() == pytest.approx(F.cross_entropy(logits[i, :-1], labels2[i, 1:], ignore_index=5).item(), abs=1e-6)
    with pytest.raises(ValueError, match="expected logits"):
        per_sample_loss(logits, labels[:, :-1])


def test_training_with_weighted_loss_decreases_loss():
    torch.manual_seed(0)
    v, d, b, t = 16, 8, 12, 10
    model = torch.nn.Sequential(torch.nn.Embedding(v, d), torch.nn.Linear(d, v))
    # Deterministic next-token rule (x -> 3x + 1 mod v), so the loss can fall well below log(v).
    start = torch.randint(0, v, (b, 1))
    seq = [start]
    for _ in range(t - 1):
        seq.append((seq[-1] * 3 + 1) % v)
    tokens = torch.cat(seq, dim=1)
    cfg = ReweightConfig("linupper", r=0.4, warmup_steps=3).validate()
    history = []
    for step in range(40):
        per = per_sample_loss(model(tokens), tokens)
        loss, w = weighted_loss(per, cfg, step)
        model.zero_grad()
        loss.backward()
        with torch.no_grad():  # plain SGD by hand: torch.optim's first use imports torch._dynamo (seconds)
            for p in model.parameters():
                p -= 2.0 * p.grad
        history.append(per.mean().item())
        assert w.mean().item() == pytest.approx(1.0, abs=1e-5)
    assert history[-1] < 0.25 * history[0]
