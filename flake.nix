# mvm as a flake: the package (from Cargo.lock), the app, a development
# shell, the NixOS module of a node, and guests in mvm's artifact contract.
{
  description = "mvm: keeps a Firecracker microVM host in the state a control plane asks for";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.11";

  outputs = { self, nixpkgs }:
    let
      system = "x86_64-linux";
      pkgs = nixpkgs.legacyPackages.${system};
      mvm = pkgs.rustPlatform.buildRustPackage {
        pname = "mvm";
        version = "0.1.0";
        src = ./.;
        cargoLock.lockFile = ./Cargo.lock;
        # etcd-client's build compiles etcd's protobufs.
        nativeBuildInputs = [ pkgs.protobuf ];
        # The tests need root, namespaces and Firecracker: scripts/test.sh.
        doCheck = false;
      };
      mkGuest = import ./nix/guest.nix { inherit pkgs; };
    in
    {
      packages.${system} = {
        default = mvm;
        inherit mvm;
        mvm-minimal = mkGuest { profile = "minimal"; };
        mvm-standard = mkGuest { profile = "standard"; };
      };
      apps.${system}.default = {
        type = "app";
        program = "${mvm}/bin/mvm";
      };
      devShells.${system}.default = pkgs.mkShell {
        packages = with pkgs; [ cargo rustc clippy rustfmt cargo-nextest nftables iproute2 e2fsprogs etcd protobuf ];
      };
      nixosModules.mvm-node = import ./nix/module.nix { inherit self; };
      lib = { inherit mkGuest; };
    };
}
