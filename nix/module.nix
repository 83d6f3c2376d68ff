# services.procurator: one Procurator member per machine, as a systemd service.
#
# Owns: the options, the `pcr node start` command line built from them, the unit (restart,
# credentials, hardening), the firewall ports, a `pcr` on the system PATH that talks to the local
# node, and optionally this machine's Nix using the node's binary cache. It does not own the
# package expression (nix/package.nix; the flake's nixosModules.default sets `package`).
#
# Evaluated offline by nix/module.test.ts against nixpkgs' lib and small declarations of the NixOS
# options it sets (nix/tests/nixos-options.nix); run as a whole by nix/tests/cluster.nix.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  inherit (lib)
    mkOption
    mkEnableOption
    mkIf
    types
    ;
  cfg = config.services.procurator;

  # The daemon's --store values: auto | nix | local | nix:/chroot/store.
  storeModeType = types.either (types.enum [
    "auto"
    "nix"
    "local"
  ]) (types.strMatching "nix:/.+");

  # `host:port` with a numeric port (IPv6 in brackets), as --cache and --metrics take them.
  hostPortType = types.strMatching "([[][0-9a-fA-F:.]+[]]|[A-Za-z0-9._-]+):[0-9]{1,5}";

  # One TCP listen multiaddr, the only transport the daemon has.
  listenType = types.strMatching "/ip[46]/[^/]+/tcp/[0-9]{1,5}";

  splitHostPort =
    s:
    let
      m = builtins.match "(.*):([0-9]+)" s;
    in
    {
      host = builtins.elemAt m 0;
      port = lib.toInt (builtins.elemAt m 1);
    };
  listenPort = a: lib.toInt (builtins.elemAt (builtins.match "/ip[46]/[^/]+/tcp/([0-9]+)" a) 0);
  isLoopback = host: lib.hasPrefix "127." host || host == "[::1]" || host == "localhost";

  # The address this machine's Nix reaches a listener on: a wildcard means loopback.
  localHost =
    host:
    if host == "0.0.0.0" then
      "127.0.0.1"
    else if host == "[::]" then
      "[::1]"
    else
      host;

  cache = if cfg.cache.listen == null then null else splitHostPort cfg.cache.listen;
  metrics = splitHostPort cfg.metricsListen;

  # Ports other machines reach: the libp2p listeners always, the cache and metrics only when they
  # listen beyond loopback.
  openPorts =
    map listenPort cfg.listen
    ++ lib.optional (cache != null && !isLoopback cache.host) cache.port
    ++ lib.optional (!isLoopback metrics.host) metrics.port;

  # systemd expands % specifiers and $ variables in ExecStart words, quoted or not: a user's
  # value is escaped for systemd first, then quoted as one word.
  systemdArg = a: lib.escapeShellArg (builtins.replaceStrings [ "%" "$" ] [ "%%" "$$" ] (toString a));

  # Raft's clock in milliseconds, whole ticks (node/raft_timing.ts: RAFT_TICK_MS,
  # ELECTION_TIMEOUT_MS_MAX, ELECTION_TIMEOUT_HEARTBEATS_MIN and the defaults); the daemon checks
  # again at start.
  raftTickMs = 50;
  raftMsType =
    max:
    types.addCheck (types.ints.between raftTickMs max) (ms: lib.mod ms raftTickMs == 0)
    // {
      description = "milliseconds, a multiple of ${toString raftTickMs} from ${toString raftTickMs} to ${toString max}";
    };
  heartbeatMs = if cfg.heartbeatInterval == null then 400 else cfg.heartbeatInterval;
  electionMs = if cfg.electionTimeout == null then 1000 else cfg.electionTimeout;

  credentialsDir = "%d"; # systemd's $CREDENTIALS_DIRECTORY, as a specifier
  flag = name: value: [ "--${name}" value ];

  startArgs = lib.concatLists [
    (flag "data-dir" cfg.dataDir)
    (lib.concatMap (flag "listen") cfg.listen)
    (lib.concatMap (flag "seed") cfg.seeds)
    (lib.optionals (cfg.name != null) (flag "name" cfg.name))
    (lib.concatMap (k: flag "label" "${k}=${cfg.labels.${k}}") (lib.attrNames cfg.labels))
    (lib.optionals (cfg.reserve.cpus != 0) (flag "reserve-cpus" (toString cfg.reserve.cpus)))
    (lib.optionals (cfg.reserve.memoryMiB != 0) (
      flag "reserve-memory-mib" (toString cfg.reserve.memoryMiB)
    ))
    (lib.optionals (cfg.nodeDownAfter != null) (flag "node-down-after" cfg.nodeDownAfter))
    (lib.optionals (cfg.fenceAfter != null) (flag "fence-after" cfg.fenceAfter))
    (lib.optionals (cfg.heartbeatInterval != null) (
      flag "heartbeat-interval" (toString cfg.heartbeatInterval)
    ))
    (lib.optionals (cfg.electionTimeout != null) (
      flag "election-timeout" (toString cfg.electionTimeout)
    ))
    (flag "max-voters" (toString cfg.maxVoters))
    (flag "store" cfg.store.mode)
    (lib.optionals (cfg.store.maxMiB != null) (flag "store-max-mib" (toString cfg.store.maxMiB)))
    (flag "cache" (if cfg.cache.listen == null then "off" else cfg.cache.listen))
    (lib.concatMap (flag "trusted-key") cfg.cache.trustedKeys)
    (lib.optionals (cfg.cache.auth != "push") (flag "cache-auth" cfg.cache.auth))
    (lib.optionals (cfg.cache.compression != "none") (flag "cache-compression" cfg.cache.compression))
    (lib.concatMap (flag "upstream") cfg.cache.upstreams)
    (flag "metrics" cfg.metricsListen)
    (flag "log-level" cfg.logLevel)
    cfg.extraArgs
  ];
  # The secret's path is the credentials directory's, a specifier that must stay unescaped.
  execStart = lib.concatStringsSep " " (
    [ "${cfg.package}/bin/pcr node start" ]
    ++ map systemdArg startArgs
    ++ lib.optional (cfg.secretFile != null) "--secret-file ${credentialsDir}/cluster.secret"
  );

  # `pcr` for the operator: the local node's data dir unless PCR_DATA_DIR or --addr says otherwise.
  # A wrapper, not an environment variable, so that `sudo pcr ...` still finds the node.
  pcrCli = pkgs.writeShellScriptBin "pcr" ''
    export PCR_DATA_DIR="''${PCR_DATA_DIR:-${cfg.dataDir}}"
    exec ${cfg.package}/bin/pcr "$@"
  '';

  stateDirectory = lib.removePrefix "/var/lib/" cfg.dataDir;
  underVarLib = lib.hasPrefix "/var/lib/" cfg.dataDir;
  inStore = p: p != null && lib.hasPrefix builtins.storeDir (toString p);

  # Devices a VMM needs; everything else in /dev is closed (DevicePolicy=closed keeps the
  # pseudo-devices such as /dev/null and /dev/urandom).
  vmmDevices = [
    "/dev/kvm rw"
    "/dev/net/tun rw"
    "/dev/vhost-net rw"
    "/dev/vhost-vsock rw"
  ];
in
{
  options.services.procurator = {
    enable = mkEnableOption "Procurator, a member of a Procurator cluster (`pcr node start`)";

    package = lib.mkPackageOption pkgs "procurator" { };

    dataDir = mkOption {
      # No spaces or quotes: it goes into unit directives and a shell wrapper unquoted by systemd.
      type = types.strMatching "/[A-Za-z0-9._/-]+";
      default = "/var/lib/procurator";
      description = ''
        Where the node keeps its identity (peer.key), the cluster secret, its Raft log, its store
        key and its VMs. Under /var/lib it is the unit's StateDirectory (created with mode 0700);
        elsewhere a tmpfiles rule creates it.
      '';
    };

    name = mkOption {
      # The daemon's rule (node/state/machine.ts MEMBER_NAME_PATTERN, MEMBER_NAME_BYTES_MAX).
      type = types.nullOr (types.strMatching "[A-Za-z0-9][A-Za-z0-9._-]{0,62}");
      default = null;
      example = "host1";
      description = ''
        This node's name in tables and in commands that take a node (`--name`). Null: the host
        name. Two members asking for one name: the smaller peer ID keeps it, the other gets a
        suffix of its short ID.
      '';
    };

    labels = mkOption {
      # The daemon's rule (node/sched/spec.ts validateLabels: LABELS_MAX, LABEL_KEY_BYTES_MAX,
      # LABEL_VALUE_BYTES_MAX); the daemon checks again at start.
      type = types.addCheck (types.attrsOf (types.strMatching "[ -~]{0,255}")) (
        l: builtins.length (builtins.attrNames l) <= 32
          && builtins.all (k: builtins.match "[a-z0-9][a-z0-9._-]{0,62}" k != null) (builtins.attrNames l)
      );
      default = { };
      example = {
        zone = "a";
        disk = "ssd";
      };
      description = ''
        Labels placement constraints and spreads match as `label.KEY` (`--label KEY=VALUE`):
        at most 32, keys of a-z 0-9 . _ - (up to 63 bytes), printable values (up to 255 bytes).
      '';
    };

    reserve = {
      cpus = mkOption {
        type = types.ints.unsigned;
        default = 0;
        description = "Cores kept from VMs: placement sees the machine's cores minus these.";
      };
      memoryMiB = mkOption {
        type = types.ints.unsigned;
        default = 0;
        description = "Memory kept from VMs (for the host and the daemon), in MiB.";
      };
    };

    nodeDownAfter = mkOption {
      type = types.nullOr (types.strMatching "[0-9]+(\\.[0-9]+)?(ms|s|m|h|d)?");
      default = null;
      example = "10s";
      description = ''
        The leader marks a node down after this long without a Raft answer and places its VMs
        elsewhere. Null: the daemon's default (10s). Must exceed the fencing bound
        (docs/scheduling.md); the daemon refuses settings that break it.
      '';
    };

    fenceAfter = mkOption {
      type = types.nullOr (types.strMatching "[0-9]+(\\.[0-9]+)?(ms|s|m|h|d)?");
      default = null;
      example = "4s";
      description = ''
        A node that hears no leader for this long stops its VMs (so no VM runs twice). Null: the
        daemon's default (4s).
      '';
    };

    heartbeatInterval = mkOption {
      type = types.nullOr (raftMsType 20000);
      default = null;
      example = 400;
      description = ''
        How often the Raft leader sends heartbeats, in milliseconds (`--heartbeat-interval`), a
        multiple of the 50 ms tick. Null: the daemon's default (400). Give every member the same
        value (docs/operations.md, "Tuning").
      '';
    };

    electionTimeout = mkOption {
      type = types.nullOr (raftMsType 50000);
      default = null;
      example = 1000;
      description = ''
        How long a follower waits without hearing a leader before it campaigns, in milliseconds
        (`--election-timeout`; each wait is randomized up to twice it), a multiple of the 50 ms
        tick, at least 2.5 heartbeat intervals. Null: the daemon's default (1000). Give every member
        the same value. A longer timeout needs a longer nodeDownAfter (the fencing bound).
      '';
    };

    listen = mkOption {
      type = types.nonEmptyListOf listenType;
      default = [ "/ip4/0.0.0.0/tcp/4001" ];
      example = [
        "/ip4/0.0.0.0/tcp/4001"
        "/ip6/::/tcp/4001"
      ];
      description = ''
        libp2p TCP addresses to listen on. Give a fixed port: members find each other by the
        addresses they announced, and openFirewall opens these ports.
      '';
    };

    seeds = mkOption {
      type = types.listOf (types.strMatching "/.+/p2p/[1-9A-HJ-NP-Za-km-z]+");
      default = [ ];
      example = [ "/ip4/10.0.0.1/tcp/4001/p2p/12D3KooW..." ];
      description = ''
        Members to join through, with their peer ID. Empty on the first machine, which then
        bootstraps a new cluster of one. Needed only for the first join: after that the node finds
        its members in its own log. A node with seeds needs secretFile.
      '';
    };

    secretFile = mkOption {
      type = types.nullOr (types.strMatching "/.+");
      default = null;
      example = "/run/keys/procurator-cluster.secret";
      description = ''
        The cluster secret (a member's cluster.secret), as a path on the machine, passed to the unit
        as a systemd credential (LoadCredential) so that only the service reads it. A string, not a
        Nix path: a path literal would be copied into the world-readable Nix store. Without it, a
        node without seeds creates a new secret in dataDir.
      '';
    };

    maxVoters = mkOption {
      type = types.ints.between 1 1000;
      default = 5;
      description = "How many members become Raft voters; later ones stay learners.";
    };

    store = {
      mode = mkOption {
        type = storeModeType;
        default = "nix";
        description = ''
          The node's store: `nix` (this machine's Nix store, through the Nix daemon), `local` (a
          node-local store in dataDir, with an optional size limit), `nix:/dir` (a Nix chroot
          store) or `auto` (nix if the nix command is on the unit's PATH, which it is here).
        '';
      };
      maxMiB = mkOption {
        type = types.nullOr (types.ints.between 1 1073741824);
        default = null;
        description = ''
          Size limit of the node-local store, in MiB (least recently used paths are evicted first,
          never one a VM on this node needs). Only with `store.mode = "local"`.
        '';
      };
    };

    cache = {
      listen = mkOption {
        type = types.nullOr hostPortType;
        default = "127.0.0.1:4002";
        example = "0.0.0.0:4002";
        description = ''
          The node's HTTP binary cache (`--cache`), or null for none. On a miss it fetches the path
          from the members, so Nix on this machine can substitute anything the cluster holds.
        '';
      };
      trustedKeys = mkOption {
        type = types.listOf (types.strMatching "[A-Za-z0-9._-]+:[A-Za-z0-9+/=]+");
        default = [ ];
        example = [ "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=" ];
        description = "Store keys trusted besides the members' own (`--trusted-key`).";
      };
      auth = mkOption {
        type = types.enum [
          "push"
          "read"
        ];
        default = "push";
        description = ''
          What needs a cache token (`--cache-auth`): `push`, uploads only (reads are open), or
          `read`, reads too. Tokens: `pcr store token create --name NAME [--push]`.
        '';
      };
      compression = mkOption {
        type = types.enum [
          "none"
          "remote"
          "zstd"
        ];
        default = "none";
        description = ''
          How NARs are served (`--cache-compression`): `none`, `remote` (zstd to clients not on
          this machine) or `zstd`.
        '';
      };
      upstreams = mkOption {
        type = types.listOf (types.strMatching "https?://.+");
        default = [ ];
        example = [ "https://cache.nixos.org" ];
        description = ''
          Binary caches asked for a path no member holds (`--upstream`); their keys go in
          `trustedKeys`. The cluster then downloads each path once.
        '';
      };
      secretKeyFile = mkOption {
        type = types.nullOr (types.strMatching "/.+");
        default = null;
        example = "/run/keys/procurator-store.key";
        description = ''
          A Nix secret key (`nix key generate-secret`) the node signs what it serves with, passed as
          a systemd credential and installed as dataDir/store.key at each start. Without it the node
          makes its own key on first start (`pcr store stats` shows the public half). Giving it lets
          `useAsSubstituter` name the public key before the first start.
        '';
      };
      useAsSubstituter = mkOption {
        type = types.bool;
        default = false;
        description = ''
          Add the node's cache to this machine's `nix.settings.substituters`, and `publicKey` to
          its `trusted-public-keys`.
        '';
      };
      publicKey = mkOption {
        type = types.nullOr (types.strMatching "[A-Za-z0-9._-]+:[A-Za-z0-9+/=]+");
        default = null;
        description = ''
          The public half of the node's store key (of secretKeyFile, or from `pcr store stats`),
          for useAsSubstituter.
        '';
      };
    };

    metricsListen = mkOption {
      type = hostPortType;
      default = "127.0.0.1:9464";
      description = "Prometheus metrics address (`--metrics`); opened in the firewall only beyond loopback.";
    };

    logLevel = mkOption {
      type = types.enum [
        "trace"
        "debug"
        "info"
        "warn"
        "error"
      ];
      default = "info";
      description = "Log level of the daemon's JSON logs (the journal).";
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Open the TCP ports of `listen`, and of the cache and metrics addresses when they are not on
        loopback.
      '';
    };

    extraPackages = mkOption {
      type = types.listOf types.package;
      default = [ ];
      example = lib.literalExpression "[ pkgs.qemu_kvm ]";
      description = ''
        Added to the unit's PATH: the hypervisors of the direct backends (qemu-system-x86_64,
        cloud-hypervisor, firecracker). microvm.nix runners bring their own.
      '';
    };

    extraArgs = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [
        "--snapshot-entries"
        "50000"
      ];
      description = "More arguments for `pcr node start`.";
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.seeds == [ ] || cfg.secretFile != null;
        message = "services.procurator.seeds is set but secretFile is not: joining a cluster needs its secret (a member's cluster.secret).";
      }
      {
        assertion = !(inStore cfg.secretFile) && !(inStore cfg.cache.secretKeyFile);
        message = "services.procurator: secretFile and cache.secretKeyFile must not be in the Nix store, which every user can read.";
      }
      {
        assertion = cfg.store.maxMiB == null || cfg.store.mode == "local";
        message = "services.procurator.store.maxMiB limits the node-local store only: set store.mode = \"local\" or remove the limit.";
      }
      {
        assertion = !cfg.cache.useAsSubstituter || (cache != null && cfg.cache.publicKey != null);
        message = "services.procurator.cache.useAsSubstituter needs cache.listen and cache.publicKey (the node's store key, from cache.secretKeyFile or `pcr store stats`).";
      }
      {
        assertion = !cfg.cache.useAsSubstituter || cache == null || cache.port != 0;
        message = "services.procurator.cache.useAsSubstituter needs a fixed cache port, not 0.";
      }
      {
        # ELECTION_TIMEOUT_HEARTBEATS_MIN = 2.5, in integers.
        assertion = 2 * electionMs >= 5 * heartbeatMs;
        message = "services.procurator.electionTimeout (${toString electionMs} ms) must be at least 2.5 x heartbeatInterval (${toString heartbeatMs} ms), or one late heartbeat starts an election.";
      }
      {
        assertion = !cfg.openFirewall || !(builtins.elem 0 openPorts);
        message = "services.procurator.openFirewall cannot open port 0 (a port picked at start): give listen, cache.listen and metricsListen fixed ports.";
      }
    ];

    systemd.services.procurator = {
      description = "Procurator member (pcr node)";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [
        "network-online.target"
        "nix-daemon.socket"
      ];
      # nix: the store; ip: tap devices for VMs on a bridge; xz, zstd: cache uploads, upstreams
      # and compressed serving.
      path = [
        config.nix.package
        pkgs.iproute2
        pkgs.xz
        pkgs.zstd
      ]
      ++ cfg.extraPackages;
      environment = {
        # Store writes go through the Nix daemon, so the unit needs no write access to /nix.
        NIX_REMOTE = "daemon";
        # ProtectHome hides /root: the nix CLI's caches go to the data dir instead.
        HOME = cfg.dataDir;
      };
      startLimitIntervalSec = 60;
      startLimitBurst = 5;
      serviceConfig = {
        ExecStart = execStart;
        ExecStartPre = lib.optional (cfg.cache.secretKeyFile != null) (
          "${pkgs.coreutils}/bin/install -m 0600 ${credentialsDir}/store.key "
          + systemdArg "${cfg.dataDir}/store.key"
        );
        LoadCredential =
          lib.optional (cfg.secretFile != null) "cluster.secret:${cfg.secretFile}"
          ++ lib.optional (cfg.cache.secretKeyFile != null) "store.key:${cfg.cache.secretKeyFile}";
        Restart = "on-failure";
        RestartSec = "2s";
        # VMs outlive a restart of the daemon, which adopts them when it comes back (docs/vmm.md):
        # a stop signals the daemon only, not the VMMs in its cgroup (D-record in docs/decisions.md).
        KillMode = "process";
        TimeoutStopSec = "30s";
        LimitNOFILE = 65536;
        StateDirectory = mkIf underVarLib stateDirectory;
        StateDirectoryMode = "0700";
        WorkingDirectory = cfg.dataDir;
        UMask = "0077";

        # Hardening, as far as running VMMs allows. Root stays (tap devices and bridges need
        # CAP_NET_ADMIN, runners may start virtiofsd, VMs' files are root's), so the filesystem,
        # the devices and the kernel interfaces are what is narrowed.
        ProtectSystem = "strict";
        ReadWritePaths = [ cfg.dataDir ];
        ProtectHome = true;
        PrivateTmp = true;
        DevicePolicy = "closed";
        DeviceAllow = vmmDevices;
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectClock = true;
        ProtectHostname = true;
        NoNewPrivileges = true;
        RestrictSUIDSGID = true;
        RestrictRealtime = true;
        LockPersonality = true;
        SystemCallArchitectures = "native";
        RestrictAddressFamilies = [
          "AF_UNIX"
          "AF_INET"
          "AF_INET6"
          "AF_NETLINK"
        ];
        # Node's JIT and QEMU's TCG need writable executable memory.
        MemoryDenyWriteExecute = false;
      };
    };

    systemd.tmpfiles.rules = lib.optional (!underVarLib) "d ${cfg.dataDir} 0700 root root -";

    environment.systemPackages = [ pcrCli ];

    networking.firewall.allowedTCPPorts = mkIf cfg.openFirewall (lib.unique openPorts);

    # Guarded on what the assertions demand, so that a missing key is reported by its assertion
    # rather than as a type error of nix.settings.
    nix.settings = mkIf (cfg.cache.useAsSubstituter && cache != null && cfg.cache.publicKey != null) {
      substituters = [ "http://${localHost cache.host}:${toString cache.port}" ];
      trusted-public-keys = [ cfg.cache.publicKey ];
    };
  };
}
