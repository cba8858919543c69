"""Every script in examples/ runs (so the README's examples never rot)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.py"))
#: examples that read the text tasks (they train a tiny LSTM on a slice: 5-9 s each on a quiet core)
NEEDS_DATA = {"certify_text.py", "sensitive_words.py", "compare_defences.py"}


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(script, request):
    env = dict(os.environ)
    if script.name in NEEDS_DATA:  # without data they would only print that they need it
        env["CERTNN_DATA_DIR"] = str(request.getfixturevalue("shared_data"))
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.strip()


def test_readme_python_example_runs(tmp_path):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = readme.index("```python") + len("```python")
    code = readme[start:readme.index("```", start)]
    script = tmp_path / "readme_example.py"
    script.write_text(code)
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "tensor" in p.stdout
