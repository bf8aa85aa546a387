"""The peers the landing page is measured against, serving the same bytes from one folder.

The driver (bench.py) writes the landing page, 'Yay', the logo and the stylesheet into a folder
(WWW) as index.html, healthcheck, logo.png and static/site.css; every peer here answers from
those files, so each server sends what the app sends and only the stack underneath differs.

- `python peers.py cheroot --port P --www DIR [--threads N] [--queue N]`: a bare cheroot
  WSGI server, no CherryPy on top: the ceiling of the app's own former stack.
- `python peers.py cherrypy --port P --www DIR [--threads N]`: CherryPy's own tree, stock,
  on granian set as the granian peer: the floor under the app's pages (make_cherrypy_app).
- `python peers.py granian --port P --www DIR [--threads N] [--static]`: granian alone,
  configured as the app configures it, serving make_wsgi_app: this stack's limit. With
  --static, granian's own (Rust) file serving answers /logo.png and /static/.
- `gunicorn 'peers:make_flask_app()'` with BENCH_WWW=DIR: Flask, what a user would pick instead.
- `uvicorn --factory peers:make_starlette_app` with BENCH_WWW=DIR: Starlette on uvicorn, what a
  user would pick instead today.
"""
import argparse
import email.utils
import os
import pathlib
import sys

# Each path the bench measures, the file in WWW that answers it, and its Content-Type.
FILES = {
    '/': ('index.html', 'text/html; charset=utf-8'),
    '/healthcheck': ('healthcheck', 'text/plain; charset=utf-8'),
    '/logo.png': ('logo.png', 'image/png'),
    '/static/site.css': ('static/site.css', 'text/css'),
}
STATIC = ('/logo.png', '/static/site.css')  # files with Last-Modified and an hour of caching


def read_www(www):
    """Return {path: (body, mtime)} for every path in FILES, from the folder the driver wrote."""
    found = {}
    for path, (name, _) in FILES.items():
        with open(os.path.join(www, name), 'rb') as file:
            found[path] = (file.read(), os.path.getmtime(file.name))
    return found


def make_wsgi_app(www=None):
    """Return a plain WSGI callable answering every path in FILES from `www` (or BENCH_WWW).

    Every response is built once here: this is the least work a WSGI app can do per request.
    """
    answers = {}
    for path, (body, mtime) in read_www(www or os.environ['BENCH_WWW']).items():
        headers = [('Content-Type', FILES[path][1])]
        if path in STATIC:
            headers += [('Last-Modified', email.utils.formatdate(mtime, usegmt=True)),
                        ('Cache-Control', 'max-age=3600')]
        elif path == '/healthcheck':
            headers.append(('Cache-Control', 'no-store'))
        answers[path] = ('200 OK', headers + [('Content-Length', str(len(body)))], [body])
    not_found = ('404 Not Found', [('Content-Type', 'text/plain'), ('Content-Length', '9')],
                 [b'Not Found'])

    def app(environ, start_response):
        """Answer from the prebuilt table."""
        status, headers, body = answers.get(environ.get('PATH_INFO', ''), not_found)
        start_response(status, headers)
        return body

    return app


def make_flask_app(www=None):
    """Return a Flask app serving the same answers (the files through send_from_directory)."""
    import flask  # imported here so the other peers never load Flask

    www = www or os.environ['BENCH_WWW']
    found = read_www(www)
    app = flask.Flask(__name__, static_folder=None)

    @app.get('/')
    def index():
        """Return the landing page."""
        return flask.Response(found['/'][0], content_type=FILES['/'][1])

    @app.get('/healthcheck')
    def healthcheck():
        """Return Yay, never cached."""
        return flask.Response(found['/healthcheck'][0], content_type=FILES['/healthcheck'][1],
                              headers={'Cache-Control': 'no-store'})

    @app.get('/logo.png')
    def logo():
        """Return the logo with Last-Modified, conditional GET and an hour of caching."""
        return flask.send_from_directory(www, 'logo.png', max_age=3600)

    @app.get('/static/<path:name>')
    def static(name):
        """Return a file of static/ as the logo is returned."""
        return flask.send_from_directory(os.path.join(www, 'static'), name, max_age=3600)

    return app


def make_starlette_app(www=None):
    """Return a Starlette app serving the same answers (files through FileResponse, StaticFiles)."""
    # Imported here so the other peers never load Starlette.
    from starlette.applications import Starlette
    from starlette.responses import FileResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    www = www or os.environ['BENCH_WWW']
    found = read_www(www)

    async def index(request):
        """Return the landing page."""
        return Response(found['/'][0], media_type=FILES['/'][1])

    async def healthcheck(request):
        """Return Yay, never cached."""
        return Response(found['/healthcheck'][0], media_type=FILES['/healthcheck'][1],
                        headers={'Cache-Control': 'no-store'})

    async def logo(request):
        """Return the logo with Last-Modified, conditional GET and an hour of caching."""
        return FileResponse(os.path.join(www, 'logo.png'),
                            headers={'Cache-Control': 'max-age=3600'})

    # StaticFiles as a user mounts it: Last-Modified, ETag and 304, no Cache-Control of its own.
    return Starlette(routes=[
        Route('/', index), Route('/healthcheck', healthcheck), Route('/logo.png', logo),
        Mount('/static', app=StaticFiles(directory=os.path.join(www, 'static')))])


def make_cherrypy_app(www=None):
    """Return CherryPy's own tree serving the same answers, as its tutorial writes an app.

    Stock CherryPy in its production environment, which logs nothing (no access line, unlike
    the app), the files through its staticfile and staticdir tools: the least a CherryPy app
    costs per request on this server, with none of this template's guard or serving/ on top.
    """
    import cherrypy  # imported here so the other peers never load CherryPy

    www = www or os.environ['BENCH_WWW']
    found = read_www(www)

    class Root:
        """The page and the health check, each one handler."""

        @cherrypy.expose
        def index(self):
            """Return the landing page."""
            cherrypy.response.headers['Content-Type'] = FILES['/'][1]
            return found['/'][0]

        @cherrypy.expose
        def healthcheck(self):
            """Return Yay, never cached."""
            cherrypy.response.headers['Content-Type'] = FILES['/healthcheck'][1]
            cherrypy.response.headers['Cache-Control'] = 'no-store'
            return found['/healthcheck'][0]

    cached = {'tools.response_headers.on': True,
              'tools.response_headers.headers': [('Cache-Control', 'max-age=3600')]}
    cherrypy.config.update({'environment': 'production'})
    cherrypy.server.unsubscribe()         # granian serves; CherryPy's engine runs alone
    app = cherrypy.tree.mount(Root(), '', {
        '/logo.png': {'tools.staticfile.on': True,
                      'tools.staticfile.filename': os.path.join(www, 'logo.png'), **cached},
        '/static': {'tools.staticdir.on': True,
                    'tools.staticdir.dir': os.path.join(www, 'static'), **cached}})
    cherrypy.engine.start()
    return app


def serve_cheroot(port, www, threads, queue):
    """Serve make_wsgi_app(www) on 127.0.0.1:port with cheroot until SIGTERM or SIGINT."""
    import signal

    from cheroot import wsgi

    server = wsgi.Server(('127.0.0.1', port), make_wsgi_app(www), numthreads=threads,
                         request_queue_size=queue)

    def stop(signum, frame):
        """Leave serve() in the main thread; safe_start() then stops the server.

        Calling server.stop() here would wait, inside the main thread, for the serve() loop
        that this handler interrupted: it never returned, and the driver had to SIGKILL it.
        """
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        server.safe_start()
    finally:
        server.stop()


def serve_granian(port, www, threads, static, target='peers:make_wsgi_app'):
    """Serve make_wsgi_app(www) on 127.0.0.1:port with granian as the app runs it, until SIGTERM.

    The options that change the pace are those of serving/supervisor.py build_server with
    the defaults of serving/settings.py: one worker, `threads` blocking threads, HTTP/1 only,
    no websockets, a backlog of 1024, at most 768 connections held, 16 KiB of headers, 75 s
    keep-alive. The app's access log, Guard and CherryPy are what it leaves out. With
    `static`, granian's own file serving answers STATIC, with the app's hour of caching.
    """
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings
    from granian.log import LogLevels
    from granian.server import Server

    os.environ['BENCH_WWW'] = www      # for the factory, called in the worker
    routes = {'/logo.png': os.path.join(www, 'logo.png'),   # a file: its route is the file's
              '/static': os.path.join(www, 'static')} if static else {}
    server = Server(
        target, factory=True,
        working_dir=pathlib.Path(__file__).resolve().parent,
        address='127.0.0.1', port=port, interface=Interfaces.WSGI, workers=1,
        blocking_threads=threads, backlog=1024, backpressure=768, http=HTTPModes.http1,
        websockets=False,
        http1_settings=HTTP1Settings(header_read_timeout=75_000, max_buffer_size=16 * 1024),
        log_level=LogLevels.warning,       # no start-up lines; warnings and errors still show
        static_path_route=list(routes),
        static_path_mount=[pathlib.Path(mount) for mount in routes.values()],
        static_path_expires=3600)
    server.serve()


def main(argv=None):
    """Command line for the bare cheroot and granian peers (the others run under their servers)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('kind', choices=['cheroot', 'granian', 'cherrypy'])
    parser.add_argument('--port', type=int, required=True)
    parser.add_argument('--www', required=True)
    # cheroot's own pool size by default (granian: the app's THREADS default, 100); for cheroot
    # a backlog that admits a burst of 100 connections at once.
    parser.add_argument('--threads', type=int)
    parser.add_argument('--queue', type=int, default=1024)
    parser.add_argument('--static', action='store_true',
                        help="granian: serve the static files with granian's own file serving")
    args = parser.parse_args(argv)
    if args.kind == 'cheroot':
        serve_cheroot(args.port, args.www, args.threads or 10, args.queue)
    elif args.kind == 'granian':
        serve_granian(args.port, args.www, args.threads or 100, args.static)
    else:
        serve_granian(args.port, args.www, args.threads or 100, False, 'peers:make_cherrypy_app')


if __name__ == '__main__':
    sys.exit(main())
