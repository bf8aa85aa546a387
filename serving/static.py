"""Static files are only what is in their folder: no dot entries, no symlink leading out."""
import os
import re
import urllib.parse

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


def static_only() -> None:
    """Raise 404 for a dotfile, dot-folder or symlink leaving its folder, before static tools.

    CherryPy's staticdir unquotes the path once more (`%252e` is a dot) and follows symlinks.
    """
    request = cherrypy.serving.request
    tools = request.toolmaps.get('tools', {})
    staticdir = tools.get('staticdir', {})
    if staticdir.get('on'):
        folder = os.path.join(staticdir.get('root', ''), os.path.expanduser(staticdir['dir']))
        section = staticdir.get('section', '/')
        section = '/' if section == 'global' else section.rstrip('\\/')
        branch = urllib.parse.unquote(request.path_info[len(section) + 1:].lstrip('\\/'))
        if not static_allowed(folder, branch):
            raise cherrypy.NotFound()
    staticfile = tools.get('staticfile', {})
    if staticfile.get('on'):
        filename = os.path.join(staticfile.get('root') or '', staticfile['filename'])
        folder, name = os.path.split(filename)
        if not static_allowed(folder, name):
            raise cherrypy.NotFound()
