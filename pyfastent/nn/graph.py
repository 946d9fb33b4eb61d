"""Which captured layers are computed from which: the pairs of layers the
data processing inequality holds for (DESIGN.md 3.6)."""
from __future__ import annotations

import torch
from torch import nn

from pyfastent.nn.sequence import RESIDUAL_STREAM, residual_pairs

FX = "torch.fx graph"


class _Tracer(torch.fx.Tracer):
    """Keeps every captured module a single node of the graph, whatever it holds."""

    def __init__(self, captured: set):
        super().__init__()
        self.captured = captured

    def is_leaf_module(self, module, qualified_name):
        return qualified_name in self.captured or super().is_leaf_module(module, qualified_name)


def dpi_pairs(model: nn.Module, order: list) -> tuple[list, str]:
    """Pairs (a, b) of captured layers where b's output is computed from a's
    output alone, so that I(X;T_b) ≤ I(X;T_a) and I(T_b;Y) ≤ I(T_a;Y).

    For each layer b, a is the latest earlier layer that dominates b in the
    model's ``torch.fx`` graph: every path from the input to b passes through
    a. A chain gives its consecutive pairs; the output of a residual block
    (``relu(bn2(...) + x)``) is paired with the layer that fed the block, not
    with the last layer inside it, since the skip path bypasses that one.

    Args:
        model: the network.
        order: captured layer names in the order they ran (``name#k`` for
            the k-th call of a reused module).

    When the layers are a transformer's blocks in order (and its embedding
    output, ``pyfastent.nn.sequence``), the pairs are consecutive blocks:
    each block's output is computed from the previous one (the residual
    stream) and the attention mask; no graph is traced.

    Returns:
        (pairs, how): ``how`` is ``"consecutive blocks (the residual
        stream)"``, ``"torch.fx graph"``, or, when the model cannot be
        traced, ``"assumed chain (...)"`` with the reason, and then the
        pairs are the consecutive layers of ``order``.
    """
    blocks = residual_pairs(model, order)
    if blocks is not None:
        return blocks, RESIDUAL_STREAM
    chain = list(zip(order[:-1], order[1:]))
    base_names = {name.split("#")[0] for name in order}
    try:
        graph = _Tracer(base_names).trace(model)
    except Exception as exc:  # noqa: BLE001 - any tracing failure means "not traceable"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return chain, f"assumed chain (torch.fx cannot trace {type(model).__name__}: {reason[:160]})"
    nodes = _captured_nodes(graph, order)
    if nodes is None:
        return chain, "assumed chain (the torch.fx graph does not call every captured layer as recorded)"
    dominators = _dominators(graph)
    pairs = []
    for j, later in enumerate(order):
        doms = dominators.get(nodes[later], frozenset())
        earlier = next((a for a in reversed(order[:j]) if nodes[a] in doms), None)
        if earlier is not None:
            pairs.append((earlier, later))
    return pairs, FX


def _captured_nodes(graph: torch.fx.Graph, order: list) -> dict | None:
    """Captured name -> its call_module node (the k-th call for ``name#k``)."""
    calls: dict = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls.setdefault(node.target, []).append(node)
    nodes = {}
    for name in order:
        base, _, k = name.partition("#")
        index = int(k) - 1 if k else 0
        if index >= len(calls.get(base, [])):
            return None
        nodes[name] = calls[base][index]
    return nodes


def _dominators(graph: torch.fx.Graph) -> dict:
    """node -> frozenset of the nodes on every path from the inputs to it.

    Only data paths count: parameters, buffers and constants are not
    reachable from an input and are left out of the intersection.
    """
    dominators: dict = {}
    for node in graph.nodes:  # topological order
        if node.op == "placeholder":
            dominators[node] = frozenset((node,))
            continue
        preds = [p for p in node.all_input_nodes if p in dominators]
        if preds:
            dominators[node] = frozenset.intersection(*(dominators[p] for p in preds)) | {node}
    return dominators
