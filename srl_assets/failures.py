"""Bad input surfaces in the Dagster UI as a plain Failure naming the file and the field."""

from contextlib import contextmanager

from dagster import Failure, MetadataValue

from srl_forge.errors import InputError


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
