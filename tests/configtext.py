"""Test helpers for the .conf reader: config text given directly, and views of what it read."""

from __future__ import annotations

import os
from typing import Dict, List, Optional

from asterisk_consul import config
from asterisk_consul.config import Config, Section


def parse_text(text: str, filename: str = "<text>", config_dir: Optional[str] = None) -> Config:
    """The text as if read from `filename`: the parser parse_file uses, without the file."""
    parser = config._Parser(config_dir or os.getcwd())
    parser.parse_lines(config._split_lines(text), filename)
    return parser.config


def section_names(parsed: Config) -> List[str]:
    """The real sections' names, in file order."""
    return [section.name for section in parsed]


def last_values(section: Section) -> Dict[str, str]:
    """key -> value with last-wins, in order of first appearance."""
    return {key: section.value(key) or "" for key in section.keys()}
