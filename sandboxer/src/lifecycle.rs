//! Sandbox lifecycle: create (resolve, allocate, provision, record) and teardown.

use anyhow::Context as _;
use jiff::Timestamp;

use crate::cancel::Cancel;
use crate::error::{ErrorKind, kind_of, usage};
use crate::ext::{self, Extension, Host, ProvisionContext};
use crate::inputs::{self, Inputs, Layer, Origin};
use crate::profile::{Catalog, Profile, SearchPath};
use crate::progress::{Event, FanOut, Sink};
use crate::record::{Owner, Placement, Record, SCHEMA_VERSION, State};
use crate::registry::Registry;
use crate::ttl::Ttl;
use crate::{process, record};

/// Everything a command needs to know about where things are; built once by the CLI.
#[derive(Debug, Clone)]
pub struct Config {
    pub registry: Registry,
    pub search: SearchPath,
    pub host: Host,
}

/// `sandboxer create`, as plain data.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    pub profile: String,
    /// `--input key=value`, in order; later ones win.
    pub inputs: Vec<(String, String)>,
    pub ttl: Option<Ttl>,
}

/// A profile with its inputs resolved and checked by its extension: everything `create` needs
/// before it allocates a sandbox.
#[derive(Debug)]
pub struct Plan {
    pub profile: Profile,
    pub extension: &'static dyn Extension,
    pub inputs: Inputs,
}

impl std::fmt::Debug for dyn Extension {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

/// Resolves the profile and inputs of a request, failing before anything is written.
pub fn plan(config: &Config, request: &CreateRequest) -> anyhow::Result<Plan> {
    let catalog = Catalog::load(&config.search)?;
    let profile = catalog.find(&request.profile)?.profile.clone();
    let extension = ext::find(&profile.extension).with_context(|| {
        format!(
            "profile {} names unknown extension {}",
            profile.id, profile.extension
        )
    })?;
    let command_line = Layer(
        request
            .inputs
            .iter()
            .map(|(name, value)| (name.clone(), value.clone(), Origin::CommandLine))
            .collect(),
    );
    let mut inputs = inputs::resolve(
        extension.id(),
        extension.input_schema(),
        &profile.inputs,
        &command_line,
        &profile.sensitive_inputs,
    )?;
    extension.prepare(&mut inputs, &config.host)?;
    Ok(Plan {
        profile,
        extension,
        inputs,
    })
}

/// Creates and provisions a sandbox. The record is written before provisioning starts and
/// after it ends, whatever the outcome; on failure the error names the sandbox.
pub fn create(
    config: &Config,
    request: &CreateRequest,
    progress: &mut dyn Sink,
    cancel: &Cancel,
) -> anyhow::Result<Record> {
    let plan = plan(config, request)?;
    let registry = &config.registry;
    let now = Timestamp::now();
    let ttl = request.ttl.unwrap_or(plan.profile.ttl);
    let expires_at = now
        .checked_add(ttl.as_duration())
        .map_err(|_| usage(format!("TTL {ttl} reaches past the end of time")))?;
    let (mut record, _lock) = registry.create(|id| Record {
        schema_version: SCHEMA_VERSION,
        id: id.to_owned(),
        profile: plan.profile.id.clone(),
        profile_source: plan.profile.source.to_string(),
        extension: plan.extension.id().to_owned(),
        mode: plan.inputs.get("mode").unwrap_or("default").to_owned(),
        state: State::Pending,
        state_reason: None,
        created_at: now,
        updated_at: now,
        expires_at,
        inputs: plan.inputs.redacted(),
        placement: Placement {
            host: plan.profile.placement.host.clone(),
            slot: None,
        },
        owner: Some(owner()),
        artifacts: Vec::new(),
        log: None,
    })?;
    let dirs = registry.dirs(&record.id);
    progress.emit(&Event::Phase {
        message: format!(
            "sandbox {} ({}, {} mode) provisioning",
            record.id, plan.profile.id, record.mode
        ),
    });

    record.state = State::Provisioning;
    record.log = Some(dirs.log.clone());
    registry.save(&mut record)?;

    let mut recorder = Recorder {
        registry,
        record: &mut record,
        error: None,
    };
    let outcome = {
        let mut sinks = FanOut::new().with(&mut recorder).with(progress);
        plan.extension.provision(ProvisionContext {
            sandbox_id: &dirs.root.file_name().unwrap_or_default().to_owned(),
            inputs: &plan.inputs,
            dirs: &dirs,
            placement_host: &plan.profile.placement.host,
            host: &config.host,
            progress: &mut sinks,
            cancel,
        })
    };
    let recorder_error = recorder.error.take();

    record.owner = None;
    match outcome {
        Ok(provisioned) => {
            record.state = State::Ready;
            record.artifacts = provisioned.artifacts;
            registry.save(&mut record)?;
            if let Some(err) = recorder_error {
                return Err(err.context(format!(
                    "sandbox {} is ready, but its record may be stale",
                    record.id
                )));
            }
            Ok(record)
        }
        Err(err) => {
            record.state = match kind_of(&err) {
                ErrorKind::Interrupted | ErrorKind::Terminated => State::Cancelled,
                _ => State::Failed,
            };
            record.state_reason = Some(
                format!("{err:#}")
                    .lines()
                    .next()
                    .unwrap_or("failed")
                    .to_owned(),
            );
            registry
                .save(&mut record)
                .with_context(|| format!("recording the failure of sandbox {}", record.id))?;
            Err(err.context(format!("sandbox {} {}", record.id, record.state)))
        }
    }
}

fn owner() -> Owner {
    let (pid, pid_start_time) = process::current();
    Owner {
        pid,
        pid_start_time,
        hostname: process::hostname(),
        pgid: None,
        pgid_start_time: None,
    }
}

/// Writes the running tool's process group into the record, so another process can find it.
struct Recorder<'a> {
    registry: &'a Registry,
    record: &'a mut Record,
    error: Option<anyhow::Error>,
}

impl Sink for Recorder<'_> {
    fn emit(&mut self, event: &Event) {
        let Some(owner) = self.record.owner.as_mut() else {
            return;
        };
        match event {
            Event::ProcessStarted { pgid, .. } => {
                owner.pgid = Some(*pgid);
                owner.pgid_start_time = process::start_time(*pgid);
            }
            Event::ProcessExited { .. } => {
                owner.pgid = None;
                owner.pgid_start_time = None;
            }
            _ => return,
        }
        if let Err(err) = self.registry.save(self.record)
            && self.error.is_none()
        {
            self.error = Some(err);
        }
    }
}

/// What a teardown did.
#[derive(Debug)]
pub enum TeardownOutcome {
    TornDown(Record),
    /// Someone tore it down before us; not an error.
    AlreadyGone(Record),
}

/// Tears a sandbox down, keeping what its extension keeps. Idempotent.
pub fn teardown(config: &Config, id_or_prefix: &str) -> anyhow::Result<TeardownOutcome> {
    let registry = &config.registry;
    let id = registry.resolve_id(id_or_prefix)?;
    let lock = match registry.try_lock(&id)? {
        Some(lock) => lock,
        None => {
            let record = registry.load(&id)?;
            if record.state.is_in_progress() {
                let by = record
                    .owner
                    .as_ref()
                    .map(|owner| format!(" by pid {} on {}", owner.pid, owner.hostname))
                    .unwrap_or_default();
                return Err(crate::error::Error::new(
                    ErrorKind::Failed,
                    format!(
                        "sandbox {id} is still {}{by}; cancel that first (Ctrl-C in its terminal, or kill -INT its pid)",
                        record.state
                    ),
                )
                .into());
            }
            // Another teardown holds it; it will be quick.
            registry.lock(&id)?
        }
    };
    let mut record = registry.load(&id)?;
    if record.state.is_gone() {
        return Ok(TeardownOutcome::AlreadyGone(record));
    }
    let extension = ext::find(&record.extension).with_context(|| {
        format!(
            "sandbox {id} was made by unknown extension {}",
            record.extension
        )
    })?;
    extension
        .teardown(&mut record, &registry.dirs(&id))
        .with_context(|| format!("tearing down sandbox {id}"))?;
    record.state = State::TornDown;
    record.owner = None;
    registry.save(&mut record)?;
    drop(lock);
    Ok(TeardownOutcome::TornDown(record))
}

/// Reads one sandbox's record.
pub fn show(config: &Config, id_or_prefix: &str) -> anyhow::Result<record::Record> {
    config.registry.load(id_or_prefix)
}
