//! Sandbox lifecycle: create, teardown, extend, gc, and noticing sandboxes whose owner died.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use jiff::Timestamp;
use serde::Serialize;

use crate::cancel::Cancel;
use crate::duration::Ttl;
use crate::error::{Error, ErrorKind, kind_of, usage};
use crate::ext::{self, Environment, Extension, OnFailure, Prepared, ProvisionContext};
use crate::hub::{self, Labels};
use crate::inputs::{self, Inputs, Layer};
use crate::placement::{self, Attempt, Candidate};
use crate::pool::{Pool, PoolFile};
use crate::process;
use crate::profile::{Catalog, Profile, SearchPath};
use crate::progress::cloudevents::Origin;
use crate::progress::{
    Background, BatchSink, Discard, Event, FanOut, Finish, Kind, Progress, Sink, Stamper, Stream,
};
use crate::record::{
    BuildHostRecord, Owner, Placement, Record, RemoteProcesses, SCHEMA_VERSION, State,
};
use crate::registry::{Listing, Registry};
use crate::remote::{self, BuildHost, HostSession, Opened};
use crate::ssh::{Session, SshClient};

/// Everything a command needs to know about where things are; built once by the CLI.
#[derive(Debug, Clone)]
pub struct Config {
    pub registry: Registry,
    pub search: SearchPath,
    pub env: Environment,
    /// Where published events go besides the caller's sinks; off by default.
    pub hub: hub::Settings,
    /// How long a torn-down sandbox's record is kept when its profile does not say:
    /// `[history] retention` in the user config file, else [`crate::history::DEFAULT_RETENTION`].
    pub retention: crate::duration::Age,
    /// The host pool file (`$SANDBOXER_HOSTS`, else `$XDG_CONFIG_HOME/sandboxer/hosts.toml`);
    /// a profile's `pool_file` overrides it. `None`: nowhere to look.
    pub pool_file: Option<PoolFile>,
}

/// The input that pins a create to one host of the pool; sandboxer's, not an extension's.
pub const PLACEMENT_HOST: &str = "placement_host";

/// How long `create` waits for State Hub to take its last events once the provision is over;
/// within the promise that a create returns at most 2 s after its build ends.
const HUB_GRACE: Duration = Duration::from_millis(1500);

/// `sandboxer create`, as plain data.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    pub profile: String,
    /// `--input key=value` (or `key+=value` for a list input), in order.
    pub inputs: Vec<inputs::Assignment>,
    pub ttl: Option<Ttl>,
    /// Overrides the profile's `on_failure`.
    pub on_failure: Option<OnFailure>,
    /// Fail with [`ErrorKind::PlacementFull`] instead of queueing for a placement slot.
    pub no_wait: bool,
    /// Create even while a live sandbox holds the same claim (attach mode: the same VM).
    pub force: bool,
    /// `--like ID`: the profile and inputs of that sandbox (then `profile` is empty, and
    /// `inputs` override the recorded ones).
    pub like: Option<String>,
}

/// A profile with its inputs resolved and checked by its extension: everything `create` needs
/// before it allocates a sandbox.
#[derive(Debug)]
pub struct Plan {
    pub profile: Profile,
    pub extension: &'static dyn Extension,
    /// Resolved inputs, with everything the extension found sensitive marked so.
    pub inputs: Inputs,
    /// What the extension prepared, handed to its provision.
    pub prepared: Box<dyn Prepared>,
    /// The State Hub workstream and task the sandbox's events belong to.
    pub labels: Labels,
    /// What `--like` replays.
    pub replay: Option<crate::history::Replay>,
    /// The hosts it may be placed on, in the order ties go.
    pub candidates: Vec<Candidate>,
}

/// Resolves the profile, inputs and candidate hosts of a request, failing before anything is
/// written.
pub fn plan(config: &Config, request: &CreateRequest) -> anyhow::Result<Plan> {
    let catalog = Catalog::load(&config.search)?;
    let replay = match &request.like {
        Some(like) => Some(crate::history::replay(&config.registry, like)?),
        None => None,
    };
    let profile = match &replay {
        Some(replay) => catalog
            .find(&replay.profile)
            .with_context(|| {
                format!(
                    "--like {}: the sandbox was made from profile {}",
                    replay.id, replay.profile
                )
            })?
            .profile
            .clone(),
        None => catalog.find(&request.profile)?.profile.clone(),
    };
    let extension = ext::find(&profile.extension).with_context(|| {
        format!(
            "profile {} names unknown extension {}",
            profile.id, profile.extension
        )
    })?;
    // The State Hub labels and the pinned host are sandboxer's own inputs, whatever the
    // extension.
    let mut labels = profile.state_hub.clone();
    let mut pinned = None;
    let mut command_line = Layer::default();
    for assignment in &request.inputs {
        let label = match assignment.name.as_str() {
            hub::WORKSTREAM_INPUT => &mut labels.workstream,
            hub::TASK_INPUT => &mut labels.task,
            PLACEMENT_HOST => {
                if let Err(problem) = crate::names::check_name(&assignment.value) {
                    return Err(usage(format!(
                        "--input {PLACEMENT_HOST}={}: {problem}",
                        assignment.value
                    )));
                }
                pinned = Some(assignment.value.clone());
                continue;
            }
            _ => {
                command_line.0.push(assignment.to_setting());
                continue;
            }
        };
        if assignment.value.trim().is_empty() {
            return Err(usage(format!("--input {}= is empty", assignment.name)));
        }
        *label = Some(assignment.value.clone());
    }
    let replayed = replay.as_ref().map(|replay| &replay.layer);
    let layers: Vec<&Layer> = [Some(&profile.inputs), replayed, Some(&command_line)]
        .into_iter()
        .flatten()
        .collect();
    let mut inputs = inputs::resolve_layers(
        extension.id(),
        extension.input_schema(),
        &layers,
        &profile.sensitive_inputs,
    )?;
    if let Some(replay) = &replay {
        let missing: Vec<&str> = replay
            .secrets
            .iter()
            .filter(|name| inputs.get(name).is_none() && inputs.list(name).is_empty())
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(usage(format!(
                "--like {}: secret inputs are never recorded, so they cannot be replayed: give {} again ({})",
                replay.id,
                missing.join(", "),
                missing
                    .iter()
                    .map(|name| format!("--input {name}=..."))
                    .collect::<Vec<_>>()
                    .join(" ")
            )));
        }
    }
    let prepared = extension.prepare(&mut inputs, &config.env)?;
    let pool = load_pool(config, &profile)?;
    let candidates = placement::candidates(
        &profile.placement,
        &profile.id,
        &pool,
        pinned.as_deref(),
        prepared.runs_on_build_hosts(),
    )?;
    if candidates
        .iter()
        .any(|candidate| candidate.remote.is_none())
    {
        prepared.check_here()?;
    }
    Ok(Plan {
        profile,
        extension,
        inputs,
        prepared,
        labels,
        replay,
        candidates,
    })
}

/// What `create --like` says before the build: where the inputs come from, and what differs
/// from the build it replays (the template, a var file, Packer's version).
fn replay_notes(
    replay: &crate::history::Replay,
    request: &CreateRequest,
    provenance: Option<&crate::provenance::BuildProvenance>,
) -> Vec<String> {
    let mut notes = vec![format!(
        "made like {}: its profile and inputs{}",
        replay.id,
        if request.inputs.is_empty() {
            String::new()
        } else {
            ", with this command line's --input on top".to_owned()
        }
    )];
    if !replay.secrets.is_empty() {
        notes.push(format!(
            "secret inputs are never recorded: {} came from this command line or the profile, not from {}",
            replay.secrets.join(", "),
            replay.id
        ));
    }
    if let (Some(now), Some(then)) = (provenance, &replay.provenance) {
        notes.extend(
            now.differences(then)
                .into_iter()
                .map(|difference| format!("warning: {difference}")),
        );
    }
    notes
}

/// The pool a profile places on: the file its `pool_file` names, else the configured one.
pub fn load_pool(config: &Config, profile: &Profile) -> anyhow::Result<Pool> {
    let file = match &profile.placement.pool_file {
        Some(path) => Some(PoolFile {
            path: path.clone(),
            required: true,
            named_by: profile.placement.pool_file_location.clone(),
        }),
        None => config.pool_file.clone(),
    };
    match file {
        Some(file) => crate::pool::load(&file),
        None => Ok(Pool::default()),
    }
}

/// Creates and provisions a sandbox: plan, (queue for a placement slot), allocate, provision,
/// record. The record is written before provisioning starts and after it ends, whatever the
/// outcome; on failure the error names the sandbox.
///
/// The sandbox's events are published to `progress` (quick sinks on this thread) and, when
/// State Hub is configured, to State Hub through a background worker that this function waits
/// for at most [`HUB_GRACE`] after the provision ends.
pub fn create(
    config: &Config,
    request: &CreateRequest,
    progress: &mut dyn Sink,
    cancel: &Cancel,
) -> anyhow::Result<Record> {
    let Plan {
        profile,
        extension,
        inputs,
        prepared,
        labels,
        replay,
        candidates,
    } = plan(config, request)?;
    let registry = &config.registry;
    let client = if candidates
        .iter()
        .any(|candidate| candidate.remote.is_some())
    {
        Some(SshClient::find(&config.env.known_hosts)?)
    } else {
        None
    };
    // What the sandbox is placed on until a host is chosen: the one host, or the pool.
    let shown_host = match candidates.as_slice() {
        [only] => only.name.clone(),
        _ => format!(
            "the pool ({})",
            candidates
                .iter()
                .map(|candidate| candidate.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let origin = Origin::new(&process::hostname(), labels.workstream, labels.task);
    let mut placer = placement::Placer::new(registry.root(), &candidates)?;
    let mut attempt = |candidate: &Candidate| take_host(client.as_ref(), candidate, cancel);
    // A free slot is taken before the record is written, so that a create placed at once has
    // its record born `provisioning` (one write with its fsyncs instead of two); with
    // --no-wait, a full host is refused before anything is recorded. What placement says
    // meanwhile goes to the caller alone: there is no sandbox to publish it as yet. Build hosts
    // are asked first only under --no-wait: asking one takes a connection (seconds when it
    // does not answer), and a create should be listed, and publish what placement says, while
    // it waits for them.
    let look_first = request.no_wait
        || candidates
            .iter()
            .all(|candidate| candidate.remote.is_none());
    let mut placed = if look_first {
        let mut stamper = Stamper::new("", origin.clone());
        let mut before = Stream {
            stamper: &mut stamper,
            sink: progress,
        };
        let placed = placer.try_now(cancel, &mut attempt, &mut |event| {
            say_placement(&mut before, &shown_host, event)
        })?;
        if placed.is_none() && request.no_wait {
            return Err(placer.full());
        }
        placed
    } else {
        None
    };

    let now = Timestamp::now();
    let ttl = request.ttl.unwrap_or(profile.ttl);
    let expires_at = now
        .checked_add(ttl.as_duration())
        .map_err(|_| usage(format!("TTL {ttl} reaches past the end of time")))?;
    let claim = prepared.claim();
    // Checked and recorded under one lock, so two creates never both find the claim free.
    let claims_lock = match &claim {
        Some(_) => Some(registry.lock_claims()?),
        None => None,
    };
    if let Some(claim) = &claim
        && !request.force
    {
        refuse_if_claimed(config, extension.id(), claim)?;
    }
    // Placed here at once: the record says so from the start. (On a build host, the build's
    // directory there is named after the sandbox, so that record is completed once it exists.)
    let born_provisioning = placed.as_ref().is_some_and(|placed| placed.taken.is_none());
    let placed_on = placed.as_ref().map_or_else(
        || shown_host.clone(),
        |placed| candidates[placed.index].name.clone(),
    );
    let (record, _owner_lock) = registry.create(|id| Record {
        schema_version: SCHEMA_VERSION,
        id: id.to_owned(),
        profile: profile.id.clone(),
        profile_source: profile.source.to_string(),
        extension: extension.id().to_owned(),
        mode: inputs.mode().unwrap_or("default").to_owned(),
        state: if born_provisioning {
            State::Provisioning
        } else {
            State::Pending
        },
        state_reason: None,
        created_at: now,
        updated_at: now,
        expires_at,
        inputs: inputs.redacted(),
        placement: Placement {
            host: placed_on.clone(),
            slot: born_provisioning
                .then(|| placed.as_ref().and_then(|placed| placed.slot.index))
                .flatten(),
        },
        owner: Some(owner()),
        artifacts: Vec::new(),
        builds: Vec::new(),
        log: born_provisioning.then(|| registry.dirs(id).log),
        claim: claim.as_ref().map(|claim| claim.key.clone()),
        ssh: None,
        forwarded_ports: Vec::new(),
        torn_down_at: None,
        retention: profile.retention,
        pruned_artifacts: Vec::new(),
        provenance: prepared.provenance(&registry.dirs(id), &placed_on),
        like: replay.as_ref().map(|replay| replay.id.clone()),
        build_host: None,
    })?;
    drop(claims_lock);
    let started = Instant::now();
    let id = record.id.clone();
    let dirs = registry.dirs(&id);
    // State Hub trouble never fails a build: a hub that cannot even start is a warning.
    let mut hub = config.hub.endpoint.as_ref().and_then(|endpoint| {
        hub::live::Live::start(&config.hub, endpoint, registry.root(), &id)
            .map_err(|err| {
                config
                    .hub
                    .warn(&format!("State Hub is off for this run: {err:#}"))
            })
            .ok()
    });
    let mut no_hub = Discard;
    let hub_sink: &mut dyn Sink = match hub.as_mut() {
        Some(live) => live,
        None => &mut no_hub,
    };
    let mut sinks = FanOut::default().with(progress).with(hub_sink);
    let mut stamper = Stamper::new(&id, origin);
    let mut stream = Stream {
        stamper: &mut stamper,
        sink: &mut sinks,
    };
    stream.publish(Kind::Created {
        profile: profile.id.clone(),
        extension: extension.id().to_owned(),
        mode: record.mode.clone(),
        placement_host: placed_on,
        expires_at,
    });
    if let Some(replay) = &replay {
        for message in replay_notes(replay, request, record.provenance.as_ref()) {
            stream.publish(Kind::Note { message });
        }
    }
    let on_failure = request.on_failure.unwrap_or(profile.on_failure);

    // The session holding a build host's slot, once placed there; ended after the provision,
    // and only then is the slot here released (another create here would find the host full).
    let mut session: Option<Box<HostSession>> = None;
    let mut slot_of_session = None;
    let outcome = (|| {
        let placed = match placed.take() {
            Some(placed) => placed,
            None => placer.wait(cancel, &mut attempt, &mut |event| {
                say_placement(&mut stream, &shown_host, event)
            })?,
        };
        let host = &candidates[placed.index];
        session = placed.taken;
        if let Some(session) = session.as_deref_mut() {
            session.sandbox(&id, cancel)?;
        }
        let slot = placed.slot;
        let slot_index = match session.as_deref() {
            Some(session) => session.slot,
            None => slot.index,
        };
        // A record born `provisioning` already says all this.
        if !born_provisioning {
            // The provenance names the host chosen, and on a build host, the Packer there.
            let mut provenance = prepared.provenance(&dirs, &host.name);
            if let (Some(tool), Some(session)) = (
                provenance
                    .as_mut()
                    .and_then(|provenance| provenance.tool.as_mut()),
                session.as_deref(),
            ) {
                tool.path = session.host().ssh.packer.as_str().into();
                tool.version = session.packer_version().map(|said| {
                    crate::ext::vm_packer::runner::parse_version(said)
                        .unwrap_or_else(|| said.to_owned())
                });
            }
            registry.update(&id, |record| {
                record.state = State::Provisioning;
                record.provenance = provenance;
                record.placement.host = host.name.clone();
                record.placement.slot = slot_index;
                record.log = Some(dirs.log.clone());
                record.build_host = session.as_deref().map(|session| {
                    let remote = &session.host().ssh;
                    BuildHostRecord {
                        host: host.name.clone(),
                        ssh: remote.target.clone(),
                        workdir: remote.workdir.clone(),
                        dir_left: true,
                        processes: Some(RemoteProcesses {
                            boot_id: session.holder.boot_id.clone(),
                            holder_pid: session.holder.pid,
                            holder_start_time: session.holder.started,
                            pgid: None,
                            pgid_start_time: None,
                        }),
                    }
                });
            })?;
        }
        stream.publish(Kind::ProvisioningStarted {
            placement_host: host.name.clone(),
            slot: slot_index,
        });
        if let Some(session) = session.as_deref() {
            stream.publish(Kind::Note {
                message: format!(
                    "on build host `{}` ({}), in {}",
                    host.name,
                    session.host().ssh.target.describe(),
                    session.dir().unwrap_or(&session.host().ssh.workdir)
                ),
            });
        }
        // The record learns the running tool's process group on a worker of its own: the
        // build never waits for the record lock or an fsync.
        let mut recorder = Background::spawn(Recorder {
            registry: registry.clone(),
            id: id.clone(),
            error: None,
        })
        .context("starting the record writer")?;
        let provisioned = {
            let mut with_recorder = FanOut::default().with(&mut recorder).with(stream.sink);
            let mut provision_stream = Stream {
                stamper: stream.stamper,
                sink: &mut with_recorder,
            };
            prepared.provision(ProvisionContext {
                sandbox_id: &id,
                dirs: &dirs,
                placement_host: &host.name,
                on_failure,
                env: &config.env,
                progress: &mut provision_stream,
                cancel,
                build_host: session.as_deref_mut(),
            })
        };
        if session.is_some() {
            slot_of_session = Some(slot);
        } else {
            drop(slot);
        }
        if let Ok(provisioned) = &provisioned {
            for artifact in &provisioned.artifacts {
                stream.publish(Kind::Artifact {
                    path: artifact.path.clone(),
                    bytes: artifact.bytes,
                    sha256: artifact.sha256.clone(),
                });
            }
        }
        // Drained before the final state is written, so no late update can follow it.
        let (recorder, _) = recorder.finish();
        provisioned.map(|provisioned| (provisioned, recorder.error))
    })();
    // The build host's session ends now, its directory kept only for a failure that keeps.
    let build_host_left = session.map(|session| {
        let keep = outcome.is_err() && on_failure == OnFailure::Keep;
        let left = end_session(client.as_ref(), *session, &id, keep);
        drop(slot_of_session.take());
        if let Some(problem) = &left.problem {
            stream.publish(Kind::Note {
                message: format!("warning: {problem:#}"),
            });
        }
        left
    });
    let hub_deadline = Instant::now() + HUB_GRACE;

    let (result, finish, reason) = match outcome {
        Ok((provisioned, recorder_error)) => {
            let record = registry.update(&id, |record| {
                record.state = State::Ready;
                record.artifacts = provisioned.artifacts;
                record.builds = provisioned.builds;
                record.ssh = provisioned.ssh;
                record.forwarded_ports = provisioned.forwarded_ports;
                record.owner = None;
                if let (Some(build_host), Some(left)) =
                    (record.build_host.as_mut(), &build_host_left)
                {
                    left.apply(build_host);
                }
            });
            let result = match (record, recorder_error) {
                (Ok(_), Some(err)) => Err(err.context(format!(
                    "sandbox {id} is ready, but its record missed an update"
                ))),
                (record, _) => record,
            };
            (result, Finish::Ready, None)
        }
        Err(err) => {
            let state = match kind_of(&err) {
                ErrorKind::Interrupted | ErrorKind::Terminated => State::Cancelled,
                _ => State::Failed,
            };
            let reason = summarize(&format!("{err:#}"));
            let recorded = registry
                .update(&id, |record| {
                    record.state = state;
                    record.state_reason = Some(reason.clone());
                    record.owner = None;
                    if let (Some(build_host), Some(left)) =
                        (record.build_host.as_mut(), &build_host_left)
                    {
                        left.apply(build_host);
                    }
                })
                .with_context(|| format!("recording the failure of sandbox {id}"));
            let finish = if state == State::Cancelled {
                Finish::Cancelled
            } else {
                Finish::Failed
            };
            let result = match recorded {
                Ok(_) => Err(err.context(format!("sandbox {id} {state}"))),
                Err(record_err) => Err(record_err),
            };
            (result, finish, Some(reason))
        }
    };
    let reason = match (&result, reason) {
        (Err(err), None) => Some(summarize(&format!("{err:#}"))),
        (_, reason) => reason,
    };
    stream.publish(Kind::Finished {
        state: if result.is_err() && finish == Finish::Ready {
            Finish::Failed
        } else {
            finish
        },
        duration: started.elapsed(),
        reason,
    });
    drop(sinks);
    if let Some(hub) = hub {
        hub.finish(hub_deadline);
    }
    result
}

/// Asks a candidate host for the build: this machine always takes it; a build host is asked
/// for a slot of its own over SSH, and one that cannot be reached is unusable for now.
/// Tells the create's stream what placement says while it looks and waits.
fn say_placement(stream: &mut dyn Progress, shown_host: &str, event: placement::Progress<'_>) {
    match event {
        placement::Progress::InLine { place } => stream.publish(Kind::Queued {
            placement_host: shown_host.to_owned(),
            place,
        }),
        placement::Progress::Skipped { host, why } => {
            stream.note(format!("warning: {why:#}; skipping `{host}`"));
        }
        placement::Progress::HeldElsewhere { host } => stream.note(format!(
            "build host `{host}` is full: other control machines' builds hold its slots; asking again"
        )),
    }
}

fn take_host(
    client: Option<&SshClient>,
    candidate: &Candidate,
    cancel: &Cancel,
) -> anyhow::Result<Attempt<Option<Box<HostSession>>>> {
    let (Some(remote), Some(client)) = (&candidate.remote, client) else {
        return Ok(Attempt::Took(None));
    };
    match HostSession::open(client, remote, cancel) {
        Ok(Opened::Held(session)) => Ok(Attempt::Took(Some(session))),
        Ok(Opened::Full) => Ok(Attempt::HeldElsewhere),
        Err(err) if cancel.requested().is_some() => Err(err),
        Err(err) => Ok(Attempt::Unusable(err)),
    }
}

/// What is left on a build host once its session ended, and what went wrong ending it.
#[derive(Debug)]
struct Left {
    /// Something of the build may still run there: the session could not end cleanly, nor
    /// could it be stopped over a new connection. gc tries again.
    processes: bool,
    /// The build's directory is still there.
    dir: bool,
    problem: Option<anyhow::Error>,
}

impl Left {
    fn apply(&self, record: &mut BuildHostRecord) {
        record.dir_left = self.dir;
        if !self.processes {
            record.processes = None;
        }
    }
}

/// Ends a build host's session (which releases its slot there), keeping the build's directory
/// or removing it. When the session cannot end cleanly (its connection is gone), what it ran
/// is stopped and the directory removed over a new connection, if the host answers.
fn end_session(client: Option<&SshClient>, session: HostSession, id: &str, keep: bool) -> Left {
    let host = session.host().clone();
    let holder = session.holder.clone();
    let packer = session.running_group();
    let dir_made = session.dir().is_some();
    let Err(problem) = session.close(keep) else {
        return Left {
            processes: false,
            dir: keep && dir_made,
            problem: None,
        };
    };
    let Some(client) = client else {
        return Left {
            processes: true,
            dir: dir_made,
            problem: Some(problem),
        };
    };
    let cleaned_up = remote::stop(client, &host, &holder, packer, Duration::ZERO).and_then(|_| {
        if keep || !dir_made {
            Ok(dir_made)
        } else {
            remote::remove(client, &host, id).map(|()| false)
        }
    });
    match cleaned_up {
        Ok(dir) => Left {
            processes: false,
            dir,
            problem: None,
        },
        Err(err) => Left {
            processes: true,
            dir: dir_made,
            problem: Some(err.context(format!(
                "the build on build host `{}` could not be stopped or cleaned up (`sandboxer gc` tries again)",
                host.name
            ))),
        },
    }
}

/// Refuses a claim that a live (pending, provisioning or ready) sandbox of the same extension
/// holds, naming it. Called with the claims lock held.
fn refuse_if_claimed(config: &Config, extension: &str, claim: &ext::Claim) -> anyhow::Result<()> {
    let holders: Vec<Record> = list(config, false)?
        .records
        .into_iter()
        .filter(|record| {
            record.extension == extension
                && record.claim.as_deref() == Some(claim.key.as_str())
                && (record.state.is_in_progress() || record.state == State::Ready)
        })
        .collect();
    let Some(first) = holders.first() else {
        return Ok(());
    };
    let held_by = holders
        .iter()
        .map(|record| format!("{} ({})", record.id, record.state))
        .collect::<Vec<_>>()
        .join(", ");
    Err(Error::new(
        ErrorKind::Failed,
        format!(
            "{} is already held by live sandbox {held_by}; tear it down first (`sandboxer teardown {}`), or pass --force to create another",
            claim.what, first.id
        ),
    )
    .into())
}

/// How to reach a ready sandbox for `sandboxer ssh`: the `ssh` command that opens a login
/// shell there, or runs `remote_argv` with each word quoted for the remote shell.
pub fn ssh_command(
    config: &Config,
    id_or_prefix: &str,
    remote_argv: &[String],
) -> anyhow::Result<std::process::Command> {
    let record = show(config, id_or_prefix)?;
    if record.state != State::Ready {
        return Err(Error::new(
            ErrorKind::Failed,
            format!(
                "sandbox {} is {}; only a ready sandbox can be reached",
                record.id, record.state
            ),
        )
        .into());
    }
    let Some(target) = &record.ssh else {
        return Err(Error::new(
            ErrorKind::Failed,
            format!(
                "sandbox {} ({} mode) has no SSH details to reach it by; attach mode records them",
                record.id, record.mode
            ),
        )
        .into());
    };
    let client = SshClient::find(&config.env.known_hosts)?;
    Ok(client.command(target, remote_argv, Session::Interactive))
}

/// One line for `state_reason`: the error's first line, and when that only announces a list
/// ("packer build failed (exit code 1):"), the list's first entry too.
fn summarize(message: &str) -> String {
    let mut lines = message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty());
    let first = lines.next().unwrap_or("failed");
    let mut reason = match (first.ends_with(':'), lines.next()) {
        (true, Some(detail)) => format!("{first} {detail}"),
        _ => first.to_owned(),
    };
    if reason.chars().count() > 300 {
        reason = reason.chars().take(299).chain(['…']).collect();
    }
    reason
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

/// Writes the running tool's process group into the record, so another process can find it
/// (and stop it) if this one dies. Runs behind a [`Background`] worker; of the tool events
/// that queued up meanwhile only the latest is written.
///
/// A tool's exit is not written: the next tool's start replaces the group, and the final
/// update clears the owner a moment later. If sandboxer dies in between, the record names a
/// group that was already killed, which `stop_orphaned_build` recognises (it checks that the
/// group exists and that its leader is the recorded one before signalling; on a build host,
/// `remote::stop` checks the boot id and the start times the same way). That saves a record
/// write, with its two fsyncs, on every build's critical path.
struct Recorder {
    registry: Registry,
    id: String,
    error: Option<anyhow::Error>,
}

impl BatchSink for Recorder {
    fn wants(event: &Event) -> bool {
        matches!(
            event,
            Event::ToolStarted { .. } | Event::RemoteToolStarted { .. }
        )
    }

    fn emit_batch(&mut self, events: &[Event]) {
        let Some(latest) = events.iter().rev().find(|event| Self::wants(event)) else {
            return;
        };
        let (local, remote) = match latest {
            Event::ToolStarted { pgid } => {
                ((Some(*pgid), process::start_time(*pgid)), (None, None))
            }
            Event::RemoteToolStarted { pgid, started } => ((None, None), (Some(*pgid), *started)),
            _ => ((None, None), (None, None)),
        };
        let updated = self.registry.update(&self.id, |record| {
            if let Some(owner) = record.owner.as_mut() {
                (owner.pgid, owner.pgid_start_time) = local;
            }
            if let Some(processes) = record
                .build_host
                .as_mut()
                .and_then(|build_host| build_host.processes.as_mut())
            {
                (processes.pgid, processes.pgid_start_time) = remote;
            }
        });
        if let Err(err) = updated
            && self.error.is_none()
        {
            self.error = Some(err);
        }
    }
}

/// The reason recorded for a sandbox whose owning process died mid-provision.
pub const ORPHANED: &str = "orphaned";

/// Notices a sandbox whose owner died (its owner lock is free while the record says a process
/// works on it) and records it as failed, "orphaned". Everything that reads records goes
/// through here, so nobody ever shows a dead build as still running.
pub fn reconcile(registry: &Registry, record: Record) -> anyhow::Result<Record> {
    if !record.state.is_in_progress() {
        return Ok(record);
    }
    let Some(_lock) = registry.try_lock(&record.id)? else {
        return Ok(record); // its owner is alive and holds the lock
    };
    let owner = record
        .owner
        .as_ref()
        .map(|owner| {
            format!(
                ": sandboxer (pid {} on {}) died while the sandbox was {}",
                owner.pid, owner.hostname, record.state
            )
        })
        .unwrap_or_default();
    let reason = format!("{ORPHANED}{owner}");
    registry.update(&record.id, |record| {
        if record.state.is_in_progress() {
            record.state = State::Failed;
            record.state_reason = Some(reason);
        }
    })
}

/// Every record, reconciled; with `expired_only`, just the live ones past their TTL.
pub fn list(config: &Config, expired_only: bool) -> anyhow::Result<Listing> {
    let listing = config.registry.list()?;
    let now = Timestamp::now();
    let mut reconciled = Listing {
        records: Vec::new(),
        unreadable: listing.unreadable,
    };
    for record in listing.records {
        let id = record.id.clone();
        match reconcile(&config.registry, record) {
            Ok(record) if !expired_only || is_expired(&record, now) => {
                reconciled.records.push(record)
            }
            Ok(_) => {}
            Err(err) => reconciled.unreadable.push((id, err)),
        }
    }
    Ok(reconciled)
}

/// Whether a sandbox is past its TTL and not yet torn down.
pub fn is_expired(record: &Record, now: Timestamp) -> bool {
    !record.state.is_gone() && record.expires_at <= now
}

/// Reads one sandbox's record, reconciled.
pub fn show(config: &Config, id_or_prefix: &str) -> anyhow::Result<Record> {
    let record = config.registry.load(id_or_prefix)?;
    reconcile(&config.registry, record)
}

/// What a teardown did.
#[derive(Debug)]
pub enum TeardownOutcome {
    TornDown(Record),
    /// Someone tore it down before us; not an error.
    AlreadyGone(Record),
}

impl TeardownOutcome {
    /// The record as it stands after the teardown.
    pub fn record(&self) -> &Record {
        match self {
            TeardownOutcome::TornDown(record) | TeardownOutcome::AlreadyGone(record) => record,
        }
    }
}

/// Tears a sandbox down, keeping what its extension keeps. Idempotent; stops an orphaned
/// build's process group first.
pub fn teardown(config: &Config, id_or_prefix: &str) -> anyhow::Result<TeardownOutcome> {
    let id = config.registry.resolve_id(id_or_prefix)?;
    teardown_as(config, &id, State::TornDown, None)
}

/// Tears down several sandboxes: each is attempted whatever happened to the others, and each
/// gets its own outcome, in the order given.
pub fn teardown_each<'a>(
    config: &Config,
    ids_or_prefixes: &'a [String],
) -> Vec<(&'a str, anyhow::Result<TeardownOutcome>)> {
    ids_or_prefixes
        .iter()
        .map(|id| (id.as_str(), teardown(config, id)))
        .collect()
}

fn teardown_as(
    config: &Config,
    id: &str,
    final_state: State,
    reason: Option<String>,
) -> anyhow::Result<TeardownOutcome> {
    let registry = &config.registry;
    let lock = match registry.try_lock(id)? {
        Some(lock) => lock,
        None => {
            let record = registry.load(id)?;
            if record.state.is_in_progress() {
                return Err(busy(&record));
            }
            // Another teardown (or gc) holds it; it will be quick.
            registry.lock(id)?
        }
    };
    // We hold the owner lock, so a record still saying `pending`/`provisioning` belongs to a
    // dead sandboxer: its leftover build is stopped below, and the sandbox is torn down all
    // the same. (`reconcile` cannot tell here: it would find the lock taken, by us.)
    let record = registry.load(id)?;
    if record.state.is_gone() {
        return Ok(TeardownOutcome::AlreadyGone(record));
    }
    stop_orphaned_build(config, &record)?;
    remove_build_host_dir(config, &record)?;
    let extension = ext::find(&record.extension).with_context(|| {
        format!(
            "sandbox {id} was made by unknown extension {}",
            record.extension
        )
    })?;
    let dirs = registry.dirs(id);
    // Provenance goes next to the kept artifacts before they do, so that a kept file never sits
    // there without it.
    crate::artifacts::before_teardown(registry, &record)?;
    let mut artifacts = record.artifacts.clone();
    extension
        .teardown(ext::TeardownContext {
            mode: &record.mode,
            dirs: &dirs,
            artifacts: &mut artifacts,
        })
        .with_context(|| format!("tearing down sandbox {id}"))?;
    let record = registry.update(id, |record| {
        record.state = final_state;
        if reason.is_some() {
            record.state_reason = reason;
        }
        record.owner = None;
        record.artifacts = artifacts;
        record.torn_down_at = Some(Timestamp::now());
    })?;
    crate::artifacts::settle(registry, &record)?;
    drop(lock);
    Ok(TeardownOutcome::TornDown(record))
}

fn busy(record: &Record) -> anyhow::Error {
    let by = record
        .owner
        .as_ref()
        .map(|owner| format!(" by sandboxer pid {} on {}", owner.pid, owner.hostname))
        .unwrap_or_default();
    Error::new(
        ErrorKind::Failed,
        format!(
            "sandbox {} is still {}{by}; cancel that first (Ctrl-C in its terminal, or kill -INT its pid)",
            record.id, record.state
        ),
    )
    .into()
}

/// How long an orphaned Packer gets to cancel its build cleanly before its group is killed.
const ORPHAN_CANCEL_GRACE: Duration = Duration::from_secs(10);

/// How long the kernel gets to end a SIGKILLed group (delivery is asynchronous).
const KILL_GRACE: Duration = Duration::from_secs(5);

/// Stops the process group an orphaned build left running, if it still runs, and returns once
/// none of its processes runs; clears it from the record. Called with the owner lock held.
///
/// The group is signalled only if it is provably the recorded one (see
/// [`process::is_same_group`]): its leader may have exited already (Packer dies of SIGPIPE
/// when it writes after sandboxer died) while its plugins and provisioners run on.
fn stop_orphaned_build(config: &Config, record: &Record) -> anyhow::Result<bool> {
    let registry = &config.registry;
    let mut stopped = stop_orphaned_remote_build(config, record)?;
    let Some(owner) = &record.owner else {
        return Ok(stopped);
    };
    let Some(pgid) = owner.pgid else {
        return Ok(stopped);
    };
    if owner.hostname != process::hostname() {
        return Ok(stopped);
    }
    if process::is_same_group(pgid, owner.pgid_start_time) && process::group_runs(pgid) {
        let _ = process::signal_group(pgid, rustix::process::Signal::INT);
        process::wait_for_group_end(pgid, ORPHAN_CANCEL_GRACE);
        process::signal_group(pgid, rustix::process::Signal::KILL)
            .with_context(|| format!("killing process group {pgid}"))?;
        anyhow::ensure!(
            process::wait_for_group_end(pgid, KILL_GRACE),
            "process group {pgid} still runs {KILL_GRACE:?} after SIGKILL"
        );
        stopped = true;
    }
    registry.update(&record.id, |record| {
        if let Some(owner) = record.owner.as_mut() {
            owner.pgid = None;
            owner.pgid_start_time = None;
        }
    })?;
    Ok(stopped)
}

/// The build host a record names, as far as reaching it again needs: its target and work
/// directory as recorded (the pool file may have changed since).
fn recorded_host(build_host: &BuildHostRecord) -> BuildHost {
    BuildHost {
        name: build_host.host.clone(),
        ssh: crate::pool::SshHost {
            target: build_host.ssh.clone(),
            workdir: build_host.workdir.clone(),
            packer: "packer".to_owned(),
            connect_timeout: crate::pool::DEFAULT_CONNECT_TIMEOUT,
        },
        slots: 0,
    }
}

/// Stops what a dead sandboxer's build left running on its build host (Packer's group, then
/// the agent holding its slot, each only if it is still the recorded process), and forgets it
/// in the record. Called with the owner lock held.
fn stop_orphaned_remote_build(config: &Config, record: &Record) -> anyhow::Result<bool> {
    let Some(build_host) = &record.build_host else {
        return Ok(false);
    };
    let Some(processes) = &build_host.processes else {
        return Ok(false);
    };
    let client = SshClient::find(&config.env.known_hosts)?;
    let holder = remote::Holder {
        pid: processes.holder_pid,
        started: processes.holder_start_time,
        boot_id: processes.boot_id.clone(),
    };
    let packer = processes.pgid.map(|pgid| (pgid, processes.pgid_start_time));
    let stopped = remote::stop(
        &client,
        &recorded_host(build_host),
        &holder,
        packer,
        remote::ORPHAN_CANCEL_GRACE,
    )
    .with_context(|| {
        format!(
            "stopping what sandbox {} left running on build host `{}`",
            record.id, build_host.host
        )
    })?;
    config.registry.update(&record.id, |record| {
        if let Some(build_host) = record.build_host.as_mut() {
            build_host.processes = None;
        }
    })?;
    Ok(stopped != remote::Stopped::Nothing)
}

/// Removes a sandbox's directory from its build host, if one was left there.
fn remove_build_host_dir(config: &Config, record: &Record) -> anyhow::Result<()> {
    let Some(build_host) = record
        .build_host
        .as_ref()
        .filter(|build_host| build_host.dir_left)
    else {
        return Ok(());
    };
    let client = SshClient::find(&config.env.known_hosts)?;
    remote::remove(&client, &recorded_host(build_host), &record.id).with_context(|| {
        format!(
            "removing sandbox {}'s directory from build host `{}` ({})",
            record.id,
            build_host.host,
            build_host.workdir.join(&record.id)
        )
    })?;
    config.registry.update(&record.id, |record| {
        if let Some(build_host) = record.build_host.as_mut() {
            build_host.dir_left = false;
        }
    })?;
    Ok(())
}

/// One host of the pool as `sandboxer hosts` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    pub name: String,
    /// `user@host:port`; absent for `local`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workdir: Option<camino::Utf8PathBuf>,
    pub labels: Vec<String>,
    /// No limit when absent.
    pub max_concurrent: Option<u32>,
    /// It answered (always, for this machine).
    pub reachable: bool,
    /// Why it could not be asked, or why it cannot build (no Packer).
    pub error: Option<String>,
    /// Packer's version there.
    pub packer_version: Option<String>,
    /// Builds holding a slot there: on a build host, from every control machine; here, from
    /// this machine's processes (hosts without a limit hold no slots).
    pub running: Option<u32>,
    /// Slots free; absent when unknown or unlimited.
    pub free_slots: Option<u32>,
}

/// Every host of the configured pool (this machine alone when there is no pool file), each
/// asked at the same time: reachability, Packer's version, running builds and free slots.
pub fn hosts(config: &Config) -> anyhow::Result<(Pool, Vec<HostReport>)> {
    let pool = match &config.pool_file {
        Some(file) => crate::pool::load(file)?,
        None => Pool::default(),
    };
    let listed = if pool.hosts.is_empty() && pool.path.is_none() {
        vec![crate::pool::Host::local()]
    } else {
        pool.hosts.clone()
    };
    let client = if listed.iter().any(|host| host.remote.is_some()) {
        Some(SshClient::find(&config.env.known_hosts)?)
    } else {
        None
    };
    let reports = std::thread::scope(|scope| {
        let asked: Vec<_> = listed
            .iter()
            .map(|host| {
                let client = client.as_ref();
                scope.spawn(move || host_report(config, client, host))
            })
            .collect();
        asked
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    Ok((pool, reports))
}

fn host_report(
    config: &Config,
    client: Option<&SshClient>,
    host: &crate::pool::Host,
) -> HostReport {
    let max = host.max_concurrent.map(std::num::NonZeroU32::get);
    let mut report = HostReport {
        name: host.name.clone(),
        ssh: host.remote.as_ref().map(|remote| remote.target.describe()),
        workdir: host.remote.as_ref().map(|remote| remote.workdir.clone()),
        labels: host.labels.clone(),
        max_concurrent: max,
        reachable: true,
        error: None,
        packer_version: None,
        running: None,
        free_slots: None,
    };
    let free = |running: u32| max.map(|max| max.saturating_sub(running));
    match (&host.remote, client) {
        (None, _) => {
            let packer = crate::ext::vm_packer::runner::find_packer(config.env.packer.as_deref())
                .and_then(|packer| {
                    crate::ext::vm_packer::runner::capabilities(&packer, &config.env.cache_dir)
                });
            match packer {
                Ok(capabilities) => report.packer_version = Some(capabilities.version),
                Err(err) => report.error = Some(format!("{err:#}")),
            }
            let slots = crate::placement::HostSlots::new(config.registry.root(), &host.name, max);
            let running = u32::try_from(slots.held_now()).unwrap_or(u32::MAX);
            report.running = Some(running);
            report.free_slots = free(running);
        }
        (Some(remote), Some(client)) => {
            let build_host = BuildHost {
                name: host.name.clone(),
                ssh: remote.clone(),
                slots: max.unwrap_or(0),
            };
            match remote::status(client, &build_host) {
                Ok(status) => {
                    report.packer_version = status.packer.as_deref().map(|said| {
                        crate::ext::vm_packer::runner::parse_version(said)
                            .unwrap_or_else(|| said.to_owned())
                    });
                    if report.packer_version.is_none() {
                        report.error = Some(format!(
                            "packer ({}) is not on the build host's PATH",
                            remote.packer
                        ));
                    }
                    report.running = Some(status.busy);
                    report.free_slots = free(status.busy);
                }
                Err(err) => {
                    report.reachable = false;
                    report.error = Some(format!("{:#}", err.root_cause()));
                }
            }
        }
        (Some(_), None) => report.reachable = false,
    }
    report
}

/// Pushes a live sandbox's expiry to `ttl` from now (never earlier than it already is).
pub fn extend(config: &Config, id_or_prefix: &str, ttl: Ttl) -> anyhow::Result<Record> {
    let registry = &config.registry;
    let record = reconcile(registry, registry.load(id_or_prefix)?)?;
    if record.state.is_gone() {
        return Err(Error::new(
            ErrorKind::Failed,
            format!(
                "sandbox {} is {}; there is nothing left to extend",
                record.id, record.state
            ),
        )
        .into());
    }
    let wanted = Timestamp::now()
        .checked_add(ttl.as_duration())
        .map_err(|_| usage(format!("TTL {ttl} reaches past the end of time")))?;
    registry.update(&record.id, |record| {
        record.expires_at = record.expires_at.max(wanted);
    })
}

/// What `gc` does to a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GcAction {
    /// Tear down a sandbox past its TTL and mark it `expired`.
    Expire,
    /// Stop the process group a dead sandboxer left running.
    StopOrphanedBuild,
    /// Leave an expired sandbox alone because it is still provisioning.
    SkipProvisioning,
    /// Remove the half-made directory of a create that died before publishing it.
    RemoveStaleAllocation,
    /// Delete a torn-down sandbox's record once its retention has passed (its kept artifacts
    /// stay, with their provenance next to them).
    Purge,
    /// Delete the files of pruned artifacts that an interrupted prune left on disk.
    FinishPrune,
    /// Remove a kept-artifacts directory that keeps nothing any more.
    RemoveEmptyArtifactDir,
    /// Delete the temporary file of a provenance write that was killed midway.
    RemoveStaleTempFile,
    /// Remove what a purge killed midway left (`sandboxes/.purge-<id>`).
    RemoveStalePurge,
}

impl GcAction {
    pub fn as_str(self) -> &'static str {
        match self {
            GcAction::Expire => "expire",
            GcAction::StopOrphanedBuild => "stop-orphaned-build",
            GcAction::SkipProvisioning => "skip-provisioning",
            GcAction::RemoveStaleAllocation => "remove-stale-allocation",
            GcAction::Purge => "purge",
            GcAction::FinishPrune => "finish-prune",
            GcAction::RemoveEmptyArtifactDir => "remove-empty-artifact-dir",
            GcAction::RemoveStaleTempFile => "remove-stale-temp-file",
            GcAction::RemoveStalePurge => "remove-stale-purge",
        }
    }
}

impl std::fmt::Display for GcAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one of `gc`'s actions went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Done,
    /// `--dry-run`: it would have been done.
    Planned,
    /// Nothing needed doing after all (someone else did it, or it is not time yet).
    Skipped,
    Failed,
}

/// One thing `gc` did, would do, or failed to do, to one sandbox.
#[derive(Debug, Clone, Serialize)]
pub struct GcEntry {
    pub id: String,
    pub action: GcAction,
    pub outcome: Outcome,
    pub detail: String,
}

/// Everything `gc` attempted; every sandbox is attempted whatever happened to the others.
#[derive(Debug, Default)]
pub struct GcReport {
    pub entries: Vec<GcEntry>,
    /// Sandbox directories whose record could not be read (reported, never touched).
    pub unreadable: Vec<(String, anyhow::Error)>,
}

impl GcReport {
    /// How many actions failed; the command fails when any did.
    pub fn failures(&self) -> usize {
        self.entries
            .iter()
            .filter(|entry| entry.outcome == Outcome::Failed)
            .count()
    }

    fn push(&mut self, id: &str, action: GcAction, outcome: Outcome, detail: impl Into<String>) {
        self.entries.push(GcEntry {
            id: id.to_owned(),
            action,
            outcome,
            detail: detail.into(),
        });
    }
}

/// Tears down every expired sandbox (marking it `expired`), stops the process groups of
/// orphaned builds, and skips sandboxes still provisioning (they are reaped by a later gc
/// once they finish); then purges torn-down sandboxes' records past their retention and
/// finishes interrupted prunes. One policy for errors: a failure is recorded in the report and
/// the next sandbox is attempted.
pub fn gc(config: &Config, dry_run: bool) -> anyhow::Result<GcReport> {
    let now = Timestamp::now();
    let listing = list(config, false)?;
    let mut report = GcReport {
        entries: Vec::new(),
        unreadable: listing.unreadable,
    };
    let planned_or = |done: Outcome| if dry_run { Outcome::Planned } else { done };
    // The records as they stand after this gc's teardowns, for the history pass below.
    let mut records = listing.records;
    for slot in records.iter_mut() {
        let record = slot.clone();
        let id = record.id.as_str();
        if record.state.is_in_progress() {
            if is_expired(&record, now) {
                report.push(
                    id,
                    GcAction::SkipProvisioning,
                    Outcome::Skipped,
                    format!(
                        "expired but still {}; reaped once it finishes",
                        record.state
                    ),
                );
            }
            continue;
        }
        let orphan_running = record
            .owner
            .as_ref()
            .is_some_and(|owner| owner.pgid.is_some())
            || record
                .build_host
                .as_ref()
                .is_some_and(|build_host| build_host.processes.is_some());
        if orphan_running && !is_expired(&record, now) {
            let action = GcAction::StopOrphanedBuild;
            if dry_run {
                report.push(
                    id,
                    action,
                    Outcome::Planned,
                    "stopping the process group its dead owner left running",
                );
                continue;
            }
            match stop_orphan_of(config, id) {
                Ok(Some(true)) => report.push(
                    id,
                    action,
                    Outcome::Done,
                    "stopped the process group its dead owner left running",
                ),
                Ok(Some(false)) => report.push(
                    id,
                    action,
                    Outcome::Done,
                    "its process group had already ended",
                ),
                Ok(None) => report.push(
                    id,
                    action,
                    Outcome::Skipped,
                    "another process is working on it",
                ),
                Err(err) => report.push(id, action, Outcome::Failed, format!("{err:#}")),
            }
            continue;
        }
        if !is_expired(&record, now) {
            continue;
        }
        let action = GcAction::Expire;
        let detail = format!("expired at {} ({})", record.expires_at, record.state);
        if dry_run {
            report.push(id, action, Outcome::Planned, detail);
            continue;
        }
        let reason = Some(format!("TTL ended at {}", record.expires_at));
        match teardown_as(config, id, State::Expired, reason) {
            Ok(TeardownOutcome::TornDown(torn_down)) => {
                report.push(id, action, Outcome::Done, detail);
                *slot = torn_down;
            }
            Ok(TeardownOutcome::AlreadyGone(record)) => report.push(
                id,
                action,
                Outcome::Skipped,
                format!("already {}", record.state),
            ),
            Err(err) => report.push(id, action, Outcome::Failed, format!("{err:#}")),
        }
    }
    gc_history(config, &records, now, dry_run, &mut report)?;
    match config.registry.stale_allocations() {
        Ok(stale) => {
            for staging in stale {
                let action = GcAction::RemoveStaleAllocation;
                let detail = "a create died before publishing this sandbox";
                let outcome = if dry_run {
                    Ok(())
                } else {
                    config.registry.remove_stale_allocation(&staging)
                };
                match outcome {
                    Ok(()) => report.push(&staging, action, planned_or(Outcome::Done), detail),
                    Err(err) => report.push(&staging, action, Outcome::Failed, format!("{err:#}")),
                }
            }
        }
        Err(err) => report.unreadable.push(("sandboxes/".to_owned(), err)),
    }
    Ok(report)
}

/// gc's history pass: finishes what interrupted prunes left in `artifacts/`, purges the
/// records of sandboxes torn down longer ago than their retention, and removes what a killed
/// purge left. Holds the artifacts lock, so no prune decides at the same time.
fn gc_history(
    config: &Config,
    records: &[Record],
    now: Timestamp,
    dry_run: bool,
    report: &mut GcReport,
) -> anyhow::Result<()> {
    let registry = &config.registry;
    let _artifacts_lock = crate::artifacts::lock(registry)?;
    let planned_or = |done: Outcome| if dry_run { Outcome::Planned } else { done };
    match crate::artifacts::leftovers(registry, records) {
        Ok(leftovers) => {
            for leftover in leftovers {
                let action = match leftover.kind {
                    crate::artifacts::LeftoverKind::InterruptedPrune => GcAction::FinishPrune,
                    crate::artifacts::LeftoverKind::EmptyArtifactDir => {
                        GcAction::RemoveEmptyArtifactDir
                    }
                    crate::artifacts::LeftoverKind::StaleTempFile => GcAction::RemoveStaleTempFile,
                };
                let outcome = if dry_run {
                    Ok(true)
                } else {
                    crate::artifacts::finish(config, &leftover)
                };
                match outcome {
                    Ok(true) => report.push(
                        &leftover.id,
                        action,
                        planned_or(Outcome::Done),
                        leftover.detail,
                    ),
                    Ok(false) => report.push(
                        &leftover.id,
                        action,
                        Outcome::Skipped,
                        "another process is working on it",
                    ),
                    Err(err) => {
                        report.push(&leftover.id, action, Outcome::Failed, format!("{err:#}"))
                    }
                }
            }
        }
        Err(err) => report.unreadable.push(("artifacts/".to_owned(), err)),
    }
    for record in records {
        let retention = crate::history::retention_of(record, config.retention);
        let Some(due) = crate::history::purge_due_at(record, config.retention) else {
            continue;
        };
        if due > now {
            continue;
        }
        let since = record.torn_down_at.unwrap_or(record.updated_at);
        let kept = if record.artifacts.is_empty() {
            String::new()
        } else {
            format!(
                "; its {} kept artifact(s) stay, with their provenance",
                record.artifacts.len()
            )
        };
        let detail = format!(
            "{} at {since}; its retention ({retention}) has passed{kept}",
            record.state
        );
        let outcome = if dry_run {
            Ok(true)
        } else {
            crate::history::purge(config, &record.id, now)
        };
        match outcome {
            Ok(true) => report.push(
                &record.id,
                GcAction::Purge,
                planned_or(Outcome::Done),
                detail,
            ),
            Ok(false) => report.push(
                &record.id,
                GcAction::Purge,
                Outcome::Skipped,
                "another process is working on it, or it was purged already",
            ),
            Err(err) => report.push(
                &record.id,
                GcAction::Purge,
                Outcome::Failed,
                format!("{err:#}"),
            ),
        }
    }
    match registry.stale_purges() {
        Ok(stale) => {
            for name in stale {
                let id = name.trim_start_matches(".purge-");
                let outcome = if dry_run {
                    Ok(())
                } else {
                    registry.remove_stale_purge(&name)
                };
                let action = GcAction::RemoveStalePurge;
                match outcome {
                    Ok(()) => report.push(
                        id,
                        action,
                        planned_or(Outcome::Done),
                        format!("removing sandboxes/{name}, left by a purge that did not finish"),
                    ),
                    Err(err) => report.push(id, action, Outcome::Failed, format!("{err:#}")),
                }
            }
        }
        Err(err) => report.unreadable.push(("sandboxes/".to_owned(), err)),
    }
    Ok(())
}

/// Stops an orphaned build under the owner lock; `None` when someone else holds the lock.
fn stop_orphan_of(config: &Config, id: &str) -> anyhow::Result<Option<bool>> {
    let Some(_lock) = config.registry.try_lock(id)? else {
        return Ok(None);
    };
    let record = config.registry.load(id)?;
    stop_orphaned_build(config, &record).map(Some)
}
