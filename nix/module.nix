# The NixOS module of an mvm node: node.toml as typed options (defaults:
# nix/node-defaults.nix, kept equal to mvm's own by tests/nix_files.rs),
# the agent as a service (as contrib/mvm-agent.service), the kernel
# modules mvm expects, Nix's build users, and Firecracker and the jailer
# where node.toml points.
{ self }:
{ config, lib, pkgs, ... }:
let
  cfg = config.services.mvm-node;
  defaults = import ./node-defaults.nix;
  toml = pkgs.formats.toml { };
  # One option per node.toml key, typed after its default.
  optionOf = name: value:
    lib.mkOption {
      type =
        if builtins.isBool value then lib.types.bool
        else if builtins.isInt value then lib.types.int
        else if builtins.isList value then lib.types.listOf lib.types.str
        else lib.types.str;
      default = value;
      description = "node.toml's `${name}` (README: node.toml).";
    };
  sectionOf = section: attrs:
    lib.mapAttrs (key: value: optionOf "${section}.${key}" value) attrs;
  settingsOptions =
    lib.mapAttrs (name: value:
      if builtins.isAttrs value then sectionOf name value else optionOf name value)
    defaults;
in
{
  options.services.mvm-node = {
    enable = lib.mkEnableOption "an mvm node (Firecracker microVMs kept in the state a control plane asks for)";
    package = lib.mkOption {
      type = lib.types.package;
      default = self.packages.${pkgs.system}.default;
      description = "The mvm package.";
    };
    settings = settingsOptions;
    agent = {
      enable = lib.mkEnableOption "the node agent (`mvm agent run`) following etcd";
      etcd = lib.mkOption {
        type = lib.types.listOf lib.types.str;
        default = [ ];
        example = [ "https://10.0.0.5:2379" ];
        description = "The etcd endpoints of the control plane.";
      };
      prefix = lib.mkOption {
        type = lib.types.str;
        default = "/mvm";
        description = "The fleet's key prefix.";
      };
      extraArgs = lib.mkOption {
        type = lib.types.listOf lib.types.str;
        default = [ ];
        example = [ "--prune" ];
        description = "More arguments to `mvm agent run`.";
      };
    };
  };

  config = lib.mkIf cfg.enable {
    environment.etc."mvm/node.toml".source = toml.generate "node.toml" cfg.settings;
    environment.systemPackages = [ cfg.package pkgs.firecracker pkgs.nftables pkgs.e2fsprogs ];
    # Firecracker and the jailer where node.toml points.
    systemd.tmpfiles.rules = [
      "L+ ${cfg.settings.firecracker.binary} - - - - ${pkgs.firecracker}/bin/firecracker"
      "L+ ${cfg.settings.firecracker.jailer} - - - - ${pkgs.firecracker}/bin/jailer"
    ];
    boot.kernelModules = [ "kvm-intel" "kvm-amd" "tun" "bridge" "nf_tables" ];
    # mvm sets and keeps the sysctls it needs (README: Tenant network);
    # forwarding on from boot avoids a window before the first reconcile.
    boot.kernel.sysctl."net.ipv4.ip_forward" = 1;
    # Nix builds the tenants' artifacts as its unprivileged build users.
    nix.settings.build-users-group = "nixbld";
    systemd.services.mvm-agent = lib.mkIf cfg.agent.enable {
      description = "mvm node agent";
      wantedBy = [ "multi-user.target" ];
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      path = [ pkgs.nftables pkgs.iproute2 pkgs.e2fsprogs pkgs.util-linux config.nix.package ];
      serviceConfig = {
        ExecStart = lib.escapeShellArgs ([
          "${cfg.package}/bin/mvm" "--config" "/etc/mvm/node.toml" "agent" "run"
          "--etcd" (lib.concatStringsSep "," cfg.agent.etcd) "--prefix" cfg.agent.prefix
        ] ++ cfg.agent.extraArgs);
        ExecReload = "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
        Restart = "on-failure";
        RestartSec = "2s";
        # VMs and the metadata service outlive an agent restart.
        KillMode = "process";
        KillSignal = "SIGTERM";
        SendSIGKILL = false;
        TimeoutStopSec = "15min";
        LimitNOFILE = 1048576;
      };
    };
  };
}
