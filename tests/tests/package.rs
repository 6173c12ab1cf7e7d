//! The Debian package (issue 18): built from this tree as `cargo xtask package` builds it,
//! lintian reports no errors, `dpkg -i` installs it (`hbd --version`, `man -w hbd`, the
//! completions, Heartbeat's command names, the cl_status diversion, `systemd-analyze verify` of
//! the installed unit), and `dpkg --purge` leaves the machine as it was.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Instant,
};

use hb_tests::{package, require_root};

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("spawning {program}: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(program: &str, args: &[&str]) -> String {
    let o = run(program, args);
    assert!(
        o.status.success(),
        "{program} {}: {}",
        args.join(" "),
        text(&o)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn installed(pkg: &str) -> bool {
    let o = run("dpkg-query", &["-W", "-f=${db:Status-Status}", pkg]);
    o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "installed"
}

/// What installing could change and purging must restore: each path the package holds (and
/// what is there now in its place), what its maintainer scripts touch (diversions, systemd's
/// enablement records, hbd's state and runtime directories) and the unit directories.
/// Narrowed to these so that other work on the machine meanwhile does not count.
fn machine_state(package_paths: &[String]) -> BTreeSet<String> {
    let mut state = BTreeSet::new();
    for p in package_paths {
        let path = Path::new(p);
        let what = match std::fs::symlink_metadata(path) {
            Ok(m) if m.is_symlink() => format!("link to {:?}", std::fs::read_link(path).ok()),
            Ok(m) if m.is_dir() => "dir".to_owned(),
            Ok(m) => format!("file of {} bytes", m.len()),
            Err(_) => "absent".to_owned(),
        };
        state.insert(format!("{p}: {what}"));
    }
    for dir in [
        "/var/lib/hb",
        "/run/hb",
        "/usr/share/doc/hb",
        "/var/lib/systemd/deb-systemd-helper-enabled",
        "/var/lib/systemd/deb-systemd-helper-masked",
        "/etc/systemd/system",
    ] {
        if Path::new(dir).exists() {
            state.extend(ok("find", &[dir]).lines().map(str::to_owned));
        } else {
            state.insert(format!("{dir}: absent"));
        }
    }
    for f in ["/usr/bin/cl_status", "/usr/bin/cl_status.heartbeat"] {
        state.insert(format!("{f}: {}", Path::new(f).exists()));
    }
    let diversions = ok("dpkg-divert", &["--list"]);
    state.extend(diversions.lines().map(|l| format!("diversion: {l}")));
    state
}

/// Purges hb on drop, so a failed assertion does not leave it installed.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg")
            .args(["--purge", package::PACKAGE])
            .output();
    }
}

#[test]
fn deb_builds_passes_lintian_installs_and_purges_cleanly() {
    if !require_root("deb_builds_passes_lintian_installs_and_purges_cleanly") {
        return;
    }
    assert!(
        !installed(package::PACKAGE),
        "the hb package is installed on this machine already: this test installs and purges it, \
         so remove it first (dpkg --purge hb)"
    );
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let t0 = Instant::now();
    let deb = package::build(&root).unwrap_or_else(|e| panic!("building the package: {e:#}"));
    println!(
        "built {} in {:.0} s",
        deb.display(),
        t0.elapsed().as_secs_f64()
    );
    let name = deb.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("hb_") && name.ends_with("_amd64.deb"),
        "{name}"
    );

    // What is inside: nothing under /etc/ha.d (an existing configuration is never touched).
    let contents = ok("dpkg-deb", &["--contents", deb.to_str().unwrap()]);
    for path in [
        "./usr/sbin/hbd",
        "./usr/bin/hbctl",
        "./usr/bin/hbstat",
        "./usr/bin/hb_standby -> hbctl",
        "./usr/bin/hb_takeover -> hbctl",
        "./usr/bin/cl_status -> hbctl",
        "./usr/share/man/man8/hbd.8.gz",
        "./usr/share/man/man5/hb-ha.cf.5.gz",
        "./usr/share/man/man8/cl_status.8.gz -> hbctl.8.gz",
        "./usr/lib/systemd/system/hb.service",
        "./usr/share/doc/hb/examples/authkeys",
    ] {
        assert!(
            contents.contains(path),
            "{path} not in the package:\n{contents}"
        );
    }
    assert!(!contents.contains("./etc/ha.d"), "{contents}");
    let authkeys = contents
        .lines()
        .find(|l| l.ends_with("examples/authkeys"))
        .unwrap();
    assert!(authkeys.starts_with("-rw-------"), "{authkeys}");
    let fields = ok("dpkg-deb", &["--field", deb.to_str().unwrap()]);
    assert!(fields.contains("Package: hb\n"), "{fields}");

    // lintian: no errors (warnings are printed for the record).
    let lint = run(
        "lintian",
        &["--tag-display-limit", "0", deb.to_str().unwrap()],
    );
    let report = text(&lint);
    println!("lintian:\n{report}");
    let errors: Vec<&str> = report.lines().filter(|l| l.starts_with("E:")).collect();
    assert!(errors.is_empty(), "lintian errors:\n{}", errors.join("\n"));

    let heartbeat = installed("heartbeat");
    let package_paths: Vec<String> = contents
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches('.').to_owned())
        .filter(|p| !p.is_empty() && p != "/")
        .collect();
    let before = machine_state(&package_paths);
    let guard = Installed;
    let t1 = Instant::now();
    ok("dpkg", &["-i", deb.to_str().unwrap()]);
    println!("dpkg -i in {:.1} s", t1.elapsed().as_secs_f64());

    let version = ok("/usr/sbin/hbd", &["--version"]);
    assert!(version.starts_with("hbd "), "{version}");
    assert_eq!(
        ok("man", &["-w", "hbd"]).trim(),
        "/usr/share/man/man8/hbd.8.gz"
    );
    assert_eq!(
        ok("man", &["-w", "5", "hb-ha.cf"]).trim(),
        "/usr/share/man/man5/hb-ha.cf.5.gz"
    );
    for f in [
        "/usr/share/bash-completion/completions/hbd",
        "/usr/share/bash-completion/completions/hbctl",
        "/usr/share/zsh/vendor-completions/_hbstat",
        "/usr/share/fish/vendor_completions.d/hbctl.fish",
        "/usr/share/doc/hb/examples/ha.cf",
    ] {
        assert!(Path::new(f).is_file(), "{f} missing after install");
    }
    for name in ["hb_standby", "hb_takeover", "cl_status"] {
        let link = std::fs::read_link(format!("/usr/bin/{name}")).unwrap();
        assert_eq!(link, Path::new("hbctl"), "/usr/bin/{name}");
    }
    let diverted = ok("dpkg-divert", &["--list", "/usr/bin/cl_status"]);
    assert!(
        diverted.contains("/usr/bin/cl_status.heartbeat by hb"),
        "{diverted}"
    );
    if heartbeat {
        assert!(
            Path::new("/usr/bin/cl_status.heartbeat").is_file(),
            "heartbeat's cl_status not diverted"
        );
    }
    let verify = run(
        "systemd-analyze",
        &["verify", "/usr/lib/systemd/system/hb.service"],
    );
    let verify_text = text(&verify);
    assert!(
        verify.status.success(),
        "systemd-analyze verify: {verify_text}"
    );
    assert!(!verify_text.contains("hb.service"), "{verify_text}");

    let t2 = Instant::now();
    ok("dpkg", &["--purge", package::PACKAGE]);
    std::mem::forget(guard);
    println!("dpkg --purge in {:.1} s", t2.elapsed().as_secs_f64());
    assert!(!installed(package::PACKAGE));
    let after = machine_state(&package_paths);
    let added: Vec<&String> = after.difference(&before).collect();
    let removed: Vec<&String> = before.difference(&after).collect();
    assert!(
        added.is_empty() && removed.is_empty(),
        "the machine changed across install and purge:\nleft behind: {added:?}\ngone: {removed:?}"
    );
    if heartbeat {
        assert!(
            Path::new("/usr/bin/cl_status").is_file(),
            "heartbeat's cl_status not given back"
        );
    }
}
