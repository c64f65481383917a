{
  description = "otel-lab: a Rust Todo API observed with OpenTelemetry, and the labs around it";

  # A release branch: fixed tool versions for the life of the release, security fixes
  # only. 26.05, not 25.11: sqlx 0.9 needs rustc 1.94 or newer, and 25.11 was released
  # with an older one. The first `nix develop` writes flake.lock, which then pins the
  # exact commit.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

  outputs =
    { self, nixpkgs }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
        "x86_64-darwin"
        "aarch64-darwin"
      ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (pkgs: {
        default = pkgs.rustPlatform.buildRustPackage {
          pname = "todo-api";
          version = (builtins.fromTOML (builtins.readFile ./app/Cargo.toml)).package.version;
          # The whole workspace: cargo needs every member's manifest to resolve it.
          src = pkgs.lib.cleanSource ./.;
          cargoLock.lockFile = ./Cargo.lock;
          cargoBuildFlags = [
            "-p"
            "todo-api"
          ];
          # The sqlx query macros read the committed app/.sqlx cache, not a database.
          SQLX_OFFLINE = "true";
          # The service's tests need a Postgres server and the native collector; they run
          # with `just test`, not inside the sandboxed build.
          doCheck = false;
          meta = {
            description = "Todo API (poem + sqlx on Postgres) instrumented with OpenTelemetry";
            license = pkgs.lib.licenses.asl20;
            mainProgram = "todo-api";
          };
        };
      });

      # `nix run` starts the service; it needs Postgres (`just lab-1`) like `cargo run`.
      apps = forAllSystems (pkgs: {
        default = {
          type = "app";
          program = pkgs.lib.getExe self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        };
      });

      # Everything the labs and the tests use. The container engine itself (Docker Desktop
      # or the Docker daemon) comes from the host; `just lab-N` calls `docker compose`.
      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = with pkgs; [
            # Rust toolchain
            cargo
            rustc
            clippy
            rustfmt
            # the lab's commands and helpers
            just
            sqlx-cli
            docker-compose
            curl
            jq
            # stack/check-ports.sh names the program holding a busy port with lsof
            lsof
            # stack/native/build.sh serialises builds with flock (macOS has none of its own)
            flock
            # `just lint`: shellcheck on the scripts
            shellcheck
            # `just bench`: the load generator it drives (pgbench comes with postgresql_16)
            wrk
            # lab 6: stack/collector/make-certs.sh makes the CA and certificates
            openssl
            # the tests: a throwaway Postgres cluster, Go to build the native collector and
            # Prometheus (stack/native), Python for the schemathesis contract test (pip
            # installs it: tests/contract/requirements.txt) and the benchmark script
            postgresql_16
            go
            python3
            python3Packages.pip
          ]
          # `just bench --instructions N`: callgrind (valgrind has no macOS build in nixpkgs)
          ++ pkgs.lib.optionals pkgs.stdenv.hostPlatform.isLinux [ pkgs.valgrind ];
          # Lets rust-analyzer and `cargo doc` find the standard library sources.
          RUST_SRC_PATH = "${pkgs.rustPlatform.rustLibSrc}";
        };
      });
    };
}
