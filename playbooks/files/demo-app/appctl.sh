#!/bin/sh
# appctl.sh ROOT PORT ADDRESS {start|stop|restart}: run the release ROOT/current points at.
# Appends "down <time>" / "up <time>" to ROOT/events.log, so a test can count how many
# hosts were out of service at once.
set -eu
root=$1 port=$2 address=$3 action=$4
pidfile="$root/app.pid"

stop() {
    if [ -f "$pidfile" ]; then
        kill "$(cat "$pidfile")" 2>/dev/null || true
        rm -f "$pidfile"
    fi
    echo "down $(date +%s.%N)" >> "$root/events.log"
}

start() {
    nohup python3 "$root/current/app.py" "$port" "$address" > "$root/app.log" 2>&1 &
    echo $! > "$pidfile"
    # Ready when it answers: the health check then sees the new version at once.
    for _ in $(seq 50); do
        if python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
            "http://$address:$port/health" 2>/dev/null; then
            echo "up $(date +%s.%N)" >> "$root/events.log"
            return 0
        fi
        sleep 0.1
    done
    echo "the app did not start; see $root/app.log" >&2
    return 1
}

case "$action" in
    start) start ;;
    stop) stop ;;
    restart) stop; start ;;
    *) echo "usage: appctl.sh ROOT PORT ADDRESS {start|stop|restart}" >&2; exit 2 ;;
esac
