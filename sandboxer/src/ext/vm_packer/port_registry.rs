//! the-custodian's port registry: a TOML file listing, for each VM, the host and port its SSH
//! server is reached on and the other ports forwarded to it. sandboxer only ever reads it;
//! the format is documented in `docs/port-registry.md`.

use std::fmt::Write as _;

use camino::{Utf8Path, Utf8PathBuf};
use serde::Deserialize;
use toml::Spanned;

use crate::error::{Error, ErrorKind, usage};
use crate::names::check_name;
use crate::profile::line_column;
use crate::record::ForwardedPort;
use crate::ssh::check_host;

/// The file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    #[serde(default)]
    vm: Vec<VmFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VmFile {
    name: Spanned<String>,
    host: Spanned<String>,
    ssh_port: Spanned<i64>,
    #[serde(default)]
    forwarded_ports: Vec<ForwardFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForwardFile {
    port: Spanned<i64>,
    #[serde(default)]
    guest_port: Option<Spanned<i64>>,
    purpose: Spanned<String>,
}

/// One VM's entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmEntry {
    pub name: String,
    pub host: String,
    pub ssh_port: u16,
    pub forwarded_ports: Vec<ForwardedPort>,
}

/// A parsed and checked port registry.
#[derive(Debug)]
pub struct PortRegistry {
    /// The path as it was given, for messages.
    shown_as: String,
    vms: Vec<VmEntry>,
}

impl PortRegistry {
    /// How many VMs the registry lists.
    pub fn len(&self) -> usize {
        self.vms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vms.is_empty()
    }

    /// Reads and checks the registry at `path`; errors name `shown_as` (the path as the user
    /// wrote it) and, for a malformed file, the line and column.
    pub fn load(path: &Utf8Path, shown_as: &str) -> anyhow::Result<PortRegistry> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| usage(format!("cannot read the port registry {shown_as}: {err}")))?;
        PortRegistry::parse(&text, shown_as)
    }

    /// Parses registry text; errors are located as `shown_as:line:column`.
    pub fn parse(text: &str, shown_as: &str) -> anyhow::Result<PortRegistry> {
        let at =
            |span: std::ops::Range<usize>| format!("{shown_as}:{}", line_column(text, span.start));
        let file: RegistryFile = toml::from_str(text).map_err(|err| {
            let location = err.span().map_or_else(|| shown_as.to_owned(), &at);
            // serde names Rust types; people read TOML.
            let message = err
                .message()
                .trim_end()
                .replace("expected i64", "expected a whole number");
            usage(format!("{location}: port registry: {message}"))
        })?;
        let port = |value: &Spanned<i64>, what: &str| -> anyhow::Result<u16> {
            u16::try_from(*value.get_ref())
                .ok()
                .filter(|port| *port > 0)
                .ok_or_else(|| {
                    usage(format!(
                        "{}: port registry: {what} {} is not a TCP port (1 to 65535)",
                        at(value.span()),
                        value.get_ref()
                    ))
                })
        };
        let mut vms: Vec<VmEntry> = Vec::new();
        let mut first_seen: Vec<(String, String)> = Vec::new();
        for vm in file.vm {
            let name = vm.name.get_ref();
            check_name(name).map_err(|problem| {
                usage(format!(
                    "{}: port registry: vm name {name:?} {problem}",
                    at(vm.name.span())
                ))
            })?;
            if let Some((_, first)) = first_seen.iter().find(|(seen, _)| seen == name) {
                return Err(usage(format!(
                    "{}: port registry: vm `{name}` is listed twice (first at {first})",
                    at(vm.name.span())
                )));
            }
            first_seen.push((name.clone(), at(vm.name.span())));
            check_host(vm.host.get_ref()).map_err(|problem| {
                usage(format!(
                    "{}: port registry: host {:?} {problem}",
                    at(vm.host.span()),
                    vm.host.get_ref()
                ))
            })?;
            let ssh_port = port(&vm.ssh_port, "ssh_port")?;
            let mut forwarded_ports = Vec::new();
            for forward in vm.forwarded_ports {
                let purpose = forward.purpose.get_ref().trim();
                if purpose.is_empty() {
                    return Err(usage(format!(
                        "{}: port registry: a forwarded port needs a purpose",
                        at(forward.purpose.span())
                    )));
                }
                forwarded_ports.push(ForwardedPort {
                    port: port(&forward.port, "port")?,
                    guest_port: forward
                        .guest_port
                        .as_ref()
                        .map(|guest| port(guest, "guest_port"))
                        .transpose()?,
                    purpose: purpose.to_owned(),
                });
            }
            vms.push(VmEntry {
                name: vm.name.into_inner(),
                host: vm.host.into_inner(),
                ssh_port,
                forwarded_ports,
            });
        }
        Ok(PortRegistry {
            shown_as: shown_as.to_owned(),
            vms,
        })
    }

    /// The entry for `name`; a name that is not there is a not-found error naming the file
    /// and the closest names in it.
    pub fn find(&self, name: &str) -> anyhow::Result<&VmEntry> {
        if let Some(entry) = self.vms.iter().find(|vm| vm.name == name) {
            return Ok(entry);
        }
        let mut message = format!("vm `{name}` is not in the port registry {}", self.shown_as);
        if self.vms.is_empty() {
            message.push_str(", which lists no VMs");
        } else {
            let mut ranked: Vec<(f64, &str)> = self
                .vms
                .iter()
                .map(|vm| (strsim::jaro_winkler(name, &vm.name), vm.name.as_str()))
                .collect();
            ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
            let closest: Vec<String> = ranked
                .iter()
                .take(3)
                .map(|(_, name)| format!("`{name}`"))
                .collect();
            let _ = write!(message, "; closest names there: {}", closest.join(", "));
        }
        message.push_str(" (or give the VM's address with --input host=HOST)");
        Err(Error::new(ErrorKind::NotFound, message).into())
    }
}

/// Where a registry path comes from: the `port_registry` input (relative to `cwd`), else
/// `$SANDBOXER_PORT_REGISTRY`. Returns the path to read and the path as the user wrote it.
pub fn locate(
    input: Option<&str>,
    from_env: Option<&Utf8Path>,
    cwd: &Utf8Path,
) -> Option<(Utf8PathBuf, String)> {
    match (input, from_env) {
        (Some(input), _) => Some((cwd.join(input), input.to_owned())),
        (None, Some(path)) => Some((cwd.join(path), path.to_string())),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::kind_of;

    const REGISTRY: &str = r#"
[[vm]]
name = "haskell-build-web"
host = "hv1.internal"
ssh_port = 2201
forwarded_ports = [
  { port = 8081, guest_port = 80, purpose = "web preview" },
]

[[vm]]
name = "haskell-build-api"
host = "hv1.internal"
ssh_port = 2202
"#;

    #[test]
    fn entries_are_found_by_name() {
        let registry = PortRegistry::parse(REGISTRY, "ports.toml").unwrap();
        let web = registry.find("haskell-build-web").unwrap();
        assert_eq!(web.host, "hv1.internal");
        assert_eq!(web.ssh_port, 2201);
        assert_eq!(
            web.forwarded_ports,
            vec![ForwardedPort {
                port: 8081,
                guest_port: Some(80),
                purpose: "web preview".to_owned()
            }]
        );
        assert!(
            registry
                .find("haskell-build-api")
                .unwrap()
                .forwarded_ports
                .is_empty()
        );
    }

    #[test]
    fn an_unknown_name_is_not_found_with_the_closest_names() {
        let registry = PortRegistry::parse(REGISTRY, "ports.toml").unwrap();
        let err = registry.find("haskel-build-web").unwrap_err();
        assert_eq!(kind_of(&err), ErrorKind::NotFound);
        assert_eq!(
            err.to_string(),
            "vm `haskel-build-web` is not in the port registry ports.toml; closest names there: `haskell-build-web`, `haskell-build-api` (or give the VM's address with --input host=HOST)"
        );
        let empty = PortRegistry::parse("", "empty.toml").unwrap();
        assert!(
            empty
                .find("x")
                .unwrap_err()
                .to_string()
                .contains("empty.toml, which lists no VMs")
        );
    }

    #[test]
    fn mistakes_are_located() {
        let cases = [
            (
                "[[vm]]\nname = \"a\"\nhost = \"h\"\nssh_port = 70000\n",
                "ports.toml:4:12: port registry: ssh_port 70000 is not a TCP port (1 to 65535)",
            ),
            (
                "[[vm]]\nname = \"a\"\nhost = \"h\"\nport = 22\n",
                "ports.toml:4:1: port registry: unknown field `port`, expected one of `name`, `host`, `ssh_port`, `forwarded_ports`",
            ),
            (
                "[[vm]]\nname = \"a\"\nhost = \"-oProxyCommand=x\"\nssh_port = 22\n",
                "ports.toml:3:8: port registry: host \"-oProxyCommand=x\" is not a host name or IP address: use letters, digits, `.`, `-`, `_` and `:`, not starting with `-`",
            ),
            (
                "[[vm]]\nname = \"a\"\nhost = \"h\"\nssh_port = 22\n[[vm]]\nname = \"a\"\nhost = \"h\"\nssh_port = 23\n",
                "ports.toml:6:8: port registry: vm `a` is listed twice (first at ports.toml:2:8)",
            ),
            (
                "[[vm]]\nname = \"a b\"\n",
                "ports.toml:1:1: port registry: missing field `host`",
            ),
            (
                "[[vm]\n",
                "ports.toml:1:6: port registry: unclosed array table, expected `]`",
            ),
        ];
        for (text, expected) in cases {
            let err = PortRegistry::parse(text, "ports.toml").unwrap_err();
            assert_eq!(kind_of(&err), ErrorKind::Usage);
            assert!(
                err.to_string().starts_with(expected),
                "{err}\nexpected: {expected}"
            );
        }
    }
}
