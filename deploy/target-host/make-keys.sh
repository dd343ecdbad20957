#!/bin/sh
# The compose sandbox's SSH key pair, generated at first start into the ssh-keys volume:
# never a real secret, never in the repository. The private key is made readable by the
# replica image's user (uid 10001); authorized_keys is what the target hosts install.
set -eu
KEYS=${KEYS:-/keys}
if [ ! -f "$KEYS/id_ed25519" ]; then
  ssh-keygen -q -t ed25519 -N '' -C troupe-compose-sandbox -f "$KEYS/id_ed25519"
fi
cp "$KEYS/id_ed25519.pub" "$KEYS/authorized_keys"
chmod 0600 "$KEYS/id_ed25519"
chmod 0644 "$KEYS/id_ed25519.pub" "$KEYS/authorized_keys"
chown "${KEY_OWNER:-10001:10001}" "$KEYS/id_ed25519" "$KEYS/id_ed25519.pub"
