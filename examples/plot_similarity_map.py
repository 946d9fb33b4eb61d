"""
A layer similarity map
======================

``layer_similarity`` compares every pair of layers of two networks (here two
initializations of the same CNN) on the same probe batches, from one kernel
matrix per layer: exact debiased linear CKA, with a permutation p-value per
cell as a chance level.
"""
import torch

from pyfastent import data, models, plot
from pyfastent.nn import layer_similarity

split = data.digits(seed=0)
torch.manual_seed(0)
net, other = models.mnist_cnn(in_size=8), models.mnist_cnn(in_size=8)
x = split.x_test[:300]
result = layer_similarity(net, x, other=other, debiased=True, permutations=19, progress=False)
print(result.matrix.shape, "cells; largest p-value", round(float(result.p_value.max()), 3))

# %%
figure = plot.similarity_figure(result)
