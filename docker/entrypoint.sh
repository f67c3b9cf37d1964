#!/bin/sh
# Gives this container an Asterisk entity ID (EID) of its own, once, then runs the command.
# The module registers under the EID (id = asterisk) and Consul's EID check verifies it.
# Without an entityid Asterisk takes a MAC address, and Docker derives MAC addresses from IP
# addresses: a new container on a dead one's address would pass the dead one's check.
# ASTERISK_ENTITYID sets the EID explicitly.
set -e

conf=/etc/asterisk/asterisk.conf

random_eid() {
	set -- $(od -An -N6 -tu1 /dev/urandom)
	# Locally administered, unicast.
	printf '%02x:%02x:%02x:%02x:%02x:%02x' $(( ($1 | 2) & 254 )) "$2" "$3" "$4" "$5" "$6"
}

if ! grep -q '^[[:space:]]*entityid' "$conf"; then
	eid=${ASTERISK_ENTITYID:-$(random_eid)}
	sed -i "s/^\[options\]/[options]\nentityid = $eid/" "$conf"
fi

exec "$@"
