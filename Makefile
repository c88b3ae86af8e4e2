# A thin front door: every recipe is a `cargo xtask` task (see xtask/src/).
CARGO ?= cargo
PREFIX ?= /usr/local
DESTDIR ?=

.PHONY: demo check setup install uninstall
demo:
	$(CARGO) xtask demo
check:
	$(CARGO) xtask check
setup:
	$(CARGO) xtask setup
# The binary, man pages and bash/zsh/fish completions under $(DESTDIR)$(PREFIX).
install:
	$(CARGO) xtask install --prefix "$(PREFIX)" --destdir "$(DESTDIR)"
uninstall:
	$(CARGO) xtask uninstall --prefix "$(PREFIX)" --destdir "$(DESTDIR)"
