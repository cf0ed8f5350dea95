"""Runs an SRL / RLVR job as a SageMaker training job: the same entry point as in process
(`python -m training.srl --job job.json`), on a GPU instance, with managed spot and S3 checkpoints.

1. The job's inputs (parquet rows, the parent adapter) go to S3 under the job's fingerprint, and a copy
   of the job file with the container's paths (`/opt/ml/input/data/<channel>/…`, output
   `/opt/ml/model`, work folder `/opt/ml/checkpoints`, which SageMaker syncs to S3, so an interrupted
   spot job resumes from its last checkpoint).
2. `create_training_job` with the image, instance type and count, the channels, spot settings; the
   status and the container's CloudWatch log lines are reported while it runs.
3. On completion `model.tar.gz` (the output folder: adapter, metrics.json, reward curve) is unpacked
   into the job's local output folder, exactly where the in-process run would have written it.

A job name is the fingerprint plus an attempt number: re-running a step attaches to a job still in
progress or already completed, and starts the next attempt (resuming from the shared checkpoints)
after a failure.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict

CONTAINER_INPUT = "/opt/ml/input/data"
CONTAINER_OUTPUT = "/opt/ml/model"
CONTAINER_CHECKPOINTS = "/opt/ml/checkpoints"
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
TERMINAL = {"Completed", "Failed", "Stopped"}


class SageMakerSettings(BaseModel):
    model_config = ConfigDict(frozen=True)
    role_arn: str
    image_uri: str  # an image with this project installed and the base model cached (model_cache below)
    s3_root: str  # s3://bucket/prefix: job inputs, outputs and checkpoints go under it
    instance_type: str = "ml.g5.2xlarge"
    instance_count: int = 1  # > 1: data-parallel over instances (torchrun, `training.distributed`)
    processes_per_host: str = "1"  # "auto": one process per GPU of the instance type (torchrun), or a number
    volume_gb: int = 100
    max_runtime_s: int = 24 * 3600
    use_spot: bool = True
    max_wait_s: int = 48 * 3600  # spot: the longest to wait for capacity, including the run
    container_model_cache: str = "/opt/ml/code/model_cache"
    max_attempts: int = 3
    poll_seconds: float = 30.0
    endpoint_url: str | None = None  # None: AWS itself (or AWS_ENDPOINT_URL)
    region: str | None = None


class SageMakerJobError(RuntimeError):
    pass


def _split(s3_uri: str) -> tuple[str, str]:
    bucket, _, key = s3_uri[len("s3://") :].partition("/")
    return bucket, key.strip("/")


class SageMakerLauncher:
    def __init__(self, settings: SageMakerSettings, session=None):
        import boto3

        session = session or boto3.session.Session(region_name=settings.region)
        self.settings = settings
        self.sagemaker = session.client("sagemaker", endpoint_url=settings.endpoint_url)
        self.s3 = session.client("s3", endpoint_url=settings.endpoint_url)
        self.logs = session.client("logs", endpoint_url=settings.endpoint_url)
        self.bucket, self.prefix = _split(settings.s3_root)

    # --- names and places -------------------------------------------------------------------------

    def job_name(self, module: str, fingerprint: str, attempt: int) -> str:
        kind = module.rsplit(".", 1)[-1]
        return f"srl-forge-{kind}-{fingerprint[:16]}-a{attempt}"[:63]

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, "training-jobs", *parts) if p)

    def _uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    # --- the run ----------------------------------------------------------------------------------

    def run(self, job, module: str, fingerprint: str, log: Callable[[str], None] = print) -> dict:
        """Run `job` (a GRPOJob) remotely; returns its metrics, with the outputs in `job.output_dir`."""
        channels = self._upload_inputs(job, fingerprint)
        for attempt in range(1, self.settings.max_attempts + 1):
            name = self.job_name(module, fingerprint, attempt)
            status = self._status(name)
            if status is None:
                self._create(name, module, fingerprint, channels)
                log(
                    f"SageMaker training job {name} submitted ({self.settings.instance_type} x"
                    f"{self.settings.instance_count}, spot: {self.settings.use_spot})"
                )
            elif status in ("Failed", "Stopped"):
                log(f"SageMaker training job {name} {status.lower()} earlier; starting attempt {attempt + 1}")
                continue
            else:
                log(f"SageMaker training job {name} already {status.lower()}: attaching")
            final = self._wait(name, log)
            if final["TrainingJobStatus"] == "Completed":
                return self._download_outputs(final, Path(job.output_dir))
            log(f"SageMaker training job {name} {final['TrainingJobStatus'].lower()}: {final.get('FailureReason', '')}")
        raise SageMakerJobError(
            f"{module} job {fingerprint}: {self.settings.max_attempts} SageMaker attempts "
            "failed; see the log lines above for each failure reason"
        )

    def _upload_inputs(self, job, fingerprint: str) -> dict[str, str]:
        """Inputs go up once per fingerprint (the job file last: it marks a complete upload); returns
        channel name -> S3 prefix."""
        from botocore.exceptions import ClientError

        data_key = self._key(fingerprint, "input", "data")
        parent_key = self._key(fingerprint, "input", "parent")
        job_key = self._key(fingerprint, "input", "job")
        data_files = {f: getattr(job, f) for f in ("train_data", "validation_data", "replay_data", "sft_data")}
        channels = {"data": self._uri(data_key + "/"), "job": self._uri(job_key + "/")}
        if job.parent_adapter:
            channels["parent"] = self._uri(parent_key + "/")
        try:
            self.s3.head_object(Bucket=self.bucket, Key=f"{job_key}/job.json")
            return channels  # a re-run of the same step: uploaded already
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                raise
        for local in data_files.values():
            if local:
                self.s3.upload_file(local, self.bucket, f"{data_key}/{Path(local).name}")
        if job.parent_adapter:
            for path in sorted(p for p in Path(job.parent_adapter).rglob("*") if p.is_file()):
                self.s3.upload_file(
                    str(path), self.bucket, f"{parent_key}/{path.relative_to(job.parent_adapter).as_posix()}"
                )
        container_job = job.model_copy(
            update={
                **{
                    f: f"{CONTAINER_INPUT}/data/{Path(local).name}" if local else None
                    for f, local in data_files.items()
                },
                "parent_adapter": f"{CONTAINER_INPUT}/parent" if job.parent_adapter else None,
                "work_dir": CONTAINER_CHECKPOINTS,
                "output_dir": CONTAINER_OUTPUT,
                "model_cache": self.settings.container_model_cache,
            }
        )
        self.s3.put_object(
            Bucket=self.bucket, Key=f"{job_key}/job.json", Body=container_job.model_dump_json(indent=2).encode()
        )
        return channels

    def _status(self, name: str) -> str | None:
        from botocore.exceptions import ClientError

        try:
            return self.sagemaker.describe_training_job(TrainingJobName=name)["TrainingJobStatus"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("ValidationException", "ResourceNotFound"):
                return None
            raise

    def entry_point(self, module: str) -> dict:
        """The container's command: the job module itself, or under torchrun for more than one process."""
        job_args = ["--job", f"{CONTAINER_INPUT}/job/job.json"]
        s = self.settings
        if s.instance_count == 1 and s.processes_per_host == "1":
            return {"ContainerEntrypoint": ["python", "-m", module], "ContainerArguments": job_args}
        return {
            "ContainerEntrypoint": ["python", "-m", "training.distributed"],
            "ContainerArguments": ["--processes-per-host", s.processes_per_host, module, *job_args],
        }

    def _create(self, name: str, module: str, fingerprint: str, channels: dict[str, str]) -> None:
        s = self.settings
        request = {
            "TrainingJobName": name,
            "RoleArn": s.role_arn,
            "AlgorithmSpecification": {
                "TrainingImage": s.image_uri,
                "TrainingInputMode": "File",
                **self.entry_point(module),
            },
            "InputDataConfig": [
                {
                    "ChannelName": channel,
                    "DataSource": {
                        "S3DataSource": {
                            "S3DataType": "S3Prefix",
                            "S3Uri": uri,
                            "S3DataDistributionType": "FullyReplicated",
                        }
                    },
                }
                for channel, uri in channels.items()
            ],
            "OutputDataConfig": {"S3OutputPath": self._uri(self._key(fingerprint, "output"))},
            "ResourceConfig": {
                "InstanceType": s.instance_type,
                "InstanceCount": s.instance_count,
                "VolumeSizeInGB": s.volume_gb,
            },
            "StoppingCondition": {
                "MaxRuntimeInSeconds": s.max_runtime_s,
                **({"MaxWaitTimeInSeconds": s.max_wait_s} if s.use_spot else {}),
            },
            "EnableManagedSpotTraining": s.use_spot,
            # shared by every attempt of this fingerprint: a new attempt resumes from the last checkpoint
            "CheckpointConfig": {
                "S3Uri": self._uri(self._key(fingerprint, "checkpoints")),
                "LocalPath": CONTAINER_CHECKPOINTS,
            },
            "Tags": [{"Key": "srl-forge/fingerprint", "Value": fingerprint}],
        }
        self.sagemaker.create_training_job(**request)

    def _wait(self, name: str, log: Callable[[str], None]) -> dict:
        seen_status, log_tokens = None, {}
        while True:
            described = self.sagemaker.describe_training_job(TrainingJobName=name)
            status = (described["TrainingJobStatus"], described.get("SecondaryStatus"))
            if status != seen_status:
                log(f"SageMaker training job {name}: {status[0]} ({status[1]})")
                seen_status = status
            self._forward_logs(name, log_tokens, log)
            if described["TrainingJobStatus"] in TERMINAL:
                return described
            time.sleep(self.settings.poll_seconds)

    def _forward_logs(self, name: str, tokens: dict, log: Callable[[str], None]) -> None:
        """The container's log lines (CloudWatch, one stream per instance) into the run's log."""
        from botocore.exceptions import ClientError

        try:
            streams = self.logs.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=name + "/")[
                "logStreams"
            ]
        except ClientError:  # the group appears once the first container starts
            return
        for stream in streams:
            stream_name = stream["logStreamName"]
            kwargs = {"logGroupName": LOG_GROUP, "logStreamName": stream_name, "startFromHead": True}
            if stream_name in tokens:
                kwargs["nextToken"] = tokens[stream_name]
            page = self.logs.get_log_events(**kwargs)
            for event in page["events"]:
                log(f"[{stream_name.split('/', 1)[-1]}] {event['message']}")
            tokens[stream_name] = page["nextForwardToken"]

    def _download_outputs(self, described: dict, output_dir: Path) -> dict:
        bucket, key = _split(described["ModelArtifacts"]["S3ModelArtifacts"])
        try:
            body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except self.s3.exceptions.NoSuchKey as exc:
            raise SageMakerJobError(
                f"{described['TrainingJobName']} completed without its output s3://{bucket}/{key}"
            ) from exc
        output_dir.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
            archive.extractall(output_dir, filter="data")  # no absolute paths or links out of the folder
        metrics = output_dir / "metrics.json"
        if not metrics.exists():
            raise SageMakerJobError(f"{described['TrainingJobName']}: model.tar.gz has no metrics.json")
        return json.loads(metrics.read_text())
