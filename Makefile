# The two commands of this repository (see README.md).
.PHONY: run test test-fast

run:            ## set up if needed, generate the sample, run the batch chain on the local target
	bash scripts/run_local.sh

test:           ## every test: unit, DAG integrity, end to end
	bash scripts/test.sh

test-fast:      ## unit and DAG integrity tests only (no end-to-end run)
	bash scripts/test.sh -m "not e2e"
