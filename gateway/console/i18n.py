"""The console's texts: one catalogue per language (``locales/en.json``, ``locales/zh.json``), the same keys in
each (``tests/console/test_console_i18n.py``), and the choice of language for a request."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

__all__ = ["LANGUAGES", "LANG_COOKIE", "Catalogue", "load_catalogues", "pick_language"]

LANGUAGES = ("en", "zh")
LANG_COOKIE = "pg_lang"


@dataclass(frozen=True, slots=True)
class Catalogue:
    lang: str
    texts: Mapping[str, str]

    def __call__(self, key: str, **values: object) -> str:
        """The text of ``key`` with ``{name}`` fields filled; an unknown key shows as itself (a test finds it)."""
        text = self.texts.get(key, key)
        return text.format(**values) if values else text


def load_catalogues() -> dict[str, Catalogue]:
    folder = resources.files("gateway.console") / "locales"
    found: dict[str, Catalogue] = {}
    for lang in LANGUAGES:
        texts = json.loads((folder / f"{lang}.json").read_text("utf-8"))
        if not isinstance(texts, dict) or not all(isinstance(v, str) for v in texts.values()):
            raise ValueError(f"locales/{lang}.json must map keys to strings")
        found[lang] = Catalogue(lang, texts)
    return found


def pick_language(cookie: str | None, accept_language: str) -> str:
    """The language cookie (set by the switch), else the first of ours the browser names, else English."""
    if cookie in LANGUAGES:
        return cookie
    for part in accept_language.split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.split("-")[0] in LANGUAGES:
            return tag.split("-")[0]
    return LANGUAGES[0]
