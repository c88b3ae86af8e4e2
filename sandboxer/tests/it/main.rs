//! The integration tests: one binary (as cargo and ripgrep do), so helpers are shared and the
//! workspace links one test executable instead of one per file.
//!
//! Every test runs the real `sandboxer` binary in its own throwaway state dir, config dir and
//! `HOME` (see `common`). Tests that need a tool fail, naming it, when it is missing.

mod attach;
mod build_hosts;
mod cli;
mod common;
mod fuzz;
mod history;
mod hostile;
mod hub_server;
mod lifecycle;
mod operator;
mod packer_build;
mod placement;
mod progress_hub;
mod provenance;
mod readme;
mod scripts;
mod sshd;
mod templates;
mod tidy;
mod tty;
