"""The API as ``view_api()`` and the README show it: every output named, every parameter described,
and every README example that talks to the server runs as written against the real app."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from gradio_client import Client

from tests.conftest import FIXTURES, serve_app

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def shipped_url(tmp_path_factory):
    """The app as `python app.py` serves it: shipped weights, a fresh runs folder."""
    url, demo = serve_app(tmp_path_factory.mktemp("docs-runs"), shared=False)
    yield url
    demo.close()


def test_view_api_names_every_output_and_describes_every_parameter(shipped_url):
    info = Client(shipped_url, verbose=False).view_api(print_info=False, return_format="dict")
    assert len(info["named_endpoints"]) >= 15
    for name, endpoint in info["named_endpoints"].items():
        for ret in endpoint["returns"]:
            assert not re.fullmatch(r"value_\d+|\d+(st|nd|rd|th)", ret["label"]), (name, ret["label"])
        for param in endpoint["parameters"]:
            assert param["python_type"]["description"], (name, param["parameter_name"])
            if param["parameter_name"] in ("owner", "name"):
                assert param["parameter_has_default"], (name, param["parameter_name"])


def readme_examples() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    return [b for b in blocks if "Client(" in b]


def test_the_readme_api_examples_run_as_written(shipped_url, tmp_path, monkeypatch):
    examples = readme_examples()
    assert len(examples) >= 2  # the Generate tab's and the Train tab's
    pictures = tmp_path / "my_pictures"
    pictures.mkdir()
    for p in sorted((FIXTURES / "images").iterdir()):
        shutil.copy(p, pictures / (p.stem + ".png") if p.suffix == ".png" else pictures / p.name)
    assert list(pictures.glob("*.png"))
    monkeypatch.chdir(tmp_path)
    for code in examples:
        exec(compile(code.replace("http://127.0.0.1:7860/", shipped_url), "README.md", "exec"), {})
