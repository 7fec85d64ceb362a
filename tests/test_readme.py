"""The README documents every setting."""

from __future__ import annotations

from pathlib import Path

from services.kernel.settings import Settings

README = Path(__file__).parent.parent / "README.md"


def test_every_setting_is_in_the_readme_table() -> None:
    """Each field of Settings appears as its SCO_* variable in the README."""
    text = README.read_text()
    missing = [
        f"SCO_{name.upper()}"
        for name in Settings.model_fields
        if f"`SCO_{name.upper()}`" not in text
    ]
    assert missing == []
