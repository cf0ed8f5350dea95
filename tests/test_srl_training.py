"""SRL training on tiny budgets: the dynamic-sampling filter, warm-start lineage and resume."""

import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from datasets import Dataset
from transformers import TrainerCallback
from trl import GRPOConfig

from serving.engine import AdapterPool
from serving.engine_protocol import ServedAdapter
from tests.helpers import has_row
from tests.tiny_policy import TINY_TRAINING, make_tiny_policy
from training.distributed import torchrun_arguments
from training.dynamic_sampling import DynamicSamplingGRPOTrainer, keep_mask
from training.grpo_runner import mix_replay
from training.model_loading import (
    bf16_supported,
    load_base_model,
    load_policy,
    load_tokenizer,
    lora_config,
    quantization_config,
)
from training.policy_eval import generate
from training.srl import SRLConfig, SRLJob, main, run_srl_job


def rows(n, split="train", prefix="r"):
    out = []
    for i in range(n):
        out.append(
            {
                "row_id": f"{prefix}{i}",
                "split": split,
                "prompt": [
                    {"role": "system", "content": "You are a lich."},
                    {"role": "user", "content": f"Encounter {i}. Write step 2, a **DECIDE** step."},
                ],
                "expert_step": "2. **DECIDE** ACTION: cast_spell",
                "expert_action": "ACTION: cast_spell",
                "expert_thought": "Sorcery first.",
                "expert_title": "DECIDE",
                "top_actions": ["cast_spell"],
            }
        )
    return out


def job_for(tmp_path, policy, model_cache, train=None, parent=None, replay=None, **overrides):
    data = tmp_path / "data"
    data.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(train or rows(6)), data / "train.parquet")
    pq.write_table(pa.Table.from_pylist(rows(2, "validation", "v")), data / "val.parquet")
    if replay:
        pq.write_table(pa.Table.from_pylist(replay), data / "replay.parquet")
    return SRLJob(
        config=SRLConfig(model=policy, **{**TINY_TRAINING, **overrides}),
        train_data=str(data / "train.parquet"),
        validation_data=str(data / "val.parquet"),
        replay_data=str(data / "replay.parquet") if replay else None,
        parent_adapter=parent,
        work_dir=str(tmp_path / "work"),
        output_dir=str(tmp_path / "out"),
        model_cache=str(model_cache),
    )


def test_keep_mask_filters_zero_variance_groups():
    rewards = torch.tensor([0.5, 0.5, 0.5, 0.2, 0.9, 0.4, -1.0, -1.0])
    assert keep_mask(rewards, 2, 1e-4).tolist() == [False, False, True, True, True, True, False, False]
    assert keep_mask(rewards, 4, 1e-4).tolist() == [True] * 8
    assert keep_mask(torch.tensor([0.5, 0.50001]), 2, 1e-4).tolist() == [False, False]


def test_zero_variance_group_contributes_no_gradient(tiny_policy, model_cache, tmp_path):
    """Through the real trainer: change the filtered group's completions and the gradient is unchanged."""

    def reward(prompts, completions, group, **kwargs):
        # group "flat" always scores 0.5: zero variance; group "varied" alternates 0 and 1
        return [0.5 if g == "flat" else float(i % 2) for i, g in enumerate(group)]

    tokenizer = load_tokenizer(tiny_policy)
    model = load_policy(tiny_policy, None, lora_config(4, 8))
    data = Dataset.from_list(
        [
            {"prompt": [{"role": "user", "content": "hi"}], "group": "flat"},
            {"prompt": [{"role": "user", "content": "hello"}], "group": "varied"},
        ]
    )
    trainer = DynamicSamplingGRPOTrainer(
        model=model,
        reward_funcs=[reward],
        dynamic_sampling_epsilon=1e-4,
        train_dataset=data,
        processing_class=tokenizer,
        args=GRPOConfig(
            output_dir=str(tmp_path),
            per_device_train_batch_size=4,
            num_generations=2,
            max_completion_length=8,
            loss_type="grpo",
            use_cpu=True,
            bf16=False,
            gradient_checkpointing=False,
            report_to="none",
            shuffle_dataset=False,
            disable_dropout=True,
        ),
    )
    batch = trainer._generate_and_score_completions([data[0], data[0], data[1], data[1]])
    assert batch["advantages"][:2].abs().sum() == 0 and batch["completion_mask"][:2].sum() == 0
    assert trainer._metrics["train"]["dynamic_sampling/kept_fraction"][-1] == 0.5

    trainer.current_gradient_accumulation_steps = 1  # set by the training loop, which we bypass here

    def grads(inputs):
        trainer.model.zero_grad()
        trainer.compute_loss(trainer.model, inputs).backward()
        return [p.grad.clone() for p in trainer.model.parameters() if p.requires_grad and p.grad is not None]

    first = grads(batch)
    altered = dict(batch)
    altered["completion_ids"] = batch["completion_ids"].clone()
    altered["completion_ids"][:2] = (altered["completion_ids"][:2] + 7) % tokenizer.vocab_size
    second = grads(altered)
    assert first and all(torch.equal(a, b) for a, b in zip(first, second))
    assert any(g.abs().sum() > 0 for g in first)


def test_srl_job_trains_saves_and_records(tiny_policy, model_cache, tmp_path):
    step_lines = []
    metrics = run_srl_job(job_for(tmp_path, tiny_policy, model_cache), log=lambda _: None, step_log=step_lines.append)
    out = tmp_path / "out"
    assert any(line.startswith("SRL supervised step 1/1: loss ") for line in step_lines)
    assert [line.split(":")[0] for line in step_lines if "GRPO" in line] == ["SRL GRPO step 1/2", "SRL GRPO step 2/2"]
    assert all(s["tokens_per_s"] is not None and s["tokens_per_s"] > 0 for s in metrics["steps"])
    assert set(metrics["phase_seconds"]) >= {"model_load", "start_probe", "sft", "grpo", "probes"}
    assert (out / "adapter" / "adapter_model.safetensors").exists()
    card = (out / "adapter" / "README.md").read_text()
    assert "base_model: " in card and has_row(card, "phase", "step", "seconds", "decision accuracy", "format")
    assert (out / "reward_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert metrics["grpo_steps"] == 2 and len(metrics["steps"]) == 2
    assert metrics["sft"]["ran"] and metrics["sft"]["steps"] == 1  # ceil(6 rows x 0.33 epochs / 2)
    assert all(s["kept_fraction"] is not None for s in metrics["steps"])
    # the learning curve: the start, the end of the supervised phase, the end of GRPO
    curve = json.loads((out / "metrics.json").read_text())["learning_curve"]
    assert [(p["phase"], p["step"]) for p in curve] == [("start", 0), ("sft", 1), ("grpo", 2)]
    assert all(p["rows"] == 2 and 0.0 <= p["decision_accuracy"] <= 1.0 for p in curve)
    assert sum(curve[0]["predictions"].values()) == 2  # the DECIDE rows are counted (the sample is all DECIDE)
    assert 0 < metrics["training_seconds"] < sum(metrics["phase_seconds"].values())


def test_warm_start_from_parent_with_replay(tiny_policy, model_cache, tmp_path):
    first = tmp_path / "first"
    run_srl_job(job_for(first, tiny_policy, model_cache), log=lambda _: None)
    old_rows = rows(6)
    second = tmp_path / "second"
    metrics = run_srl_job(
        job_for(
            second,
            tiny_policy,
            model_cache,
            train=rows(4, prefix="n"),
            parent=str(first / "out" / "adapter"),
            replay=old_rows,
            replay_ratio=0.5,
            curve_rows=0,
        ),
        log=lambda _: None,
    )
    assert metrics["parent_adapter"] == str(first / "out" / "adapter")
    assert metrics["new_rows"] == 4 and metrics["replayed_rows"] == 2
    # without a validation sample nothing is probed, and nothing is made up
    assert metrics["learning_curve"] == [] and metrics["validation_before"] is None
    assert metrics["sft"]["rows"] == 6  # the supervised phase sees the replayed rows too


def test_mix_replay_is_seeded_and_skips_rows_already_present():
    new, old = rows(4, prefix="n"), rows(10) + rows(2, prefix="n")
    mixed = mix_replay(new, old, 0.5, seed=1)
    assert len(mixed) == 6 and mixed == mix_replay(new, old, 0.5, seed=1)
    assert len({r["row_id"] for r in mixed}) == 6


class CrashInSecondStep(TrainerCallback):
    """Dies in step 2, after checkpoint-1 was written (checkpoints are saved after on_step_end)."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 2:
            raise RuntimeError("simulated crash")


def test_killed_run_resumes_from_its_last_checkpoint(tiny_policy, model_cache, tmp_path):
    job = job_for(tmp_path, tiny_policy, model_cache)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_srl_job(job, log=lambda _: None, callbacks=[CrashInSecondStep()])
    assert not (tmp_path / "out" / "adapter").exists()
    metrics = run_srl_job(job, log=lambda _: None)
    assert metrics["resumed_from"].endswith("checkpoint-1")
    assert metrics["grpo_steps"] == 2
    assert metrics["sft"].get("resumed")  # the finished supervised phase was not redone


@pytest.mark.parametrize("quantization", ["4bit", "8bit"])
def test_quantized_training_runs_on_the_cpu_and_its_adapter_serves(quantization, model_cache, tmp_path):
    """QLoRA: a LoRA trained on a 4-bit (or 8-bit) base, one supervised warm-up step and one SRL GRPO step,
    with bitsandbytes on this CPU; the adapter then loads onto the full-precision base and is served."""
    from bitsandbytes.nn import Linear4bit, Linear8bitLt  # noqa: PLC0415 - loads bitsandbytes' native library; only the quantized tests need it

    tiny_policy = make_tiny_policy(tmp_path / "policy", model_cache, hidden_size=64)

    quantized = load_base_model(tiny_policy, quantization)
    layer = Linear4bit if quantization == "4bit" else Linear8bitLt
    assert isinstance(quantized.model.layers[0].self_attn.q_proj, layer)  # the base really is quantized
    del quantized
    metrics = run_srl_job(
        job_for(tmp_path, tiny_policy, model_cache, quantization=quantization, max_steps=1, sft_epochs=0.2),
        log=lambda _: None,
    )
    assert metrics["sft"]["steps"] == 1 and metrics["grpo_steps"] == 1
    assert metrics["quantization"] == quantization and metrics["peak_rss_mib"] > 100  # torch alone is more
    adapter = tmp_path / "out" / "adapter"
    assert (adapter / "adapter_model.safetensors").exists()
    pool = AdapterPool(tiny_policy, threads=1)
    pool.sync([ServedAdapter(name="lich", target="lich", tier="tier1", version="q" * 64, path=str(adapter))])
    messages = [{"role": "user", "content": "Who goes there?"}]
    assert "".join(pool.stream("lich", messages, max_new_tokens=6)) != ""


def test_quantization_without_its_cpu_backend_is_a_clear_error(monkeypatch):
    import bitsandbytes  # noqa: PLC0415 - loads bitsandbytes' native library; only the quantized tests need it

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(bitsandbytes, "__version__", "0.44.1")
    with pytest.raises(RuntimeError, match=r"needs bitsandbytes >= 0\.49 .* has 0\.44\.1 and no CUDA GPU"):
        quantization_config("4bit")


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "expected"), [(False, False, False), (True, False, True), (False, True, True)]
)
def test_bf16_counts_only_where_the_cpu_has_it_natively(monkeypatch, avx512_bf16, amx, expected):
    """oneDNN says bf16 on any AVX-512 CPU and emulates it there, at 2.3x the float32 seconds of a training step."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert bf16_supported() is expected


def test_job_entry_point_runs_a_job_file(tiny_policy, model_cache, tmp_path, capsys):
    """`python -m training.srl --job job.json` is what a remote training job runs."""

    job = job_for(tmp_path, tiny_policy, model_cache, max_steps=1)
    path = tmp_path / "job.json"
    path.write_text(job.model_dump_json())
    assert main(["--job", str(path)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["grpo_steps"] == 1
    assert (tmp_path / "out" / "adapter" / "adapter_model.safetensors").exists()


def test_torchrun_trains_data_parallel_and_one_process_writes(tiny_policy, model_cache, tmp_path):
    """`training.distributed` (what a multi-GPU SageMaker job runs): two CPU processes, gloo, one adapter."""

    job = job_for(tmp_path, tiny_policy, model_cache, max_steps=1)
    path = tmp_path / "job.json"
    path.write_text(job.model_dump_json())
    done = subprocess.run(
        [sys.executable, "-m", "training.distributed", "--processes-per-host", "2", "training.srl", "--job", str(path)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "out" / "adapter" / "adapter_model.safetensors").exists()
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["grpo_steps"] == 1


def test_distributed_placement_follows_the_sagemaker_hosts():
    assert torchrun_arguments("training.rlvr", ["--job", "j"], 4)[:3] == [
        "--standalone",
        "--nnodes=1",
        "--nproc_per_node=4",
    ]
    multi = torchrun_arguments(
        "training.srl", ["--job", "j"], 8, {"current_host": "algo-2", "hosts": ["algo-1", "algo-2"]}
    )
    assert multi == [
        "--nnodes=2",
        "--node_rank=1",
        "--master_addr=algo-1",
        "--master_port=29500",
        "--nproc_per_node=8",
        "-m",
        "training.srl",
        "--job",
        "j",
    ]


def test_generation_stops_each_sequence_once_its_predicate_holds(tiny_policy):
    tokenizer, model = load_tokenizer(tiny_policy), load_base_model(tiny_policy)
    prompts = [r["prompt"] for r in rows(3)]
    full = [o[0] for o in generate(model, tokenizer, prompts, max_new_tokens=24)]
    cut = [o[0] for o in generate(model, tokenizer, prompts, max_new_tokens=24, stop_when=lambda text: len(text) >= 2)]
    for whole, stopped in zip(full, cut):  # greedy: the stopped text is where the whole one met the predicate
        assert len(whole) > len(stopped) >= 2 and whole.startswith(stopped)


def test_importing_the_training_library_prints_no_bitsandbytes_kernel_notice():
    # the notice exists: without the training library's setting it is printed (so the test can fail)
    loud = subprocess.run([sys.executable, "-c", "import peft, bitsandbytes"], capture_output=True, text=True)
    if "gemm_4bit_forward" not in loud.stderr + loud.stdout:
        pytest.skip("bitsandbytes prints no kernel notice here even without the training library: nothing to silence")
    code = "import training, peft, bitsandbytes"
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "gemm_4bit_forward" not in quiet.stderr + quiet.stdout
