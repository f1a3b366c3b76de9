# tenir: the two quick-start commands are `make demo` and `make test` (Debian 12, as root).
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
PYTEST := $(BIN)/pytest

.PHONY: install demo test test-quick test-lab lint typecheck lab-up lab-down bench-failover bench-resume bench-outage bench-throughput bench-ledger bench-lab bench-handshake wheelhouse chaos-matrix lock clean

install:  ## Debian packages, the Patroni venv and the project venv (idempotent)
	@./scripts/install-debian.sh

demo: install  ## bring the lab up and lose the PostgreSQL primary's whole site
	$(BIN)/tenir demo

test: install lint typecheck  ## every test: unit, then real servers (PostgreSQL, etcd, ZooKeeper, carriers, the lab)
	$(PYTEST) -m "unit" -q
	$(PYTEST) -m "not unit" -v --durations=60

test-quick: install lint typecheck  ## the fast loop: no root, no server
	$(PYTEST) -m unit -q

test-lab: install  ## only the lab tests
	$(PYTEST) -m "lab" -v

lint: install  ## ruff on the Python, ansible-lint (production profile) on the playbooks and roles
	$(BIN)/ruff check .
	cd ansible && ../$(BIN)/ansible-lint --offline --profile production --nocolor -q .

typecheck: install
	$(BIN)/mypy

lab-up: install
	$(BIN)/tenir lab up

lab-down: install
	$(BIN)/tenir lab down

bench-failover: install  ## PostgreSQL failover time, Patroni defaults vs the lab's timings
	$(BIN)/python bench/pg_failover.py

bench-resume: install  ## primary's site lost: resume from the carrier's side and first outcome, beside PostgreSQL-only failover, 5 runs per backend (COORDINATION=etcd for one)
	$(BIN)/python bench/failover_resume.py $(if $(COORDINATION),--coordination $(COORDINATION))

bench-outage: install  ## PostgreSQL stopped 20 s mid-campaign on loopback: the journal beside the commit before it (no lab)
	$(BIN)/python bench/pg_outage_loopback.py

bench-throughput: install  ## campaign throughput on the lab, 10k / 100k / 1M recipients and a 5M launch, beside the figures of issue 13
	$(BIN)/python bench/campaign_throughput.py --mode lab --sizes 10000 100000 1000000 --big 5000000

bench-handshake: install  ## a burst of 600 TLS connections from three addresses on loopback: the node's paced listener beside asyncio's server, the loop's lag and a probe's wait
	$(BIN)/python bench/handshake_burst.py

bench-lab: install  ## the machine lab: image build, cold and warm lab up, a site's reboot, memory
	$(BIN)/python bench/lab_deploy.py

wheelhouse: install  ## tenir's wheel and its pinned dependencies, and Patroni's, in dist/wheelhouse
	TENIR_WHEELHOUSE=$(CURDIR)/dist/wheelhouse $(BIN)/python -m cluster.lab.deploy --release

bench-ledger: install  ## continuity ledger: appends/s beside plain INSERTs, verify time of 100,000 entries
	$(BIN)/python bench/ledger.py

chaos-matrix: install  ## every chaos scenario at the start, middle and end of a campaign on etcd and ZooKeeper (about 75 min); the table goes into docs/chaos.md
	$(BIN)/tenir chaos matrix --doc docs/chaos.md

lock:  ## re-resolve the pinned dependencies of the project venv
	{ echo "# Pinned dependencies of the project venv (.venv). Regenerate: make lock"; $(BIN)/pip freeze --exclude-editable | grep -v "^tenir"; } > requirements/lock.txt

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
