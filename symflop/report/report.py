"""Writing a report: files written atomically, a LaTeX document, its compilation.

The engine knows no particular table or plot.  A catalogue provides the report's
stages through the ``symflop.report`` entry point: a list of (label, function)
pairs, each function taking a ``ReportWriter``, writing its files and returning
the LaTeX that ``report.tex`` includes for it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

PREAMBLE = r"""\documentclass[10pt]{article}
\usepackage[letterpaper,margin=1in]{geometry}
\usepackage{booktabs}
\usepackage{graphicx}
\usepackage{amsmath}
\usepackage{amssymb}
\usepackage{bm}
\usepackage{longtable}
\usepackage{array}
\usepackage{tabularx}
\usepackage[T1]{fontenc}
\usepackage{lmodern}
\setlength{\parindent}{0pt}
\setlength{\belowcaptionskip}{4pt}
% floats share pages with text, up to 90 % of one, and a page of floats alone starts at
% the top: fewer pages that hold one float in the middle of white space
\renewcommand{\topfraction}{0.9}
\renewcommand{\bottomfraction}{0.8}
\renewcommand{\textfraction}{0.07}
\renewcommand{\floatpagefraction}{0.7}
\setcounter{topnumber}{3}
\setcounter{totalnumber}{4}
\makeatletter\setlength{\@fptop}{0pt}\makeatother
\begin{document}
\setlength{\LTcapwidth}{\textwidth}
\title{symflop: derived costs of the reference document's components}
\date{}
\maketitle
"""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# What open() would give a new file: 0666 less the umask (read once, at import).
_FILE_MODE = 0o666 & ~_umask()


class ReportWriter:
    """Writes files under ``root``; each appears whole or not at all."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.written: list[str] = []

    def write(self, relative: str, data: bytes | str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        raw = data.encode() if isinstance(data, str) else data
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(raw)
            os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600; a report is for others too
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        self.written.append(relative)
        return path


MARKER = ".symflop-report"


class Staging:
    """A report written into a hidden folder beside ``out`` and swapped in whole at the
    end: ``out`` is always the old complete report or the new one, never a mix.  An
    interrupted run removes its staging folder; one killed outright leaves it, named
    ``.OUT.staging-PID-*`` (clearly incomplete), and the next run removes it.  ``out``
    is replaced only if it is empty or a report folder (it holds ``MARKER``): a folder of
    other files is refused, never deleted."""

    def __init__(self, out: Path):
        from symflop.errors import UsageError
        given = Path(out)
        # a symbolic link is followed: the folder it points to is the one replaced
        self.out = Path(os.path.realpath(given)) if given.is_symlink() else given
        if self.out.exists() and not self.out.is_dir():
            raise UsageError(f"--out {given}: exists and is not a folder")
        if self.out.is_dir() and any(self.out.iterdir()) and not (self.out / MARKER).exists():
            raise UsageError(f"--out {given}: a folder of other files (no {MARKER} in "
                             "it); give a new or empty folder, or a report folder")
        if self.out.is_dir() and not self.out.stat().st_mode & 0o200:
            raise UsageError(f"--out {given}: a read-only folder (its mode says so); make "
                             "it writable, or give another folder")
        parent = self.out.absolute().parent
        parent.mkdir(parents=True, exist_ok=True)
        self._remove_stale(parent)
        self.path = Path(tempfile.mkdtemp(dir=parent,
                                          prefix=f".{self.out.name}.staging-{os.getpid()}-"))
        os.chmod(self.path, 0o777 & ~_umask())  # mkdtemp makes 0700
        ReportWriter(self.path).write(MARKER, "a symflop report: `symflop report` replaces "
                                              "this folder whole\n")

    def _remove_stale(self, parent: Path) -> None:
        """Staging folders of runs that are gone; an old report a killed commit left
        aside is put back where ``out`` is missing, and removed otherwise."""
        for p in parent.glob(f".{self.out.name}.staging-*"):
            pid = p.name.rsplit(".staging-", 1)[1].split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(p, ignore_errors=True)
        for p in sorted(parent.glob(f".{self.out.name}.old-*")):
            if not self.out.exists():
                os.rename(p, self.out)
            else:
                shutil.rmtree(p, ignore_errors=True)

    def commit(self) -> None:
        """Swap the new report in: one atomic exchange of the two folders where the system
        has one (Linux's renameat2), else two renames with Ctrl-C and SIGTERM held off
        between them (a run killed outright there leaves the old report aside, which the
        next run puts back)."""
        target = self.out.absolute()
        _pause_for_tests()
        if target.exists() and _exchange(self.path, target):
            _pause_for_tests()
            shutil.rmtree(self.path, ignore_errors=True)  # now the old report
            return
        with _signals_held():
            old = None
            if target.exists():
                old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
                os.rmdir(old)
                os.rename(target, old)
                _pause_for_tests()
            os.rename(self.path, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def abort(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders atomically (renameat2 with RENAME_EXCHANGE); False where the
    system or its file system cannot."""
    import ctypes
    import ctypes.util
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b),
                     rename_exchange) == 0


@contextmanager
def _signals_held():
    """SIGINT, SIGTERM and SIGHUP held off (delivered when it ends)."""
    import signal
    was = signal.pthread_sigmask(signal.SIG_BLOCK,
                                 {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, was)


def _pause_for_tests() -> None:
    """``SYMFLOP_TEST_COMMIT_PAUSE=SECONDS``: the kill test's window inside the commit."""
    seconds = os.environ.get("SYMFLOP_TEST_COMMIT_PAUSE")
    if seconds:
        import sys
        import time
        print("symflop-test: inside the commit", file=sys.stderr, flush=True)
        time.sleep(float(seconds))


def _remove_stale_scratch() -> None:
    """Scratch folders of runs killed outright (SIGKILL runs no clean-up): their owner's
    pid, in the name, is gone."""
    for p in Path(tempfile.gettempdir()).glob("symflop-latex-*"):
        pid = p.name.split("-")[2] if p.name.count("-") >= 3 else ""
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _first_error(e: OSError) -> str:
    """One line for an OSError; shutil.copytree's Error holds a list, one entry per file
    it could not copy: the first, and how many."""
    if isinstance(e, shutil.Error) and e.args and isinstance(e.args[0], list) and e.args[0]:
        errors = e.args[0]
        why = str(errors[0][-1]).splitlines()[0] if errors[0] else "?"
        more = f" (and {len(errors) - 1} more files)" if len(errors) > 1 else ""
        return f"{why}{more}"
    return str(e.strerror or e).splitlines()[0]


def document(parts: list[str]) -> str:
    return PREAMBLE + "\n".join(parts) + "\n\\end{document}\n"


def compile_pdf(root: Path, tex: str = "report.tex") -> tuple[bool, str]:
    """pdflatex ``tex`` twice (for references) in a scratch folder; the PDF is moved into
    ``root`` only when the run succeeds.  Returns (built, one line saying what happened)."""
    exe = shutil.which("pdflatex")
    if exe is None:
        return False, "pdflatex is not on the PATH: report.tex written, report.pdf not built"
    _remove_stale_scratch()
    with tempfile.TemporaryDirectory(prefix=f"symflop-latex-{os.getpid()}-") as work:
        try:
            for item in Path(root).iterdir():
                if not item.name.startswith("."):
                    dest = Path(work) / item.name
                    (shutil.copytree if item.is_dir() else shutil.copy2)(item, dest)
        except OSError as e:  # disk full in the temp folder: say so, leave nothing behind
            return False, f"pdflatex not run: {_first_error(e)}"
        # A fixed date makes the PDF the same bytes on every run (pdfTeX honours these).
        env = {**os.environ, "SOURCE_DATE_EPOCH": "0", "FORCE_SOURCE_DATE": "1"}
        for _ in range(2):
            r = subprocess.run([exe, "-interaction=nonstopmode", "-halt-on-error", tex],  # noqa: S603
                               cwd=work, capture_output=True, text=True, timeout=300,
                               env=env)
        log = (Path(work) / tex).with_suffix(".log")
        text = log.read_text(errors="replace") if log.exists() else r.stdout
        if r.returncode != 0 or "Undefined control sequence" in text:
            first = next((ln for ln in text.splitlines() if ln.startswith("!")), "see the log")
            return False, f"pdflatex failed: {first}"
        pdf = Path(work) / Path(tex).with_suffix(".pdf").name
        fd, tmp = tempfile.mkstemp(dir=root, prefix=".tmp-")
        os.close(fd)
        try:
            shutil.copyfile(pdf, tmp)
            os.chmod(tmp, _FILE_MODE)
            os.replace(tmp, Path(root) / pdf.name)
        except OSError as e:  # disk full, say: no half-written PDF, no scratch file left
            return False, f"report.pdf not written: {e.strerror or e}"
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    built = f"report.pdf built ({(Path(root) / pdf.name).stat().st_size:,} bytes)"
    if "Float too large" in text:  # a table or figure taller than its page runs off it
        built += "; warning: a float is taller than its page and runs off it (see the log)"
    wide = overfull(text)
    if wide:  # a line printed past its column or margin, over what is beside it
        built += (f"; warning: {len(wide)} line(s) wider than their column by more than "
                  f"1 pt, up to {max(wide):.1f} pt (see the log)")
    return True, built


def overfull(log: str, tolerance: float = 1.0) -> list[float]:
    """How far (pt) each line that pdflatex's log calls overfull runs past its box, where
    that is over ``tolerance``."""
    return [float(m) for m in re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide\)", log)
            if float(m) > tolerance]
