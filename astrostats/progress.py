"""One live view of a run's analyses for the person at the terminal: a line per analysis with its status (queued,
running, done, failed), the step it is at (its current progress bar's count and total) and its elapsed time.

The view is drawn by the run's own process alone (rich); the analyses, in that process or in the processes of
``--jobs N``, send it events: ``("status", name, status)``, ``("step", name, what, n, total)`` and, from another
process, ``("log", level, line)`` for the console. Their tqdm bars never draw themselves: :func:`report_bars` turns
each into step events, so two processes can no longer garble the console. Off with --quiet and when stdout or
stderr is not a terminal; then nothing is drawn and the log's plain lines (one per analysis finished) remain."""
from __future__ import annotations

import contextlib
import logging
import sys
import threading

LOG = logging.getLogger("astrostats")

SHOWN = {"ok": "done", "failed": "failed", "not_run": "not run", "reused": "reused", "running": "running",
         "queued": "queued"}
STYLE = {"done": "green", "reused": "green", "failed": "bold red", "not run": "yellow", "running": "cyan",
         "queued": "dim"}


def wanted(quiet: bool) -> bool:
    """A live view only for a person at a terminal: not --quiet, and stdout and stderr both terminals."""
    return not quiet and _is_terminal(sys.stdout) and _is_terminal(sys.stderr)


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


class _BarSink:
    """Where a reported tqdm bar "writes": each refresh becomes one step event (the text itself is dropped)."""

    def __init__(self, callback):
        self.callback, self.bar = callback, None

    def write(self, text) -> None:
        bar = self.bar
        if bar is not None and not bar.disable:
            self.callback(str(bar.desc or "").rstrip(": "), int(bar.n), None if bar.total is None else int(bar.total))

    def flush(self) -> None:
        pass


@contextlib.contextmanager
def report_bars(callback):
    """Within: every tqdm bar made in this process, unless disabled or given its own file, sends its count to
    ``callback(what, n, total)`` instead of drawing itself (the bars of every module, made however they import
    tqdm)."""
    from tqdm import std

    original = std.tqdm.__init__

    def init(self, *args, **kwargs):
        sink = None
        if kwargs.get("file") is None:
            sink = kwargs["file"] = _BarSink(callback)
        original(self, *args, **kwargs)
        if sink is not None:
            sink.bar = self
            sink.write("")

    std.tqdm.__init__ = init
    try:
        yield
    finally:
        std.tqdm.__init__ = original


class Board:
    """The analyses' states, fed by :meth:`event` from any thread, and, when ``live``, their view on stderr."""

    def __init__(self, names, live: bool):
        self.names, self.live = list(names), live
        self.current: str | None = None  # the analysis this process runs (the bars it reports are its)
        self._progress, self._tasks, self._lock = None, {}, threading.Lock()
        self._finished: set[str] = set()  # an analysis's last word: a late event from its process changes nothing

    def __enter__(self) -> "Board":
        if self.live:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn

            width = max(len(name) for name in self.names) if self.names else 8
            self._progress = Progress(TextColumn(f"{{task.description:<{width}}}"),
                                      TextColumn("{task.fields[shown]}"), BarColumn(bar_width=24),
                                      TextColumn("{task.fields[step]}"), _elapsed_column(),
                                      console=Console(stderr=True), refresh_per_second=4)
            for name in self.names:
                self._tasks[name] = self._progress.add_task(name, total=None, start=False, step="",
                                                            shown=_shown("queued"))
            self._progress.start()  # stderr now prints above the view (the console log goes there)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def event(self, kind: str, *values) -> None:
        if kind == "log":
            _to_console(*values)
        elif self._progress is not None:
            with self._lock:
                getattr(self, f"_{kind}")(*values)

    def _status(self, name: str, status: str) -> None:
        task = self._tasks.get(name)
        if task is None or name in self._finished:
            return
        if status == "running":
            self._progress.start_task(task)
        self._progress.update(task, shown=_shown(status))
        if status not in ("running", "queued"):
            self._finished.add(name)
            done = next(item for item in self._progress.tasks if item.id == task)
            if status in ("ok", "reused"):  # a full bar (one with no step reported has no total)
                self._progress.update(task, total=done.total or 1, completed=done.total or 1, step="")
            self._progress.stop_task(task)

    def _step(self, name: str, what: str, n: int, total: int | None) -> None:
        task = self._tasks.get(name)
        if task is not None and name not in self._finished:
            self._progress.update(task, completed=n, total=total,
                                  step=f"{what} {n}/{total}" if total is not None else f"{what} {n}")

    def bar_callback(self, what: str, n: int, total: int | None) -> None:
        """For :func:`report_bars` in this process: a step of the analysis now running here."""
        if self.current is not None:
            self.event("step", self.current, what, n, total)


def _elapsed_column():
    """Time since the analysis started, frozen when it ends (rich's own column freezes when a bar first fills,
    and an analysis fills several, one per stage)."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class Elapsed(ProgressColumn):
        def render(self, task) -> Text:
            seconds = task.elapsed
            if seconds is None:
                return Text("-:--", style="progress.elapsed")
            minutes, rest = divmod(int(seconds), 60)
            return Text(f"{minutes}:{rest:02d}", style="progress.elapsed")

    return Elapsed()


def _shown(status: str) -> str:
    word = SHOWN.get(status, status)
    return f"[{STYLE.get(word, '')}]{word:<8}[/]" if STYLE.get(word) else f"{word:<8}"


def _to_console(level: int, line: str) -> None:
    """A console line logged in an analysis process, shown by this process's console handlers (the log file has
    it already: that process wrote it)."""
    record = logging.makeLogRecord({"name": LOG.name, "levelno": level, "levelname": logging.getLevelName(level),
                                    "msg": line})
    for handler in LOG.handlers:
        if getattr(handler, "console", False) and record.levelno >= handler.level:
            handler.handle(record)


def status_of(record: dict) -> str:
    """The view's status for a finished analysis's manifest record."""
    return "reused" if record.get("resumed") else record.get("status", "failed")


class ToParent(logging.Handler):
    """In an analysis process: the records the console would show, sent to the run's process as log events."""

    def __init__(self, queue, level: int):
        super().__init__(level)
        self.queue = queue
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record) -> None:
        if getattr(record, "routine", False):
            return
        try:
            self.queue.put(("log", record.levelno, self.format(record)))
        except Exception:  # the run is gone or the queue closed: the log file has the record
            self.handleError(record)


__all__ = ["Board", "ToParent", "report_bars", "status_of", "wanted"]
