"""Static files are only what is in their folder: no dot entries, no symlink leading out."""
import os
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

import cherrypy


def static_allowed(folder: str, branch: str) -> bool:
    """Tell whether `branch` under `folder` names no dot entry and stays inside it for real."""
    if any(part.startswith('.') for part in re.split(r'[\\/]', branch)):
        return False
    base = os.path.realpath(folder)
    try:
        real = os.path.realpath(os.path.join(folder, branch))
    except ValueError:  # a NUL byte
        return False
    return real == base or real.startswith(base + os.sep)


def staticdir_target(settings: Mapping[str, Any], path: str) -> tuple[str, str]:
    """Return the (folder, branch) CherryPy's staticdir serves `path` from, as it cuts them.

    `settings` are the tool's own (dir, root, section). A staticdir in the global config has
    the section 'global': the site's root. The branch is still %-quoted; staticdir unquotes it.
    """
    folder = os.path.join(settings.get('root') or '', os.path.expanduser(settings['dir']))
    section = settings.get('section', '/')
    section = ('/' if section == 'global' else section).rstrip('\\/')
    return folder, path[len(section) + 1:].lstrip('\\/')


def staticfile_target(settings: Mapping[str, Any]) -> tuple[str, str]:
    """Return the (folder, name) of the file CherryPy's staticfile serves with `settings`."""
    return os.path.split(os.path.join(settings.get('root') or '', settings['filename']))


def static_only() -> None:
    """Raise 404 for a dotfile, dot-folder or symlink leaving its folder, before static tools.

    CherryPy's staticdir unquotes the path once more (`%252e` is a dot) and follows symlinks.
    """
    request = cherrypy.serving.request
    tools = request.toolmaps.get('tools', {})
    staticdir = tools.get('staticdir', {})
    if staticdir.get('on'):
        folder, branch = staticdir_target(staticdir, request.path_info)
        if not static_allowed(folder, urllib.parse.unquote(branch)):
            raise cherrypy.NotFound()
    staticfile = tools.get('staticfile', {})
    if staticfile.get('on') and not static_allowed(*staticfile_target(staticfile)):
        raise cherrypy.NotFound()
