#!/bin/sh
# pg_ctl for the tests' own PostgreSQL cluster (pytest-postgresql's process fixture runs it).
#
# PostgreSQL refuses to run as root, and CI runs the suite as root. As root, this runs the
# real pg_ctl as an unprivileged user ($TUNER_TEST_PG_OS_USER, else postgres, else nobody),
# after giving that user the data folder, the log file and a way through pytest's private
# temporary folders. As any other user it is the real pg_ctl.
set -eu
bin=${TUNER_TEST_PG_BIN:-/usr/lib/postgresql/15/bin}
if [ "$(id -u)" != 0 ]; then
    exec "$bin/pg_ctl" "$@"
fi
user=${TUNER_TEST_PG_OS_USER:-}
if [ -z "$user" ]; then
    if id postgres >/dev/null 2>&1; then user=postgres; else user=nobody; fi
fi

datadir= logfile= previous= command=
for arg in "$@"; do
    case "$previous" in
        -D|--pgdata) datadir=$arg ;;
        -l|--log) logfile=$arg ;;
    esac
    case "$arg" in
        initdb|start|stop|status|restart|reload) [ -n "$command" ] || command=$arg ;;
    esac
    previous=$arg
done

# Let the user reach a path under root's 0700 folders: search (x) permission on each parent.
# Done on every call: a pytest session starting meanwhile resets its root folder to 0700.
open_parents() {
    dir=$(dirname "$1")
    while [ "$dir" != / ] && [ -n "$dir" ]; do
        chmod o+x "$dir" 2>/dev/null || true
        dir=$(dirname "$dir")
    done
}

[ -z "$datadir" ] || open_parents "$datadir"
if [ -n "$datadir" ] && { [ "$command" = initdb ] || [ "$command" = start ]; }; then
    mkdir -p "$datadir"
    chown "$user" "$datadir"
    chmod 700 "$datadir"
fi
if [ -n "$logfile" ]; then
    open_parents "$logfile"
    touch "$logfile"
    chown "$user" "$logfile"
fi
cd /
exec runuser -u "$user" -- "$bin/pg_ctl" "$@"
