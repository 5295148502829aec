"""The model classes whose ``__init__`` is ``config.model._fast_init``'s behave as the dataclass
they are: same parameters and defaults, every field stored, still frozen, ``replace`` works."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from lvsd.config.model import NOPOS, Checker, CheckKind, Pos, RealServer

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("cls", [Pos, Checker, RealServer])
def test_parameters_are_the_fields(cls: type) -> None:
    params = list(inspect.signature(cls).parameters.values())
    fields = dataclasses.fields(cls)
    assert [p.name for p in params] == [f.name for f in fields]
    for p, f in zip(params, fields, strict=True):
        assert p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        expected = inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default
        assert p.default == expected, f.name


@pytest.mark.parametrize("cls", [Pos, Checker, RealServer])
def test_every_field_is_stored_and_frozen(cls: type) -> None:
    fields = dataclasses.fields(cls)
    # a distinct value per field, given by keyword, then positionally
    values = {f.name: f"v{i}" for i, f in enumerate(fields)}
    by_kw = cls(**values)
    by_pos = cls(*values.values())
    for f in fields:
        assert getattr(by_kw, f.name) == getattr(by_pos, f.name) == values[f.name]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(by_kw, fields[0].name, "x")
    with pytest.raises(TypeError, match=r"__init__\(\) missing"):
        cls()


def test_defaults_and_replace() -> None:
    rs = RealServer("192.0.2.1", 80)
    assert (rs.pos, rs.weight, rs.checkers) == (NOPOS, 1, ())
    assert dataclasses.replace(rs, port=81) == RealServer("192.0.2.1", 81)
    chk = Checker(CheckKind.TCP_CHECK, Pos("f", 3), "192.0.2.1", 80)
    assert (chk.connect_timeout, chk.retry, chk.rise, chk.pos) == (5.0, 1, 1, Pos("f", 3))
    assert Pos("f", 1) < Pos("f", 2) and hash(Pos("f", 1)) == hash(Pos("f", 1))
