//! `haresources`: one resource group per logical line, `preferred-node resource1 resource2 ...`.
//!
//! As Heartbeat's ResourceManager reads it: `#` starts a comment anywhere, a line ending in `\`
//! continues on the next, the node name is folded to lower case. A resource spelled like an IP
//! address means `IPaddr::ADDRESS`; `NAME::ARG1::ARG2` passes arguments; `IPaddr`, `IPaddr2` and
//! `Filesystem` are built in; any other name is a script looked up in the script directories
//! (`<config-dir>/resource.d`, then `/etc/init.d`). The first resource of a line names the group
//! and must be unique in the file.

use std::{
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
};

use super::{
    diag::{Diags, IFACE_RULE, Parsed, lines, plausible_iface},
    model::{Diagnostic, IpAddrAgent, Resource, ResourceGroup},
};

/// The first existing executable regular file `DIR/NAME` among `dirs`, as Heartbeat's
/// ResourceManager looks scripts up (`[ -f $dir/$script -a -x $dir/$script ]`).
pub fn find_script(name: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    if !plausible_script_name(name) {
        return None;
    }
    dirs.iter().map(|d| d.join(name)).find(|p| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    })
}

fn plausible_script_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/')
}

/// Parses `haresources` from bytes, resolving script resources with [`find_script`] in
/// `script_dirs` (reads only the metadata of `DIR/NAME` for the names in the file).
pub fn parse_haresources(
    path: &Path,
    bytes: &[u8],
    script_dirs: &[PathBuf],
) -> Result<Parsed<Vec<ResourceGroup>>, Vec<Diagnostic>> {
    let searched = script_dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let resolve = |name: &str| find_script(name, script_dirs);
    parse_haresources_with(path, bytes, &resolve, &searched)
}

/// Parses `haresources` from bytes with a caller-supplied script resolver (pure when the
/// resolver is: for tests and fuzzing). `searched` describes where the resolver looked, for the
/// "not found" message.
pub fn parse_haresources_with(
    path: &Path,
    bytes: &[u8],
    resolve: &dyn Fn(&str) -> Option<PathBuf>,
    searched: &str,
) -> Result<Parsed<Vec<ResourceGroup>>, Vec<Diagnostic>> {
    let (groups, _, d) = parse_inner(path, bytes, resolve, searched);
    d.finish(groups)
}

/// The groups, the preferred node and line of every group line (valid or not, for the
/// cross-file check), and the diagnostics.
pub(crate) fn parse_inner(
    path: &Path,
    bytes: &[u8],
    resolve: &dyn Fn(&str) -> Option<PathBuf>,
    searched: &str,
) -> (Vec<ResourceGroup>, Vec<(String, usize)>, Diags) {
    let mut d = Diags::new(path);
    // Logical lines: (start line, [(word, physical line)]).
    let mut logical: Vec<(usize, Vec<(String, usize)>)> = Vec::new();
    let mut current: Option<(usize, Vec<(String, usize)>)> = None;
    for (n, text) in lines(bytes, &mut d) {
        let text = match text.find('#') {
            Some(i) => &text[..i],
            None => text,
        };
        let trimmed = text.trim_end_matches(super::diag::is_ws);
        let (body, continues) = match trimmed.strip_suffix('\\') {
            Some(b) => (b, true),
            None => (trimmed, false),
        };
        let entry = current.get_or_insert_with(|| (n, Vec::new()));
        entry
            .1
            .extend(super::diag::words(body).map(|w| (w.to_string(), n)));
        if !continues && let Some(done) = current.take() {
            logical.push(done);
        }
    }
    if let Some(done) = current.take() {
        logical.push(done);
    }

    let mut groups: Vec<ResourceGroup> = Vec::new();
    let mut keys: Vec<(String, usize)> = Vec::new();
    let mut preferred: Vec<(String, usize)> = Vec::new();
    for (start, words) in logical {
        let Some(((node, node_line), resources)) = words.split_first() else {
            continue;
        };
        let preferred_node = node.to_ascii_lowercase();
        preferred.push((preferred_node.clone(), *node_line));
        if resources.is_empty() {
            d.error(
                *node_line,
                format!("group for node '{preferred_node}' lists no resources"),
            );
            continue;
        }
        let mut parsed = Vec::new();
        let mut ok = true;
        for (word, line) in resources {
            match resource(word, resolve, searched) {
                Ok(r) => parsed.push(r),
                Err(msg) => {
                    ok = false;
                    d.error(*line, msg);
                }
            }
        }
        if let Some((key, key_line)) = resources.first() {
            if let Some((_, first)) = keys.iter().find(|(k, _)| k == key) {
                d.error(
                    *key_line,
                    format!(
                        "resource '{key}' already starts the group at line {first}: the first \
                         resource of each line names its group and must be unique"
                    ),
                );
                ok = false;
            } else {
                keys.push((key.clone(), *key_line));
            }
        }
        if ok {
            for r in &parsed {
                if let Resource::IpAddr { addr, .. } = r
                    && let Some(g) = groups.iter().find(|g| {
                        g.resources
                            .iter()
                            .any(|x| matches!(x, Resource::IpAddr { addr: a, .. } if a == addr))
                    })
                {
                    d.warn(
                        start,
                        format!(
                            "address {addr} is also managed by the group at line {}",
                            g.line
                        ),
                    );
                }
            }
            groups.push(ResourceGroup {
                preferred_node,
                resources: parsed,
                line: start,
            });
        }
    }
    if groups.is_empty() && d.errors.is_empty() {
        d.warn(
            0,
            "no resource groups: hb will exchange heartbeats but manage no resources",
        );
    }
    (groups, preferred, d)
}

/// Heartbeat's `isip` (the shell pattern `[0-9]*.[0-9]*.[0-9]*.[0-9]*`: a digit first and at
/// least three dots), or an IPv6 address (hb's addition).
fn looks_like_ip(word: &str) -> bool {
    let head = word.split('/').next().unwrap_or(word);
    (word.starts_with(|c: char| c.is_ascii_digit()) && word.matches('.').count() >= 3)
        || head.parse::<std::net::Ipv6Addr>().is_ok()
}

fn resource(
    word: &str,
    resolve: &dyn Fn(&str) -> Option<PathBuf>,
    searched: &str,
) -> Result<Resource, String> {
    if looks_like_ip(word) {
        return ip_resource(IpAddrAgent::IpAddr, word);
    }
    let (name, rest) = match word.split_once("::") {
        Some((n, r)) => (n, Some(r)),
        None => (word, None),
    };
    match name {
        "IPaddr" | "IPaddr2" => {
            let agent = if name == "IPaddr" {
                IpAddrAgent::IpAddr
            } else {
                IpAddrAgent::IpAddr2
            };
            match rest {
                Some(arg) if !arg.is_empty() => ip_resource(agent, arg),
                _ => Err(format!(
                    "{name}: missing address ({name}::ip[/cidr[/iface[:label][/broadcast]]])"
                )),
            }
        }
        "Filesystem" => filesystem(rest.unwrap_or("")),
        _ => {
            if !plausible_script_name(name) {
                return Err(format!("bad resource name '{name}'"));
            }
            let args: Vec<String> = rest
                .map(|r| {
                    r.split("::")
                        .filter(|a| !a.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            match resolve(name) {
                Some(path) => Ok(Resource::Script {
                    name: name.to_string(),
                    args,
                    path,
                }),
                None if searched.is_empty() => Err(format!(
                    "resource script '{name}' not found (no script directories)"
                )),
                None => Err(format!(
                    "resource script '{name}' not found as an executable file in {searched}"
                )),
            }
        }
    }
}

/// Prefix length from `24` or, for IPv4, a dotted netmask (`255.255.255.0`).
fn prefix(addr: &IpAddr, s: &str) -> Result<u8, String> {
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return match s.parse::<u8>() {
            Ok(p) if p <= max => Ok(p),
            _ => Err(format!("bad CIDR prefix '/{s}' for {addr} (0..{max})")),
        };
    }
    if addr.is_ipv4()
        && let Ok(mask) = s.parse::<Ipv4Addr>()
    {
        let m = u32::from(mask);
        if m.leading_ones() + m.trailing_zeros() == 32 {
            return u8::try_from(m.leading_ones()).map_err(|_| format!("bad netmask '{s}'"));
        }
        return Err(format!("bad netmask '{s}' (not contiguous)"));
    }
    Err(format!("bad CIDR prefix '/{s}' for {addr} (0..{max})"))
}

/// `ip[/netmask[/iface[:label][/broadcast]]]` or `ip/netmask/broadcast`, split as Heartbeat's
/// `IPaddr` and `IPaddr2` wrappers split it: the netmask is a prefix length or a dotted mask and
/// may be empty (`ip//eth0`: derived from the interface); a third field spelled like an IPv4
/// address is the broadcast address; otherwise it names the interface, with an optional label
/// after a colon (`eth0:0`, set as the address label).
fn ip_resource(agent: IpAddrAgent, arg: &str) -> Result<Resource, String> {
    let fields: Vec<&str> = arg.split('/').collect();
    if fields.len() > 4 {
        return Err(format!(
            "bad IP resource '{arg}': expected ip[/cidr[/iface[:label][/broadcast]]]"
        ));
    }
    let addr: IpAddr = fields[0]
        .parse()
        .map_err(|_| format!("bad IP address '{}'", fields[0]))?;
    let service_ok = match addr {
        IpAddr::V4(a) => !(a.is_unspecified() || a.is_broadcast() || a.is_multicast()),
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast()),
    };
    if !service_ok {
        return Err(format!("{addr} cannot be a service address"));
    }
    let prefix = match fields.get(1) {
        Some(p) if !p.is_empty() => Some(prefix(&addr, p)?),
        _ => None,
    };
    let mut iface = None;
    let mut label = None;
    let mut broadcast = None;
    match (fields.get(2), fields.get(3)) {
        (None, _) | (Some(&""), None) => {}
        (Some(third), None) if addr.is_ipv4() && third.parse::<Ipv4Addr>().is_ok() => {
            // Heartbeat's documented `ip/cidr/broadcast` form.
            broadcast = Some(IpAddr::V4(
                third.parse::<Ipv4Addr>().map_err(|e| e.to_string())?,
            ));
        }
        (Some(third), fourth) => {
            let (dev, alias) = match third.split_once(':') {
                Some((d, a)) => (d, Some(a)),
                None => (*third, None),
            };
            if !plausible_iface(dev) {
                return Err(format!("bad interface name '{dev}' ({IFACE_RULE})"));
            }
            iface = Some(dev.to_string());
            if let Some(alias) = alias {
                if !addr.is_ipv4() {
                    return Err(format!(
                        "IPv6 address {addr} takes no label ('{third}'): labels are IPv4 only"
                    ));
                }
                // The kernel's rule for IFA_LABEL: the device name, then anything, at most
                // 15 bytes in all.
                if alias.is_empty()
                    || third.len() > 15
                    || !third.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
                {
                    return Err(format!(
                        "bad address label '{third}': IFACE:LABEL, at most 15 characters"
                    ));
                }
                label = Some((*third).to_string());
            }
            if let Some(b) = fourth.filter(|b| !b.is_empty()) {
                if !addr.is_ipv4() {
                    return Err(format!("IPv6 address {addr} takes no broadcast address"));
                }
                let b: Ipv4Addr = b
                    .parse()
                    .map_err(|_| format!("bad broadcast address '{b}'"))?;
                broadcast = Some(IpAddr::V4(b));
            }
        }
    }
    Ok(Resource::IpAddr {
        agent,
        addr,
        prefix,
        iface,
        broadcast,
        label,
    })
}

fn filesystem(rest: &str) -> Result<Resource, String> {
    const USAGE: &str = "Filesystem::device::mountpoint::fstype[::options]";
    let args: Vec<&str> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split("::").collect()
    };
    let (device, mountpoint, fstype, options) = match args.as_slice() {
        [d, m, f] => (*d, *m, *f, None),
        [d, m, f, o] => (*d, *m, *f, Some(*o)),
        _ => return Err(format!("Filesystem needs {USAGE}")),
    };
    if device.is_empty() || fstype.is_empty() || options == Some("") {
        return Err(format!("Filesystem: empty argument in {USAGE}"));
    }
    if !mountpoint.starts_with('/') {
        return Err(format!(
            "Filesystem: mount point '{mountpoint}' is not an absolute path"
        ));
    }
    Ok(Resource::Filesystem {
        device: device.to_string(),
        mountpoint: PathBuf::from(mountpoint),
        fstype: fstype.to_string(),
        options: options.map(str::to_string),
    })
}
