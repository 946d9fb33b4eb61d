"""The README's Transformers examples run as written, offline (issue 25;
the whole README's blocks are the documentation issue's)."""
import os
import re
from pathlib import Path

import pytest

README = (Path(__file__).parent.parent / "README.md").read_text()


def transformer_blocks():
    section = README[README.index("## Transformers\n"):README.index("## Eigenvalues\n")]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_section_has_examples():
    assert transformer_blocks()


@pytest.mark.parametrize("code", transformer_blocks())
def test_readme_transformers_example_runs_offline(code, tmp_path, monkeypatch, capsys):
    pytest.importorskip("transformers")
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})  # noqa: S102 - the README's own code
    out = capsys.readouterr().out
    assert "embedding output" in out and "ln_f" in out
    assert (tmp_path / "tokens.csv").stat().st_size > 0 and (tmp_path / "tokens.png").stat().st_size > 0
    assert os.path.exists(tmp_path / "tokens.meta.json")
