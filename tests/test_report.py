"""`symflop report`, the main job: every file written whole, report.tex compiling."""

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from symflop.cli import main
from symflop.report.report import ReportWriter

NEEDS_LATEX = os.environ.get("CI") == "true"  # .ci/run installs LaTeX; CI must compile


def test_the_log_reader_finds_overfull_lines():
    from symflop.report.report import overfull
    log = ("Overfull \\hbox (7.14249pt too wide) in alignment at lines 441--445\n"
           "Overfull \\hbox (0.5pt too wide) in paragraph\nOverfull \\vbox (3pt too high)")
    assert overfull(log) == [7.14249]


def _digest(root: Path, skip=("report.pdf",)) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name not in skip}


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    r = subprocess.run([sys.executable, "-m", "symflop", "report", "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    return out, r


def test_report_writes_every_part_and_compiles(report_dir):
    out, r = report_dir
    assert r.returncode == 0, r.stdout + r.stderr
    stages = ("front", "tables", "equations", "plots", "claims", "identities")
    for k, stage in enumerate(stages, 1):
        assert f"[{k}/{len(stages)}] {stage}: done" in r.stdout
    names = {p.name for p in out.rglob("*")}
    assert {"report.tex", "claims.md", "claims.json", "identities.txt"} <= names
    assert {"optimizer-adam-operations.tex", "optimizer-adam-operations.csv",
            "optimizer-adam-operations.md", "optimizer-adam-operations.json"} <= names
    assert {"schedules.png", "schedules.pdf"} <= names
    assert not [n for n in names if n.startswith(".tmp-")]
    if shutil.which("pdflatex") is None:
        assert not NEEDS_LATEX, "CI installs pdflatex: it must be found"
        assert "pdflatex is not on the PATH" in r.stdout
        pytest.skip("pdflatex is not installed here; CI compiles the report")
    assert "report.pdf built" in r.stdout and "runs off" not in r.stdout, r.stdout
    assert "wider than their column" not in r.stdout, r.stdout  # no overfull box over 1 pt
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF")


# A paper's layouts: a one-column portrait article (6.5 in of text), and a two-column
# paper whose table* spans 7 in (a longtable cannot float: it is set in one column there,
# at the same 7 in, as an author would).
PAPER_LAYOUTS = {
    "one-column 6.5 in": (r"\documentclass{article}", "6.5in", False),
    "two-column table* 7 in": (r"\documentclass[twocolumn]{article}", "7in", True),
}


def _paper(fragments: dict[str, str], head: str, width: str, starred: bool) -> str:
    from symflop.report.tables import LATEX_PACKAGES
    body = []
    for name, tex in fragments.items():
        if starred and "longtable" in tex:
            tex = "\\onecolumn\n" + tex + "\n\\twocolumn"
        elif starred:
            tex = tex.replace(r"\begin{table}", r"\begin{table*}").replace(
                r"\end{table}", r"\end{table*}")
        body.append(f"\\typeout{{FRAGMENT {name}}}\n{tex}\n\\clearpage")
    return (f"{head}\n\\usepackage{{{','.join(LATEX_PACKAGES)}}}\n"
            f"\\usepackage[textwidth={width},textheight=9in]{{geometry}}\n"
            "\\usepackage[T1]{fontenc}\n\\usepackage{lmodern}\n\\begin{document}\n"
            + "\n".join(body) + "\n\\end{document}\n")


def _overfull_by_fragment(log: str) -> dict[str, float]:
    from symflop.report.report import overfull
    out, name = {}, None
    for line in log.splitlines():
        if line.startswith("FRAGMENT "):
            name = line.split()[1]
        elif overfull(line):
            out[name] = max(out.get(name, 0.0), *overfull(line))
    return out


@pytest.mark.parametrize("layout", sorted(PAPER_LAYOUTS))
def test_every_table_fragment_fits_a_papers_text_width(report_dir, tmp_path, layout):
    """Each table's LaTeX fragment, as the report writes it, \\input into a paper: no line
    more than 1 pt wider than the text (the fragments fit by their layout: wrapped
    columns, stacked headers, formulas that break; nothing is scaled)."""
    out, r = report_dir
    assert r.returncode == 0, r.stdout + r.stderr
    if shutil.which("pdflatex") is None:
        assert not NEEDS_LATEX, "CI installs pdflatex: it must be found"
        pytest.skip("pdflatex is not installed here; CI compiles the fragments")
    from derivations.tables import TABLE_NAMES
    fragments = {n: (out / "tables" / f"{n}.tex").read_text() for n in TABLE_NAMES}
    assert not [n for n, tex in fragments.items() if "resizebox" in tex or "scalebox" in tex]
    (tmp_path / "paper.tex").write_text(_paper(fragments, *PAPER_LAYOUTS[layout]))
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error",
                          "paper.tex"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    log = (tmp_path / "paper.log").read_text(errors="replace")
    assert run.returncode == 0, log[-3000:]
    assert log.count("FRAGMENT ") == len(fragments) == 34
    assert _overfull_by_fragment(log) == {}


def test_the_fragment_check_sees_an_overfull_table():
    """The check above can fail: a table wider than the text is found, by its name."""
    log = ("FRAGMENT a\nOverfull \\hbox (0.4pt too wide) in alignment\nFRAGMENT wide\n"
           "Overfull \\hbox (26.2pt too wide) in alignment at lines 8--26\n")
    assert _overfull_by_fragment(log) == {"wide": 26.2}


def _section_text(pdf: Path, first: str, last: str | None) -> str:
    """The PDF's text layer from the heading ``first`` to the heading ``last``."""
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                          text=True, check=True).stdout
    start = text.index(first)
    return text[start:text.index(last, start) if last else None]


def test_no_latex_source_reaches_the_pdf_text_of_claims_or_identities(report_dir):
    out, r = report_dir
    pdf = out / "report.pdf"
    if not pdf.exists() or shutil.which("pdftotext") is None:
        assert not NEEDS_LATEX, "CI installs pdflatex and pdftotext: the PDF must be read"
        pytest.skip("no report.pdf or no pdftotext here; CI reads the PDF")
    claims = _section_text(pdf, "The document’s claims, checked", "Identities the document")
    identities = _section_text(pdf, "Identities the document states", None)
    for name, text in (("claims", claims), ("identities", identities)):
        assert len(text) > 5000, f"{name}: the section is missing from the text layer"
        leaks = sorted({m.group(0) for m in re.finditer(r"\\[A-Za-z]+|\$", text)})
        assert not leaks, f"{name}: LaTeX source in the PDF's text: {leaks}"
    # the quotes' math is compiled: the MSE gradient's fraction and partial sign show
    assert "∂L" in claims and "2/(B d)" not in claims


def test_glossary_defines_every_symbol_of_every_table():
    import sympy as sp

    from derivations.glossary import glossary
    from derivations.tables import TABLE_NAMES, build_table
    from symflop.report.tables import Seq

    defined = {sym for _kind, sym, _meaning in glossary()}
    used: dict[str, str] = {}

    def walk(cell, table):
        if isinstance(cell, Seq):
            for c in cell.items:
                walk(c, table)
        elif isinstance(cell, sp.Basic):
            for s in cell.atoms(sp.Symbol):
                used.setdefault(s.name, table)
    for name in TABLE_NAMES:
        for row in build_table(name).rows:
            for cell in row:
                walk(cell, name)
    assert len(used) > 40  # the tables do hold symbols: sizes, hyperparameters, tensors
    missing = {s: t for s, t in used.items() if s not in defined}
    assert not missing, f"symbols in tables without a glossary entry: {missing}"


def test_glossary_defines_every_name_of_the_derived_equations():
    """Every name section "Derived equations" prints (tensors, intermediates the engine
    made, hyperparameters, sizes, indices) is in the glossary; a gradient dX with tags
    (d mu_part2, d gamma_red) needs X there and each tag explained."""
    import re

    import sympy as sp

    from derivations.glossary import GRADIENT_TAGS, glossary
    from derivations.report import shown_passes

    defined = {sym for _kind, sym, _meaning in glossary()}
    tag = "|".join(rf"{t}\d*" for t in GRADIENT_TAGS)
    used: dict[str, str] = {}
    for d, name, pass_name, stage, _what in shown_passes():
        for st, _count in d.step_counts(pass_name, "default", stage):
            e = st.rhs()
            for n in ({st.lhs} | {a.name for a in e.atoms(sp.Symbol)}
                      | {b.label.name for b in e.atoms(sp.IndexedBase)}):
                used.setdefault(n, name)

    def known(n: str) -> bool:
        if n.startswith("grad_"):
            n = re.sub(rf"(_({tag}))+$", "", n[len("grad_"):])
        return n in defined
    assert {"grad_x_direct", "grad_gamma_red", "lse_sum_max", "k"} <= set(used)
    missing = {n: c for n, c in used.items() if not known(n)}
    assert not missing, f"names in the derived equations without a glossary entry: {missing}"


def test_report_is_the_same_bytes_across_runs_and_hash_seeds(report_dir, tmp_path):
    first, _ = report_dir
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    subprocess.run([sys.executable, "-m", "symflop", "report", "--out", str(tmp_path)],
                   capture_output=True, text=True, timeout=600, env=env, check=True)
    skip = () if shutil.which("pdflatex") else ("report.pdf",)
    assert _digest(first, skip) == _digest(tmp_path, skip)


def test_an_interrupted_report_leaves_the_old_folder_as_it_was(tmp_path, monkeypatch,
                                                                capsys):
    import derivations.report as rep

    def broken(w: ReportWriter) -> str:
        w.write("partial.txt", "written whole")
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-stage

    out = tmp_path / "report"
    out.mkdir()
    (out / ".symflop-report").write_text("an earlier report\n")
    (out / "old.txt").write_text("the earlier report's file")
    monkeypatch.setattr(rep, "STAGES", [("tables", rep.tables_stage), ("broken", broken)])
    monkeypatch.setattr("symflop.commands.document.plugin", lambda group, what: rep.STAGES)
    # Ctrl-C: one line and the shell's status 130, no traceback (once a traceback)
    assert main(["report", "--out", str(out), "--no-pdf"]) == 130
    assert capsys.readouterr().err == "symflop: interrupted\n"
    # the old report is untouched (once old and new files were mixed), nothing staged is left
    assert sorted(p.name for p in out.iterdir()) == [".symflop-report", "old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_a_report_replaces_a_report_folder_whole_and_refuses_other_folders(tmp_path,
                                                                            capsys):
    out = tmp_path / "r"
    assert main(["report", "--out", str(out), "--no-pdf"]) == 0
    (out / "stale.txt").write_text("from an older version")
    assert main(["report", "--out", str(out), "--no-pdf"]) == 0
    assert not (out / "stale.txt").exists() and (out / "report.tex").exists()
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    capsys.readouterr()
    assert main(["report", "--out", str(other), "--no-pdf"]) == 2
    assert "a folder of other files" in capsys.readouterr().err
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "r"]


def test_a_report_killed_at_random_moments_leaves_old_or_new_never_a_mix(tmp_path):
    """SIGINT, SIGTERM and SIGKILL at moments spread over a run, over an existing report:
    the folder is the old report or the new one; a killed run's staging folder is hidden,
    named as incomplete, and removed by the next run; no pdflatex is left running."""
    import random
    import signal
    import time
    out = tmp_path / "r"
    subprocess.run([sys.executable, "-m", "symflop", "report", "--out", str(out), "--no-pdf"],
                   check=True, capture_output=True, timeout=600)
    first = _digest(out, skip=("report.pdf", ".symflop-report"))
    rng = random.Random(0)
    runs = int(os.environ.get("SYMFLOP_KILL_RUNS", "6"))  # 21 for the full check
    for n in range(runs):
        sig = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)[n % 3]
        (out / "sentinel.txt").write_text(str(n))  # the old report, marked
        p = subprocess.Popen([sys.executable, "-m", "symflop", "report", "--out", str(out)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.3, 5.0))
        p.send_signal(sig)
        _, err = p.communicate(timeout=120)
        names = {q.name for q in out.iterdir()}
        if "sentinel.txt" in names:  # killed before the swap: the old report, whole
            assert (out / "sentinel.txt").read_text() == str(n)
        now = _digest(out, skip=("report.pdf", ".symflop-report", "sentinel.txt"))
        assert now == first, f"run {n} ({sig.name}): the folder is not a whole report"
        if sig != signal.SIGKILL and p.returncode != 0:
            assert err.decode().count("\n") == 1 and "symflop: " in err.decode(), err
        staged = [q for q in tmp_path.iterdir() if ".staging-" in q.name]
        assert sig == signal.SIGKILL or not staged, staged
    subprocess.run([sys.executable, "-m", "symflop", "report", "--out", str(out), "--no-pdf"],
                   check=True, capture_output=True, timeout=600)
    assert sorted(q.name for q in tmp_path.iterdir()) == ["r"]  # stale staging removed
    left = subprocess.run(["pgrep", "-f", f"pdflatex.*{tmp_path.name}"], capture_output=True)
    assert left.returncode == 1  # no pdflatex still running


def test_writer_replaces_files_atomically(tmp_path):
    w = ReportWriter(tmp_path)
    w.write("a/b.txt", "one")
    w.write("a/b.txt", "two")
    assert (tmp_path / "a" / "b.txt").read_text() == "two"
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["b.txt"]


def test_report_files_get_the_umasks_mode(tmp_path):
    """mkstemp makes files 0600; a report's files are for others too (once 0600)."""
    mask = os.umask(0o022)
    os.umask(mask)
    path = ReportWriter(tmp_path).write("t.txt", "x")
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_a_full_disk_while_the_pdf_is_copied_leaves_no_scratch_file(tmp_path, monkeypatch):
    import errno

    from symflop.report import report as rep
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed here")
    (tmp_path / "report.tex").write_text("\\documentclass{article}\\begin{document}x"
                                         "\\end{document}\n")

    real = shutil.copyfile

    def full(src, dst, **kw):
        if not Path(dst).name.startswith(".tmp-"):  # the copies into the scratch folder
            return real(src, dst, **kw)
        with open(dst, "wb") as f:  # the PDF into the output folder: the disk fills up
            f.write(b"%PDF half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rep.shutil, "copyfile", full)
    built, message = rep.compile_pdf(tmp_path)
    assert not built and message == "report.pdf not written: No space left on device"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.tex"]


def test_scratch_folders_of_killed_runs_are_removed(tmp_path, monkeypatch):
    """A SIGKILL during pdflatex leaves its symflop-latex-PID-* folder; the next
    compilation removes those whose process is gone, and leaves live ones alone."""
    import tempfile

    from symflop.report import report as rep
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"symflop-latex-{dead.pid}-abc"
    live = tmp_path / f"symflop-latex-{os.getpid()}-def"
    for d in (stale, live):
        d.mkdir()
        (d / "report.aux").write_text("x")
    rep._remove_stale_scratch()
    assert not stale.exists() and live.exists()


_FAST_REPORT = """
import sys
import symflop.cli as cli
import symflop.commands.document as document

def stage(writer):
    writer.write("part.txt", sys.argv[2])
    return "part"

document.plugin = lambda group, what: [("part", stage)]
sys.exit(cli.main(["report", "--out", sys.argv[1], "--no-pdf"]))
"""


def test_a_signal_inside_the_commit_leaves_the_old_report_or_the_new(tmp_path):
    """The commit window itself (a test hook pauses inside it, before and after the
    swap): after SIGINT, SIGTERM or SIGKILL there, --out holds a whole report, old or
    new (once a signal between two renames left no --out at all)."""
    import signal
    import time
    script = tmp_path / "fast_report.py"
    script.write_text(_FAST_REPORT)
    out = tmp_path / "r"
    subprocess.run([sys.executable, str(script), str(out), "old"], check=True, timeout=120)
    before = "old"
    env = {**os.environ, "SYMFLOP_TEST_COMMIT_PAUSE": "3"}
    cases = [(signal.SIGINT, 1), (signal.SIGTERM, 2), (signal.SIGKILL, 1),
             (signal.SIGKILL, 2), (signal.SIGTERM, 1), (signal.SIGINT, 2)]
    for n, (sig, pause) in enumerate(cases):
        p = subprocess.Popen([sys.executable, str(script), str(out), f"new{n}"], env=env,
                             stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        seen = 0
        while seen < pause:
            line = p.stderr.readline()
            assert line, "the run ended before its commit"
            seen += line.startswith("symflop-test: inside the commit")
        time.sleep(0.2)
        p.send_signal(sig)
        p.communicate(timeout=60)
        assert out.is_dir(), (sig.name, pause)
        names = sorted(q.name for q in out.iterdir())
        assert names == [".symflop-report", "part.txt", "report.tex"], (sig.name, names)
        now = (out / "part.txt").read_text()
        assert now == (before if pause == 1 else f"new{n}"), (sig.name, pause, now)
        before = now
    subprocess.run([sys.executable, str(script), str(out), "last"], check=True, timeout=120)
    assert (out / "part.txt").read_text() == "last"
    assert sorted(q.name for q in tmp_path.iterdir()) == ["fast_report.py", "r"]


def test_a_commit_killed_between_two_renames_is_put_back_by_the_next_run(
        tmp_path, monkeypatch):
    """Where the folders cannot be exchanged atomically the commit renames twice; a run
    killed between the renames leaves the old report aside, and the next run puts it
    back where --out was."""
    from symflop.report import report as rep
    out = tmp_path / "r"
    out.mkdir()
    (out / rep.MARKER).write_text("a report\n")
    (out / "part.txt").write_text("old")
    staging = rep.Staging(out)

    class Killed(BaseException):
        pass

    calls = []

    def killed():  # the second pause is the one between the two renames
        calls.append(1)
        if len(calls) == 2:
            raise Killed
    monkeypatch.setattr(rep, "_exchange", lambda a, b: False)
    monkeypatch.setattr(rep, "_pause_for_tests", killed)
    with pytest.raises(Killed):   # no clean-up runs: as under SIGKILL
        staging.commit()
    assert not out.exists()
    monkeypatch.setattr(rep, "_pause_for_tests", lambda: None)
    again = rep.Staging(out)
    assert (out / "part.txt").read_text() == "old"
    assert not [q for q in tmp_path.iterdir() if ".old-" in q.name]
    again.abort()


@pytest.fixture
def one_stage(monkeypatch):
    """The report command with one small stage of its own (the catalogue's take 18 s)."""
    def stage(writer):
        writer.write("part.txt", "a part")
        return "part"
    monkeypatch.setattr("symflop.commands.document.plugin", lambda group, what: [("part", stage)])


def test_a_failed_pdf_never_replaces_a_report_that_has_one(tmp_path, monkeypatch, capsys,
                                                           one_stage):
    from symflop.report import report as rep
    out = tmp_path / "r"
    out.mkdir()
    (out / rep.MARKER).write_text("a report\n")
    (out / "report.pdf").write_bytes(b"%PDF the earlier one")
    monkeypatch.setattr(rep, "compile_pdf",
                        lambda root: (False, "pdflatex failed: ! Undefined control sequence"))
    assert main(["report", "--out", str(out)]) == 1
    assert "the earlier report in" in capsys.readouterr().out
    assert (out / "report.pdf").read_bytes() == b"%PDF the earlier one"
    assert sorted(p.name for p in out.iterdir()) == [".symflop-report", "report.pdf"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def test_a_read_only_report_folder_is_refused_and_a_link_followed(tmp_path, capsys,
                                                                  one_stage):
    out = tmp_path / "r"
    assert main(["report", "--out", str(out), "--no-pdf"]) == 0
    out.chmod(0o555)
    try:
        capsys.readouterr()
        assert main(["report", "--out", str(out), "--no-pdf"]) == 2
        assert "a read-only folder" in capsys.readouterr().err
    finally:
        out.chmod(0o755)
    link = tmp_path / "latest"
    link.symlink_to(out)
    (out / "stale.txt").write_text("from before")
    assert main(["report", "--out", str(link), "--no-pdf"]) == 0
    assert link.is_symlink() and (link / "report.tex").exists()
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "r"]


def test_a_full_temp_folder_is_one_short_line(tmp_path, monkeypatch):
    """copytree into a full TMPDIR raises shutil.Error with one entry per file: the
    message was all of them (16,034 characters); now the first, and a count."""
    from symflop.report import report as rep
    (tmp_path / "report.tex").write_text("x")
    (tmp_path / "figures").mkdir()

    def full(src, dst, **kw):
        raise shutil.Error([(f"{src}/f{k}.pdf", f"{dst}/f{k}.pdf",
                             "[Errno 28] No space left on device") for k in range(500)])
    monkeypatch.setattr(rep.shutil, "which", lambda exe: "/bin/true")
    monkeypatch.setattr(rep.shutil, "copytree", full)
    built, message = rep.compile_pdf(tmp_path)
    assert not built
    assert message == ("pdflatex not run: [Errno 28] No space left on device (and 499 "
                       "more files)")
