"""Rules every ``mission-control.toml`` model shares: a boolean is a TOML boolean, a git
remote carries no credential.

- :class:`StrictBools`: a base model whose ``bool`` fields take only ``true`` / ``false`` (not
  pydantic's lax ``"yes"``, ``"off"``, ``1``); the error reads ``must be true or false``.
  ``MC_*`` environment values are text by nature: :func:`env_bools` turns the ones for boolean
  keys into booleans first (``true/false``, ``1/0``, ``yes/no``, ``on/off``, pydantic's words).
- :data:`GitRemote`: a ``str`` field naming a git remote (a name, a path or a URL); a URL with a
  password, or an ``http(s)://`` URL with any user part (``https://ghp_xxx@host/...``), is
  refused with an error of type :data:`SECRET_INPUT`, whose input is never echoed. ``git@host:o/r.git`` and
  ``ssh://git@host/o/r.git`` (a user name, no secret) stay allowed.
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, TypeAdapter, ValidationError, field_validator
from pydantic_core import PydanticCustomError

SECRET_INPUT = "secret_input"
"""The pydantic error type of a value that holds a credential: error messages never echo it."""


def is_bool_annotation(annotation: Any) -> bool:
    """``bool`` or ``bool | None``."""
    if annotation is bool:
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = set(typing.get_args(annotation))
        return bool in args and args <= {bool, type(None)}
    return False


class StrictBools(BaseModel):
    """Base model: every ``bool`` field refuses anything but a boolean (TOML ``true`` / ``false``)."""

    @field_validator("*", mode="before")
    @classmethod
    def _strict_bool(cls, value: Any, info: Any) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if field is None or isinstance(value, bool) or not is_bool_annotation(field.annotation):
            return value
        if value is None and field.annotation is not bool:
            return value
        raise PydanticCustomError("bool_strict", "must be true or false")


_LAX_BOOL: TypeAdapter[bool] = TypeAdapter(bool)


def env_bools(data: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """``data`` (``MC_*`` values exploded into nested dicts, keys lower case) with the text of
    each boolean key of ``model`` turned into a boolean; text that is no boolean is left for the
    model to refuse, naming the key path."""
    out = dict(data)
    for key, value in data.items():
        field = model.model_fields.get(key)
        if field is None:
            continue
        annotation = field.annotation
        if isinstance(value, dict) and isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out[key] = env_bools(value, annotation)
        elif isinstance(value, str) and is_bool_annotation(annotation):
            try:
                out[key] = _LAX_BOOL.validate_python(value.strip())
            except ValidationError:
                pass
    return out


def check_git_remote(value: str) -> str:
    """``value`` unchanged, or a :data:`SECRET_INPUT` error when its URL carries a credential."""
    if "://" not in value:
        return value  # a remote name, a path, or scp-style user@host:path (no secret)
    parts = urlsplit(value.strip())
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at:
        return value
    if ":" in userinfo or parts.scheme in ("http", "https"):
        bare = parts._replace(netloc=hostport, query="", fragment="").geturl()
        raise PydanticCustomError(
            SECRET_INPUT,
            "the URL carries a credential in its user part: secrets come from the environment, "
            "never the config. Write the URL without it ({url}) and let git get the secret from "
            "a credential helper or GIT_ASKPASS, or use an SSH remote (git@host:owner/repo.git)",
            {"url": bare})
    return value


GitRemote = Annotated[str, AfterValidator(check_git_remote)]
"""A ``str`` naming a git remote: refused when its URL carries a credential."""
