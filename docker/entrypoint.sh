#!/bin/sh
# Runs migrations once (the web container sets VSM_MIGRATE=1), then the given command.
set -e
if [ "${VSM_MIGRATE:-0}" = "1" ]; then
  python manage.py migrate --noinput
fi
exec "$@"
