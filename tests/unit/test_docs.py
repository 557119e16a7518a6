"""The README documents every environment variable the settings model reads."""
from pathlib import Path

from config.envdoc import with_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_env_table_is_current():
    text = README.read_text()
    assert with_table(text) == text, "README env table is stale: run `python -m config.envdoc --write README.md`"


def test_readme_has_the_two_commands():
    text = README.read_text()
    assert "make demo" in text and "make test" in text
