"""Settings' written-out fields and the option table agree: names, order, defaults, types."""

import dataclasses
import typing

import pytest

from asterisk_consul import options
from asterisk_consul.options import FIELDS, Option
from asterisk_consul.settings import Settings
from asterisk_consul.values import Duration


def conforms(value, hint) -> bool:
    """value is an instance of the type hint (the few shapes Settings uses)."""
    origin = typing.get_origin(hint)
    if origin is None:
        return isinstance(value, hint)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(conforms(item, args[0]) for item in value)
        return len(value) == len(args) and all(map(conforms, value, args))
    return isinstance(value, origin)


def parser_type(row: Option):
    """What a row's parser says it returns (None: a fact, not parsed)."""
    if row.parse is None:
        return None
    if row.parse is str:
        return str
    return typing.get_type_hints(row.parse)["return"]


def declaration_problems(cls, table) -> list:
    """Where the dataclass cls and the table (attribute -> row) disagree; [] when they agree."""
    hints = typing.get_type_hints(cls)
    declared = [f for f in dataclasses.fields(cls) if f.name != "sources"]
    problems = []
    if [f.name for f in declared] != list(table):
        problems.append(f"fields {[f.name for f in declared]} != rows {list(table)}")
    for f in declared:
        row = table.get(f.name)
        if row is None:
            continue
        if f.metadata.get("row") is not row:
            problems.append(f"{f.name}: its default is not read from its row")
        if f.default != row.default or type(f.default) is not type(row.default):
            problems.append(f"{f.name}: default {f.default!r} != the row's {row.default!r}")
        if not conforms(row.default, hints[f.name]):
            problems.append(f"{f.name}: the row's default {row.default!r} is no {hints[f.name]}")
        parsed = parser_type(row)
        if parsed is not None and parsed != hints[f.name]:
            problems.append(f"{f.name}: parsed to {parsed}, declared {hints[f.name]}")
    return problems


def test_settings_fields_are_the_table_rows_in_order_with_their_defaults_and_types():
    assert declaration_problems(Settings, FIELDS) == []


def test_sources_comes_last_and_stays_out_of_equality_and_hash():
    last = dataclasses.fields(Settings)[-1]
    assert (last.name, last.compare, last.hash) == ("sources", False, False)
    a, b = Settings(sources={"port": "x"}), Settings(sources={"port": "y"})
    assert a == b and hash(a) == hash(b)


def _table_with(**changes):
    table = dict(FIELDS)
    for name, row in changes.items():
        if row is None:
            del table[name]
        else:
            table[name] = row
    return table


def test_a_row_without_a_field_is_caught():
    extra = Option("spare", 1, options._weight, "a new option", options.LOAD)
    assert any("fields" in p for p in declaration_problems(Settings, _table_with(spare=extra)))


def test_a_field_without_a_row_is_caught():
    assert any("fields" in p for p in declaration_problems(Settings, _table_with(port=None)))


def test_a_field_in_another_order_than_the_table_is_caught():
    swapped = dict(FIELDS)
    names = list(swapped)
    names[1], names[2] = names[2], names[1]
    assert any("fields" in p for p in declaration_problems(Settings, {n: FIELDS[n] for n in names}))


def test_a_row_whose_default_changed_without_the_field_is_caught():
    other = dataclasses.replace(FIELDS["busy_channels"], default=5)
    problems = declaration_problems(Settings, _table_with(busy_channels=other))
    assert any(p.startswith("busy_channels: default 0") for p in problems)


def test_a_field_with_a_default_of_its_own_is_caught():
    @dataclasses.dataclass(frozen=True)
    class Written(Settings):
        port: int = 9000

    problems = declaration_problems(Written, FIELDS)
    assert "port: its default is not read from its row" in problems
    assert any(p.startswith("port: default 9000") for p in problems)


def test_a_row_whose_type_differs_from_the_field_is_caught():
    as_text = dataclasses.replace(FIELDS["port"], default="8500", parse=str)
    problems = declaration_problems(Settings, _table_with(port=as_text))
    assert any(p.startswith("port: the row's default") for p in problems)
    assert any(p.startswith("port: parsed to") for p in problems)


@pytest.mark.parametrize("name", [n for n, row in FIELDS.items() if isinstance(row.default, Duration)])
def test_a_duration_given_as_text_becomes_a_duration(name):
    value = getattr(Settings(**{name: "90s"}), name)
    assert isinstance(value, Duration) and value.seconds == 90.0


def test_a_secret_stays_out_of_repr():
    assert "s3cret" not in repr(Settings(token="s3cret"))
    assert "127.0.0.1" in repr(Settings())
