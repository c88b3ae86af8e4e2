# A thin front door: every recipe is a `cargo xtask` task (see xtask/src/).
CARGO ?= cargo

.PHONY: demo check setup
demo:
	$(CARGO) xtask demo
check:
	$(CARGO) xtask check
setup:
	$(CARGO) xtask setup
