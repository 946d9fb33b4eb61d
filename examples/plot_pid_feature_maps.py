"""
Synergy and redundancy among feature maps
=========================================

``feature_map_pid`` decomposes I(Y; T₁..T_k), the information the first k
feature maps of a conv layer carry about the labels, into redundancy and
synergy (minimum-mutual-information redundancy, per-channel Gram matrices
joined by their Hadamard product; Yu et al., TNNLS 2020), for each k. Here
for both conv layers of a small CNN over a short training run.
"""
import matplotlib.pyplot as plt
import torch

import pyfastent as pf
from pyfastent import data, models, plot
from pyfastent.nn import capture, feature_map_pid

split = data.digits(seed=0)
torch.manual_seed(0)
net = models.mnist_cnn(in_size=8)
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
est = pf.Renyi(sigma="silverman")  # kNN widths of single maps are narrow: their joints would saturate
rows = []
for epoch in range(4):
    maps = capture(net, split.x_test[:300], layers=["conv1", "conv2"])
    for layer, activation in maps.items():
        pid = feature_map_pid(activation, split.y_test[:300], estimator=est)
        rows += [{**r, "layer": layer, "epoch": epoch} for r in pid]
    for _ in range(40):  # some training between measurements
        loss = torch.nn.functional.cross_entropy(net(split.x_train), split.y_train)
        opt.zero_grad()
        loss.backward()
        opt.step()
last = [r for r in rows if r["epoch"] == 3 and r["layer"] == "conv2"]
for r in last[-2:]:
    print(f"conv2, k = {r['k']}: I = {r['mutual_information']:.3f}, redundancy = {r['redundancy']:.3f}, "
          f"synergy = {r['synergy']:.3f} bits")

# %%
# ``plot.pid_curves`` writes the picture to a file.
path = plot.pid_curves(rows, "pid.png")
fig, ax = plt.subplots(figsize=(10, 4.5))
ax.imshow(plt.imread(path))
ax.set_axis_off()
