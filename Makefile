# The commands of this repository (see README.md).
.PHONY: run deploy-local test test-fast

run:            ## set up if needed, generate the sample, run the batch chain on the local target
	bash scripts/run_local.sh

deploy-local:   ## deploy include/ to the local target's artifacts bucket (after a code change; make run does it too)
	bash -c '. scripts/env.sh && python -m local_aws.code_deploy'

test:           ## every test: unit, DAG integrity, end to end
	bash scripts/test.sh

test-fast:      ## unit and DAG integrity tests only (no end-to-end run)
	bash scripts/test.sh -m "not e2e"
