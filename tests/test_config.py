"""The Asterisk config syntax reader: comments, sections, templates, includes, errors."""

import os

import pytest

from asterisk_consul.config import ConfigError, Entry, parse_file, read_regular_file
from tests.configtext import last_values, parse_text, section_names


def write(directory, name, text):
    path = os.path.join(str(directory), name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def entries(section):
    return [(e.key, e.value, e.line) for e in section]


# -- basic lines -----------------------------------------------------------------------

def test_sections_and_values_keep_order_file_and_line():
    config = parse_text("[one]\na = 1\nb=>2\n\n[two]\n  c   =  three words  \n", "x.conf")
    assert section_names(config) == ["one", "two"]
    assert list(config.section("one")) == [Entry("a", "1", "x.conf", 2), Entry("b", "2", "x.conf", 3)]
    assert config.section("two").get("c") == Entry("c", "three words", "x.conf", 6)
    assert config.section("two").get("c").where == "x.conf:6"


def test_entries_are_plain_four_tuples():
    key, value, file, line = parse_text("[s]\nk=v\n", "f.conf").section("s").entries[0]
    assert (key, value, file, line) == ("k", "v", "f.conf", 2)


def test_object_arrow_and_equals_mean_the_same():
    config = parse_text("[s]\nx => 1\ny=>2\nz = >3\n")
    assert last_values(config.section("s")) == {"x": "1", "y": "2", "z": ">3"}


def test_value_may_contain_equals_and_be_empty():
    section = parse_text("[s]\nurl = a=b=c\nempty =\n").section("s")
    assert section.value("url") == "a=b=c"
    assert section.value("empty") == ""


def test_last_duplicate_wins_but_all_are_kept():
    section = parse_text("[s]\nport = 1\nport = 2\n").section("s")
    assert section.value("port") == "2"
    assert section.get("port").line == 3
    assert [e.value for e in section.get_all("port")] == ["1", "2"]
    assert section.keys() == ["port"]


def test_names_match_case_insensitively_as_in_asterisk():
    config = parse_text("[Consul]\nPort = 1\n")
    assert "consul" in config
    assert config.section("CONSUL").value("port") == "1"
    assert config.section("consul").name == "Consul"


def test_missing_key_and_default():
    section = parse_text("[s]\n").section("s")
    assert section.get("nope") is None
    assert section.value("nope", "dflt") == "dflt"
    assert parse_text("[s]\n").section("other") is None


def test_crlf_line_endings():
    config = parse_text("[s]\r\nk = v\r\n")
    assert config.section("s").get("k") == Entry("k", "v", "<text>", 2)


def test_form_feed_does_not_shift_line_numbers():
    section = parse_text("[s]\nk = a\x0cb\nn = 1\n").section("s")
    assert section.get("n").line == 3


# -- comments --------------------------------------------------------------------------

def test_line_comments():
    config = parse_text("; top\n[s] ; comment\nk = v ; trailing\n;k = hidden\n")
    assert last_values(config.section("s")) == {"k": "v"}


def test_escaped_semicolon_is_literal():
    section = parse_text("[s]\nk = a\\;b ; real comment\n").section("s")
    assert section.value("k") == "a;b"


def test_backslash_not_before_semicolon_is_kept():
    assert parse_text("[s]\nk = c:\\dir\\n\n").section("s").value("k") == "c:\\dir\\n"


def test_block_comment_across_lines():
    text = "[s]\na = 1\n;--\nb = 2\n[t]\n--;\nc = 3\n"
    config = parse_text(text)
    assert section_names(config) == ["s"]
    assert last_values(config.section("s")) == {"a": "1", "c": "3"}
    assert config.section("s").get("c").line == 7


def test_block_comment_inside_a_line():
    section = parse_text("[s]\nk = a;-- hidden --;b\n").section("s")
    assert section.value("k") == "ab"


def test_block_comments_nest():
    text = "[s]\n;-- outer ;-- inner --; still comment\nx = 1\n--;\ny = 2\n"
    assert last_values(parse_text(text).section("s")) == {"y": "2"}


def test_unclosed_block_comment_is_an_error_at_its_start():
    with pytest.raises(ConfigError) as info:
        parse_text("[s]\na = 1\n;-- never closed\nb = 2\n", "x.conf")
    assert info.value.file == "x.conf" and info.value.line == 3
    assert "never closed" in str(info.value)


# -- errors ----------------------------------------------------------------------------

@pytest.mark.parametrize("text, line, words", [
    ("k = v\n", 1, "outside of any [section]"),
    ("[s]\njust words\n", 2, "expected 'key = value'"),
    ("[s]\n = v\n", 2, "missing option name"),
    ("[s\n", 1, "no closing ']'"),
    ("[]\n", 1, "section name is empty"),
    ("[s] junk\n", 1, "unexpected text after [s]"),
    ("[s](a,)\n", 1, "empty item"),
    ("[s](nope)\n", 1, "inherits from [nope]"),
    ("[s](+)\n", 1, "no [s] comes before it"),
    ("[s]\n#bogus x\n", 2, "unknown directive '#bogus'"),
    ("[s]\n#exec /bin/true\n", 2, "#exec is not supported"),
    ("[s]\n#include\n", 2, "needs a file name"),
])
def test_syntax_errors_name_file_and_line(text, line, words):
    with pytest.raises(ConfigError) as info:
        parse_text(text, "bad.conf")
    assert info.value.file == "bad.conf"
    assert info.value.line == line
    assert words in info.value.message
    assert str(info.value).startswith(f"bad.conf:{line}: ")


def test_error_never_quotes_the_offending_line():
    with pytest.raises(ConfigError) as info:
        parse_text("[consul]\ntoken s3cr3t-value\n")
    assert "s3cr3t" not in str(info.value)


def test_invalid_utf8_is_an_error_with_its_line(tmp_path):
    path = tmp_path / "x.conf"
    path.write_bytes(b"[s]\nk = ok\nv = \xff\xfe\n")
    with pytest.raises(ConfigError) as info:
        parse_file(str(path))
    assert info.value.line == 3 and "UTF-8" in info.value.message


def test_config_error_str_forms():
    assert str(ConfigError("m", "f.conf", 3)) == "f.conf:3: m"
    assert str(ConfigError("m", "f.conf")) == "f.conf: m"
    assert str(ConfigError("m")) == "m"


# -- templates and appending -----------------------------------------------------------

def test_templates_are_not_sections_and_are_inherited():
    text = "[base](!)\na = 1\nb = 2\n[real](base)\nb = 3\nc = 4\n"
    config = parse_text(text, "t.conf")
    assert section_names(config) == ["real"]
    assert "base" in config.templates
    real = config.section("real")
    assert last_values(real) == {"a": "1", "b": "3", "c": "4"}
    # inherited values keep the template's file and line
    assert real.get("a").where == "t.conf:2"
    assert [e.key for e in real.own_entries()] == ["b", "c"]
    assert real.parents == ("base",)


def test_multiple_templates_apply_in_order():
    text = "[t1](!)\nx = 1\ny = 1\n[t2](!)\ny = 2\n[s](t1,t2)\n"
    assert last_values(parse_text(text).section("s")) == {"x": "1", "y": "2"}


def test_template_inheriting_from_template():
    text = "[t1](!)\nx = 1\n[t2](!,t1)\ny = 2\n[s](t2)\n"
    config = parse_text(text)
    assert section_names(config) == ["s"]
    assert last_values(config.section("s")) == {"x": "1", "y": "2"}


def test_options_may_have_spaces():
    text = "[t1](!)\nx = 1\n[s]( t1 )\n"
    assert parse_text(text).section("s").value("x") == "1"


def test_inherit_from_a_plain_section():
    text = "[a]\nx = 1\n[b](a)\n"
    assert parse_text(text).section("b").value("x") == "1"


def test_plus_appends_to_an_earlier_section():
    text = "[s]\na = 1\n[other]\nz = 0\n[s](+)\nb = 2\na = 3\n"
    config = parse_text(text)
    assert section_names(config) == ["s", "other"]
    assert last_values(config.section("s")) == {"a": "3", "b": "2"}


def test_repeated_header_continues_the_section():
    config = parse_text("[s]\na = 1\n[s]\nb = 2\n")
    assert section_names(config) == ["s"]
    assert last_values(config.section("s")) == {"a": "1", "b": "2"}


def test_inheriting_from_itself_is_refused():
    with pytest.raises(ConfigError, match="itself"):
        parse_text("[s]\n[s](s)\n")


def test_empty_config():
    config = parse_text("; only comments\n\n")
    assert config.is_empty() and len(config) == 0


# -- includes --------------------------------------------------------------------------

def test_include_quoted_and_bare_relative_to_config_dir(tmp_path):
    write(tmp_path, "main.conf", '[s]\na = 1\n#include "sub/extra.conf"\n#include more.conf\nd = 4\n')
    write(tmp_path, "sub/extra.conf", "b = 2\n")
    write(tmp_path, "more.conf", "[t]\nc = 3\n")
    config = parse_file(str(tmp_path / "main.conf"), str(tmp_path))
    assert last_values(config.section("s")) == {"a": "1", "b": "2"}
    # the section of the included file carries on after it, as in Asterisk
    assert last_values(config.section("t")) == {"c": "3", "d": "4"}
    assert config.section("s").get("b").where == os.path.join("sub", "extra.conf") + ":1"
    assert config.files == ["main.conf", os.path.join("sub", "extra.conf"), "more.conf"]


def test_include_with_comment_and_angle_brackets(tmp_path):
    write(tmp_path, "main.conf", "[s]\n#include <x.conf> ; comment\n")
    write(tmp_path, "x.conf", "k = v\n")
    assert parse_file(str(tmp_path / "main.conf")).section("s").value("k") == "v"


def test_include_glob_in_sorted_order(tmp_path):
    write(tmp_path, "main.conf", "[s]\n#include conf.d/*.conf\n")
    write(tmp_path, "conf.d/20-b.conf", "k = b\n")
    write(tmp_path, "conf.d/10-a.conf", "k = a\nonly_a = 1\n")
    section = parse_file(str(tmp_path / "main.conf")).section("s")
    assert section.value("k") == "b"
    assert section.value("only_a") == "1"


def test_missing_include_names_file_and_line(tmp_path):
    write(tmp_path, "main.conf", "[s]\n\n#include missing.conf\n")
    with pytest.raises(ConfigError) as info:
        parse_file(str(tmp_path / "main.conf"))
    assert info.value.file == "main.conf" and info.value.line == 3
    assert "missing.conf" in info.value.message


def test_glob_matching_nothing_is_an_error_for_include(tmp_path):
    write(tmp_path, "main.conf", "[s]\n#include none/*.conf\n")
    with pytest.raises(ConfigError, match="no file matches"):
        parse_file(str(tmp_path / "main.conf"))


def test_tryinclude_skips_missing_files(tmp_path):
    write(tmp_path, "main.conf", "[s]\n#tryinclude missing.conf\n#tryinclude none/*.conf\nk = v\n")
    assert parse_file(str(tmp_path / "main.conf")).section("s").value("k") == "v"


def test_tryinclude_reads_existing_files(tmp_path):
    write(tmp_path, "main.conf", "[s]\n#tryinclude there.conf\n")
    write(tmp_path, "there.conf", "k = v\n")
    assert parse_file(str(tmp_path / "main.conf")).section("s").value("k") == "v"


def test_include_loop_is_detected(tmp_path):
    write(tmp_path, "a.conf", "[s]\n#include b.conf\n")
    write(tmp_path, "b.conf", "#include a.conf\n")
    with pytest.raises(ConfigError) as info:
        parse_file(str(tmp_path / "a.conf"))
    assert "include loop: a.conf -> b.conf -> a.conf" in info.value.message
    assert info.value.file == "b.conf" and info.value.line == 1


def test_self_include_through_glob_is_a_loop(tmp_path):
    write(tmp_path, "a.conf", "[s]\n#include *.conf\n")
    with pytest.raises(ConfigError, match="include loop"):
        parse_file(str(tmp_path / "a.conf"))


def test_same_file_twice_without_loop_is_fine(tmp_path):
    write(tmp_path, "main.conf", "[a]\n#include common.conf\n[b]\n#include common.conf\n")
    write(tmp_path, "common.conf", "k = v\n")
    config = parse_file(str(tmp_path / "main.conf"))
    assert config.section("a").value("k") == config.section("b").value("k") == "v"


def test_include_of_a_directory_is_an_error(tmp_path):
    (tmp_path / "dir").mkdir()
    write(tmp_path, "main.conf", "[s]\n#include dir\n")
    with pytest.raises(ConfigError, match="cannot read dir"):
        parse_file(str(tmp_path / "main.conf"))


def test_error_inside_included_file_names_that_file(tmp_path):
    write(tmp_path, "main.conf", "[s]\n#include sub.conf\n")
    write(tmp_path, "sub.conf", "ok = 1\nbroken line\n")
    with pytest.raises(ConfigError) as info:
        parse_file(str(tmp_path / "main.conf"))
    assert (info.value.file, info.value.line) == ("sub.conf", 2)


def test_missing_top_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        parse_file(str(tmp_path / "nope.conf"))


def test_absolute_include_outside_config_dir(tmp_path):
    other = tmp_path / "elsewhere"
    conf = tmp_path / "conf"
    write(other, "x.conf", "k = v\n")
    write(conf, "main.conf", f"[s]\n#include {other / 'x.conf'}\n")
    section = parse_file(str(conf / "main.conf"), str(conf)).section("s")
    assert section.get("k").file == str(other / "x.conf")


def test_include_of_a_fifo_is_refused_without_waiting(tmp_path):
    os.mkfifo(tmp_path / "pipe.conf")
    write(tmp_path, "main.conf", "[s]\n#include pipe.conf\n")
    with pytest.raises(ConfigError, match=r"main\.conf:2: cannot read pipe\.conf .*: not a regular file"):
        parse_file(str(tmp_path / "main.conf"))


def test_tryinclude_of_a_fifo_is_skipped(tmp_path):
    os.mkfifo(tmp_path / "pipe.conf")
    write(tmp_path, "main.conf", "[s]\nk = v\n#tryinclude pipe.conf\n")
    assert parse_file(str(tmp_path / "main.conf")).section("s").value("k") == "v"


def test_read_regular_file_limit(tmp_path):
    (tmp_path / "f").write_bytes(b"x" * 100)
    assert read_regular_file(str(tmp_path / "f"), 10) == b"x" * 11
    assert read_regular_file(str(tmp_path / "f")) == b"x" * 100
    with pytest.raises(FileNotFoundError):
        read_regular_file(str(tmp_path / "nope"))
