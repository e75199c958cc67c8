# SynapseStream: the two commands of README, and a few more.
.PHONY: run test bench setup fmt package fuzz

# The main job: the agent on this host with sample functions and live telemetry.
run:
	bash scripts/run.sh

# Every test (as root: the kernel tests load eBPF programs).
test:
	bash scripts/test.sh

# Every benchmark the README quotes, one after the other; each prints its figures (as root).
bench:
	bash scripts/bench.sh

# The synapse-agent and synapse-hub packages, .deb and .rpm, in target/package/.
package:
	bash scripts/package.sh

# Every fuzz target for FUZZ_SECONDS each (default 600; FUZZ_SECONDS=30 for a smoke), FUZZ_JOBS
# at a time (default 1): executions, exec/s and crashes per target (scripts/fuzz.sh).
fuzz:
	bash scripts/fuzz.sh

setup:
	bash scripts/setup.sh

fmt:
	. scripts/env.sh && cargo fmt --all
