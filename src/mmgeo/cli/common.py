"""Options and error handling shared by every command."""

from __future__ import annotations

import functools
import inspect
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from mmgeo.cli.params import ServerUrl
from mmgeo.errors import MmgeoError

if TYPE_CHECKING:
    from mmgeo.qdrant import ShardingSpec, Store

console = Console(stderr=True)


def store_options(func: Callable) -> Callable:
    """``--store PATH`` (embedded), ``--qdrant-url URL`` and ``--api-key`` (server)."""
    func = click.option("--api-key", envvar="QDRANT_API_KEY", default=None, help="Qdrant API key [env QDRANT_API_KEY].")(func)
    func = click.option(
        "--qdrant-url", envvar="QDRANT_URL", default=None, type=ServerUrl(),
        help="Qdrant server or cluster, e.g. http://localhost:6333 [env QDRANT_URL].",
    )(func)
    return click.option(
        "--store", "store_path", envvar="MMGEO_STORE", default=None, metavar="PATH",
        help="Embedded Qdrant Edge store directory [env MMGEO_STORE; default: the user data dir].",
    )(func)


def open_store_from(store_path: str | None, qdrant_url: str | None, api_key: str | None,
                    sharding: ShardingSpec | None = None, *, create: bool = False) -> Store:
    """The store named by the CLI options (a server URL wins over the default path).

    Only commands that write new collections pass ``create=True``; the others never make a
    store directory (a mistyped ``--store`` is an error, not a new empty store).
    """
    from mmgeo.qdrant import open_store

    if store_path and qdrant_url:
        raise click.UsageError("give --store or --qdrant-url, not both")
    return open_store(store_path, url=qdrant_url, api_key=api_key, sharding=sharding, create=create)


EXIT_OK, EXIT_ABSTAINED, EXIT_ERROR, EXIT_PARTIAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
"""The exit statuses of every command (README "Exit status"): 1 only from ``mmgeo-search``; 3 when some rows were skipped."""


def _debug(args: Sequence[str]) -> bool:
    """Full tracebacks: ``-v``/``--verbose`` on the command line or ``MMGEO_DEBUG=1``."""
    return os.environ.get("MMGEO_DEBUG", "") not in ("", "0") or any(a in ("-v", "--verbose") for a in args)


def _error(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)


class _WarningsToConsole(logging.Handler):
    """mmgeo's logged warnings (e.g. an assumed checkpoint default) as one ``warning:`` line each."""

    def emit(self, record: logging.LogRecord) -> None:
        console.print(f"[yellow]warning:[/] {record.getMessage()}", highlight=False, soft_wrap=True)


def _route_warnings() -> None:
    logger = logging.getLogger("mmgeo")
    if not any(isinstance(h, _WarningsToConsole) for h in logger.handlers):
        handler = _WarningsToConsole(logging.WARNING)
        logger.addHandler(handler)
        logger.setLevel(min(logger.level or logging.WARNING, logging.WARNING))


def run_with_exit_contract(main: Callable[..., Any], args: Sequence[str] | None) -> None:
    """Run a click ``main`` and end the process with a documented status, never a traceback.

    Usage errors and ``MmgeoError`` (bad input, data or environment): one ``error:`` line, exit 2.
    Ctrl-C: exit 130. Any other exception is a bug: one line asking for a report (the traceback
    with ``-v`` or ``MMGEO_DEBUG=1``), exit 2. ``SystemExit`` from the command (1 abstained,
    3 partial) passes through.
    """
    argv = list(sys.argv[1:] if args is None else args)
    _route_warnings()
    try:
        if "--help" not in argv:
            from mmgeo.images import max_pixels_from_env

            max_pixels_from_env()  # a bad MMGEO_MAX_PIXELS would refuse every image: say so before any work
        code = main(standalone_mode=False)
    except click.exceptions.Abort:  # click turns Ctrl-C (KeyboardInterrupt) into Abort
        _error("interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        _error("interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except click.exceptions.NoArgsIsHelpError as exc:  # a bare group: its help, as click shows it
        exc.show()
        sys.exit(EXIT_ERROR)
    except click.ClickException as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if isinstance(exc, click.UsageError) and exc.ctx else ""
        _error(f"{exc.format_message()}{hint}".replace("\n", " "))
        sys.exit(EXIT_ERROR)
    except MmgeoError as exc:
        if _debug(argv):
            console.print_exception()
        _error(str(exc))
        sys.exit(EXIT_ERROR)
    except Exception as exc:  # a bug, not the user's doing: say so in one line
        if _debug(argv):
            console.print_exception()
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        _error(f"internal error ({type(exc).__name__}: {first}); please report it with the command you ran"
               + ("" if _debug(argv) else "; -v or MMGEO_DEBUG=1 shows the traceback"))
        sys.exit(EXIT_ERROR)
    sys.exit(code if isinstance(code, int) else EXIT_OK)


class _ContractMixin:
    """``main`` under :func:`run_with_exit_contract` unless a caller asks for ``standalone_mode=False``; the
    epilog (a command's examples) printed as written."""

    epilog: str | None

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The epilog line by line, never rewrapped: examples are commands to copy. Click's ``\\b`` markers
        (needed where click rewraps) are dropped, so a marker that does not start a paragraph prints nothing."""
        if not self.epilog:
            return
        formatter.write_paragraph()
        with formatter.indentation():
            for line in inspect.cleandoc(self.epilog.replace("\b", "")).splitlines():
                formatter.write(f"{'':>{formatter.current_indent}}{line}\n" if line.strip() else "\n")

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        run = functools.partial(super().main, args, prog_name, complete_var, **extra)  # type: ignore[misc]
        if not standalone_mode:
            return run(standalone_mode=False)
        run_with_exit_contract(run, args)
        return None


class MmgeoCommand(_ContractMixin, click.Command):
    """A command that keeps the exit contract (``@click.command(cls=MmgeoCommand)``)."""


class MmgeoGroup(_ContractMixin, click.Group):
    """A group that keeps the exit contract; its subcommands are :class:`MmgeoCommand` s."""

    command_class = MmgeoCommand
    group_class = type


def progress_bar(*, disable: bool = False) -> Progress:
    """The progress display of batch jobs (``mmgeo-ingest``, ``mmgeo-locate``): count (of a known total),
    rate, elapsed and remaining time; transient, so the summary or one error line stays."""
    return Progress(TextColumn("[bold]{task.description}[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=disable, transient=True)


def advance(bar: Progress, task: TaskID, n: int, unit: str = "items") -> None:
    """Advance ``task`` by ``n`` and show its rate in ``unit``/s."""
    bar.advance(task, n)
    elapsed = bar.tasks[task].elapsed or 0.0
    bar.update(task, rate=f"{bar.tasks[task].completed / elapsed:.1f} {unit}/s" if elapsed else "")
