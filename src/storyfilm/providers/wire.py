"""Reading hosts' answers into typed models: strict where a mistake costs money, lenient where hosts vary.

Strict: a status, a job id, an output URL's type, a list that must be a list. What breaks those is an
UnexpectedResponse naming the field (the caller polls again, or keeps the job recorded).
Lenient: messages, progress, codes, flags: a value of another type reads as absent, so a cosmetic
difference in a real answer never fails a paid job.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from storyfilm.errors import UnexpectedResponse

M = TypeVar("M", bound=BaseModel)


class Answer(BaseModel):
    """A host's JSON object: fields we do not read are ignored, types are not coerced."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


def _text(value: object) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return str(value)  # a numeric code or message is still readable


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _url(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _flags(value: object) -> tuple[bool, ...]:
    return tuple(v for v in value if isinstance(v, bool)) if isinstance(value, list) else ()


Text = Annotated[str | None, BeforeValidator(_text)]  # lenient: a message, a code
Number = Annotated[float | None, BeforeValidator(_number)]  # lenient: progress, a cost
Url = Annotated[str | None, BeforeValidator(_url)]  # a URL is a non-empty string, or absent (never guessed)
Flags = Annotated[tuple[bool, ...], BeforeValidator(_flags)]  # lenient: per-output booleans


def read(model: type[M], data: Any, *, provider: str, what: str, shot: str = "") -> M:
    """`data` as `model`, or an UnexpectedResponse naming the field that does not fit."""
    if not isinstance(data, dict):
        raise UnexpectedResponse(f"{what}: expected a JSON object, got {_shown(data)}", provider=provider, shot=shot)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in err["loc"]) or "(answer)"
        kind = err["type"]
        said = {"missing": "is missing", "list_type": "is not a list", "string_type": "is not a string",
                "dict_type": "is not an object", "model_type": "is not an object",
                "int_type": "is not an integer"}.get(kind, err["msg"])
        got = "" if kind == "missing" else f": {_shown(err.get('input'))}"
        raise UnexpectedResponse(f"{what}: `{field}` {said}{got}", provider=provider, shot=shot) from None


def _shown(value: object) -> str:
    return repr(value)[:120]
