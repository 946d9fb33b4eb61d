"""``pyfastent similarity``: a layer × layer similarity map of the user's model
(with itself, or with a second model) on their probe data, as CSV and a
heatmap. ``nn`` and matplotlib are imported when it runs (``pyfastent.cli``
says why)."""
from __future__ import annotations

import torch

from pyfastent.cli.checks import UsageError, check_inputs, load_arrays, load_model, positive, writable_dir
from pyfastent.cli.sweep import memory_budget


def add_parser(sub, common) -> object:
    command = sub.add_parser(
        "similarity", parents=[common],
        help="a layer x layer similarity map (CKA, HSIC, mutual kNN or normalized MI) of your model(s) on your data")
    command.add_argument("--model", required=True, help="module:factory, a callable returning the nn.Module")
    command.add_argument("--other", help="module:factory of a second model (columns of the map; default: --model)")
    command.add_argument("--data", required=True, help=".npz file with an array x of inputs (y is not read)")
    command.add_argument("--weights", help="a state_dict for --model, saved with torch.save")
    command.add_argument("--other-weights", help="a state_dict for --other")
    command.add_argument("--measure", choices=("cka", "hsic", "mknn", "mi"), default="cka",
                         help="cka (default), hsic, mknn (mutual nearest neighbours) or mi (normalized, Rényi)")
    command.add_argument("--kernel", choices=("linear", "rbf"), default="linear", help="for cka and hsic")
    command.add_argument("--debiased", action="store_true", help="unbiased HSIC (Song et al. 2012) for cka and hsic")
    command.add_argument("--k", type=int, default=10, help="neighbours per sample for mknn (default: 10)")
    command.add_argument("--layers", help="comma-separated module names of --model (default: every leaf layer)")
    command.add_argument("--other-layers", help="comma-separated module names of --other")
    command.add_argument("--permutations", type=int, default=0,
                         help="permutation null per cell: its mean and p-value (cka, hsic, mknn)")
    command.add_argument("--seed", type=int, default=0, help="torch seed set before the models are built")
    command.add_argument("--batch-size", type=int, help="probe samples per forward pass")
    command.add_argument("--memory-budget", help="memory the map may hold, e.g. 4GB (default: 40%% of what is free)")
    command.add_argument("--out", default="pyfastent-similarity", help="output directory")
    command.add_argument("--no-progress", action="store_true", help="no progress bar")
    command.set_defaults(run=run_similarity)
    return command


def run_similarity(args) -> int:
    from pyfastent import plot
    from pyfastent.nn import layer_similarity

    positive("--k", args.k)
    if args.batch_size is not None:
        positive("--batch-size", args.batch_size)
    if args.permutations < 0:
        raise UsageError(f"--permutations must be 0 or more, got {args.permutations}")
    if args.permutations and args.measure == "mi":
        raise UsageError("--permutations is for --measure cka, hsic or mknn")
    out = writable_dir("--out", args.out)
    x, _ = load_arrays(args.data, labels=False)
    budget = memory_budget(args.memory_budget)
    torch.manual_seed(args.seed)
    model = load_model(args.model, args.weights, args.debug)
    other = load_model(args.other, args.other_weights, args.debug, "--other", "--other-weights") if args.other \
        else None
    check_inputs(model, x)
    if other is not None:
        check_inputs(other, x)
    split = (lambda text: [n.strip() for n in text.split(",") if n.strip()] if text else None)
    result = layer_similarity(model, torch.from_numpy(x), other=other, measure=args.measure,
                              layers=split(args.layers), other_layers=split(args.other_layers), kernel=args.kernel,
                              debiased=args.debiased, k=args.k, batch_size=args.batch_size, memory_budget=budget,
                              permutations=args.permutations, progress=False if args.no_progress else None)
    table = result.to_csv(out / "similarity.csv")
    image = plot.similarity_heatmap(result, out / "similarity.png")
    print(f"{result.measure} map: {len(result.layers)} x {len(result.other_layers)} layers on N = "
          f"{result.metadata['n']} samples; values from {float(result.matrix.min()):.4g} to "
          f"{float(result.matrix.max()):.4g}")
    print(f"wrote {table.name}, {table.with_suffix('.meta.json').name} and {image.name} in {out}")
    return 0
