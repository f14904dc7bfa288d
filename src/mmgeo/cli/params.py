"""Option types that check a value when it is parsed, before any model loads or any file is written.

Each type fails with click's usage error (exit 2, one line naming the option), so a bad value never
reaches the library. Library functions check again where a value is used (they raise ``MmgeoError``);
these types only make the command line fail early and clearly.
"""

from __future__ import annotations

from typing import Any

import click


def _scalar(text: str) -> Any:
    """``"384"`` → 384, ``"0.5"`` → 0.5, ``"true"``/``"false"`` → bool, anything else stays a string."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


class KeyValue(click.ParamType):
    """``KEY=VALUE`` (repeatable) → ``(key, value)`` with the value as int, float, bool or string."""

    name = "KEY=VALUE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, Any]:
        if isinstance(value, tuple):
            return value
        key, sep, raw = str(value).partition("=")
        if not sep or not key.strip() or not key.strip().isidentifier():
            self.fail(f"{value!r} is not KEY=VALUE (e.g. backbone=convnext_base.fb_in22k)", param, ctx)
        return key.strip(), _scalar(raw.strip())


def encoder_option(func: Any) -> Any:
    """``--encoder-option KEY=VALUE`` (repeatable): architecture options passed to ``create_encoder``."""
    return click.option(
        "--encoder-option", "encoder_options", type=KeyValue(), multiple=True, metavar="KEY=VALUE",
        help="Encoder option, repeatable, e.g. backbone=convnext_base.fb_in22k img_size=384 for a checkpoint "
             "without config (see `mmgeo models`).",
    )(func)

