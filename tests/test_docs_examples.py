"""Every ```python block of the README and of the guides runs, in order, one
namespace per file, offline, in a scratch directory (issue 28): no example
can drift from the code. A block whose first line is ``# needs: torchrun``
or ``# needs: cuda`` is skipped with that reason; ```bash blocks are not
run. Every relative link and anchor of those files resolves."""
import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs" / "guides").glob("*.md")), ROOT / "docs" / "architecture.md"]
NEEDS = {"torchrun": lambda: False, "cuda": torch.cuda.is_available}
PACKAGES = {"transformers.md": ("transformers", "matplotlib"), "networks.md": ("matplotlib",),
            "integrations.md": ("tensorboard", "wandb", "mlflow", "lightning", "transformers", "matplotlib"),
            "estimators.md": ("scipy",)}


def python_blocks(path: Path) -> list:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(), flags=re.S | re.M)


def slug(heading: str) -> str:
    """GitHub's (and myst's) anchor of a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    return {slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


def test_the_guides_have_examples():
    with_code = {p.name for p in DOCS if python_blocks(p)}
    assert {"README.md", "estimators.md", "networks.md", "transformers.md", "integrations.md", "performance.md",
            "reproductions.md"} <= with_code


@pytest.mark.parametrize("path", [p for p in DOCS if python_blocks(p)], ids=lambda p: p.name)
def test_every_python_block_runs(path, tmp_path, monkeypatch, capsys):
    for package in PACKAGES.get(path.name, ()):
        pytest.importorskip(package)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("WANDB_MODE", "offline")
    scope = {"__name__": "__docs__"}
    skipped = []
    for i, code in enumerate(python_blocks(path)):
        need = re.match(r"# needs: (\w+)", code)
        if need and not NEEDS[need.group(1)]():
            skipped.append(need.group(1))
            continue
        exec(compile(code, f"{path.name} block {i + 1}", "exec"), scope)  # noqa: S102 - the docs' own code
    out = capsys.readouterr().out
    if path.name == "README.md":  # what the README says its example prints
        printed = re.search(r"^prints\n\n```\n(.*?)^```", path.read_text(), flags=re.S | re.M).group(1)
        assert out.startswith(printed)
    if path.name == "transformers.md":
        assert "embedding output" in out and "ln_f" in out
        assert all((tmp_path / name).stat().st_size > 0 for name in ("tokens.csv", "tokens.meta.json", "tokens.png"))
    if path.name == "networks.md":
        itself, across = scope["itself"], scope["across"]
        assert itself.matrix.shape == (len(itself.layers),) * 2 and across.p_value is not None
        assert (tmp_path / "similarity.png").stat().st_size > 0 and (tmp_path / "plane.png").stat().st_size > 0
    if path.name == "integrations.md":
        assert (tmp_path / "runs" / "plane").is_dir() and (tmp_path / "mlflow.db").exists()
    if skipped:
        pytest.skip(f"blocks that need {', '.join(skipped)} were not run")


def links(path: Path) -> list:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    return [m for m in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:", m)]


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_relative_link_and_anchor_resolves(path):
    for link in links(path):
        target, _, anchor = link.partition("#")
        file = (path.parent / target).resolve() if target else path
        assert file.exists(), f"{path.name}: {link} points to nothing"
        if anchor:
            assert anchor in anchors(file), f"{path.name}: {link}: {file.name} has no heading #{anchor}"


def test_reproduction_tables_are_the_recorded_runs():
    """The paper-sized verdicts and times in the README and the reproductions
    guide are those benchmarks/bench_reproductions.py wrote."""
    import json

    recorded = json.loads((ROOT / "benchmarks" / "results" / "bench_reproductions_cpu.json").read_text())["results"]
    expected = {r["name"]: (r["verdict"], f"{r['seconds'] / 60:.1f} min") for r in recorded}
    readme = dict((name, (verdict, minutes)) for name, verdict, minutes in re.findall(
        r"^\| `([a-z-]+)` \| [^|]+ \| ([a-z ]+) \| ([\d.]+ min) \|$", (ROOT / "README.md").read_text(), flags=re.M))
    guide = dict((name, (verdict, minutes)) for name, minutes, verdict in re.findall(
        r"^\| `([a-z-]+)` \| [^|]+ \| ([\d.]+ min) \| ([a-z ]+) \|", (ROOT / "docs" / "guides" / "reproductions.md")
        .read_text(), flags=re.M))
    assert readme == expected
    assert guide == expected
