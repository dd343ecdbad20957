#!/bin/sh
# Host keys are made per container (none are baked into the image); the replicas' public
# key comes from the ssh-keys volume that the ssh-keys service filled.
set -eu
ssh-keygen -A
install -d -m 0700 -o deploy -g deploy /home/deploy/.ssh
install -m 0600 -o deploy -g deploy /keys/authorized_keys /home/deploy/.ssh/authorized_keys
exec /usr/sbin/sshd -D -e
