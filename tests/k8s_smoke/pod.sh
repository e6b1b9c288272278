#!/bin/sh
# One pod's container, as a container runtime would start it, without one: run by `unshare --mount --uts --pid
# --fork` (its own mounts, hostname and process numbers; the host's network). Builds the container's root as an
# overlay on the mounted image (mount points can be made in it), mounts /proc, /dev, /etc/hosts and the
# volumes, makes the root read-only if asked, then runs "$@" chrooted as the given uid/gid, with no new
# privileges, in the working directory. The environment is the container's, plus these POD_* variables,
# removed before the container starts:
#   POD_IMAGE_ROOT  the image's root (podman image mount), read-only
#   POD_DIR         this container's scratch directory (overlay upper and work, the root it is mounted on)
#   POD_HOSTNAME    the pod's name
#   POD_READONLY    1 for readOnlyRootFilesystem
#   POD_UID, POD_GID, POD_WORKDIR
#   POD_MOUNTS      lines of `host-path container-path ro|rw`
set -eu

root="$POD_DIR/root"
mkdir -p "$POD_DIR/upper" "$POD_DIR/work" "$root"
mount -t overlay overlay -o "lowerdir=$POD_IMAGE_ROOT,upperdir=$POD_DIR/upper,workdir=$POD_DIR/work" "$root"
hostname "$POD_HOSTNAME"

mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n127.0.0.1\t%s\n' "$POD_HOSTNAME" > "$POD_DIR/hosts"
touch "$root/etc/hosts"  # a regular file in both bases
mount --bind "$POD_DIR/hosts" "$root/etc/hosts"

# Mount points are made and resolved by the image's own tools inside the root, so that a symbolic link of the
# image (/var/run -> /run) leads where it leads in the container, never out to the host.
inside() { chroot "$root" "$@"; }
printf '%s\n' "$POD_MOUNTS" | while read -r source target mode; do
    [ -n "$source" ] || continue
    if [ -d "$source" ]; then inside mkdir -p "$target"; else inside mkdir -p "$(dirname "$target")"; inside touch "$target"; fi
    resolved=$(inside readlink -f "$target")
    mount --bind "$source" "$root$resolved"
    if [ "$mode" = ro ]; then mount -o remount,bind,ro "$root$resolved"; fi
done

if [ "$POD_READONLY" = 1 ]; then mount -o remount,ro "$root"; fi

uid=$POD_UID gid=$POD_GID workdir=$POD_WORKDIR
unset POD_IMAGE_ROOT POD_DIR POD_HOSTNAME POD_READONLY POD_UID POD_GID POD_WORKDIR POD_MOUNTS
exec setpriv --no-new-privs unshare --root="$root" --wd="$workdir" --setgid "$gid" --setuid "$uid" -- "$@"
