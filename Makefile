# ctr: set-up, tests, lint, benchmarks. Run as root on Debian/Ubuntu.
VENV    ?= /opt/ctr/venv
PYTHON  ?= python3
BINDIR  ?= /usr/local/bin
# Extras of the Python package: plot (matplotlib, for ctr bench --plot); dev adds tests and lint.
EXTRAS  ?= plot
# What ctr needs from the distribution. Installed only when missing. lxcfs is not
# needed: where it runs, containers get its /proc files (their own memory, CPUs,
# uptime); on a systemd host the package starts it.
APT_PACKAGES = busybox-static libcap-dev libseccomp-dev iproute2 gcc python3-dev python3-venv \
               util-linux cpio nftables qemu-system-x86 kmod debootstrap skopeo zstd lxcfs
# Peers for the side-by-side benchmarks (benchmarks/images.py: podman, umoci;
# benchmarks/density.py: podman with conmon and runc).
APT_BENCH    = crun runc podman conmon umoci
# Tests: systemd-analyze verify of generated units (systemd need not be PID 1);
# a real registry (the CNCF distribution's) that the pull tests push to;
# podman (with conmon) and containerd drive ctr-oci in the OCI runtime's tests;
# procps's free and uptime are lent to containers in the lxcfs tests;
# e2fsprogs's mkfs.ext4 makes the disk of the cgroup2 guest (make test-cgroup2).
APT_TEST     = systemd docker-registry podman conmon containerd procps e2fsprogs

.PHONY: install apt venv kernel subids completion dev test-images test test-cgroup2 unit lint bench \
        bench-density clean

install: apt venv kernel subids completion

# The subordinate ids --userns=auto hands out, one block of 65536 per container.
subids:
	@for f in /etc/subuid /etc/subgid; do \
	  grep -qs '^ctr:' $$f || echo 'ctr:1000000000:1000000000' >> $$f; \
	done

apt:
	@missing=$$(for p in $(APT_PACKAGES) $(EXTRA_APT); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

venv:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "ctr needs Python >= 3.11"; exit 1; }
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install -q --disable-pip-version-check '.[$(EXTRAS)]'
	@ln -sf $(VENV)/bin/ctr $(BINDIR)/ctr
	@ln -sf $(VENV)/bin/ctr-oci $(BINDIR)/ctr-oci
	@echo "ctr installed: $(BINDIR)/ctr -> $(VENV)/bin/ctr, $(BINDIR)/ctr-oci -> $(VENV)/bin/ctr-oci"

# Shell completion (instance, image and network names too) where each shell looks.
completion:
	@install -d /etc/bash_completion.d /usr/share/zsh/vendor-completions \
	  /usr/share/fish/vendor_completions.d
	@$(BINDIR)/ctr completion bash > /etc/bash_completion.d/ctr
	@$(BINDIR)/ctr completion zsh > /usr/share/zsh/vendor-completions/_ctr
	@$(BINDIR)/ctr completion fish > /usr/share/fish/vendor_completions.d/ctr.fish

# The guest kernel VMs boot, fetched once from the distribution (ctr kernel fetch).
kernel:
	@$(BINDIR)/ctr kernel ls --format json | grep -q '"version"' || $(BINDIR)/ctr kernel fetch

dev:
	@$(MAKE) --no-print-directory install EXTRAS='plot,dev' EXTRA_APT='$(APT_BENCH) $(APT_TEST)'
	@$(MAKE) --no-print-directory test-images

# The debian image the system-container tests boot, built once (debootstrap, ~40 s)
# in the default state root: the tests run in a network namespace of their own,
# which reaches no mirror.
test-images:
	@$(BINDIR)/ctr image ls --format json | grep -q '"name": "debian"' || \
	  $(BINDIR)/ctr image build debian

# pytest from the venv (not `python -m pytest`, which would import the source
# tree without its built C helper). The integration suite runs inside a network namespace of its own, which plays
# "the host": bridges, addresses and nft rules never touch the machine's network.
test: dev
	unshare --net -- sh -c 'ip link set lo up && exec $(VENV)/bin/pytest -q -ra tests'
	@$(MAKE) --no-print-directory test-cgroup2

# The container tests in a cgroup2-only Linux: these hosts are hybrid (v1), so
# ctr's VM kind boots the distribution's kernel with cgroup_no_v1=all and the
# guest runs pytest on tests/cgroup2/tests.txt (tests/cgroup2/run.py). Its image
# is built once from the host's mirror (debootstrap, ~2 min): here, outside the
# suite's network namespace. The guest has no network device at all.
test-cgroup2: dev
	$(VENV)/bin/python tests/cgroup2/run.py

unit: dev
	$(VENV)/bin/pytest -q tests/unit

lint: dev
	$(VENV)/bin/ruff check ctr tests benchmarks images setup.py

bench: dev
	$(VENV)/bin/python benchmarks/start.py
	$(VENV)/bin/python benchmarks/network.py
	$(VENV)/bin/python benchmarks/vm.py

# Long (minutes per hundred instances): memory per idle instance, ctr beside podman.
bench-density: dev
	$(VENV)/bin/python benchmarks/density.py --instances 200

clean:
	rm -rf build *.egg-info ctr/native/*.so
