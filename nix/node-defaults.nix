# node.toml's built-in defaults as Nix values: the defaults of the NixOS
# module's options (nix/module.nix). tests/nix_files.rs checks that they
# equal mvm's own (src/spec/default-node.toml), so the two cannot drift.
{
  state_dir = "/var/lib/mvm";
  cgroup = {
    parent = "mvm";
    allow_missing_controllers = false;
  };
  bridge = {
    name = "mvmbr0";
    subnet = "10.200.0.0/24";
    gateway = "10.200.0.1";
    dns = [ "10.200.0.1" ];
  };
  network = {
    egress_deny = [ "10.0.0.0/8" "172.16.0.0/12" "192.168.0.0/16" "100.64.0.0/10" "169.254.0.0/16" "127.0.0.0/8" ];
  };
  metadata = {
    address = "169.254.169.254";
    port = 8775;
    rate_per_sec = 50;
    burst = 100;
    tokens = "required";
  };
  firecracker = {
    binary = "/usr/bin/firecracker";
    jailer = "/usr/bin/jailer";
    strict_seccomp_filter = "/etc/mvm/seccomp-strict.bpf";
    stop_timeout_secs = 10;
  };
  nix = {
    binary = "/usr/bin/nix";
    builder = "local";
    substituters = [ "https://cache.nixos.org" ];
    container_runtime = "/usr/bin/podman";
    container_image = "docker.io/nixos/nix:2.24.9";
  };
  tenants = {
    uid_min = 100000;
    uid_max = 165535;
    revision_history = 10;
  };
  apply = {
    parallelism = 10;
  };
  logs = {
    max_bytes = 4194304;
    previous_runs = 2;
  };
}
