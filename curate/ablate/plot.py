"""Learning curves per arm: held-out loss on each target vs step, mean over seeds (thin lines: each seed)."""
from __future__ import annotations


def plot_curves(result: dict, path: str) -> str | None:
    """Write a PNG of the held-out loss curves in ``result`` (the ablate.json dict); None without targets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    targets = result.get("targets") or []
    if not targets:
        return None
    fig, axes = plt.subplots(1, len(targets), figsize=(5.5 * len(targets), 4), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, target in zip(axes[0], targets):
        for i, (arm, info) in enumerate(result["arms"].items()):
            color = colors[i % len(colors)]
            curves = [run["curves"].get(target, []) for run in info["runs"].values()]
            curves = [c for c in curves if c]
            for c in curves:
                ax.plot([s for s, _ in c], [v for _, v in c], color=color, alpha=0.25, linewidth=0.8)
            if curves:
                steps = sorted(set.intersection(*[{s for s, _ in c} for c in curves]))
                mean = [np.mean([dict(c)[s] for c in curves]) for s in steps]
                ax.plot(steps, mean, color=color, linewidth=2, label=f"{arm} ({len(curves)} seeds)")
        ax.set_title(f"held-out loss: {target}")
        ax.set_xlabel("step")
        ax.set_ylabel("loss (nats/token)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"curate ablate: {result.get('budget_tokens', 0):,} tokens per arm")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
