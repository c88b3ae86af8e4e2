# `make remote-build PROJECT=NAME`: builds a project's build machine with sandboxer.
#
# Include this file from infra/build-machines/Makefile (`include remote-build.mk`); it defines
# the phony target `remote-build` and nothing else. The work is done by remote-build.sh next to
# it: with the `sandboxer` CLI on PATH it runs
#   sandboxer create --profile $(REMOTE_BUILD_PROFILE) --input project=$(PROJECT) [$(REMOTE_BUILD_INPUTS)]
# and without it the deprecated legacy path (rsync to $(BUILD_HOST), build there over ssh).
# Run it from this directory: the profile's Packer template path is relative to it.
#
# Settings (set them on the make command line, in the environment, or in the Makefile):
#   PROJECT               the project to build: letters, digits, `.`, `_`, `-` (required)
#   SANDBOXER             the sandboxer CLI, looked up on PATH unless it contains a `/`
#   REMOTE_BUILD_PROFILE  the sandboxer profile to create from
#   REMOTE_BUILD_INPUTS   more sandboxer inputs, as space-separated KEY=VALUE words
#   REMOTE_BUILD_LEGACY   1: take the legacy path even when sandboxer is installed
#   BUILD_HOST            legacy path: the build host (`host` or `user@host`; no default)
#   BUILD_DIR             legacy path: where projects go on the build host
#   PROJECTS_DIR          legacy path: where project sources are, relative to this directory
#   REMOTE_BUILD_COMMAND  legacy path: the build command, run on the build host in the project
#
# Including this file changes nothing else: not the default goal, not SHELL, .SHELLFLAGS,
# .ONESHELL, .RECIPEPREFIX or MAKEFLAGS. Its own names start with `sandboxer_rb_`.

ifndef sandboxer_rb_included
sandboxer_rb_included := 1

# Before anything else is included, the last word of MAKEFILE_LIST is this file.
sandboxer_rb_dir := $(dir $(abspath $(lastword $(MAKEFILE_LIST))))
sandboxer_rb_saved_goal := $(.DEFAULT_GOAL)

SANDBOXER ?= sandboxer
REMOTE_BUILD_PROFILE ?= profile.vm-haskell-build
REMOTE_BUILD_INPUTS ?=
REMOTE_BUILD_LEGACY ?=
BUILD_HOST ?=
BUILD_DIR ?= builds
PROJECTS_DIR ?= ../../projects
REMOTE_BUILD_COMMAND ?= make build

sandboxer_rb_settings := PROJECT SANDBOXER REMOTE_BUILD_PROFILE REMOTE_BUILD_INPUTS \
  REMOTE_BUILD_LEGACY BUILD_HOST BUILD_DIR PROJECTS_DIR REMOTE_BUILD_COMMAND

# A value given on the command line or in the environment is text, never make syntax: make
# would otherwise expand `PROJECT=$(shell ...)` when it exports or reads the variable, and run
# it. `$(value NAME)` reads it without expanding it; `:=` keeps it that way.
sandboxer_rb_empty :=
sandboxer_rb_space := $(sandboxer_rb_empty) $(sandboxer_rb_empty)
define sandboxer_rb_literal
ifneq ($$(filter command@line environment@override,$$(subst $$(sandboxer_rb_space),@,$$(origin $(1)))),)
override $(1) := $$(value $(1))
else ifeq ($$(origin $(1)),environment)
$(1) := $$(value $(1))
endif
endef
$(foreach sandboxer_rb_name,$(sandboxer_rb_settings),$(eval $(call sandboxer_rb_literal,$(sandboxer_rb_name))))

# The settings reach remote-build.sh as RB_<NAME> environment variables of this one recipe,
# never as recipe text, so no shell parses them. Deferred (`=`), so that settings the Makefile
# makes after including this file count too.
remote-build: export RB_PROJECT = $(PROJECT)
remote-build: export RB_SANDBOXER = $(SANDBOXER)
remote-build: export RB_PROFILE = $(REMOTE_BUILD_PROFILE)
remote-build: export RB_INPUTS = $(REMOTE_BUILD_INPUTS)
remote-build: export RB_LEGACY = $(REMOTE_BUILD_LEGACY)
remote-build: export RB_BUILD_HOST = $(BUILD_HOST)
remote-build: export RB_BUILD_DIR = $(BUILD_DIR)
remote-build: export RB_PROJECTS_DIR = $(PROJECTS_DIR)
remote-build: export RB_BUILD_COMMAND = $(REMOTE_BUILD_COMMAND)

# The recipe follows `;` so it works whatever .RECIPEPREFIX is; `exec` lets the script's exit
# code and signals reach make unchanged.
.PHONY: remote-build
remote-build: ; @exec /bin/sh '$(subst ','\'',$(sandboxer_rb_dir))remote-build.sh'

# Defining a target must not make it the default goal of the Makefile that includes us.
.DEFAULT_GOAL := $(sandboxer_rb_saved_goal)
endif
