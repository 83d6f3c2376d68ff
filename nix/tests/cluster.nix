# The NixOS test (flake check `cluster`, x86_64-linux): three machines with services.procurator,
# the cluster formed through one seed, a write on one machine read on another, a VM spec made by
# the flake's helper run on a named machine (its closure fetched from the machine that holds it),
# the leader crashed and a write still accepted, the crashed machine back and caught up.
#
# Needs nixpkgs, which cannot be fetched on the machines this project is developed on: this file
# has been evaluated nowhere yet and run nowhere yet (docs/nix.md says what was run where).
#   nix build .#checks.x86_64-linux.cluster -L
{ pkgs, self }:
let
  inherit (pkgs) lib;

  # n1's identity, fixed so that the others' seed can name its peer ID at evaluation time: a
  # libp2p Ed25519 key (protobuf, base64) made for this test and used nowhere else.
  seedPeerKey = "CAESQHhFOZmS2ulnbIXXDE4yBW3EmK4uo90CxVjyDeAMpwFgbJUFnaLOivPNUYY7EFN9eWI470lX193yPgMBMzvLSD4=";
  seedPeerId = "12D3KooWH8DziYXGPQTfyGusHF5iRvXtWDAL2ioh6gLTDf1hGaw7";

  # On the machines' disks (not /run): it must survive the crash of a machine. Made by the test
  # script at run time, so that no secret is in the Nix store.
  secretFile = "/var/keys/pcr-cluster.secret";

  # A guest in the shape the spec helper reads from a microvm.nix NixOS system (config.microvm.*,
  # networking.hostName). microvm.nix is not an input of this flake, so its runner is stood in for
  # by one made the same way (bin/microvm-run starting the hypervisor): nixpkgs' kernel and a
  # busybox initrd under QEMU with TCG, since nested KVM is not assumed on the machine running
  # the test. The guest prints a marker and keeps running.
  busybox = pkgs.pkgsStatic.busybox;
  # An initramfs has no /dev/console of its own: mount devtmpfs and write to the serial port.
  guestInit = pkgs.writeScript "init" ''
    #!${busybox}/bin/sh
    ${busybox}/bin/mkdir -p /dev
    ${busybox}/bin/mount -t devtmpfs devtmpfs /dev
    exec >/dev/ttyS0 2>&1
    echo PCR-GUEST-UP
    while :; do ${busybox}/bin/sleep 1; done
  '';
  guestInitrd = pkgs.makeInitrd {
    contents = [
      {
        object = guestInit;
        symlink = "/init";
      }
    ];
  };
  # The kernel image alone, not the kernel package with its modules: the closure n2 fetches
  # through the cluster stays small.
  guestKernel = pkgs.runCommand "guest-bzImage" { } "cp ${pkgs.linuxPackages.kernel}/bzImage $out";
  # The QEMU command and the init script were checked on a development machine with Debian's
  # kernel and busybox (the marker after about 20 s of TCG); tsc_early_khz spares a TSC calibration
  # that never ends under TCG without a PIT (node/vmm/test/fixture.ts).
  runner = pkgs.writeShellScriptBin "microvm-run" ''
    exec ${pkgs.qemu_test}/bin/qemu-system-x86_64 \
      -M microvm,x-option-roms=off,isa-serial=on,rtc=on -accel tcg -m 128 -smp 1 \
      -nodefaults -no-user-config -nographic -serial stdio -no-reboot \
      -kernel ${guestKernel} -initrd ${guestInitrd}/initrd \
      -append "console=ttyS0 panic=-1 quiet tsc_early_khz=2000000"
  '';
  guest.config = {
    networking.hostName = "web";
    microvm = {
      declaredRunner = runner;
      vcpu = 1;
      mem = 128;
    };
  };
  specFile = self.lib.vmSpecFile pkgs guest { };

  common = {
    imports = [ self.nixosModules.default ];
    services.procurator = {
      enable = true;
      inherit secretFile;
      openFirewall = true;
    };
    # Started by the test script, once the secret is in place.
    systemd.services.procurator.wantedBy = lib.mkForce [ ];
    environment.systemPackages = [ pkgs.jq ];
    virtualisation.memorySize = 2048;
    virtualisation.cores = 2;
  };
  joiner =
    { nodes, ... }:
    {
      imports = [ common ];
      services.procurator.seeds = [
        "/ip4/${nodes.n1.networking.primaryIPAddress}/tcp/4001/p2p/${seedPeerId}"
      ];
    };
in
pkgs.testers.runNixOSTest {
  name = "procurator-cluster";
  nodes = {
    n1 = {
      imports = [ common ];
      # Only n1 holds the VM's closure: n2 has to fetch it from n1 through the cluster.
      virtualisation.additionalPaths = [ specFile ];
    };
    n2 = joiner;
    n3 = joiner;
  };

  testScript = ''
    import json

    def status(m):
        return json.loads(m.succeed("pcr status --json"))

    def start(m):
        m.succeed("systemctl start procurator")
        m.wait_for_unit("procurator.service")
        m.wait_until_succeeds("pcr status --json", timeout=60)

    start_all()
    for m in machines:
        m.wait_for_unit("multi-user.target")

    with subtest("one secret on every machine, made at run time"):
        secret = n1.succeed(
            "printf '/key/swarm/psk/1.0.0/\\n/base16/\\n%s\\n' "
            "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \\n')"
        )
        for m in machines:
            m.succeed(
                "install -d -m 0700 /var/keys && "
                f"printf '%s' '{secret}' > ${secretFile} && chmod 0600 ${secretFile}"
            )

    with subtest("the cluster forms through one seed"):
        n1.succeed(
            "install -d -m 0700 /var/lib/procurator && "
            "echo ${seedPeerKey} | base64 -d > /var/lib/procurator/peer.key && "
            "chmod 0600 /var/lib/procurator/peer.key"
        )
        start(n1)
        assert status(n1)["id"] == "${seedPeerId}"
        start(n2)
        start(n3)
        n1.wait_until_succeeds(
            "pcr members --json | jq -e '[.[] | select(.role == \"voter\")] | length == 3'",
            timeout=120,
        )
        ids = {m.name: status(m)["id"] for m in machines}

    with subtest("a write on one machine is read on another"):
        n2.succeed("pcr kv put greeting hello")
        assert n3.succeed("pcr kv get greeting").strip() == "hello"

    with subtest("a VM spec from the flake's helper runs on the named machine"):
        spec = json.loads(n1.succeed("cat ${specFile}"))
        assert spec == {"version": 1, "name": "web", "runner": "${runner}", "vcpus": 1, "memoryMiB": 128}, spec
        n2.fail("nix-store --check-validity ${runner}")
        n1.succeed("pcr store push ${runner}")
        vm = json.loads(n1.succeed(f"pcr vm run ${specFile} --on {ids['n2']} --wait 600 --json", timeout=700))
        assert vm["state"] == "running" and vm["node"] == ids["n2"], vm
        n2.succeed("nix-store --check-validity ${runner}")
        n2.wait_until_succeeds("pcr vm logs web | grep -q PCR-GUEST-UP", timeout=600)

    with subtest("the leader crashes and a write is still accepted"):
        leader_id = status(n1)["leader"]
        leader = next(m for m in machines if ids[m.name] == leader_id)
        survivors = [m for m in machines if m is not leader]
        leader.crash()
        survivors[0].wait_until_succeeds("pcr kv put after-crash yes", timeout=60)
        assert survivors[1].succeed("pcr kv get after-crash").strip() == "yes"
        survivors[1].wait_until_succeeds(
            f"pcr status --json | jq -e '.leader != \"\" and .leader != \"{leader_id}\"'",
            timeout=60,
        )

    with subtest("the crashed machine comes back and catches up"):
        leader.start()
        leader.wait_for_unit("multi-user.target")
        start(leader)
        leader.wait_until_succeeds("pcr kv get after-crash --stale | grep -qx yes", timeout=120)
  '';
}
