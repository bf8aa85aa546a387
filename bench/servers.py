"""The servers under test: started pinned to one core, checked, stopped with their process tree."""
import contextlib
import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time

import peers
import psutil
import readings

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
HOST = '127.0.0.1'
START_DEADLINE = 20      # s for a server to answer its first 200
STOP_DEADLINE = 10       # s for a server to exit after SIGTERM before it gets SIGKILL
# One worker, every file in the run's temp folder, in the foreground; {{port}} filled at start.
NGINX_CONF = """daemon off; worker_processes 1; pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
  types {{ text/html html; image/png png; text/css css; }} default_type application/octet-stream;
  access_log {tmp}/nginx-access.log; sendfile on; tcp_nopush on;
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fcgi;
  uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  server {{
    listen 127.0.0.1:{{port}}; root {www}; charset utf-8;
    location = / {{ try_files /index.html =404; }}
    location = /healthcheck {{ default_type text/plain; add_header Cache-Control no-store;
                              return 200 "Yay"; }}
    location = /logo.png {{ expires 1h; }}
    location /static/ {{ expires 1h; }}
  }}
}}
"""


def get(port, path, headers=None, timeout=5.0):
    """GET `path` on a new connection; return (status, headers dict, body)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request('GET', path, headers=headers or {})
        answer = conn.getresponse()
        return answer.status, dict(answer.getheaders()), answer.read()
    finally:
        conn.close()


class Server:
    """One server's process tree, pinned to the server core, started and stopped by its PID."""

    def __init__(self, name, argv, tmp, core, env, cwd=None, conf=None):
        """Describe a server; '{port}' in argv, env and conf (path, text) is filled at start."""
        self.name, self.argv, self.core, self.env, self.cwd, self.conf = \
            name, argv, core, env, cwd, conf
        self.port = self.proc = None
        self.seen = set()        # every descendant met, killed by stop() if still alive
        self.visits = 0          # GET / that wrk completed, checked against the access log
        self.log_start = 0       # where in its stdout the counted visits begin
        self.out, self.err = (os.path.join(tmp, f'{name}.{ext}') for ext in ('out', 'err'))

    def start(self):
        """Start on a free port; return seconds until GET / first answers 200."""
        with socket.socket() as sock, socket.socket() as metrics_sock:
            sock.bind((HOST, 0))
            metrics_sock.bind((HOST, 0))  # the app's METRICS_PORT: variants run side by side
            port, metrics_port = str(sock.getsockname()[1]), str(metrics_sock.getsockname()[1])
        self.port, self.metrics_port = int(port), int(metrics_port)
        if self.conf:
            with open(self.conf[0], 'w') as file:
                file.write(self.conf[1].replace('{port}', port))
        env = {**os.environ, **{key: v.replace('{port}', port).replace(
            '{metrics_port}', metrics_port) for key, v in self.env.items()}}
        argv = ['taskset', '-c', str(self.core), *(a.replace('{port}', port) for a in self.argv)]
        started = time.monotonic()
        with open(self.out, 'ab') as out, open(self.err, 'ab') as err:
            self.proc = subprocess.Popen(argv, cwd=self.cwd, env=env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=err)
        while time.monotonic() - started < START_DEADLINE and self.proc.poll() is None:
            with contextlib.suppress(OSError):
                if get(self.port, '/', timeout=1.0)[0] == 200:
                    return time.monotonic() - started
            time.sleep(0.002)
        with open(self.err, errors='replace') as file:
            tail = ''.join(file.readlines()[-15:])
        raise RuntimeError(f'{self.name}: no 200 within {START_DEADLINE} s; {self.err}:\n{tail}')

    def tree(self):
        """Return the live process tree, the PID started first; remember its descendants."""
        procs = readings.tree(self.proc.pid)
        self.seen.update(procs[1:])
        return procs

    def settle(self, timeout=5.0, step=0.1):
        """Poll until the tree keeps its PIDs and uses under 5 % of a core, or `timeout` passes.

        The first worker to answer does not mean the others have finished starting.
        """
        end, last = time.monotonic() + timeout, None
        while time.monotonic() < end:
            procs = self.tree()
            now = ({p.pid for p in procs}, readings.cpu_seconds(procs) or 0, time.monotonic())
            if last and now[0] == last[0] and now[1] - last[1] < 0.05 * (now[2] - last[2]):
                return
            last = now
            time.sleep(step)

    def stop(self):
        """SIGTERM the PID started; past STOP_DEADLINE SIGKILL it and every descendant left."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.tree()          # before the signal: once the parent exits, orphans leave the tree
            self.proc.terminate()
        try:
            self.proc.wait(STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(STOP_DEADLINE)
        for proc in self.seen:   # psutil refuses a PID that another process has taken since
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(self.seen, timeout=STOP_DEADLINE)
        self.proc, self.seen = None, set()

    def count_log(self):
        """Return (GET / lines, /healthcheck lines) in the server's stdout past log_start."""
        with open(self.out, errors='replace') as file:
            file.seek(self.log_start)
            lines = file.readlines()
        return (sum('"GET / HTTP/' in line for line in lines),
                sum('/healthcheck' in line for line in lines))

    def time_startup(self, repeats):
        """Start and stop the server `repeats` times; return start-up to first 200 in ms."""
        times = []
        for _ in range(repeats):
            try:
                times.append(self.start() * 1e3)
            finally:
                self.stop()
        return {'median_ms': statistics.median(times), 'min_ms': min(times),
                'max_ms': max(times), 'n': len(times), 'all_ms': times}


def make_servers(args, tmp, www):
    """Return {name: Server} for args.servers, the app and its variants included."""
    py, core, conf = sys.executable, args.server_core, os.path.join(tmp, 'nginx.conf')
    apps = {'landing': (args.app, args.app_env)}
    apps.update((label, (v['dir'], v['env'])) for label, v in args.variants.items())
    peer = [py, os.path.join(BENCH_DIR, 'peers.py')]
    peers = {
        'cheroot': [*peer, 'cheroot', '--port', '{port}', '--www', www,
                    '--threads', str(args.cheroot_threads), '--queue', str(args.cheroot_queue)],
        # granian as the app runs it (1 worker, the app's THREADS default), the app left out.
        'granian': [*peer, 'granian', '--port', '{port}', '--www', www, '--threads', '100'],
        'granian-static': [*peer, 'granian', '--port', '{port}', '--www', www, '--threads', '100',
                           '--static'],
        # CherryPy's own tree on granian as the app runs it: the floor under the app's pages.
        'cherrypy': [*peer, 'cherrypy', '--port', '{port}', '--www', www, '--threads', '100'],
        'http.server': [py, '-m', 'http.server', '--bind', HOST, '--directory', www, '{port}'],
        # gunicorn logs no visits unless asked; the app logs every one.
        'flask': [py, '-m', 'gunicorn', '--workers', '1', '--threads', '100', '--bind',
                  f'{HOST}:{{port}}', '--chdir', BENCH_DIR, '--access-logfile', '-',
                  'peers:make_flask_app()'],
        # uvicorn's plain install (h11, asyncio; no uvloop or httptools), named so that an
        # extra installed later changes nothing; it logs every visit, as the app does.
        'uvicorn': [py, '-m', 'uvicorn', '--workers', '1', '--loop', 'asyncio', '--http', 'h11',
                    '--host', HOST, '--port', '{port}', '--app-dir', BENCH_DIR, '--factory',
                    'peers:make_starlette_app'],
        'nginx': [shutil.which('nginx') or '/usr/sbin/nginx', '-p', tmp + '/', '-c', conf,
                  '-e', os.path.join(tmp, 'nginx-error.log')],
    }
    servers = {}
    for name in args.servers:
        if name in apps:
            env = {'HOST': HOST, 'PORT': '{port}', 'METRICS_PORT': '{metrics_port}',
                   'PYTHONUNBUFFERED': '1', **apps[name][1]}
            servers[name] = Server(name, [py, 'landing.py'], tmp, core, env, cwd=apps[name][0])
        else:
            servers[name] = Server(name, peers[name], tmp, core, {'BENCH_WWW': www}, conf=(
                conf, NGINX_CONF.format(tmp=tmp, www=www)) if name == 'nginx' else None)
    return servers


def prepare_www(tmp, app_dir):
    """Write the app's page, 'Yay', logo and stylesheet into tmp/www; return (folder, bodies).

    The files are laid out as peers.FILES names them, so every peer finds them where its kind
    of server looks (http.server and nginx by path, the others through peers.py).
    """
    sys.path.insert(0, app_dir)
    import landing  # the real page bytes, from the app being measured

    page = landing.PAGE if isinstance(landing.PAGE, bytes) else landing.PAGE.encode()
    expected = {'/': page, '/healthcheck': b'Yay'}
    for path in peers.STATIC:        # the app serves each from its static/ folder
        with open(os.path.join(app_dir, 'static', os.path.basename(path)), 'rb') as file:
            expected[path] = file.read()
    www = os.path.join(tmp, 'www')
    os.mkdir(www)
    for path, (name, _) in peers.FILES.items():
        os.makedirs(os.path.dirname(os.path.join(www, name)), exist_ok=True)
        with open(os.path.join(www, name), 'wb') as file:
            file.write(expected[path])
    # nginx's worker drops root for 'nobody': let it read the files and write its temp dirs.
    os.chmod(tmp, 0o755)
    os.chmod(www, 0o755)
    os.chmod(os.path.join(www, 'static'), 0o755)
    return www, expected


def validate(server, expected):
    """Return {path: None if the server answers 200 with the expected body, else why not}.

    An expected body of None takes any page: a variant may be another version of the app.
    """
    problems = {}
    for path, body in expected.items():
        try:
            status, _, got = get(server.port, path)
        except OSError as error:
            problems[path] = f'error {error}'
            continue
        same = body is None or got == body
        problems[path] = None if status == 200 and same else \
            f'answered {status} with {len(got)} bytes, not the same bytes'
    return problems


def logo_headers(server):
    """Return the caching headers of /logo.png and the status of a conditional GET."""
    headers = {k.lower(): v for k, v in get(server.port, '/logo.png')[1].items()}
    result = {'cache_control': headers.get('cache-control'), 'expires': headers.get('expires'),
              'last_modified': headers.get('last-modified'), 'conditional_status': None}
    if result['last_modified']:
        result['conditional_status'] = get(
            server.port, '/logo.png', {'If-Modified-Since': result['last_modified']})[0]
    return result
