"""Turn an MMLandmarks Wikipedia/Commons text JSON into ``"title. lead text"`` for a text encoder.

MMLandmarks stores one JSON per landmark: an object of ``{section title: section text}``
whose first section is the lead. Some exports are API-style instead
(``{"title": …, "extract": …}``) or hold raw wikitext. :func:`landmark_text`
accepts all of these, removes wiki markup (templates, references, files,
categories, tables, HTML), keeps link labels, and caps the length at a word
boundary. Missing or empty fields give an empty lead, never an exception.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmgeo.errors import InputError

DEFAULT_MAX_CHARS = 1000
TITLE_KEYS = ("title", "name", "page", "WikipediaPage", "CommonsCategory")
LEAD_KEYS = ("extract", "lead", "summary", "abstract", "text", "content", "wikitext", "description")

_REF = re.compile(r"<ref[^>/]*/>|<ref[^>]*>.*?</ref>", re.IGNORECASE | re.DOTALL)
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_TABLE = re.compile(r"\{\|.*?\|\}", re.DOTALL)
_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")
_FILE_LINK = re.compile(r"\[\[(?:File|Image|Category|Datei|Fichier):[^\[\]]*(?:\[\[[^\]]*\]\][^\[\]]*)*\]\]", re.IGNORECASE)
_LINK = re.compile(r"\[\[(?:[^\]|]*\|)?([^\]]*)\]\]")
_EXT_LINK = re.compile(r"\[(?:https?|ftp)://[^\s\]]+(?:\s+([^\]]*))?\]")
_HEADING = re.compile(r"^\s*=+[^=\n]+=+\s*$", re.MULTILINE)
_HTML = re.compile(r"<[^>]+>")
_EMPHASIS = re.compile(r"'{2,}")
_PARENS_EMPTY = re.compile(r"\(\s*[,;]?\s*\)")
_SPACES = re.compile(r"\s+")


def clean_wikitext(text: str) -> str:
    """Plain text from wiki markup: templates, refs, files, categories, tables and tags removed."""
    text = _COMMENT.sub(" ", text)
    text = _REF.sub("", text)
    text = _TABLE.sub(" ", text)
    previous = None
    while previous != text:  # nested templates: remove innermost first
        previous, text = text, _TEMPLATE.sub("", text)
    text = _FILE_LINK.sub(" ", text)
    text = _LINK.sub(r"\1", text)
    text = _EXT_LINK.sub(lambda m: m.group(1) or "", text)
    text = _HTML.sub(" ", text)
    text = _EMPHASIS.sub("", text)
    text = _PARENS_EMPTY.sub("", text)
    text = text.replace("&nbsp;", " ").replace("&amp;", "&")
    return _SPACES.sub(" ", text).strip()


def lead_of(wikitext: str) -> str:
    """The part of an article before its first ``== heading ==``."""
    match = _HEADING.search(wikitext)
    return wikitext[: match.start()] if match else wikitext


def _title_from(value: Any) -> str:
    text = str(value or "").strip()
    if "/wiki/" in text:  # a page URL
        text = text.rsplit("/wiki/", 1)[1]
    text = text.removeprefix("Category:")
    return text.replace("_", " ").strip()


def _first_text(doc: Mapping[str, Any]) -> str:
    for key in LEAD_KEYS:
        value = doc.get(key)
        if isinstance(value, str) and value.strip():
            return value
    for key, value in doc.items():  # MMLandmarks: {section title: text}, lead first
        if key not in TITLE_KEYS and isinstance(value, str) and value.strip():
            return value
    return ""


def cap_words(text: str, max_chars: int) -> str:
    """At most ``max_chars`` characters, cut at the last word boundary."""
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1, got {max_chars}")
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    space = cut.rfind(" ")
    return (cut[:space] if space > max_chars // 2 else cut).rstrip(" ,;:")


def landmark_text(doc: Mapping[str, Any] | str, *, title: str | None = None, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """``"Title. Lead text"`` from one landmark's JSON object (or raw wikitext), capped at ``max_chars``.

    Args:
        doc: the parsed JSON object, or a string of wikitext/plain text.
        title: overrides the title found in ``doc`` (e.g. the CSV's ``CommonsCategory``/``WikipediaPage``).
        max_chars: length cap of the whole result.
    """
    if isinstance(doc, str):
        fields: Mapping[str, Any] = {"text": doc}
    elif isinstance(doc, Mapping):
        fields = doc
    else:
        raise InputError(f"landmark text must be a JSON object or a string, got {type(doc).__name__}")
    if title is None:
        title = next((_title_from(fields[k]) for k in TITLE_KEYS if fields.get(k)), "")
    else:
        title = _title_from(title)
    lead = clean_wikitext(lead_of(_first_text(fields)))
    if title and lead.lower().startswith(title.lower()):
        text = lead
    else:
        text = ". ".join(part for part in (title, lead) if part)
    return cap_words(text, max_chars)


def read_landmark_text(path: str | os.PathLike, *, title: str | None = None, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """:func:`landmark_text` of a JSON file.

    Raises:
        InputError: missing file or invalid JSON (names the file).
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: text file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    return landmark_text(doc, title=title, max_chars=max_chars)
