"""The README and docs/ say what the code does: their Python blocks run, their `survey`
commands parse and name job files that exist, their job files validate, their links resolve,
and every results column they name is a column of the real tables."""

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest
import yaml

from pipelines.analysis.baselines import BASELINES_SCHEMA
from pipelines.analysis.columns import SUMMARY_SCHEMA
from pipelines.analysis.scales import SCALES_SCHEMA
from pipelines.cli.parser import parser
from pipelines.job import load_job, parse_job
from pipelines.results.records import CURVES_SCHEMA, FITS_SCHEMA
from tests.support import torch_threads

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 200
# A block preceded by an HTML comment (e.g. <!-- cluster-only -->, <!-- needs-results -->)
# is shown, not run.
_BLOCK = re.compile(r"(?:(<!--[^\n]*-->)\n)?```(\w+)\n(.*?)```", re.S)
# The results tables, by the docs/results.md section that documents each.
SECTIONS = {"The fits table": FITS_SCHEMA, "The curves table": CURVES_SCHEMA,
            "The summary": SUMMARY_SCHEMA, "The baselines table": BASELINES_SCHEMA,
            "The scales table": SCALES_SCHEMA}
ALL_COLUMNS = {name for schema in SECTIONS.values() for name in schema.names}


def blocks(language: str, runnable: bool = True) -> list[tuple[str, str]]:
    """``(id, code)`` of every fenced block in ``language`` on the pages (unmarked ones only
    when ``runnable``)."""
    found = []
    for page in PAGES:
        for i, match in enumerate(_BLOCK.finditer(page.read_text())):
            marker, lang, code = match.groups()
            if lang == language and not (runnable and marker):
                found.append((f"{page.name}:{i}", code))
    return found


def survey_commands() -> list[tuple[str, list[str]]]:
    """Every ``survey ...`` command line in the bash blocks, as arguments."""
    commands = []
    for where, code in blocks("bash", runnable=False):
        for line in code.replace("\\\n", " ").splitlines():
            for part in re.split(r"&&|;|\|", line):
                words = shlex.split(part, comments=True)
                if words and words[0] == "survey":
                    commands.append((f"{where} {' '.join(words[:3])}", words[1:]))
    return commands


def test_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= README_MAX_LINES


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_resolve(page):
    for target in re.findall(r"\]\(([^)#]+)\)", page.read_text()):
        if not target.startswith(("http://", "https://")):
            assert (page.parent / target).exists(), f"{page.name}: broken link {target}"


@pytest.mark.parametrize("code", [pytest.param(c, id=w) for w, c in blocks("python")])
def test_python_block_runs(code, request, tmp_path, monkeypatch):
    """Run the block; a ``print(...)  # text`` line must print ``text``."""
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with torch_threads(1), contextlib.redirect_stdout(out):
        exec(compile(code, request.node.callspec.id, "exec"), {"__name__": "__docs__"})
    claimed = [line.split("#", 1)[1].strip() for line in code.splitlines()
               if line.lstrip().startswith("print(") and "#" in line]
    assert out.getvalue().splitlines()[: len(claimed)] == claimed


@pytest.mark.parametrize(("where", "args"),
                         [pytest.param(w, a, id=w) for w, a in survey_commands()])
def test_survey_command_parses(where, args):
    """The command parses; a job file it names exists and validates with its ``--set``s."""
    parsed = parser().parse_args(args)
    job = getattr(parsed, "job", None) or getattr(parsed, "target", None)
    if job is not None and job.endswith((".yaml", ".yml")):
        assert (ROOT / job).is_file(), f"{where}: no job file {job}"
        load_job(ROOT / job, parsed.overrides)


@pytest.mark.parametrize(("where", "code"),
                         [pytest.param(w, c, id=w) for w, c in blocks("yaml", runnable=False)])
def test_yaml_job_validates(where, code):
    raw = yaml.safe_load(code)
    if "name" in raw:  # a whole job file, not a fragment
        assert parse_job(raw, source=where).name == raw["name"]
    else:
        assert set(raw) <= {"data", "grid", "model", "prior", "train", "readout", "resources"}


def _documented(section: str) -> list[str]:
    """The backticked names in the first column of the tables under ``## section``."""
    text = (ROOT / "docs" / "results.md").read_text()
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([a-z_0-9]+)` \|", body, re.M)


@pytest.mark.parametrize("section", list(SECTIONS))
def test_results_columns_exist(section):
    documented = _documented(section)
    assert documented, f"docs/results.md: no columns under {section!r}"
    missing = set(documented) - set(SECTIONS[section].names)
    assert not missing, f"docs/results.md, {section}: not columns of the table: {missing}"


@pytest.mark.parametrize("section", ["The fits table", "The curves table", "The summary",
                                     "The baselines table"])
def test_every_results_column_is_documented(section):
    undocumented = set(SECTIONS[section].names) - set(_documented(section))
    assert not undocumented, f"docs/results.md, {section}: undocumented {undocumented}"


def test_columns_selected_in_examples_exist():
    """Columns selected as ``frame[["a", "b"]]`` in any Python block (run or not)."""
    for where, code in blocks("python", runnable=False):
        for selection in re.findall(r"\[\[([^\]]+)\]\]", code):
            names = set(re.findall(r"\"([^\"]+)\"", selection))
            assert names <= ALL_COLUMNS, f"{where}: not results columns: {names - ALL_COLUMNS}"
