"""The docs' command lines, YAML and task code are checked against the code (no Ray); their
Python examples run in tests/integration/test_docs_run.py."""

import copy

import pytest

from distsearch import cli
from distsearch.spec import yaml_load as spec_yaml
from distsearch.spec.model import parse_job
from distsearch.validate import check_job

from ..conftest import ROOT, load_shipped, tiny_job
from ..docs_blocks import blocks, distsearch_commands

COMMANDS = distsearch_commands()
BUILT_DATA_JOBS = ("jobs/text.yaml", "jobs/images.yaml")


def test_the_docs_have_the_blocks_these_tests_check():
    assert len(COMMANDS) >= 8 and len(blocks("yaml")) >= 3 and len(blocks("python")) >= 4


@pytest.mark.parametrize("where, argv", COMMANDS, ids=[f"{w}:{' '.join(a)}" for w, a in COMMANDS])
def test_every_distsearch_command_in_the_docs_parses_and_names_a_valid_job(where, argv, monkeypatch, request):
    monkeypatch.chdir(ROOT)
    args = cli.build_parser().parse_args(argv)  # an unknown flag or a missing argument exits here
    for job_file in [args.job] if args.command == "run" else args.jobs if args.command == "validate" else []:
        if job_file in BUILT_DATA_JOBS:  # their data is built by a script, not in the repository
            check_job(load_shipped(ROOT / job_file, request), dry_run=False)
        else:
            spec, _ = cli._load(job_file, getattr(args, "storage", None), dry_run=False)
            assert spec.name


def test_the_readme_one_line_change_to_a_hub_checkpoint_is_one_line_of_the_text_job():
    ((_, diff),) = [b for b in blocks("diff") if b[0].startswith("README.md")]
    removed, added = (line[1:] for line in diff.splitlines())
    text = (ROOT / "jobs" / "text.yaml").read_text()
    assert removed in text.splitlines()
    changed = parse_job(spec_yaml.load(text.replace(removed, added)), "the text job, changed")
    assert "distilbert/distilbert-base-uncased" in changed.space["model"].options["hf"]["checkpoint"].values


def test_the_readme_minimal_job_validates_with_its_dry_run_and_each_later_section_fits_it(tmp_path):
    job, *sections = [t for w, t in blocks("yaml") if w.startswith("README.md")]
    raw = {**spec_yaml.load(job), "storage": str(tmp_path)}
    check_job(parse_job(raw, "README's minimal job"), dry_run=True)
    for text in sections:  # "add to the job above"
        check_job(parse_job({**raw, **spec_yaml.load(text)}, "README's minimal job with a section"), dry_run=False)


def test_the_job_spec_reference_space_parses():
    (text,) = [t for w, t in blocks("yaml") if w.startswith("docs/job-spec.md")]
    raw = tiny_job(ROOT)
    raw["space"] = spec_yaml.load(text)
    assert "model" in parse_job(raw, "docs/job-spec.md's space").space


def test_the_custom_task_example_defines_a_task_and_its_job_parses():
    (code,) = [t for w, t in blocks("python") if w.startswith("docs/tasks.md")]
    scope: dict = {}
    exec(compile(code, "docs/tasks.md", "exec"), scope)  # the imports it names exist
    task = scope["make_task"]()
    assert task.name == "mine" and task.families == ("mynet",)
    (snippet,) = [t for w, t in blocks("yaml") if w.startswith("docs/tasks.md")]
    raw = copy.deepcopy(tiny_job(ROOT))
    raw.update(spec_yaml.load(snippet))
    assert parse_job(raw, "docs/tasks.md's job").task_options == {"factory": "mypkg.task:make_task"}


def test_the_readme_workaround_lets_a_user_import_transformers_beside_torchvision():
    """The README's block for both extras on a CPU-only torch runs in a fresh interpreter."""
    import subprocess
    import sys

    (code,) = [t for w, t in blocks("python") if "ensure_importable()" in t]
    proc = subprocess.run([sys.executable, "-c", code + "\nprint('imported')"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0 and "imported" in proc.stdout, proc.stderr[-2000:]
