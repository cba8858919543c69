"""Result records and writers."""
from .records import SCHEMA_VERSION, SampleRecord, environment, write_json

__all__ = ["SCHEMA_VERSION", "SampleRecord", "environment", "write_json"]
