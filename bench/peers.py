"""The peers the landing page is measured against, serving the same bytes from one folder.

The driver (bench.py) writes the landing page, 'Yay' and the logo into a folder (WWW) as
index.html, healthcheck and logo.png; every peer here answers from those files, so each
server sends what the app sends and only the stack underneath differs.

- `python peers.py cheroot --port P --www DIR [--threads N] [--queue N]`: a bare cheroot
  WSGI server, no CherryPy on top: the ceiling of the app's own stack.
- `gunicorn 'peers:make_flask_app()'` with BENCH_WWW=DIR: Flask, what a user would pick instead.
"""
import argparse
import email.utils
import os
import sys


def read_www(www):
    """Return (page, yay, logo, logo_mtime) from the folder the driver wrote."""
    def read(name):
        with open(os.path.join(www, name), 'rb') as file:
            return file.read()
    return (read('index.html'), read('healthcheck'), read('logo.png'),
            os.path.getmtime(os.path.join(www, 'logo.png')))


def make_wsgi_app(www):
    """Return a plain WSGI callable answering /, /healthcheck and /logo.png from `www`.

    Every response is built once here: this is the least work a WSGI app can do per request.
    """
    page, yay, logo, mtime = read_www(www)
    last_modified = email.utils.formatdate(mtime, usegmt=True)
    answers = {
        '/': ('200 OK', [('Content-Type', 'text/html; charset=utf-8')], page),
        '/healthcheck': ('200 OK', [('Content-Type', 'text/plain; charset=utf-8'),
                                    ('Cache-Control', 'no-store')], yay),
        '/logo.png': ('200 OK', [('Content-Type', 'image/png'),
                                 ('Last-Modified', last_modified),
                                 ('Cache-Control', 'max-age=3600')], logo),
    }
    answers = {
        path: (status, headers + [('Content-Length', str(len(body)))], [body])
        for path, (status, headers, body) in answers.items()
    }
    not_found = ('404 Not Found', [('Content-Type', 'text/plain'), ('Content-Length', '9')],
                 [b'Not Found'])

    def app(environ, start_response):
        """Answer from the prebuilt table."""
        status, headers, body = answers.get(environ.get('PATH_INFO', ''), not_found)
        start_response(status, headers)
        return body

    return app


def make_flask_app(www=None):
    """Return a Flask app serving the same three answers (the logo through send_file)."""
    import flask  # imported here so the bare cheroot peer never loads Flask

    www = www or os.environ['BENCH_WWW']
    page, yay, _, _ = read_www(www)
    app = flask.Flask(__name__, static_folder=None)

    @app.get('/')
    def index():
        """Return the landing page."""
        return flask.Response(page, content_type='text/html; charset=utf-8')

    @app.get('/healthcheck')
    def healthcheck():
        """Return Yay, never cached."""
        return flask.Response(yay, content_type='text/plain; charset=utf-8',
                              headers={'Cache-Control': 'no-store'})

    @app.get('/logo.png')
    def logo():
        """Return the logo with Last-Modified, conditional GET and an hour of caching."""
        return flask.send_from_directory(www, 'logo.png', max_age=3600)

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


def main(argv=None):
    """Command line for the bare cheroot peer (Flask runs under gunicorn instead)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('kind', choices=['cheroot'])
    parser.add_argument('--port', type=int, required=True)
    parser.add_argument('--www', required=True)
    # cheroot's own pool size; a backlog that admits a burst of 100 connections at once.
    parser.add_argument('--threads', type=int, default=10)
    parser.add_argument('--queue', type=int, default=1024)
    args = parser.parse_args(argv)
    serve_cheroot(args.port, args.www, args.threads, args.queue)


if __name__ == '__main__':
    sys.exit(main())
