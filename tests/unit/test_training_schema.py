"""Training reads the wire contract's own fields. No Spark session here (the schema is plain Python);
the rules themselves run on Spark in tests/integration/test_als.py, against the pydantic model."""

from __future__ import annotations

from typing import get_args

from pyspark.sql import types as T

from recstream.records import Interaction
from recstream.training.extract import INTERACTION_SCHEMA, STRING_FIELDS


def test_the_spark_schema_is_the_interaction_model() -> None:
    assert INTERACTION_SCHEMA.fieldNames() == list(Interaction.model_fields)
    for field in INTERACTION_SCHEMA.fields:
        annotation = Interaction.model_fields[field.name].annotation
        is_int = int in {annotation, *get_args(annotation)}  # int, int | None
        assert field.dataType == (T.LongType() if is_int else T.StringType()), field.name
    assert STRING_FIELDS == ("type", "user_id", "video_id")
