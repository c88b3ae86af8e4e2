//! sandboxer: provision and track build sandboxes.
//!
//! The CLI layer (`cli`) parses and prints; everything else decides. See `docs/ARCHITECTURE.md`.

pub mod artifacts;
pub mod builtin;
pub mod cancel;
pub mod cli;
pub mod config;
pub mod doctor;
pub mod duration;
pub mod error;
pub mod ext;
pub mod files;
pub mod history;
pub mod hub;
pub mod inputs;
pub mod lifecycle;
pub mod logs;
pub mod names;
pub mod placement;
pub mod pool;
pub mod process;
pub mod profile;
pub mod progress;
pub mod provenance;
pub mod record;
pub mod redact;
pub mod registry;
pub mod remote;
pub mod shim;
pub mod size;
pub mod ssh;
