"""The SageMaker launcher's real boto3 calls against moto's SageMaker, S3 and CloudWatch Logs APIs on
127.0.0.1. moto accepts the job and reports it completed without running a container, so the test
plays the container's part at that edge: it writes the job's `model.tar.gz` and a log line."""

import io
import json
import tarfile
import time

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from srl_assets.resources import TrainingResource
from training.sagemaker_launcher import LOG_GROUP, SageMakerLauncher, SageMakerSettings
from training.srl import SRLConfig, SRLJob


def _parquet(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


@pytest.fixture
def job(tmp_path):
    parent = tmp_path / "parent_adapter"
    parent.mkdir()
    (parent / "adapter_config.json").write_text('{"r": 16}')
    rows = [{"prompt": "p", "expert_action": "a"}]
    return SRLJob(
        config=SRLConfig.for_budget("full", "srl"),
        train_data=_parquet(tmp_path / "data" / "train.parquet", rows),
        validation_data=_parquet(tmp_path / "data" / "validation.parquet", rows),
        parent_adapter=str(parent),
        work_dir=str(tmp_path / "work"),
        output_dir=str(tmp_path / "output"),
        model_cache=str(tmp_path / "cache"),
    )


def _model_tar(metrics: dict) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in (
            ("metrics.json", json.dumps(metrics).encode()),
            ("adapter/adapter_config.json", b'{"r": 16}'),
            ("adapter/adapter_model.safetensors", b"weights"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_a_training_job_runs_on_sagemaker_and_its_adapter_comes_back(job, s3_endpoint, s3_root, tmp_path):
    settings = SageMakerSettings(
        role_arn="arn:aws:iam::123456789012:role/forge-training",
        image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/srl-forge:latest",
        s3_root=s3_root,
        endpoint_url=s3_endpoint,
        poll_seconds=0.01,
        region="us-east-1",
    )
    launcher = SageMakerLauncher(settings)
    name = launcher.job_name("training.srl", "f" * 16, attempt=1)
    bucket, prefix = s3_root[len("s3://") :].split("/", 1)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    # the container's part: its output archive and a log line
    s3.put_object(
        Bucket=bucket,
        Key=f"{prefix}/training-jobs/{'f' * 16}/output/{name}/output/model.tar.gz",
        Body=_model_tar({"grpo_steps": 7, "validation_after": {"score": 0.5}}),
    )
    logs = boto3.client("logs", endpoint_url=s3_endpoint, region_name="us-east-1")
    logs.create_log_group(logGroupName=LOG_GROUP)
    logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=f"{name}/algo-1-1700000000")
    logs.put_log_events(
        logGroupName=LOG_GROUP,
        logStreamName=f"{name}/algo-1-1700000000",
        logEvents=[{"timestamp": int(time.time() * 1000), "message": "GRPO step 7/7 reward 0.50"}],
    )

    lines: list[str] = []
    metrics = launcher.run(job, "training.srl", "f" * 16, log=lines.append)

    assert metrics["grpo_steps"] == 7
    assert (tmp_path / "output" / "adapter" / "adapter_model.safetensors").read_bytes() == b"weights"
    assert any("submitted" in line for line in lines)
    assert any("GRPO step 7/7" in line for line in lines)  # the container's log reached the run's log
    sagemaker = boto3.client("sagemaker", endpoint_url=s3_endpoint, region_name="us-east-1")
    described = sagemaker.describe_training_job(TrainingJobName=name)
    assert described["EnableManagedSpotTraining"] is True
    assert described["CheckpointConfig"]["S3Uri"] == f"{s3_root}/training-jobs/{'f' * 16}/checkpoints"
    assert described["AlgorithmSpecification"]["ContainerEntrypoint"] == ["python", "-m", "training.srl"]
    assert {c["ChannelName"] for c in described["InputDataConfig"]} == {"data", "parent", "job"}
    remote_job = json.loads(
        s3.get_object(Bucket=bucket, Key=f"{prefix}/training-jobs/{'f' * 16}/input/job/job.json")["Body"].read()
    )
    assert remote_job["train_data"] == "/opt/ml/input/data/data/train.parquet"
    assert remote_job["parent_adapter"] == "/opt/ml/input/data/parent" and remote_job["output_dir"] == "/opt/ml/model"
    assert remote_job["work_dir"] == "/opt/ml/checkpoints"  # synced to the checkpoint S3 URI: spot resumes

    # running the step again attaches to the completed job instead of training (or uploading) twice
    def no_upload(*args, **kwargs):
        raise AssertionError("inputs uploaded twice")

    launcher.s3.upload_file = no_upload
    assert launcher.run(job, "training.srl", "f" * 16, log=lines.append)["grpo_steps"] == 7
    assert len(sagemaker.list_training_jobs()["TrainingJobSummaries"]) == 1


def test_the_budget_picks_the_launcher(tmp_path):
    base = {"work_root": str(tmp_path), "model_cache": str(tmp_path)}
    configured = {
        "sagemaker_role_arn": "arn:aws:iam::1:role/r",
        "sagemaker_image_uri": "img",
        "sagemaker_s3_root": "s3://b/p",
    }
    assert TrainingResource(budget="quick", **base, **configured).sagemaker_launcher() is None
    assert TrainingResource(budget="full", **base).sagemaker_launcher() is None  # nothing configured: in process
    assert (
        TrainingResource(
            budget="full", **base, **configured, sagemaker_endpoint_url="http://127.0.0.1:1"
        ).sagemaker_launcher()
        is not None
    )
    with pytest.raises(ValueError, match="sagemaker_role_arn"):
        TrainingResource(budget="quick", launcher="sagemaker", **base).sagemaker_launcher()


def test_more_than_one_process_runs_the_job_under_torchrun():
    def command(**settings):
        launcher = SageMakerLauncher(
            SageMakerSettings(
                role_arn="arn:aws:iam::1:role/r", image_uri="img", s3_root="s3://b/p", region="us-east-1", **settings
            )
        )
        spec = launcher.entry_point("training.rlvr")
        return spec["ContainerEntrypoint"] + spec["ContainerArguments"]

    assert command() == ["python", "-m", "training.rlvr", "--job", "/opt/ml/input/data/job/job.json"]
    assert command(instance_type="ml.g5.12xlarge", processes_per_host="auto") == [
        "python",
        "-m",
        "training.distributed",
        "--processes-per-host",
        "auto",
        "training.rlvr",
        "--job",
        "/opt/ml/input/data/job/job.json",
    ]
    assert command(instance_count=2)[:3] == ["python", "-m", "training.distributed"]
