"""A reader for Asterisk's .conf syntax that remembers where every value came from.

Supported, as Asterisk's own config.c understands them:
  ; line comments, ;-- block comments --; (nestable), \\; for a literal semicolon
  [section], key = value, key => value
  [name](!) templates, [x](tpl), [x](tpl1,tpl2), [x](!,tpl), [x](+) to add to an earlier [x]
  #include "file" / #include file (glob allowed), #tryinclude
Names of sections and keys are matched case-insensitively, as Asterisk does.

Error messages never quote the text of a line: a malformed line may hold a secret.
"""

from __future__ import annotations

import errno
import glob
import os
import re
import stat
from typing import Dict, Iterator, List, NamedTuple, Optional, Tuple

# Deep enough for any sane layout; stops runaway (non-looping) include chains.
MAX_INCLUDE_DEPTH = 32
# Limits checked before the work they bound, so that no input can hang a load or a reload:
MAX_FILES_READ = 256            # files read in all (a file included twice per level doubles)
MAX_TOTAL_BYTES = 64 * 1024 * 1024  # of all files read ([kv] may hold 64 values of 512 kB)
MAX_LINE_CHARS = 1024 * 1024    # one line ([kv] values are at most 512 kB)
MAX_SECTION_ENTRIES = 10000     # one section with what its templates gave it
_GLOB_CHARS = ("*", "?", "[")
_DIRECTIVE = re.compile(r"#\s*([A-Za-z]*)(.*)", re.DOTALL)


class ConfigError(Exception):
    """A config file that cannot be used. str() reads 'file:line: message'."""

    def __init__(self, message: str, file: Optional[str] = None, line: Optional[int] = None):
        self.message = message
        self.file = file
        self.line = line
        super().__init__(self.__str__())

    def __str__(self) -> str:
        if self.file and self.line:
            return f"{self.file}:{self.line}: {self.message}"
        if self.file:
            return f"{self.file}: {self.message}"
        return self.message


class Entry(NamedTuple):
    """One 'key = value' line. file is shown relative to the config directory."""

    key: str
    value: str
    file: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


class Section:
    """A [section] (or template): its entries in file order, inherited ones first."""

    def __init__(self, name: str, file: str, line: int, is_template: bool = False,
                 parents: Tuple[str, ...] = ()):
        self.name = name
        self.file = file
        self.line = line
        self.is_template = is_template
        self.parents = parents
        self.entries: List[Entry] = []
        self._inherited: List[bool] = []  # parallel to entries
        # lowercased key -> positions in entries (lookups in constant time: a section of
        # thousands of keys is read in linear time)
        self._positions: Dict[str, List[int]] = {}

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def _add(self, entry: Entry, inherited: bool = False) -> None:
        self._positions.setdefault(entry.key.lower(), []).append(len(self.entries))
        self.entries.append(entry)
        self._inherited.append(inherited)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def get_all(self, key: str) -> List[Entry]:
        return [self.entries[i] for i in self._positions.get(key.lower(), ())]

    def get(self, key: str) -> Optional[Entry]:
        """The entry that counts for a scalar option: the last one set."""
        found = self._positions.get(key.lower())
        return self.entries[found[-1]] if found else None

    def own_all(self, key: str) -> List[Entry]:
        """The entries of `key` written in this section itself, not copied from a template."""
        return [self.entries[i] for i in self._positions.get(key.lower(), ())
                if not self._inherited[i]]

    def value(self, key: str, default: Optional[str] = None) -> Optional[str]:
        entry = self.get(key)
        return entry.value if entry else default

    def keys(self) -> List[str]:
        """Distinct keys in order of first appearance (spelled as first written)."""
        return [self.entries[positions[0]].key for positions in self._positions.values()]

    def own_entries(self) -> List[Entry]:
        """Entries written in this section itself, not copied from a template."""
        return [e for e, inh in zip(self.entries, self._inherited) if not inh]

    def __repr__(self) -> str:
        kind = "template" if self.is_template else "section"
        return f"<{kind} [{self.name}] {self.where}: {len(self.entries)} entries>"


class Config:
    """Parsed result: real sections in file order; templates kept apart."""

    def __init__(self) -> None:
        self.sections: Dict[str, Section] = {}   # lowercased name -> Section
        self.templates: Dict[str, Section] = {}
        self.files: List[str] = []               # every file read, in order

    def section(self, name: str) -> Optional[Section]:
        return self.sections.get(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self.sections

    def __iter__(self) -> Iterator[Section]:
        return iter(self.sections.values())

    def __len__(self) -> int:
        return len(self.sections)

    def is_empty(self) -> bool:
        return not self.sections and not self.templates


def parse_file(path: str, config_dir: Optional[str] = None) -> Config:
    """Parse a config file; #include paths are relative to config_dir (default: the file's dir)."""
    config_dir = config_dir or os.path.dirname(os.path.abspath(path))
    parser = _Parser(config_dir)
    parser.include(path, shown=_shown_name(path, config_dir), optional=False, origin=None)
    return parser.config


def strip_comments(lines: List[str], filename: str) -> Iterator[Tuple[int, str]]:
    """Yield (line number, text without comments, \\; unescaped) for each line."""
    depth = 0            # nesting of ;-- block comments --;
    opened_at = 0
    for number, raw in enumerate(lines, start=1):
        out: List[str] = []
        i, n = 0, len(raw)
        while i < n:
            ch = raw[i]
            if depth:
                if raw.startswith("--;", i):
                    depth -= 1
                    i += 3
                elif raw.startswith(";--", i):
                    depth += 1
                    i += 3
                else:
                    i += 1
            elif ch == "\\" and raw.startswith(";", i + 1):
                out.append(";")
                i += 2
            elif ch == ";":
                if raw.startswith("--", i + 1):
                    depth, opened_at = 1, number
                    i += 3
                else:
                    break  # rest of the line is a comment
            else:
                out.append(ch)
                i += 1
        yield number, "".join(out)
    if depth:
        raise ConfigError("block comment ';--' is never closed with '--;'", filename, opened_at)


def _shown_name(path: str, config_dir: str) -> str:
    """Paths inside the config dir are shown relative to it, as operators know them."""
    try:
        rel = os.path.relpath(os.path.abspath(path), os.path.abspath(config_dir))
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


class _Parser:
    def __init__(self, config_dir: str):
        self.config_dir = config_dir
        self.config = Config()
        self.current: Optional[Section] = None  # carries across #include, as in Asterisk
        self.stack: List[str] = []              # real paths being read, for loop detection
        self.files_read = 0
        self.bytes_read = 0

    # -- files -------------------------------------------------------------------------

    def include(self, path: str, shown: str, optional: bool,
                origin: Optional[Tuple[str, int]]) -> None:
        where_file, where_line = origin if origin else (shown, None)
        real = os.path.realpath(path)
        if real in self.stack:
            chain = " -> ".join(_shown_name(p, self.config_dir) for p in self.stack + [real])
            raise ConfigError(f"include loop: {chain}", where_file, where_line)
        if len(self.stack) >= MAX_INCLUDE_DEPTH:
            raise ConfigError(f"includes nested deeper than {MAX_INCLUDE_DEPTH}",
                              where_file, where_line)
        if self.files_read >= MAX_FILES_READ:
            raise ConfigError(f"#include of {shown}: more than {MAX_FILES_READ} files read in "
                              f"all (is a file included more than once?)", where_file, where_line)
        try:
            data = read_regular_file(path, MAX_TOTAL_BYTES - self.bytes_read)
        except FileNotFoundError:
            if optional:
                return
            raise ConfigError(f"cannot read {shown}: no such file (looked for {path})",
                              where_file, where_line) from None
        except (OSError, ValueError) as exc:
            if optional:
                return
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ConfigError(f"cannot read {shown} ({path}): {reason}",
                              where_file, where_line) from None
        self.files_read += 1
        self.bytes_read += len(data)
        if self.bytes_read > MAX_TOTAL_BYTES:
            raise ConfigError(f"the files read (this one and those including it) are larger "
                              f"than {MAX_TOTAL_BYTES // (1024 * 1024)} MB in all", shown)
        text = _decode(data, shown)
        self.config.files.append(shown)
        self.stack.append(real)
        try:
            self.parse_lines(_split_lines(text), shown)
        finally:
            self.stack.pop()

    def parse_lines(self, lines: List[str], filename: str) -> None:
        for number, raw in enumerate(lines, start=1):
            if len(raw) > MAX_LINE_CHARS:
                raise ConfigError(f"line longer than {MAX_LINE_CHARS} characters", filename,
                                  number)
        for number, text in strip_comments(lines, filename):
            line = text.strip()
            if not line:
                continue
            if line.startswith("#"):
                self.directive(line, filename, number)
            elif line.startswith("["):
                self.section_header(line, filename, number)
            else:
                self.assignment(line, filename, number)

    def directive(self, line: str, filename: str, number: int) -> None:
        match = _DIRECTIVE.match(line)
        word = match.group(1).lower() if match else ""
        argument = match.group(2).strip() if match else ""
        if word == "exec":
            raise ConfigError("#exec is not supported by this module", filename, number)
        if word not in ("include", "tryinclude"):
            raise ConfigError(f"unknown directive '#{word}' (expected #include or #tryinclude)",
                              filename, number)
        name = argument.strip('"<> \t')
        if not name:
            raise ConfigError(f"#{word} needs a file name", filename, number)
        if "\0" in name:
            raise ConfigError(f"#{word}: the file name contains a NUL character", filename, number)
        optional = word == "tryinclude"
        pattern = name if os.path.isabs(name) else os.path.join(self.config_dir, name)
        if any(c in name for c in _GLOB_CHARS):
            try:
                matches = sorted(glob.glob(pattern))
            except (OSError, ValueError):
                matches = []
            if not matches and not optional:
                raise ConfigError(f"#include {name}: no file matches (looked in {self.config_dir})",
                                  filename, number)
        else:
            matches = [pattern]
        for path in matches:
            self.include(path, _shown_name(path, self.config_dir), optional, (filename, number))

    # -- lines -------------------------------------------------------------------------

    def section_header(self, line: str, filename: str, number: int) -> None:
        close = line.find("]")
        if close < 0:
            raise ConfigError("section header has no closing ']'", filename, number)
        name = line[1:close].strip()
        if not name:
            raise ConfigError("section name is empty", filename, number)
        rest = line[close + 1:].strip()
        options: List[str] = []
        if rest:
            if not (rest.startswith("(") and rest.endswith(")")):
                raise ConfigError(f"unexpected text after [{name}] (only '(options)' may follow)",
                                  filename, number)
            options = [o.strip() for o in rest[1:-1].split(",")]
            if any(not o for o in options):
                raise ConfigError(f"[{name}]: empty item in '(...)'", filename, number)

        is_template = "!" in options
        append = "+" in options
        parents = tuple(o for o in options if o not in ("!", "+"))
        table = self.config.templates if is_template else self.config.sections
        key = name.lower()

        if append:
            section = self.config.sections.get(key) or self.config.templates.get(key)
            if section is None:
                raise ConfigError(f"[{name}](+) adds to a section, but no [{name}] comes before it",
                                  filename, number)
        elif key in table:
            # A repeated header continues the earlier section rather than hiding it.
            section = table[key]
        else:
            section = Section(name, filename, number, is_template, parents)
            table[key] = section

        for parent_name in parents:
            parent = (self.config.templates.get(parent_name.lower())
                      or self.config.sections.get(parent_name.lower()))
            if parent is None:
                raise ConfigError(f"[{name}] inherits from [{parent_name}], which is not "
                                  f"defined before it", filename, number)
            if parent is section:
                raise ConfigError(f"[{name}] cannot inherit from itself", filename, number)
            if len(section.entries) + len(parent.entries) > MAX_SECTION_ENTRIES:
                raise ConfigError(f"[{name}] would hold more than {MAX_SECTION_ENTRIES} "
                                  f"options with what its templates give it (does a template "
                                  f"inherit another twice?)", filename, number)
            for entry in parent.entries:
                section._add(entry, inherited=True)
        self.current = section

    def assignment(self, line: str, filename: str, number: int) -> None:
        if self.current is None:
            raise ConfigError("option outside of any [section]", filename, number)
        equals = line.find("=")
        if equals < 0:
            raise ConfigError("expected 'key = value', '[section]' or '#include'", filename, number)
        key = line[:equals].strip()
        value = line[equals + 1:]
        if value.startswith(">"):  # 'key => value' is the same as 'key = value' here
            value = value[1:]
        if not key:
            raise ConfigError("missing option name before '='", filename, number)
        if len(self.current.entries) >= MAX_SECTION_ENTRIES:
            raise ConfigError(f"[{self.current.name}] holds more than {MAX_SECTION_ENTRIES} "
                              f"options", filename, number)
        self.current._add(Entry(key, value.strip(), filename, number))


class NotARegularFile(OSError):
    """A FIFO, socket, device or directory where a file was expected."""


def read_regular_file(path: str, limit: Optional[int] = None) -> bytes:
    """The bytes of a regular file (at most `limit` + 1 of them, when given).

    Opened non-blocking and checked before reading: a FIFO or a device in place of a config
    or token file would otherwise block `module load` (an Asterisk thread) forever.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
                 | getattr(os, "O_NOCTTY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
            raise NotARegularFile(errno.EINVAL, kind)
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as handle:
            fd = -1
            return handle.read() if limit is None else handle.read(limit + 1)
    finally:
        if fd >= 0:
            os.close(fd)


def _decode(data: bytes, shown: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError("not valid UTF-8 text", shown, line) from None


def _split_lines(text: str) -> List[str]:
    # Only \n ends a line (str.splitlines would also split on \f, \x1c, ... and shift line numbers).
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
