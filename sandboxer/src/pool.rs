//! The host pool file: the build hosts a profile may place on (`[[host]]` tables), where it is
//! found, and located errors for a bad one. `local` is a host like any other: this machine.
//!
//! ```toml
//! [[host]]
//! name = "build01"
//! ssh = "builder@build01.example:22"
//! identity = "/home/ci/.ssh/build_ed25519"
//! workdir = "/var/tmp/sandboxer"
//! max_concurrent = 2
//! labels = ["kvm"]
//! ```

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

use anyhow::Context as _;
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::error::{did_you_mean, not_found, usage};
use crate::names::check_name;
use crate::profile::line_column;
use crate::ssh::{SshTarget, check_host, check_user, parse_port};

/// The name of this machine in a pool, and of the placement host a profile names by default.
pub const LOCAL: &str = "local";

/// How long connecting to a build host may take when its `[[host]]` table does not say.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest `connect_timeout`: a host that takes longer to answer is not usable.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(600);

/// Where the pool file is, and whether it must exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolFile {
    pub path: Utf8PathBuf,
    /// Named by the user (`$SANDBOXER_HOSTS`, a profile's `pool_file`): a missing file is an
    /// error. The default (`$XDG_CONFIG_HOME/sandboxer/hosts.toml`) may be absent.
    pub required: bool,
    /// Who named it, for messages: "SANDBOXER_HOSTS", "profile.x.toml:9:13", "default".
    pub named_by: String,
}

/// The build hosts of a pool file, in the file's order (the order ties are broken in).
#[derive(Debug, Clone, Default)]
pub struct Pool {
    /// The file they came from; `None` when there is no pool file.
    pub path: Option<Utf8PathBuf>,
    pub hosts: Vec<Host>,
}

/// One `[[host]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Host {
    pub name: String,
    /// At most this many builds at once on the host; no limit when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<NonZeroU32>,
    pub labels: Vec<String>,
    /// How to reach it; `None` for `local`, this machine.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub remote: Option<SshHost>,
    /// `file:line:column` of its `name`, for messages.
    #[serde(skip)]
    pub location: String,
}

/// A build host reached over SSH.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SshHost {
    #[serde(rename = "ssh")]
    pub target: SshTarget,
    /// Where builds run on the host: each in `<workdir>/<sandbox-id>/`.
    pub workdir: Utf8PathBuf,
    /// The Packer executable on the host: `packer` on the login's PATH unless the table says.
    pub packer: String,
    #[serde(skip)]
    pub connect_timeout: Duration,
}

impl Host {
    /// The local machine with no limit: the whole pool when there is no pool file.
    pub fn local() -> Host {
        Host {
            name: LOCAL.to_owned(),
            max_concurrent: None,
            labels: Vec::new(),
            remote: None,
            location: String::new(),
        }
    }

    pub fn carries(&self, labels: &[String]) -> bool {
        labels.iter().all(|label| self.labels.contains(label))
    }
}

impl Pool {
    pub fn find(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|host| host.name == name)
    }

    /// "`b1`, `b2` and `local`", for messages.
    pub fn names(&self) -> Vec<&str> {
        self.hosts.iter().map(|host| host.name.as_str()).collect()
    }

    /// Where the hosts came from, for messages.
    pub fn describe(&self) -> String {
        match &self.path {
            Some(path) => format!("pool file {path}"),
            None => "no pool file".to_owned(),
        }
    }
}

/// Reads the pool file `file` names; an absent default file is an empty pool.
pub fn load(file: &PoolFile) -> anyhow::Result<Pool> {
    let text = match std::fs::read_to_string(&file.path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && !file.required => {
            return Ok(Pool::default());
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(not_found(format!(
                "{}: pool file {} does not exist",
                file.named_by, file.path
            )));
        }
        Err(err) => {
            return Err(err).with_context(|| format!("reading pool file {}", file.path));
        }
    };
    let base = file
        .path
        .parent()
        .map(Utf8Path::to_owned)
        .unwrap_or_default();
    parse(&text, file.path.as_str(), &base).map(|hosts| Pool {
        path: Some(file.path.clone()),
        hosts,
    })
}

/// `[[host]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileShape {
    #[serde(default)]
    host: Vec<HostShape>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HostShape {
    name: Spanned<String>,
    ssh: Option<Spanned<String>>,
    identity: Option<Spanned<String>>,
    workdir: Option<Spanned<String>>,
    max_concurrent: Option<Spanned<i64>>,
    #[serde(default)]
    labels: Vec<Spanned<String>>,
    packer: Option<Spanned<String>>,
    connect_timeout: Option<Spanned<String>>,
}

const HOST_KEYS: [&str; 8] = [
    "name",
    "ssh",
    "identity",
    "workdir",
    "max_concurrent",
    "labels",
    "packer",
    "connect_timeout",
];

/// Parses and checks a pool file; errors name `display_path:line:column`. Relative `identity`
/// paths are resolved from `base` (the file's directory).
pub fn parse(text: &str, display_path: &str, base: &Utf8Path) -> anyhow::Result<Vec<Host>> {
    let at =
        |span: std::ops::Range<usize>| format!("{display_path}:{}", line_column(text, span.start));
    let file: FileShape = toml::from_str(text).map_err(|err| {
        let location = err.span().map_or_else(|| display_path.to_owned(), &at);
        usage(format!("{location}: {}", explain(err.message())))
    })?;
    let mut hosts: Vec<Host> = Vec::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for shape in file.host {
        let name_at = at(shape.name.span());
        let name = shape.name.get_ref().clone();
        check_name(&name)
            .map_err(|problem| usage(format!("{name_at}: host name {name:?} {problem}")))?;
        if let Some(first) = seen.insert(name.clone(), name_at.clone()) {
            return Err(usage(format!(
                "{name_at}: host `{name}` is already defined at {first}; host names must be unique"
            )));
        }
        let max_concurrent = crate::profile::max_concurrent(shape.max_concurrent.as_ref(), &at)?;
        let mut labels = Vec::new();
        for label in &shape.labels {
            check_name(label.get_ref()).map_err(|problem| {
                usage(format!(
                    "{}: label {:?} {problem}",
                    at(label.span()),
                    label.get_ref()
                ))
            })?;
            if !labels.contains(label.get_ref()) {
                labels.push(label.get_ref().clone());
            }
        }
        let remote = match &shape.ssh {
            None => {
                if name != LOCAL {
                    return Err(usage(format!(
                        "{name_at}: host `{name}` has no `ssh`: a build host is reached as ssh = \"user@host:port\"; only `{LOCAL}` (this machine) goes without"
                    )));
                }
                let only_remote = [
                    ("identity", shape.identity.as_ref().map(Spanned::span)),
                    ("workdir", shape.workdir.as_ref().map(Spanned::span)),
                    ("packer", shape.packer.as_ref().map(Spanned::span)),
                    (
                        "connect_timeout",
                        shape.connect_timeout.as_ref().map(Spanned::span),
                    ),
                ];
                if let Some((key, Some(span))) =
                    only_remote.into_iter().find(|(_, span)| span.is_some())
                {
                    return Err(usage(format!(
                        "{}: `{key}` is for build hosts reached over SSH; `{LOCAL}` builds on this machine, in the state directory, with this machine's Packer",
                        at(span)
                    )));
                }
                None
            }
            Some(ssh) => {
                if name == LOCAL {
                    return Err(usage(format!(
                        "{}: `{LOCAL}` is this machine and takes no `ssh`; give the build host another name",
                        at(ssh.span())
                    )));
                }
                Some(ssh_host(&shape, ssh, &name_at, base, &at)?)
            }
        };
        hosts.push(Host {
            name,
            max_concurrent,
            labels,
            remote,
            location: name_at,
        });
    }
    Ok(hosts)
}

fn ssh_host(
    shape: &HostShape,
    ssh: &Spanned<String>,
    name_at: &str,
    base: &Utf8Path,
    at: &dyn Fn(std::ops::Range<usize>) -> String,
) -> anyhow::Result<SshHost> {
    let mut target = parse_ssh(ssh.get_ref()).map_err(|problem| {
        usage(format!(
            "{}: ssh = {:?}: {problem}",
            at(ssh.span()),
            ssh.get_ref()
        ))
    })?;
    if let Some(identity) = &shape.identity {
        let value = identity.get_ref();
        if value.is_empty() {
            return Err(usage(format!("{}: identity is empty", at(identity.span()))));
        }
        let path = Utf8Path::new(value);
        // A path only: sandboxer never reads the key, ssh does.
        target.identity = Some(if path.is_absolute() {
            path.to_owned()
        } else {
            base.join(path)
        });
    }
    let Some(workdir) = &shape.workdir else {
        return Err(usage(format!(
            "{name_at}: build host `{}` needs `workdir`, the directory on the host its builds run in (e.g. workdir = \"/var/tmp/sandboxer\")",
            shape.name.get_ref()
        )));
    };
    let value = workdir.get_ref();
    if !value.starts_with('/')
        || value.contains(['\n', '\0'])
        || value.split('/').any(|part| part == "..")
    {
        return Err(usage(format!(
            "{}: workdir {value:?} must be an absolute path on the build host, without `..`",
            at(workdir.span())
        )));
    }
    let packer = match &shape.packer {
        None => "packer".to_owned(),
        Some(packer) if packer.get_ref().is_empty() || packer.get_ref().contains(['\n', '\0']) => {
            return Err(usage(format!(
                "{}: packer {:?} is not a command or path",
                at(packer.span()),
                packer.get_ref()
            )));
        }
        Some(packer) => packer.get_ref().clone(),
    };
    let connect_timeout = match &shape.connect_timeout {
        None => DEFAULT_CONNECT_TIMEOUT,
        Some(timeout) => crate::duration::parse_std(timeout.get_ref(), "connect timeout")
            .ok()
            .filter(|timeout| !timeout.is_zero() && *timeout <= MAX_CONNECT_TIMEOUT)
            .ok_or_else(|| {
                usage(format!(
                    "{}: connect_timeout {:?} must be a duration from 1s to 10m",
                    at(timeout.span()),
                    timeout.get_ref()
                ))
            })?,
    };
    Ok(SshHost {
        target,
        workdir: match value.trim_end_matches('/') {
            "" => Utf8PathBuf::from("/"),
            trimmed => Utf8PathBuf::from(trimmed),
        },
        packer,
        connect_timeout,
    })
}

/// `user@host:port`, `user@host`, `host:port` or `host` (`[v6-address]:port` for IPv6).
pub fn parse_ssh(value: &str) -> Result<SshTarget, String> {
    let (user, rest) = match value.rsplit_once('@') {
        Some((user, rest)) => {
            check_user(user)?;
            (Some(user.to_owned()), rest)
        }
        None => (None, value),
    };
    let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or("an IPv6 address opened with `[` is not closed with `]`")?;
        match after {
            "" => (host, 22),
            _ => {
                let port = after
                    .strip_prefix(':')
                    .ok_or("expected `:port` after `]`")?;
                (host, parse_port(port)?)
            }
        }
    } else {
        match rest.split_once(':') {
            Some((host, port)) if !port.contains(':') => (host, parse_port(port)?),
            Some(_) => return Err("write an IPv6 address in brackets: user@[::1]:22".to_owned()),
            None => (rest, 22),
        }
    };
    check_host(host)?;
    Ok(SshTarget {
        host: host.to_owned(),
        port,
        user,
        identity: None,
    })
}

/// serde's message, with a "did you mean" for a misspelt key.
fn explain(message: &str) -> String {
    let message = message.trim_end();
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_owned();
    };
    let Some((field, _)) = rest.split_once('`') else {
        return message.to_owned();
    };
    match did_you_mean(field, HOST_KEYS.iter().copied().chain(["host"])) {
        Some(near) => format!("{message}; did you mean `{near}`?"),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Vec<Host> {
        parse(text, "hosts.toml", Utf8Path::new("/etc/sandboxer")).unwrap()
    }

    fn parse_err(text: &str) -> String {
        parse(text, "hosts.toml", Utf8Path::new("/etc/sandboxer"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_pool_reads_in_order_with_defaults() {
        let hosts = parse_ok(
            r#"
[[host]]
name = "build01"
ssh = "builder@build01.example:2222"
identity = "keys/build_ed25519"
workdir = "/var/tmp/sandboxer/"
max_concurrent = 2
labels = ["kvm", "kvm", "big"]

[[host]]
name = "local"
max_concurrent = 1

[[host]]
name = "b6"
ssh = "[::1]"
workdir = "/w"
packer = "/opt/packer/bin/packer"
connect_timeout = "3s"
"#,
        );
        assert_eq!(
            hosts
                .iter()
                .map(|host| host.name.as_str())
                .collect::<Vec<_>>(),
            ["build01", "local", "b6"]
        );
        let build01 = hosts[0].remote.as_ref().unwrap();
        assert_eq!(build01.target.describe(), "builder@build01.example:2222");
        assert_eq!(
            build01.target.identity.as_deref(),
            Some(Utf8Path::new("/etc/sandboxer/keys/build_ed25519"))
        );
        assert_eq!(build01.workdir, "/var/tmp/sandboxer");
        assert_eq!(build01.packer, "packer");
        assert_eq!(build01.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(hosts[0].labels, ["kvm", "big"]);
        assert_eq!(hosts[0].max_concurrent.map(NonZeroU32::get), Some(2));
        assert_eq!(hosts[0].location, "hosts.toml:3:8");
        assert!(hosts[1].remote.is_none());
        let b6 = hosts[2].remote.as_ref().unwrap();
        assert_eq!(b6.target.endpoint(), "[::1]:22");
        assert_eq!(b6.connect_timeout, Duration::from_secs(3));
        assert!(hosts[0].carries(&["kvm".to_owned()]));
        assert!(!hosts[1].carries(&["kvm".to_owned()]));
    }

    #[test]
    fn ssh_destinations_are_parsed_and_checked() {
        let target = parse_ssh("ci@10.0.0.7:2201").unwrap();
        assert_eq!(
            (target.user.as_deref(), target.host.as_str(), target.port),
            (Some("ci"), "10.0.0.7", 2201)
        );
        assert_eq!(parse_ssh("h").unwrap().port, 22);
        assert_eq!(parse_ssh("u@[fe80::1]:7").unwrap().host, "fe80::1");
        for bad in [
            "",
            "-oProxyCommand=x",
            "a b:22",
            "u@h:0",
            "u@h:x",
            "::1",
            "[::1",
            "r@@h",
            "$(id)@h",
        ] {
            assert!(parse_ssh(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_are_located() {
        let cases = [
            (
                "[[host]]\nname = \"b1\"\nssh = \"u@h:99999\"\nworkdir = \"/w\"\n",
                "hosts.toml:3:7: ssh = \"u@h:99999\": is not a TCP port",
            ),
            (
                "[[host]]\nname = \"b1\"\nssh = \"h\"\n",
                "hosts.toml:2:8: build host `b1` needs `workdir`",
            ),
            (
                "[[host]]\nname = \"b1\"\nssh = \"h\"\nworkdir = \"rel\"\n",
                "hosts.toml:4:11: workdir \"rel\" must be an absolute path",
            ),
            (
                "[[host]]\nname = \"b1\"\n",
                "hosts.toml:2:8: host `b1` has no `ssh`",
            ),
            (
                "[[host]]\nname = \"local\"\nssh = \"h\"\n",
                "hosts.toml:3:7: `local` is this machine and takes no `ssh`",
            ),
            (
                "[[host]]\nname = \"local\"\nworkdir = \"/w\"\n",
                "hosts.toml:3:11: `workdir` is for build hosts reached over SSH",
            ),
            (
                "[[host]]\nname = \"local\"\nmax_concurrent = 0\n",
                "hosts.toml:3:18: max_concurrent must be a whole number of at least 1",
            ),
            (
                "[[host]]\nname = \"local\"\nlabels = [\"ok\", \"no way\"]\n",
                "hosts.toml:3:17: label \"no way\" is not a valid name",
            ),
            (
                "[[host]]\nname = \"-x\"\n",
                "hosts.toml:2:8: host name \"-x\" is not a valid name",
            ),
            (
                "[[host]]\nname = \"local\"\n\n[[host]]\nname = \"local\"\n",
                "hosts.toml:5:8: host `local` is already defined at hosts.toml:2:8",
            ),
            (
                "[[host]]\nname = \"local\"\nlabel = [\"x\"]\n",
                "did you mean `labels`?",
            ),
            (
                "[[host]]\nname = \"b1\"\nssh = \"h\"\nworkdir = \"/w\"\nconnect_timeout = \"0s\"\n",
                "hosts.toml:5:19: connect_timeout \"0s\" must be a duration from 1s to 10m",
            ),
            ("[[host]\n", "hosts.toml:1:"),
        ];
        for (text, expected) in cases {
            let err = parse_err(text);
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }

    #[test]
    fn a_missing_default_pool_file_is_an_empty_pool_and_a_named_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(dir.path()).unwrap().join("hosts.toml");
        let default = PoolFile {
            path: path.clone(),
            required: false,
            named_by: "default".into(),
        };
        assert!(load(&default).unwrap().hosts.is_empty());
        let named = PoolFile {
            required: true,
            named_by: "SANDBOXER_HOSTS".into(),
            ..default
        };
        let err = load(&named).unwrap_err();
        assert_eq!(
            crate::error::kind_of(&err),
            crate::error::ErrorKind::NotFound
        );
        std::fs::write(&path, "[[host]]\nname = \"local\"\n").unwrap();
        assert_eq!(load(&named).unwrap().names(), ["local"]);
    }
}
