"""The configuration reference stays in step with the code."""

from __future__ import annotations

import dataclasses
import pathlib
import subprocess
import sys

from fastlookup import config

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_every_config_key_is_documented():
    """docs/configuration.md holds the table that scripts/config-doc.py prints today."""
    text = DOC.read_text()
    generated = subprocess.run(
        [sys.executable, str(DOC.parents[1] / "scripts" / "config-doc.py")], capture_output=True, text=True, check=True
    ).stdout
    start, end = text.index("<!-- keys:start -->"), text.index("<!-- keys:end -->")
    assert text[start + len("<!-- keys:start -->") : end].strip() == generated.strip(), (
        "docs/configuration.md is out of date: regenerate with scripts/config-doc.py"
    )
    for cls in (config.ServerConfig, config.CacheConfig, config.PolicyConfig):
        for field in dataclasses.fields(cls):
            assert f"`{field.name}`" in text
