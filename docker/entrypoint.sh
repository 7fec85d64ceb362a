#!/bin/sh
# Started as root only to hand a bind-mounted recordings folder to the `sco` user, then
# runs the command as `sco`. Started as any other user, it just runs the command.
set -eu
if [ "$(id -u)" = 0 ]; then
  mkdir -p "${SCO_OUTPUT_DIR:-/data/recordings}"
  chown sco:sco "${SCO_OUTPUT_DIR:-/data/recordings}"
  exec setpriv --reuid=sco --regid=sco --init-groups -- "$@"
fi
exec "$@"
