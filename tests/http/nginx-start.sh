#!/bin/sh
# SPDX-License-Identifier: MIT
# nginx-start.sh DIR DOCROOT [WORKERS]: starts nginx on 127.0.0.1 with a free
# port, its configuration, logs and pid file in DIR, serving DOCROOT. Prints
# the port. Stop it with: kill "$(cat DIR/nginx.pid)".
#
# Besides the files of DOCROOT it serves redirects for the blob tests:
#   /redirect/<name>   302 to /<name>
#   /chain<N>          N redirects (301, 302, 307, 308, ...) ending at /flat.img
# Exit 77 when nginx is not installed, 1 on failure.
# With NGINX_PARENT_PID set, a watcher stops nginx when that process is gone
# (a test that crashed or was killed does not leave nginx behind).
set -e

dir=$1
docroot=$2
workers=${3:-1}
[ -n "$dir" ] && [ -n "$docroot" ] || { echo "usage: $0 DIR DOCROOT [WORKERS]" >&2; exit 1; }

nginx=$(command -v nginx || true)
[ -n "$nginx" ] || for p in /usr/sbin/nginx /sbin/nginx; do [ -x "$p" ] && nginx=$p; done
[ -n "$nginx" ] || { echo "$0: nginx not found" >&2; exit 77; }

mkdir -p "$dir/tmp"
user_line=""
[ "$(id -u)" -ne 0 ] || user_line="user root root;"

attempt=0
while [ $attempt -lt 20 ]; do
	attempt=$((attempt + 1))
	# A port from the dynamic range; retried when taken.
	port=$(( 20000 + ($$ * 7919 + attempt * 104729 + $(date +%N | sed 's/^0*//;s/^$/0/')) % 40000 ))
	cat > "$dir/nginx.conf" <<CONF
$user_line
daemon on;
master_process on;
worker_processes $workers;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
	access_log $dir/access.log;
	client_body_temp_path $dir/tmp/body;
	proxy_temp_path $dir/tmp/proxy;
	fastcgi_temp_path $dir/tmp/fastcgi;
	uwsgi_temp_path $dir/tmp/uwsgi;
	scgi_temp_path $dir/tmp/scgi;
	default_type application/octet-stream;
	types { }
	sendfile on;
	tcp_nopush on;
	keepalive_requests 1000000;
	keepalive_timeout 60s;
	server {
		listen 127.0.0.1:$port;
		root $docroot;
		location ~ ^/redirect/(.*)\$ { return 302 /\$1; }
		location = /chain1 { return 302 /flat.img; }
		location = /chain2 { return 308 /chain1; }
		location = /chain3 { return 307 /chain2; }
		location = /chain4 { return 302 /chain3; }
		location = /chain5 { return 301 /chain4; }
		location = /chain6 { return 301 /chain5; }
	}
}
CONF
	rm -f "$dir/nginx.pid"
	if "$nginx" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" 2>"$dir/start.err"; then
		i=0
		while [ ! -s "$dir/nginx.pid" ] && [ $i -lt 100 ]; do
			sleep 0.05
			i=$((i + 1))
		done
		[ -s "$dir/nginx.pid" ] || { echo "$0: nginx wrote no pid file" >&2; exit 1; }
		if [ -n "${NGINX_PARENT_PID:-}" ]; then
			pid=$(cat "$dir/nginx.pid")
			( while kill -0 "$NGINX_PARENT_PID" 2>/dev/null && kill -0 "$pid" 2>/dev/null; do
				sleep 1
			  done
			  kill "$pid" 2>/dev/null ) </dev/null >/dev/null 2>&1 &
		fi
		echo "$port"
		exit 0
	fi
	grep -q "Address already in use" "$dir/start.err" "$dir/error.log" 2>/dev/null || {
		cat "$dir/start.err" >&2
		exit 1
	}
done
echo "$0: no free port found" >&2
exit 1
