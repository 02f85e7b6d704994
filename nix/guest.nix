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
  # guest/mvm-init.sh with its PATH and the secrets step beside it.
  guestDir = pkgs.runCommand "mvm-guest-scripts" { } ''
    mkdir -p $out
    cp ${../guest/mvm-secrets-mount.sh} $out/mvm-secrets-mount.sh
    { echo '#!${pkgs.busybox}/bin/sh'; echo 'export PATH=${pkgs.lib.makeBinPath tools}';
      echo 'export MVM_METADATA_ADDRESS=${metadataAddress}'; tail -n +2 ${../guest/mvm-init.sh}; } > $out/init
    chmod +x $out/init $out/mvm-secrets-mount.sh
  '';
  init = "${guestDir}/init";
  closure = pkgs.closureInfo { rootPaths = [ guestDir ] ++ tools; };
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
