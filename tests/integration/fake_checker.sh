#!/bin/sh
# Stands in for valgrind in test_wrap.c: runs the command it wraps, passes
# SIGTERM on to it, then exits 99 (CT_WRAP_ERROR_EXIT), as
# valgrind --error-exitcode=99 does when it found errors.
"$@" &
pid=$!
trap 'kill -TERM $pid' TERM
wait $pid
wait $pid
exit 99
