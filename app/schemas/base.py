from pydantic import BaseModel, ConfigDict


class Schema(BaseModel):
    """Base of every response schema: reads ORM objects' attributes."""

    model_config = ConfigDict(from_attributes=True)


class RequestSchema(BaseModel):
    """Base of every request body: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
