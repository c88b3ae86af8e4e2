//! `ext.scratch`: the extension SDK's worked example (docs/extension-sdk.md).
//!
//! A scratch sandbox is a directory holding a greeting file. It is small on purpose, yet it
//! does everything a real extension does: an input schema with a required, validated input and
//! a sensitive one, a prepare step that checks and plans, progress notes, cancellation, an
//! artifact with its sha256, and a teardown that removes only what it made.
//!
//! The program is `sandboxer` plus this extension: `sandboxer-scratch create --profile ...`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use sandboxer::cancel::cancelled_error;
use sandboxer::ext::{
    Environment, Extension, Prepared, ProvisionContext, Provisioned, TeardownContext,
    describe_artifact,
};
use sandboxer::inputs::{InputSchema, InputSpec, Inputs};

fn main() -> ExitCode {
    sandboxer::cli::main_with(&[&Scratch])
}

#[derive(Debug)]
struct Scratch;

/// Letters, digits and spaces only: the greeting ends up in a file name-safe text.
fn plain_words(value: &str) -> Result<(), String> {
    if !value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ') {
        Ok(())
    } else {
        Err("must be letters, digits and spaces".to_owned())
    }
}

fn whole_seconds(value: &str) -> Result<(), String> {
    match value.parse::<u64>() {
        Ok(seconds) if seconds <= 3600 => Ok(()),
        _ => Err("must be a whole number of seconds, at most 3600".to_owned()),
    }
}

static SPECS: [InputSpec; 3] = [
    InputSpec {
        required: true,
        validate: Some(plain_words),
        ..InputSpec::new("greeting", "what the greeting file says")
    },
    InputSpec {
        default: Some("0"),
        validate: Some(whole_seconds),
        ..InputSpec::new("seconds", "how long provisioning takes, in seconds")
    },
    InputSpec::new(
        "token",
        "a secret the greeting file is signed with; never shown",
    ),
];

static SCHEMA: InputSchema = InputSchema {
    specs: &SPECS,
    free_form: None,
};

impl Extension for Scratch {
    fn id(&self) -> &'static str {
        "ext.scratch"
    }

    fn summary(&self) -> &'static str {
        "a scratch directory with a greeting file (the SDK's example)"
    }

    fn input_schema(&self) -> &'static InputSchema {
        &SCHEMA
    }

    fn prepare(
        &self,
        inputs: &mut Inputs,
        _env: &Environment,
    ) -> anyhow::Result<Box<dyn Prepared>> {
        // Required inputs and validators were checked against the schema already.
        // The token is a secret whatever the profile says.
        inputs.mark_sensitive("token");
        Ok(Box::new(Plan {
            greeting: inputs.get("greeting").unwrap_or_default().to_owned(),
            seconds: inputs.get("seconds").unwrap_or("0").parse()?,
            token: inputs.get("token").map(str::to_owned),
        }))
    }

    fn teardown(&self, sandbox: TeardownContext<'_>) -> anyhow::Result<()> {
        // Only what provision made, and nothing is kept: the artifact goes with its directory.
        match std::fs::remove_dir_all(&sandbox.dirs.output) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(err).with_context(|| format!("removing {}", sandbox.dirs.output));
            }
        }
        sandbox.artifacts.clear();
        Ok(())
    }
}

/// What prepare worked out, handed to provision.
#[derive(Debug)]
struct Plan {
    greeting: String,
    seconds: u64,
    token: Option<String>,
}

impl Prepared for Plan {
    fn provision(self: Box<Self>, ctx: ProvisionContext<'_>) -> anyhow::Result<Provisioned> {
        let output = &ctx.dirs.output;
        std::fs::create_dir_all(output).with_context(|| format!("creating {output}"))?;
        for second in 0..self.seconds {
            if let Some(signal) = ctx.cancel.requested() {
                return Err(cancelled_error(
                    signal,
                    "while the scratch sandbox was warming up",
                ));
            }
            ctx.progress
                .note(format!("warming up: {second} of {} s", self.seconds));
            std::thread::sleep(Duration::from_secs(1));
        }
        let signed = if self.token.is_some() {
            " (signed)"
        } else {
            ""
        };
        let file = output.join("greeting.txt");
        std::fs::write(&file, format!("{}{signed}\n", self.greeting))
            .with_context(|| format!("writing {file}"))?;
        ctx.progress.note(format!("wrote {file}"));
        Ok(Provisioned::new(vec![describe_artifact(&file)?]))
    }
}
