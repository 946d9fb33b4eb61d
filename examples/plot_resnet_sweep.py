"""
A layer sweep of a ResNet-18
============================

``layer_sweep`` measures H(T), I(X;T) and I(T;Y) of all 59 layers of the
CIFAR-sized ResNet-18 of ``pyfastent.models`` in one pass over the probe
set, each layer reduced once for both estimators. The images here are
random with a class structure (a bright patch whose place is the label),
so the run needs no download; the model is untrained.
"""
import matplotlib.pyplot as plt
import torch

from pyfastent import models
from pyfastent.nn import layer_sweep

g = torch.Generator().manual_seed(0)
n, classes = 200, 4
y = torch.arange(n) % classes
x = 0.3 * torch.randn(n, 3, 32, 32, generator=g)
for c in range(classes):
    x[y == c, :, 8 * c:8 * c + 8, 8 * c:8 * c + 8] += 1.0
torch.manual_seed(0)
net = models.resnet18()
sweep = layer_sweep(net, x, y, progress=False)
print(len(sweep.rows), "rows;", sweep.metadata["probe_passes"], "pass(es) over the probe")

# %%
# I(X;T) and I(T;Y) along the depth of the network, per estimator.
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), layout="constrained")
for est in sweep.metadata["estimators"]:
    rows = [r for r in sweep.rows if r["estimator"] == est]
    axes[0].plot([r["i_xt"] for r in rows], label=est)
    axes[1].plot([r["i_ty"] for r in rows], label=est)
for ax, name in zip(axes, ("I(X;T)", "I(T;Y)")):
    ax.set_xlabel("layer (firing order)")
    ax.set_ylabel(f"{name} [bits]")
    ax.set_yscale("log")
axes[1].legend(fontsize=8)
