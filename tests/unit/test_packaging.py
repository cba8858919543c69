"""Packaging: LICENSE file, SPDX license string, absolute links in the long description (README) that point
into this repository's docs/ and name files that exist, the CPU torch choice documented for pip users."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_license_file_and_spdx_string():
    proj = _project()
    assert proj["license"] == "MIT"  # an SPDX expression, not the deprecated table
    assert "LICENSE" in proj["license-files"]
    assert (REPO / "LICENSE").read_text().startswith("MIT License")


def test_readme_links_are_absolute_and_point_to_existing_docs():
    readme = (REPO / "README.md").read_text()
    docs_url = _project()["urls"]["Documentation"]
    base = docs_url.replace("/tree/main/docs", "/blob/main/")
    links = re.findall(r"\]\(([^)]+)\)", readme)
    assert links
    for link in links:
        assert link.startswith("https://"), f"relative link {link!r} breaks on a package page"
        if link.startswith(base):
            assert (REPO / link[len(base):]).is_file(), link


def test_readme_install_section_and_command_list():
    readme = (REPO / "README.md").read_text()
    assert "## Install" in readme and "download.pytorch.org/whl/cpu" in readme and "[onnx,exact]" in readme
    for cmd in ("radius", "certify", "verify", "attack", "clever", "report", "train", "words", "compare", "demo",
                "run"):
        assert re.search(rf"^certnn {cmd} ", readme, re.M), f"README's command list lacks `certnn {cmd}`"
