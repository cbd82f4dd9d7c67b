"""The text task without Ray: options and validation, tokenising once, freezing, the schedule, bf16 on CPU."""

import sys

import pandas as pd
import pytest
import torch

from distsearch.spec.model import parse_job
from distsearch.tasks import TaskInputError, make_task, text_models
from distsearch.tasks import text as text_task
from distsearch.train import loop
from distsearch.validate import check_job

from ..conftest import JOBS

LABELS = ("alpha", "beta", "gamma")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Forty short texts of three labels, each label with its own words, and a saved checkpoint."""
    tmp = tmp_path_factory.mktemp("text")
    words = {
        "alpha": "socket stream reader writer loop",
        "beta": "message header mime parser payload",
        "gamma": "record handler level formatter filter",
    }
    rows = [
        {"text": f"the {words[lab].split()[i % 5]} and {words[lab].split()[(i + 2) % 5]} number {i}", "label": lab}
        for i in range(40)
        for lab in LABELS
    ]
    path = tmp / "texts.parquet"
    pd.DataFrame(rows).to_parquet(path)
    from transformers import BertConfig, BertModel

    tok = text_models.train_tokenizer([r["text"] for r in rows], 200)
    ckpt = tmp / "bert-tiny"
    BertModel(
        BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, max_position_embeddings=64)
    ).save_pretrained(ckpt)
    tok.save_pretrained(ckpt)
    return tmp, path, ckpt


def _job(tmp, path, space, **options):
    return parse_job(
        {
            "name": "t", "task": "text", "metric": "val_accuracy", "mode": "max", "space": space, "storage": str(tmp / "runs"),
            "task_options": {"path": str(path), "max_tokens": 32, "vocab_size": 200, "cache_dir": str(tmp / "cache"), **options},
        }
    )  # fmt: skip


def _problems(spec) -> str:
    with pytest.raises(ValueError) as e:
        check_job(spec)
    return str(e.value)


def test_missing_columns_are_named_with_those_present(corpus):
    tmp, path, _ = corpus
    with pytest.raises(TaskInputError, match=r"task_options.text_column: got 'body'; .* its columns are text, label; fix"):
        make_task("text", {"path": str(path), "text_column": "body"})


def test_an_empty_or_one_label_column_is_refused(corpus, tmp_path):
    one = tmp_path / "one.csv"
    pd.DataFrame({"text": ["a b c", "d e f"], "label": ["x", "x"]}).to_csv(one, index=False)
    with pytest.raises(TaskInputError, match=r"task_options.label_column: column 'label' holds 'x' in every row; fix"):
        make_task("text", {"path": str(one)})
    empty = tmp_path / "empty.csv"
    pd.DataFrame({"text": ["a b c"], "label": [None]}).to_csv(empty, index=False)
    with pytest.raises(TaskInputError, match="holds no rows with both columns"):
        make_task("text", {"path": str(empty)})


def test_bytes_that_are_not_utf8_are_refused_naming_the_row_and_the_byte(tmp_path):
    """Issue 29, case 7: pyarrow read the column as binary and every text became "b'...'"."""
    rows = b"text,label\n" + b"".join(f"sample text {i},{'ab'[i % 2]}\n".encode() for i in range(40))
    path = tmp_path / "latin1.csv"
    path.write_bytes(rows + b"caf\xe9 au lait,a\n")  # Latin-1 for the e with an accent
    with pytest.raises(TaskInputError, match=r"column 'text', data row 41: byte 0xe9 at offset 3 is not UTF-8; fix: save the file as UTF-8"):
        make_task("text", {"path": str(path)})


def test_a_huge_text_cell_is_cut_at_the_stated_bound_before_tokenising(tmp_path, monkeypatch):
    """Issue 29, case 4: one 50 MB cell with ``max_tokens: 32`` took 246 s and 10.8 GB to validate."""
    from distsearch.tasks import text_tokens

    rows = [{"text": f"short text number {i}", "label": "ab"[i % 2]} for i in range(40)]
    rows[0]["text"] = "word " * 1_000_000  # 5 MB
    path = tmp_path / "huge.parquet"
    pd.DataFrame(rows).to_parquet(path)
    seen = []
    real = text_task.tokenise
    monkeypatch.setattr(text_task, "tokenise", lambda tok, texts, n: seen.append(max(map(len, texts))) or real(tok, texts, n))
    task = make_task("text", {"path": str(path), "max_tokens": 32, "vocab_size": 100, "cache_dir": None})
    task.use_space({})
    task.splits(0)
    bound = 32 * text_tokens.CHARS_PER_TOKEN
    assert max(map(len, task.texts)) == bound and seen == [bound]
    assert task.input_encoder()(["word " * 100_000]).shape == (1, 1, 2, 32)


def test_a_checkpoint_without_config_and_a_mismatched_tokenizer_are_refused(corpus, tmp_path):
    tmp, path, ckpt = corpus
    bare = tmp_path / "no-config"
    bare.mkdir()
    from transformers import BertConfig, BertModel

    small = tmp_path / "small-vocab"  # a model embedding 50 tokens, saved with a tokenizer of 200
    BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)).save_pretrained(small)
    text_models.load_tokenizer(str(ckpt)).save_pretrained(small)
    problems = _problems(_job(tmp, path, {"model": {"choice": [str(bare), str(small)]}}))
    assert f"space.model: checkpoint '{bare}' is a directory without config.json; fix: give a directory saved with save_pretrained" in problems
    assert f"checkpoint '{small}': its tokenizer has" in problems and "but its model embeds 50" in problems and "fix:" in problems


def _resized(ckpt, out, **config):
    """A copy of ``ckpt`` whose config.json claims other sizes than its weights hold."""
    import json
    import shutil

    shutil.copytree(ckpt, out)
    path = out / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **config}))
    return out


def test_weights_that_do_not_fill_the_configured_model_are_refused_naming_the_tensors(corpus, tmp_path):
    """Issue 29, case 5: ``vocab_size: 18`` over 17 embedding rows validated, and the embedding was
    re-initialised at random (ignore_mismatched_sizes, with Transformers' log silenced)."""
    tmp, path, ckpt = corpus
    rows = text_models.load_config(str(ckpt)).vocab_size
    off = _resized(ckpt, tmp_path / "off-by-one", vocab_size=rows + 1)
    problems = _problems(_job(tmp, path, {"model": str(off)}))
    assert f"checkpoint '{off}': 1 tensor(s) differ in shape" in problems, problems
    assert f"bert.embeddings.word_embeddings.weight ({rows}, 16) in the files, ({rows + 1}, 16) in the config" in problems
    assert "fix: save the model and its config together" in problems


def test_a_config_claiming_a_huge_model_is_refused_without_allocating_it(corpus, tmp_path):
    """Issue 29, case 5: ``vocab_size: 20000000`` on a 52 KB checkpoint took 5.5 GB at validation."""
    import subprocess

    tmp, path, ckpt = corpus
    huge = _resized(ckpt, tmp_path / "huge", vocab_size=20_000_000)
    job = tmp_path / "job.yaml"
    job.write_text(_job(tmp, path, {"model": str(huge)}).model_dump_json())
    code = (
        "import resource, sys\nfrom distsearch.cli import main\n"
        f"rc = main(['validate', {str(job)!r}])\n"
        "print('peak_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\nsys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "(20000000, 16) in the config" in proc.stderr, proc.stderr[-2000:]
    peak_mib = int(proc.stdout.split("peak_kib")[1]) / 1024
    assert peak_mib < 2048, f"validation peaked at {peak_mib:.0f} MiB (5.5 GB before the fix); 20,000,000 x 16 float32 embeddings alone are 1,221 MiB"


def test_a_checkpoints_own_code_never_runs_unless_the_job_opts_in(corpus, tmp_path):
    """Issue 29, case 6: with trust_remote_code unset, Transformers asked on stdin, and
    ``echo y | distsearch validate`` ran the checkpoint's configuration_evil.py."""
    import json
    import subprocess

    tmp, path, ckpt = corpus
    evil = _resized(ckpt, tmp_path / "evil", auto_map={"AutoConfig": "configuration_evil.EvilConfig"}, model_type="evil")
    marker = tmp_path / "marker"
    (evil / "configuration_evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('pwned')\nfrom transformers import BertConfig\n\n\nclass EvilConfig(BertConfig):\n    model_type = 'evil'\n"
    )

    job = tmp_path / "job.yaml"
    job.write_text(_job(tmp, path, {"model": str(evil)}).model_dump_json())
    proc = subprocess.run([sys.executable, "-m", "distsearch", "validate", str(job)], input="y\n", capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "ships its own Python code" in proc.stderr, proc.stderr[-2000:]
    assert "task_options.trust_remote_code: true" in proc.stderr and not marker.exists()
    with pytest.raises(ValueError):  # the opt-in is what it says: that code runs (then this toy config fails)
        check_job(_job(tmp, path, {"model": str(evil)}, trust_remote_code=True), dry_run=False)
    assert marker.read_text() == "pwned"
    assert json.loads((evil / "config.json").read_text())["model_type"] == "evil"


def test_a_hub_id_offline_and_not_cached_is_named_at_validation(corpus, monkeypatch):
    tmp, path, _ = corpus
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    problems = _problems(_job(tmp, path, {"model": {"choice": {"hf": {"checkpoint": "example-org/no-such-model"}}}}))
    assert (
        "checkpoint 'example-org/no-such-model' cannot be loaded" in problems
        and "HF_HUB_OFFLINE is set" in problems
        and "save_pretrained" in problems
    )


def test_each_text_is_tokenised_once_per_tokenizer_and_a_later_run_reads_the_cache(corpus, monkeypatch):
    tmp, path, ckpt = corpus
    calls = []
    real = text_task.tokenise
    monkeypatch.setattr(text_task, "tokenise", lambda tok, texts, n: calls.append(len(texts)) or real(tok, texts, n))
    spec = _job(tmp, path, {"model": {"choice": {"hf": {"checkpoint": str(ckpt)}, "encoder": {"width": 16, "heads": 2, "depth": 1}}}})
    task = check_job(spec)  # the dry run splits once
    first = task.splits(0)
    assert calls == [120, 120]  # two tokenizers, every text once, for the dry run and the sweep alike
    assert first.train[0].shape[1:] == (2, 2, 32) and first.train[0].dtype == torch.int32
    again = check_job(spec)  # a new run of the same data: the checkpoint's tokens come from the cache
    assert torch.equal(again.splits(0).val[0], first.val[0]) and calls == [120, 120]


def test_freezing_leaves_the_encoder_without_gradients_or_optimizer_state(corpus):
    tmp, path, ckpt = corpus
    task = check_job(_job(tmp, path, {"model": {"choice": {"hf": {"checkpoint": str(ckpt)}}}}), dry_run=False)
    splits = task.splits(0)
    params = {"model": "hf", "model.checkpoint": str(ckpt), "freeze_epochs": 1, "optimizer": "adamw", "lr": 1e-3, "batch_size": 16, "max_length": 16}
    with_state = []  # per epoch, the parameters the checkpoint's optimizer state covers
    loop.train(task, params, lambda m, s: with_state.append(len(s["optimizer"]["state"])), max_epochs=2, seed=0, splits=splits)
    head = 2  # the classifier's weight and bias
    assert with_state[0] == head  # epoch 1: frozen encoder, no state for it
    assert with_state[1] == len(list(task.build_model(params, splits).parameters()))  # epoch 2: everything trains


def test_the_schedule_warms_up_then_decays():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = loop.make_scheduler({"lr_schedule": "linear", "warmup_fraction": 0.2}, opt, max_epochs=2, steps_per_epoch=5)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([0.5, 1.0, 1.0, 0.875]) and lrs[-1] == pytest.approx(0.125)
    cosine = loop.make_scheduler(
        {"lr_schedule": "cosine"}, torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), max_epochs=4, steps_per_epoch=3
    )
    assert cosine.get_last_lr() == [1.0]  # by whole epochs, as CosineAnnealingLR over max_epochs
    assert loop.make_scheduler({}, opt, max_epochs=2, steps_per_epoch=5) is None


def test_bf16_is_chosen_on_a_cuda_device_that_supports_it_and_the_model_trains_under_it(corpus, monkeypatch):
    tmp, path, _ = corpus
    task = check_job(_job(tmp, path, {"model": {"choice": {"encoder": {"width": 16, "heads": 2, "depth": 1}}}}), dry_run=False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert loop.amp_dtype(task, torch.device("cuda", 0)) == torch.bfloat16
    assert loop.amp_dtype(task, torch.device("cpu")) is None and loop.amp_dtype(make_task("digits"), torch.device("cuda", 0)) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert loop.amp_dtype(task, torch.device("cuda", 0)) is None  # fp16 would need loss scaling: full precision instead
    # the same code path on CPU, where autocast supports bf16 too
    monkeypatch.setattr(loop, "amp_dtype", lambda task, device: torch.bfloat16)
    got = []
    loop.train(
        task,
        {"model": "encoder", "model.width": 16, "model.heads": 2, "model.depth": 1, "batch_size": 16},
        lambda m, s: got.append(m),
        max_epochs=1,
        seed=0,
        splits=task.splits(0),
    )
    assert torch.isfinite(torch.tensor(got[0]["val_loss"]))


def test_a_missing_extra_is_named(monkeypatch, corpus):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(TaskInputError, match=r"distsearch\[text\].*fix: pip install 'distsearch\[text\]'"):
        make_task("text", {"path": str(corpus[1])})


def test_the_shipped_gpu_job_trains_on_nccl_with_whole_gpus():
    from distsearch.spec.model import load_job
    from distsearch.sweep.planning import worker_group_plan

    spec = load_job(JOBS / "text_gpu.yaml")
    plan = worker_group_plan(spec)
    assert (plan.backend, plan.use_gpu, plan.resources_per_worker["GPU"]) == ("nccl", True, 1)
    assert spec.task == "text" and text_task.TextClassification.mixed_precision


def test_a_numeric_label_is_regression_in_its_own_units(corpus, tmp_path):
    tmp, path, _ = corpus
    frame = pd.read_parquet(path).assign(label=lambda f: f["text"].str.len().astype(float) + 0.5)  # many distinct values: regression
    numeric = tmp_path / "lengths.parquet"
    frame.to_parquet(numeric)
    spec = parse_job(
        {
            **_job(tmp, numeric, {"model": {"choice": {"encoder": {"width": 16, "heads": 2, "depth": 1}}}}).to_dict(),
            "metric": "val_rmse",
            "mode": "min",
        }
    )
    task = check_job(spec)
    assert type(task).__name__ == "TextRegression" and task.out_features == 1
    splits = task.splits(0)
    assert float(splits.train[1].mean()) == pytest.approx(0, abs=1e-5) and float(splits.train[1].std(unbiased=False)) == pytest.approx(1, rel=1e-4)
    got = []
    loop.train(
        task,
        {"model": "encoder", "model.width": 16, "model.heads": 2, "model.depth": 1, "lr": 3e-3},
        lambda m, s: got.append(m),
        max_epochs=2,
        seed=0,
        splits=splits,
    )
    assert {"val_rmse", "val_r2"} <= set(got[-1]) and got[-1]["val_rmse"] > 0
