#!/bin/sh
# Writes the broker's password file from the environment (compose's .env, from
# `sco-recorder init`) into a tmpfs, turns on the TLS listener when a certificate is
# mounted, and starts mosquitto. Nothing is written to the read-only image.
#   MQTT_INGEST_PASSWORD   the ingest's (user sco-ingest)
#   MQTT_LANE_PASSWORDS    lane-1=secret,lane-2=secret: one publisher per lane, named after it
# The paths and the TLS port may be moved (the tests run this script outside a container).
set -eu
: "${MQTT_INGEST_PASSWORD:?run sco-recorder init first (MQTT_INGEST_PASSWORD)}"
conf=${MOSQUITTO_CONF:-/etc/mosquitto/sco.conf}
run=${MOSQUITTO_RUN_DIR:-/tmp/mosquitto}
certs=${MOSQUITTO_CERTS_DIR:-/mosquitto/certs}
tls_port=${MOSQUITTO_TLS_PORT:-8883}
mkdir -p "$run"
umask 077
printf 'sco-ingest:%s\n' "$MQTT_INGEST_PASSWORD" > "$run/passwd"
for entry in $(printf '%s' "${MQTT_LANE_PASSWORDS:-}" | tr ',' ' '); do
  printf '%s:%s\n' "${entry%%=*}" "${entry#*=}" >> "$run/passwd"
done
mosquitto_passwd -U "$run/passwd"
cp "$conf" "$run/mosquitto.conf"
printf 'password_file %s/passwd\n' "$run" >> "$run/mosquitto.conf"
if [ -f "$certs/server.crt" ] && [ -f "$certs/server.key" ]; then
  printf 'listener %s %s\ncertfile %s/server.crt\nkeyfile %s/server.key\n' \
    "$tls_port" "${MOSQUITTO_TLS_BIND:-0.0.0.0}" "$certs" "$certs" >> "$run/mosquitto.conf"
  echo "TLS listener on $tls_port with $certs/server.crt"
fi
exec "${MOSQUITTO:-mosquitto}" -c "$run/mosquitto.conf"
