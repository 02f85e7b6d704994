# `lib.mkGuest { profile, ... }`: a guest in mvm's artifact contract — an
# output holding `vmlinux` (uncompressed, what Firecracker boots),
# `rootfs.ext4` and `config.json` — whose init mounts what it needs, takes
# eth0 from the `ip=` boot argument mvm passes (the kernel configures it),
# mounts the secrets drive at /run/secrets ro,noexec,nodev,nosuid
# (guest/mvm-secrets-mount.sh), the data volume (label `data`) at /data
# when there is one, and knows the metadata address.
{ pkgs }:
{ profile ? "minimal", packages ? [ ], metadataAddress ? "169.254.169.254", rootfsMiB ? 256 }:
let
  kernel = pkgs.linuxPackages.kernel;
  tools = [ pkgs.busybox ] ++ pkgs.lib.optionals (profile == "standard") [ pkgs.iproute2 pkgs.curl ] ++ packages;
  init = pkgs.writeScript "mvm-guest-init" ''
    #!${pkgs.busybox}/bin/sh
    export PATH=${pkgs.lib.makeBinPath tools}
    mount -t proc proc /proc
    mount -t sysfs sys /sys
    mount -t devtmpfs dev /dev
    mount -t tmpfs -o mode=0755,nosuid,nodev run /run
    ${../guest/mvm-secrets-mount.sh}
    if [ -e /dev/disk/by-label/data ] || blkid -L data > /dev/null 2>&1; then
      mkdir -p /data && mount -o nosuid,nodev "$(blkid -L data)" /data
    fi
    echo "MVM_METADATA=http://${metadataAddress}" > /run/mvm-metadata
    exec ${pkgs.busybox}/bin/sh
  '';
  closure = pkgs.closureInfo { rootPaths = [ init ] ++ tools; };
in
pkgs.runCommand "mvm-${profile}" { nativeBuildInputs = [ pkgs.e2fsprogs ]; } ''
  mkdir -p root/nix/store root/sbin root/proc root/sys root/dev root/run root/tmp $out
  for p in $(cat ${closure}/store-paths); do cp -a "$p" root/nix/store/; done
  ln -s ${init} root/sbin/init
  truncate -s ${toString rootfsMiB}M $out/rootfs.ext4
  mkfs.ext4 -q -d root -L rootfs $out/rootfs.ext4
  cp ${kernel.dev}/vmlinux $out/vmlinux
  echo '{"boot_args": "console=ttyS0 reboot=k panic=1 init=/sbin/init"}' > $out/config.json
''
