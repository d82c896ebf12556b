# renderfarm.tractor -- developer and CI entry points.
#
#   make demo     backup, upgrade and downgrade of emulated engines on this machine
#   make bench    benchmarks against plain baselines (not part of make test): docs/performance.md
#   make test     everything CI runs (.ci/run is `make test`): lint, pytest suites, then Molecule
#   make lint     sanity (ansible-core 2.19 and 2.21), units, ansible-lint, changelog, galaxy import, EE, docs
#   make molecule SCENARIO=name   one Molecule scenario in Podman containers
#   make help     all targets
#
# Every target installs what it needs, so each works on a fresh Debian 12 machine as root.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

# --- interpreters ------------------------------------------------------------------------------
# .venv: Python 3.12 for the current ansible-core. A `python3.12` on PATH may be a pyenv shim
# that exits 127, so each candidate is run before it is used; then pyenv's own installs are
# tried; failing all that, Python 3.11 (Debian 12's python3), on which constraints.txt's
# markers select ansible-core 2.19.
PY_VERSION ?= 3.12
PYTHON ?= python$(PY_VERSION)
# .venv-2.19: the oldest ansible-core that meta/runtime.yml accepts, on Python 3.11.
PY_VERSION_2_19 ?= 3.11
PYTHON_2_19 ?= python$(PY_VERSION_2_19)

PYENV_ROOT ?= $(HOME)/.pyenv
VENV ?= .venv
VENV_2_19 ?= .venv-2.19
CONSTRAINTS := constraints.txt
REQUIREMENTS := requirements-dev.txt
VENV_INPUTS := $(CONSTRAINTS) $(REQUIREMENTS) emulator/pyproject.toml
COLLECTION_LINK := .collections/ansible_collections/renderfarm/tractor
ENGINE_OWNER ?= tractor

# Molecule (molecule/): scenarios in Podman containers from a locally built image.
SCENARIO ?= default
# Every scenario, in the order `make test` starts them: the longest first, so that the scenarios
# run side by side (MOLECULE_JOBS) end close together.
MOLECULE_ORDER := default downgrade backup_restore multi_engine rollback
MOLECULE_SCENARIOS ?= $(filter $(patsubst molecule/%/molecule.yml,%,$(wildcard molecule/*/molecule.yml)),$(MOLECULE_ORDER)) \
	$(filter-out $(MOLECULE_ORDER),$(patsubst molecule/%/molecule.yml,%,$(wildcard molecule/*/molecule.yml)))
# Extra options for `molecule test`, e.g. MOLECULE_ARGS='--destroy=never' to keep failed containers.
MOLECULE_ARGS ?=
# Scenarios molecule-all runs at once (distinct container names; they mostly wait on engines and
# on podman exec, so a 2-core machine takes two at a time).
MOLECULE_JOBS ?= 2
# Collections Molecule needs (the podman driver and connection), taken from the community
# `ansible` wheel pinned in constraints.txt, because Galaxy is unreachable.
COLLECTIONS_CACHE := .cache/collections
MOLECULE_COLLECTIONS := containers/podman
ANSIBLE_PACKAGE_VERSION = $(shell sed -n 's/^ansible==\([0-9][0-9.]*\).*/\1/p' $(CONSTRAINTS))
COLLECTIONS_STAMP = $(COLLECTIONS_CACHE)/.from-ansible-$(ANSIBLE_PACKAGE_VERSION)

# pytest: one run over every suite that exists; extra options via PYTEST_ARGS=...
# tests/unit first: a unit test of a module that runs in a worker after a test that imported
# ansible's controller code sees module warnings collected the controller's way, and fails.
TEST_SUITES = $(wildcard tests/unit tests/emulator tests/integration tests/faults tests/collection)
CHECK_SUITES = $(or $(wildcard tests/unit tests/emulator),tests/emulator)
PYTEST_ARGS ?=
# pytest-xdist workers: two keep both cores busy (measured: ~90 % busy during the suites, most of it
# ansible's own CPU time); more would only add load to timing-sensitive fault tests.
PYTEST_WORKERS ?= 2

# $(call python_ok,CMD,VERSION): CMD if it runs, is Python VERSION (when VERSION is given) and
# can make a venv (Debian's python3 needs python3-venv for that); empty otherwise.
python_ok = $(shell $(1) -c 'import sys, ensurepip, venv; v = "$(2)"; sys.exit(bool(v) and "%d.%d" % sys.version_info[:2] != v)' >/dev/null 2>&1 && echo $(1))
# $(call find_python,CMD,VERSION): CMD, else a pyenv-installed VERSION.x, else /usr/local/bin's or /usr/bin's.
find_python = $(firstword \
	$(call python_ok,$(1)) \
	$(foreach c,$(sort $(wildcard $(PYENV_ROOT)/versions/$(2).*/bin/python$(2) /root/.pyenv/versions/$(2).*/bin/python$(2))),$(call python_ok,$(c),$(2))) \
	$(foreach c,/usr/local/bin/python$(2) /usr/bin/python$(2),$(call python_ok,$(c),$(2))))

PIP_FLAGS := --disable-pip-version-check --no-input --quiet

# $(call make_venv,DIR,PYTHON): create DIR (if needed) and install the pinned tools into it.
define make_venv
	@if [ ! -x $(1)/bin/python ]; then \
		py='$(2)'; \
		if [ -z "$$py" ]; then echo "make: no usable Python found for $(1) (see PYTHON / PY_VERSION in the Makefile)" >&2; exit 1; fi; \
		echo "creating $(1) with $$py ($$($$py -c 'import sys; print(sys.version.split()[0])'))"; \
		$$py -m venv $(1); \
	fi
	$(1)/bin/python -m pip install $(PIP_FLAGS) -c $(CONSTRAINTS) --upgrade pip setuptools
	$(1)/bin/python -m pip install $(PIP_FLAGS) -c $(CONSTRAINTS) -r $(REQUIREMENTS)
	$(1)/bin/python -m pip install $(PIP_FLAGS) -c $(CONSTRAINTS) --no-build-isolation -e emulator
	$(1)/bin/python -m pip check
endef

.PHONY: help
help:
	@echo "make demo         backup -> upgrade -> downgrade of emulated engines here (no containers)"
	@echo "make bench        benchmarks against plain baselines -> bench/results/, docs/performance.md (BENCH_SIZES=...)"
	@echo "make test         run every test suite, as CI does (.ci/run)"
	@echo "make check        emulator (and unit) tests only"
	@echo "make lint         ansible-test sanity/units, ansible-lint, changelog, galaxy import, EE, docs (make test runs it first)"
	@echo "make docs         docs/plugins.md and docs/{modules,filters,lookups}/ from the plugins' documentation"
	@echo "make changelog    fold changelogs/fragments/ into changelogs/changelog.yaml and CHANGELOG.rst"
	@echo "make venv         $(VENV): Python $(PY_VERSION) tools pinned by $(CONSTRAINTS), emulator installed editable"
	@echo "make venv-2.19    $(VENV_2_19): the same on Python $(PY_VERSION_2_19) with ansible-core 2.19"
	@echo "make molecule     one Molecule scenario (SCENARIO=$(SCENARIO)); scenarios: $(strip $(MOLECULE_SCENARIOS))"
	@echo "make molecule-all every Molecule scenario, MOLECULE_JOBS=$(MOLECULE_JOBS) at a time, with durations (make test runs it last)"
	@echo "make image        the scenarios' base image (Debian 12, systemd, PostgreSQL 15), built once per recipe"
	@echo "make podman       Debian's podman and its configuration for this machine"
	@echo "make collections  containers.podman for Molecule, from the pinned 'ansible' wheel"
	@echo "make deps         Debian packages the tests need (PostgreSQL server binaries)"
	@echo "make engine-owner the unprivileged '$(ENGINE_OWNER)' account (PostgreSQL refuses root)"
	@echo "make clean        remove venvs, caches and build output"

# --- Python environments -----------------------------------------------------------------------
.PHONY: venv venv-2.19
venv: $(VENV)/.installed $(COLLECTION_LINK)
venv-2.19: $(VENV_2_19)/.installed $(COLLECTION_LINK)

$(VENV)/.installed: $(VENV_INPUTS)
	$(call make_venv,$(VENV),$(or $(call find_python,$(PYTHON),$(PY_VERSION)),$(call find_python,python3,3.11)))
	@$(VENV)/bin/python -c 'import sys; sys.exit("%d.%d" % sys.version_info[:2] != "$(PY_VERSION)")' \
		|| echo "make: warning: no Python $(PY_VERSION) found; $(VENV) uses $$($(VENV)/bin/python -V) and so ansible-core 2.19" >&2
	@$(VENV)/bin/python -c 'import sys; from ansible.release import __version__ as v; print("$(VENV): Python", sys.version.split()[0], "ansible-core", v)'
	@touch $@

$(VENV_2_19)/.installed: $(VENV_INPUTS)
	$(call make_venv,$(VENV_2_19),$(call find_python,$(PYTHON_2_19),$(PY_VERSION_2_19)))
	@$(VENV_2_19)/bin/python -c 'from ansible.release import __version__ as v; import sys; print("ansible-core", v); sys.exit(not v.startswith("2.19."))' \
		|| { echo "make: $(VENV_2_19) must hold ansible-core 2.19 (is $(PYTHON_2_19) Python 3.11?)" >&2; exit 1; }
	@touch $@

# ansible.cfg points collections_path at .collections; this makes renderfarm.tractor resolve to
# the working tree itself.
$(COLLECTION_LINK):
	@mkdir -p $(@D)
	ln -sfn ../../.. $@

# --- machine setup -----------------------------------------------------------------------------
.PHONY: deps engine-owner
deps:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing="$$missing postgresql"; \
	for tool in dpkg-deb tar gzip; do \
		command -v $$tool >/dev/null 2>&1 || echo "make deps: '$$tool' not found; it is assumed to be present" >&2; \
	done; \
	if [ -z "$(call find_python,$(PYTHON),$(PY_VERSION))$(call find_python,python3,3.11)" ] && [ -x /usr/bin/python3 ]; then \
		missing="$$missing python3-venv"; \
	fi; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
		echo "make deps: missing Debian packages:$$missing -- as root: apt-get install --no-install-recommends$$missing" >&2; \
		exit 1; \
	fi; \
	echo "make deps: installing$$missing"; \
	apt-get update; \
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing

engine-owner:
	@if [ "$$(id -u)" != 0 ]; then \
		echo "make engine-owner: not root; the tests run the engine tools as $$(id -un)"; \
	elif ! id -u $(ENGINE_OWNER) >/dev/null 2>&1; then \
		echo "make engine-owner: creating system account $(ENGINE_OWNER)"; \
		useradd --system --create-home --shell /bin/sh $(ENGINE_OWNER); \
	fi

# --- tests and demo ----------------------------------------------------------------------------
# pytest exits 5 when it collected no test; a suite that is still empty must not fail the run.
define run_pytest
	@rc=0; $(VENV)/bin/pytest -p no:cacheprovider -n $(PYTEST_WORKERS) --durations=15 $(PYTEST_ARGS) $(1) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make: pytest collected no tests in: $(1)"; rc=0; fi; \
	exit $$rc
endef

.PHONY: check test demo
check: deps venv engine-owner
	$(call run_pytest,$(CHECK_SUITES))

# Lint first, then the pytest suites (fast), then every Molecule scenario (slow, in containers).
test: deps venv engine-owner
	@$(MAKE) --no-print-directory lint
	$(call run_pytest,$(TEST_SUITES))
	@$(MAKE) --no-print-directory molecule-all

demo: deps venv engine-owner
	$(VENV)/bin/python demo/demo.py

# Benchmarks (bench/README.md): not part of `make test`. Emulated engines on this machine, job
# databases of BENCH_SIZES tasks (default 10000,100000,500000); writes bench/results/<date>.json,
# docs/performance.md and docs/performance.png. matplotlib (the chart) only goes into the venv here.
.PHONY: bench
bench: deps venv engine-owner $(VENV)/.bench-installed
	$(VENV)/bin/python bench/run.py

$(VENV)/.bench-installed: bench/requirements.txt $(CONSTRAINTS) | $(VENV)/.installed
	$(VENV)/bin/python -m pip install $(PIP_FLAGS) -c $(CONSTRAINTS) -r bench/requirements.txt
	@touch $@

# --- lint: sanity, units, ansible-lint, changelog, galaxy import, execution environment, docs ----
# `make lint` runs every step below (each is a target of its own too), LINT_JOBS at a time (each
# step's output is shown when it ends), goes on past a failed step, prints each step's duration
# and fails if any step failed. Nothing is skipped: every sanity test runs, tests/sanity/ignore-*.txt
# stay empty, .ansible-lint skips no rule; the only exclusions are SANITY_EXCLUDE below and
# .ansible-lint's exclude_paths, each with its reason. The steps share no files: ansible-test runs
# in copies of the checkout, builds go to temporary directories. Longest first, so that the two
# job slots end at about the same time; .venv-2.19 and galaxy-importer are installed (once, when
# missing or outdated) by the steps that need them, in parallel with the others.
LINT_STEPS := lint-ansible-lint lint-sanity lint-sanity-2.19 lint-units-2.19 lint-galaxy lint-changelog lint-ee lint-docs
LINT_JOBS ?= $(shell nproc 2>/dev/null || echo 1)
LINT_DURATIONS := .cache/lint-durations.txt
IMPORTER_DIR := .cache/galaxy-importer

# ansible-test sanity covers what the collection ships (plugins, roles, playbooks, meta, docs,
# changelogs, galaxy.yml, README), its unit tests (tests/unit) and the lint tooling (tests/lint,
# tests/collection). Left out, as not Ansible content and never shipped (galaxy.yml build_ignore):
#   emulator/      the Tractor emulator, a Python package of its own (emulator/pyproject.toml)
#   bench/ demo/   benchmark and demo drivers, run as python3 and bash scripts
#   molecule/      Molecule scenarios: their helper scripts run inside Debian containers, where only
#                  `python3` exists, so they cannot have the `#!/usr/bin/env python` sanity wants
#   tests/*.py and tests/<dir>/ but unit, lint, collection and sanity: the pytest harness (emulated
#                  sites, playbook runs, fault injection), which ansible never loads
SANITY_EXCLUDE := emulator/ bench/ demo/ molecule/ $(wildcard tests/*.py) \
	$(filter-out tests/unit/ tests/lint/ tests/collection/ tests/sanity/,$(wildcard tests/*/))

# $(call timed,LABEL,COMMAND): run COMMAND; print and record "LABEL passed|FAILED in Ns".
define timed
	@mkdir -p $(dir $(LINT_DURATIONS)); start=$$(date +%s); rc=0; $(2) || rc=$$?; \
	line=$$(printf '%-34s %-6s %5ss' '$(1)' "$$([ $$rc -eq 0 ] && echo passed || echo FAILED)" "$$(( $$(date +%s) - start ))"); \
	echo "make lint: $$line"; echo "$$line" >> $(LINT_DURATIONS); exit $$rc
endef

.PHONY: lint docs changelog $(LINT_STEPS)
lint: venv
	@rm -f $(LINT_DURATIONS); start=$$(date +%s); rc=0; \
	$(MAKE) --no-print-directory -k -j$(LINT_JOBS) --output-sync=target $(LINT_STEPS) || rc=$$?; \
	echo; echo "make lint: durations"; cat $(LINT_DURATIONS); \
	echo "make lint: $$([ $$rc -eq 0 ] && echo 'all clean' || echo FAILED) in $$(( $$(date +%s) - start ))s"; exit $$rc

# The Markdown reference of every plugin is generated from the plugins' documentation.
docs: venv
	$(VENV)/bin/python tests/lint/plugin_docs.py
lint-docs: venv
	$(call timed,plugin docs up to date,$(VENV)/bin/python tests/lint/plugin_docs.py --check)

# Release notes (README "Release notes"): fragments in changelogs/fragments/ pile up between
# releases; `make changelog` (antsibull-changelog release) folds the ones not yet released into the
# release of galaxy.yml's version -- a new release, or the one still being prepared when galaxy.yml
# was not bumped -- and regenerates CHANGELOG.rst. It asks ansible-doc (on PATH) for the plugins new
# in that version. Fragments stay (keep_fragments), and an edited fragment updates its entry
# (--refresh-fragments). CHANGELOG_ARGS=--update-existing moves an existing release's date to today.
# lint-changelog does not require every fragment to be released, so a merged fragment never
# breaks `make lint`: it lints the fragments, checks that CHANGELOG.rst is what changelog.yaml
# generates, and runs `make changelog`'s command on a copy to show what it would add.
CHANGELOG_ARGS ?=
CHANGELOG_RELEASE = antsibull-changelog release --reload-plugins --refresh-fragments $(CHANGELOG_ARGS)
changelog: venv
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(CHANGELOG_RELEASE)
lint-changelog: venv
	$(call timed,antsibull-changelog,$(VENV)/bin/python tests/lint/collection_checks.py changelog -- $(CHANGELOG_RELEASE))

lint-galaxy: venv $(IMPORTER_DIR)/.installed
	$(call timed,galaxy build and galaxy-importer,$(VENV)/bin/python tests/lint/collection_checks.py galaxy)
lint-ee: venv
	$(call timed,ansible-builder introspect/create,$(VENV)/bin/python tests/lint/collection_checks.py ee)

lint-ansible-lint: venv
	$(call timed,ansible-lint (production),PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/ansible-lint)

# ansible-test on the venv's own Python (tests/lint/run_ansible_test.py says how and why).
lint-sanity: venv
	$(call timed,ansible-test sanity ($(VENV)),$(VENV)/bin/python tests/lint/run_ansible_test.py sanity $(SANITY_EXCLUDE:%=--exclude %))
lint-sanity-2.19: venv-2.19
	$(call timed,ansible-test sanity ($(VENV_2_19)),$(VENV_2_19)/bin/python tests/lint/run_ansible_test.py sanity $(SANITY_EXCLUDE:%=--exclude %))
# Units on the oldest ansible-core: `make test` runs tests/unit with pytest on .venv anyway.
lint-units-2.19: venv-2.19
	$(call timed,ansible-test units ($(VENV_2_19)),$(VENV_2_19)/bin/python tests/lint/run_ansible_test.py units)

# galaxy-importer caps attrs below what the rest pins, so it is kept out of .venv's own packages:
# installed without dependencies into $(IMPORTER_DIR) and run on .venv's Python (constraints.txt).
$(IMPORTER_DIR)/.installed: $(CONSTRAINTS) requirements-importer.txt | $(VENV)/.installed
	rm -rf $(IMPORTER_DIR)
	$(VENV)/bin/python -m pip install $(PIP_FLAGS) -c $(CONSTRAINTS) --no-deps --target $(IMPORTER_DIR) -r requirements-importer.txt
	@touch $@

# --- Molecule in Podman containers --------------------------------------------------------------
# podman: Debian packages and /etc/containers/containers.conf (written only when there is none).
# image: localhost/renderfarm-tractor-base:<hash of molecule/image/build.sh>, not rebuilt when it exists.
.PHONY: podman image collections molecule molecule-all
podman:
	@molecule/image/podman-host.sh

image: podman
	@molecule/image/build.sh >/dev/null

collections: $(COLLECTIONS_STAMP)

$(COLLECTIONS_STAMP): | $(VENV)/.installed
	@test -n "$(ANSIBLE_PACKAGE_VERSION)" || { echo "make: no ansible==X pin in $(CONSTRAINTS)" >&2; exit 1; }
	rm -rf $(COLLECTIONS_CACHE) && mkdir -p $(COLLECTIONS_CACHE)/wheel
	$(VENV)/bin/python -m pip download $(PIP_FLAGS) --no-deps --only-binary=:all: --python-version 3.12 \
		-c $(CONSTRAINTS) -d $(COLLECTIONS_CACHE)/wheel ansible==$(ANSIBLE_PACKAGE_VERSION)
	$(VENV)/bin/python -c 'import sys, zipfile; \
		wheel, dest, names = sys.argv[1], sys.argv[2], sys.argv[3:]; \
		prefixes = tuple("ansible_collections/%s/" % n for n in names); \
		z = zipfile.ZipFile(wheel); \
		z.extractall(dest, [m for m in z.namelist() if m.startswith(prefixes)])' \
		$(COLLECTIONS_CACHE)/wheel/ansible-$(ANSIBLE_PACKAGE_VERSION)-py3-none-any.whl $(COLLECTIONS_CACHE) $(MOLECULE_COLLECTIONS)
	rm -rf $(COLLECTIONS_CACHE)/wheel
	@touch $@

molecule: venv image collections
	@molecule/run.sh $(MOLECULE_ARGS) -- $(SCENARIO)

molecule-all: venv image collections
	@molecule/run.sh -j $(MOLECULE_JOBS) $(MOLECULE_ARGS) -- $(MOLECULE_SCENARIOS)

# --- cleanup -----------------------------------------------------------------------------------
.PHONY: clean
clean:
	rm -rf $(VENV) $(VENV_2_19) .venv-* .collections .cache .pytest_cache build dist tests/output
	rm -rf emulator/*.egg-info emulator/build
	rm -f renderfarm-tractor-*.tar.gz
	find . -name __pycache__ -type d -not -path './.git/*' -prune -exec rm -rf {} +
