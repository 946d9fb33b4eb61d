"""README examples run as written, offline: the sections written for the
transformers, layout and similarity issues (every block of the README is the
documentation issue's)."""
import re
from pathlib import Path

import pytest

README = (Path(__file__).parent.parent / "README.md").read_text()
SECTIONS = {"transformers": ("## Transformers\n", "## Eigenvalues\n"),
            "settings": ("### Settings\n", "### Backend and CUDA kernels\n"),
            "similarity": ("### Layer similarity maps\n", "### Variables\n")}


def blocks(section):
    start, end = SECTIONS[section]
    return re.findall(r"```python\n(.*?)```", README[README.index(start):README.index(end)], flags=re.S)


EXAMPLES = [(section, code) for section in SECTIONS for code in blocks(section)]


def test_every_section_has_examples():
    assert {section for section, _ in EXAMPLES} == set(SECTIONS)


@pytest.mark.parametrize("section, code", EXAMPLES, ids=[s for s, _ in EXAMPLES])
def test_readme_example_runs_offline(section, code, tmp_path, monkeypatch, capsys):
    if section == "transformers":
        pytest.importorskip("transformers")
    if section in ("transformers", "similarity"):
        pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    scope = {"__name__": "__readme__"}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - the README's own code
    if section == "transformers":
        out = capsys.readouterr().out
        assert "embedding output" in out and "ln_f" in out
        for name in ("tokens.csv", "tokens.meta.json", "tokens.png"):
            assert (tmp_path / name).stat().st_size > 0
    elif section == "similarity":
        itself, across = scope["itself"], scope["across"]
        assert itself.matrix.shape == (len(itself.layers),) * 2 and across.p_value is not None
        assert (tmp_path / "similarity.png").stat().st_size > 0 and (tmp_path / "similarity.meta.json").exists()
    else:
        assert len(scope["sweep"].rows) == 6 and scope["h"] > 0
