"""Bad input surfaces in the Dagster UI as a plain Failure naming the file and the field (a teacher panel with
no qualified member for a role, naming every member's score); a teacher
outage becomes a step retry after a wait, and a clear failure naming the role and endpoint once the
retries run out. Neither writes a version."""

from contextlib import contextmanager

from dagster import Failure, MetadataValue, RetryRequested

from srl_forge.errors import InputError
from srl_forge.teachers.openai_compatible import TeacherUnavailable
from srl_forge.teachers.qualification import NoQualifiedTeacher


@contextmanager
def input_errors_as_failures():
    try:
        yield
    except InputError as exc:
        raise Failure(
            description=str(exc),
            metadata={"file": MetadataValue.path(exc.source), "field": exc.field, "problem": exc.problem},
            allow_retries=False,
        ) from exc
    except NoQualifiedTeacher as exc:  # the panel as configured cannot be trusted: retrying will not change that
        raise Failure(description=str(exc), allow_retries=False) from exc


@contextmanager
def teacher_outages_retried(retries: int, wait_s: float, attempt: int):
    """`attempt`: the step's retry number (`context.retry_number`)."""
    try:
        yield
    except TeacherUnavailable as exc:
        if attempt < retries:
            raise RetryRequested(max_retries=retries, seconds_to_wait=wait_s) from exc
        raise Failure(
            description=f"{exc} (after {attempt + 1} tries of this step; the previous version stays current)",
            metadata={"role": exc.role, "endpoint": exc.base_url},
            allow_retries=False,
        ) from exc
