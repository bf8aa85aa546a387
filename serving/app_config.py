"""prod.conf checked at start: each mistake named by file, line and option, in one line."""
import configparser
import inspect
import os
import re

import cherrypy
from cherrypy.lib import reprconf

from serving.settings import ConfigError

# Options every tool takes besides its callable's own arguments (CherryPy's Tool._setup).
TOOL_OPTIONS = frozenset({'on', 'priority'})


_SECTION_LINE = re.compile(r'\s*\[(?P<section>[^\]]*)\]')


_OPTION_LINE = re.compile(r'(?P<option>[^\s=:#;\[][^=:]*?)\s*[=:]')


def _option_lines(text: str) -> dict[tuple[str | None, str], int]:
    """Map (section, option) to the line number where prod.conf sets it."""
    lines: dict[tuple[str | None, str], int] = {}
    section: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        found = _SECTION_LINE.match(line)
        if found:
            section = found['section']
        elif not line[:1].isspace() and (found := _OPTION_LINE.match(line)):
            lines.setdefault((section, found['option']), number)
    return lines


def _tool_option_problem(key: str) -> str | None:
    """Return why `key` (tools.NAME.OPTION) names no tool option CherryPy has, or None."""
    _, _, rest = key.partition('.')
    name, _, option = rest.partition('.')
    tool = getattr(cherrypy.tools, name, None)
    if not isinstance(tool, cherrypy.Tool):
        return f'{key}: there is no tool {name!r}'
    if not option or '.' in option:
        return f'{key}: a tool option is tools.{name}.OPTION'
    if option in TOOL_OPTIONS:
        return None
    parameters = inspect.signature(tool.callable).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    accepted = {p.name for p in parameters if p.kind is not p.VAR_POSITIONAL}
    if option in accepted:
        return None
    known = ', '.join(sorted(TOOL_OPTIONS | accepted))
    return f'{key}: tools.{name} has no option {option!r} (it takes {known})'


def check_app_config(path: str) -> None:
    """Raise ConfigError naming the file, line and option of the first mistake in `path`.

    CherryPy reads prod.conf with a traceback for a bad value, names the wrong line for a
    missing `]`, and takes a misspelled tool option silently (every request it applies to
    then answers 500): this finds all three at start-up, each as one line.
    """
    name = os.path.basename(path)
    with open(path, encoding='utf-8') as config_file:
        text = config_file.read()
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith('[') and not _SECTION_LINE.fullmatch(line.rstrip()):
            raise ConfigError(f'{name} line {number}: {line.strip()!r} lacks its closing ]')
    parser = reprconf.Parser()
    try:
        parser.read_string(text, name)
    except configparser.MissingSectionHeaderError as error:
        raise ConfigError(f'{name} line {error.lineno}: {error.line.strip()!r} comes before '
                          'any [section]') from None
    except configparser.ParsingError as error:
        number = error.errors[0][0]
        line = text.splitlines()[number - 1].strip()
        raise ConfigError(f'{name} line {number}: {line!r} is neither a [section] '
                          'nor an option = value') from None
    except (configparser.DuplicateSectionError, configparser.DuplicateOptionError) as error:
        reason = re.sub(r'^While reading from .*?\]: ', '', str(error))
        raise ConfigError(f'{name} line {error.lineno}: {reason}') from None
    lines = _option_lines(text)
    for section in parser.sections():
        for option in parser.options(section):
            where = f'{name} line {lines.get((section, option), "?")}'
            try:
                reprconf.unrepr(parser.get(section, option))
            except Exception as error:  # unrepr raises whatever evaluating the value raises
                raise ConfigError(f'{where}: {option}: not a Python value '
                                  f'({type(error).__name__}: {error})') from None
            problem = option.startswith('tools.') and _tool_option_problem(option)
            if problem:
                raise ConfigError(f'{where}: {problem}')
