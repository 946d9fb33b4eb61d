"""
The information plane of a small CNN
====================================

``InformationPlane`` measures I(X;T) and I(T;Y) of every layer of a CNN
while it trains on scikit-learn's bundled 8×8 digits (nothing downloaded),
with the matrix-based Rényi and LogDet estimators: the demo of
``pyfastent demo``, shortened to a few epochs.
"""
import torch

from pyfastent import data, models, plot
from pyfastent.nn import InformationPlane

split = data.digits(seed=0)
torch.manual_seed(0)
net = models.mnist_cnn(in_size=8)
tracker = InformationPlane(net, split.x_test[:300], split.y_test[:300], progress=False)
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(split.x_train, split.y_train), batch_size=64,
                                    shuffle=True, generator=torch.Generator().manual_seed(0))
for epoch in range(6):
    net.train()
    for x, y in train:
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    tracker.step(epoch=epoch, loss=loss)

# %%
# One trajectory per layer, one panel per estimator; the dashed line is the
# labels' entropy H(Y).
figure = plot.information_plane_figure(tracker)

# %%
# The numbers behind it are rows of a table (``tracker.save("plane.csv")``):
for row in tracker.rows[:6]:
    print(row["epoch"], row["layer"], row["estimator"], row["quantity"], round(row["value"], 3))
