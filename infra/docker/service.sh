#!/bin/sh
# One pipeline process in a container: `scalp "$@"`. A usage or configuration error (exit 2: a missing key,
# a bad setting) does not get better by restarting, so it is reported and the container stops with 0, which
# `restart: on-failure` leaves stopped; any other failure exits non-zero and is restarted. SIGTERM and SIGINT
# (docker stop, Ctrl-C) are passed on to scalp, which stops cleanly; its own exit code is kept.
scalp "$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM
trap 'kill -INT "$child" 2>/dev/null' INT
while :; do
  wait "$child"
  code=$?
  kill -0 "$child" 2>/dev/null || break  # still running: wait was interrupted by a signal, wait again
done
if [ "$code" -eq 2 ]; then
  echo "scalp $1: usage or configuration error (exit 2); not restarted: fix the configuration, then start it again" >&2
  exit 0
fi
exit "$code"
