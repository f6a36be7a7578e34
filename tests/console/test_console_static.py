"""What holds of the console's files without running it: one catalogue per language with the same keys, every
text key a template names present in both, a label for every input, no inline script or style, and the templates,
catalogues and static files shipped as package data by ``pip install .``."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from gateway.console.charts import Series, bar_chart
from gateway.console.i18n import LANGUAGES, load_catalogues, pick_language

ROOT = Path(__file__).resolve().parents[2]
CONSOLE = ROOT / "gateway" / "console"
TEMPLATES = sorted((CONSOLE / "templates").glob("*.html"))
_KEY = re.compile(r"""\bt\(\s*["']([a-z_]+\.[a-z_.]+|yes|no)["']""")
# Keys built at run time from a closed set (a state, an action, a role, an error code) are checked below.
_DYNAMIC = ("state.", "action.", "role.", "error.", "approvals.", "class.")


def test_both_catalogues_have_the_same_keys() -> None:
    catalogues = load_catalogues()
    assert set(catalogues) == set(LANGUAGES) == {"en", "zh"}
    assert set(catalogues["en"].texts) == set(catalogues["zh"].texts)
    assert all(v.strip() for c in catalogues.values() for v in c.texts.values())


def test_every_text_a_template_or_page_names_is_in_the_catalogues() -> None:
    texts = load_catalogues()["en"].texts
    named: set[str] = set()
    for path in [*TEMPLATES, *(CONSOLE.glob("routes_*.py"))]:
        named |= set(_KEY.findall(path.read_text("utf-8")))
    assert named, "the pattern finds the keys"
    assert sorted(k for k in named if k not in texts) == []


def test_the_closed_sets_have_their_texts() -> None:
    from gateway.console.routes_auth import PEOPLE
    from policy.casework import Action, CaseState

    texts = load_catalogues()["zh"].texts
    assert {f"state.{s.value}" for s in CaseState} <= set(texts)
    assert {f"action.{a.value}" for a in Action} | {"action.request_extension", "action.check"} <= set(texts)
    assert {f"role.{r.value}" for r in PEOPLE} <= set(texts)


@pytest.mark.parametrize(("cookie", "accept", "expected"), [
    ("zh", "en-GB", "zh"), (None, "zh-CN,zh;q=0.9", "zh"), (None, "fr, en;q=0.5", "en"), ("xx", "", "en"),
])  # fmt: skip
def test_the_language_is_the_switch_then_the_browser_then_english(cookie: str | None, accept: str,
                                                                   expected: str) -> None:
    assert pick_language(cookie, accept) == expected


class _Form(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[tuple[str, str]] = []  # (tag, id)
        self.labels: set[str] = set()
        self.inline: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("input", "select", "textarea") and a.get("type") not in ("hidden", "radio"):
            self.inputs.append((tag, a.get("id") or ""))
        if tag == "input" and a.get("type") == "radio":
            self.inputs.append((tag, a.get("id") or ""))
        if tag == "label" and a.get("for"):
            self.labels.add(a["for"] or "")
        if tag == "script" and "src" not in a:
            self.inline.append("script")
        if "style" in a or any(k.startswith("on") for k in a):
            self.inline.append(f"{tag} {sorted(a)}")


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_every_input_has_a_label_and_nothing_is_inline(template: Path) -> None:
    parser = _Form()
    # Template tags out: an expression becomes TPL on both sides (id="note-{{ name }}" and for="note-{{ name }}").
    text = re.sub(r"\{[{%#].*?[}%#]\}", "TPL", template.read_text("utf-8"), flags=re.S)
    parser.feed(text)
    missing = [(tag, id_) for tag, id_ in parser.inputs if not id_ or id_ not in parser.labels]
    assert missing == [], template.name
    assert parser.inline == [], template.name


def test_the_console_files_ship_as_package_data() -> None:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["tool"]["setuptools"]["package-data"]
    shipped = patterns["gateway"]
    files = [p.relative_to(ROOT / "gateway").as_posix() for sub in ("templates", "static", "locales")
             for p in (CONSOLE / sub).iterdir()]
    assert len(files) >= 10
    assert [f for f in files if not any(fnmatch.fnmatch(f, pattern) for pattern in shipped)] == []
    runtime = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]["dependencies"]
    assert any(d.startswith("jinja2") for d in runtime) and any(d.startswith("segno") for d in runtime)


def test_the_chart_escapes_names_and_says_n_a_for_a_missing_rate() -> None:
    svg = str(bar_chart("t <x>", {"d<1>": {"a": 0.5, "b": None}}, [Series("a", "A", "s1"), Series("b", "B", "s2")]))
    assert "<x>" not in svg and "d&lt;1&gt;" in svg and "n/a" in svg and "50%" in svg
    assert "style=" not in svg and "<script" not in svg


def test_the_catalogue_files_are_json_objects_of_strings() -> None:
    for lang in LANGUAGES:
        data = json.loads((CONSOLE / "locales" / f"{lang}.json").read_text("utf-8"))
        assert isinstance(data, dict) and all(isinstance(v, str) for v in data.values())
