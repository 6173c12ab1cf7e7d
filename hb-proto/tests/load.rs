//! `load()` over real files: the classic article's configuration (and its millisecond variant)
//! from `tests/fixtures/`, copied into a private temporary directory so the key file's mode can
//! be set, plus cross-file and file-system checks.

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use hb_proto::config::{
    AuthMethod, AutoFailback, LoadOptions, Media, Resource, default_script_dirs, load,
};

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "hb-config-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn write(&self, name: &str, text: &[u8], mode: u32) -> PathBuf {
        let p = self.0.join(name);
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A configuration directory holding the fixture's three files (authkeys 0600) and an
/// executable `resource.d/httpd`.
fn from_fixture(name: &str) -> TempDir {
    let t = TempDir::new(name);
    for (file, mode) in [
        ("ha.cf", 0o644),
        ("haresources", 0o644),
        ("authkeys", 0o600),
    ] {
        let bytes = std::fs::read(fixture(name).join(file)).unwrap();
        t.write(file, &bytes, mode);
    }
    t.write("resource.d/httpd", b"#!/bin/sh\nexit 0\n", 0o755);
    t
}

fn options(t: &TempDir, node: &str) -> LoadOptions {
    LoadOptions {
        config_dir: t.path().to_path_buf(),
        node_name: node.to_string(),
        script_dirs: vec![t.path().join("resource.d")],
        local_addrs: Vec::new(),
    }
}

fn errors(opts: &LoadOptions) -> Vec<String> {
    load(opts)
        .expect_err("expected errors")
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn classic_article_checks_clean() {
    let t = from_fixture("classic");
    let c = load(&options(&t, "node1.example.com")).unwrap();
    assert_eq!(c.local_node, "node1.example.com");
    assert_eq!(c.ha_cf.keepalive.value, Duration::from_secs(2));
    assert_eq!(c.ha_cf.deadtime.value, Duration::from_secs(30));
    assert_eq!(c.ha_cf.warntime.value, Duration::from_secs(10));
    assert_eq!(c.ha_cf.initdead.value, Duration::from_secs(120));
    assert_eq!(c.ha_cf.udpport.value, 694);
    assert_eq!(
        c.ha_cf.media,
        vec![Media::Bcast {
            iface: "eth1".into()
        }]
    );
    assert_eq!(c.ha_cf.auto_failback.value, AutoFailback::On);
    assert_eq!(
        c.ha_cf.nodes,
        vec!["node1.example.com", "node2.example.com"]
    );
    assert_eq!(c.groups.len(), 1);
    assert_eq!(c.groups[0].preferred_node, "node1.example.com");
    assert_eq!(
        c.groups[0].resources,
        vec![Resource::Script {
            name: "httpd".into(),
            args: vec![],
            path: t.path().join("resource.d/httpd"),
        }]
    );
    assert_eq!(c.authkeys.active, 1);
    assert_eq!(c.authkeys.keys[&1].method, AuthMethod::Crc);
    // The only warning: crc gives no security.
    let w: Vec<String> = c.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("authkeys:2: crc gives no security"), "{w:?}");
}

#[test]
fn classic_article_with_millisecond_timings_checks_clean() {
    let t = from_fixture("classic-10ms");
    let c = load(&options(&t, "node2.example.com")).unwrap();
    assert_eq!(c.local_node, "node2.example.com");
    assert_eq!(c.ha_cf.keepalive.value, Duration::from_millis(10));
    assert_eq!(c.ha_cf.deadtime.value, Duration::from_millis(50));
    assert_eq!(c.ha_cf.initdead.value, Duration::from_secs(120));
}

#[test]
fn node_name_is_compared_without_case() {
    let t = from_fixture("classic");
    let c = load(&options(&t, "NODE1.example.com")).unwrap();
    assert_eq!(c.local_node, "node1.example.com");
}

#[test]
fn unknown_local_node() {
    let t = from_fixture("classic");
    assert_eq!(
        errors(&options(&t, "node3")),
        vec![format!(
            "{}: this node 'node3' is not in any node line (nodes: node1.example.com, \
             node2.example.com); node names must match uname -n",
            t.path().join("ha.cf:0").display()
        )]
    );
}

#[test]
fn unknown_preferred_node() {
    let t = from_fixture("classic");
    t.write(
        "haresources",
        b"node1.example.com httpd\nnode3.example.com 10.0.0.5\n",
        0o644,
    );
    assert_eq!(
        errors(&options(&t, "node1.example.com")),
        vec![format!(
            "{}/haresources:2: preferred node 'node3.example.com' is not a node in {}/ha.cf",
            t.path().display(),
            t.path().display()
        )]
    );
}

#[test]
fn keyfile_readable_by_others_is_refused() {
    let t = from_fixture("classic");
    for mode in [0o644, 0o640, 0o604] {
        let p = t.write("authkeys", b"auth 1\n1 sha1 secret\n", mode);
        assert_eq!(
            errors(&options(&t, "node1.example.com")),
            vec![format!(
                "{}:0: Bad permissions on keyfile [{}], 600 recommended.",
                p.display(),
                p.display()
            )]
        );
    }
    t.write("authkeys", b"auth 1\n1 sha1 secret\n", 0o400);
    load(&options(&t, "node1.example.com")).unwrap();
}

#[test]
fn missing_script_and_script_dir_order() {
    let t = from_fixture("classic");
    t.write("haresources", b"node1.example.com httpd mysql\n", 0o644);
    let opts = options(&t, "node1.example.com");
    assert_eq!(
        errors(&opts),
        vec![format!(
            "{}/haresources:1: resource script 'mysql' not found as an executable file in {}/resource.d",
            t.path().display(),
            t.path().display()
        )]
    );
    // Not executable: not a script.
    t.write("resource.d/mysql", b"#!/bin/sh\n", 0o644);
    assert_eq!(errors(&opts).len(), 1);
    // The first directory with an executable wins.
    t.write("init.d/mysql", b"#!/bin/sh\n", 0o755);
    t.write("init.d/httpd", b"#!/bin/sh\n", 0o755);
    let mut opts = opts;
    opts.script_dirs.push(t.path().join("init.d"));
    let c = load(&opts).unwrap();
    let paths: Vec<PathBuf> = c.groups[0]
        .resources
        .iter()
        .map(|r| match r {
            Resource::Script { path, .. } => path.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        paths,
        vec![
            t.path().join("resource.d/httpd"),
            t.path().join("init.d/mysql")
        ]
    );
}

#[test]
fn every_problem_in_every_file_is_reported() {
    let t = TempDir::new("all");
    t.write(
        "ha.cf",
        b"keepalive 2\ndeadtime 3\nbcast eth1\nnode a\nfoo\n",
        0o644,
    );
    t.write("haresources", b"a 10.0.0.999\nb httpd\n", 0o644);
    let ak = t.write("authkeys", b"auth 1\n1 md5\n", 0o644);
    let d = t.path().display();
    assert_eq!(
        errors(&LoadOptions {
            config_dir: t.path().to_path_buf(),
            node_name: "a".into(),
            script_dirs: vec![],
            local_addrs: Vec::new(),
        }),
        vec![
            format!("{d}/ha.cf:5: unknown directive 'foo'"),
            format!("{d}/ha.cf:2: deadtime (3000 ms) must be more than twice keepalive (2000 ms)"),
            format!("{d}/haresources:1: bad IP address '10.0.0.999'"),
            format!("{d}/haresources:2: resource script 'httpd' not found (no script directories)"),
            format!("{d}/haresources:2: preferred node 'b' is not a node in {d}/ha.cf"),
            format!(
                "{}:0: Bad permissions on keyfile [{}], 600 recommended.",
                ak.display(),
                ak.display()
            ),
            format!("{d}/authkeys:2: method md5 requires a key"),
        ]
    );
}

#[test]
fn missing_files_and_empty_files() {
    let t = TempDir::new("missing");
    let d = t.path().display();
    let opts = LoadOptions::new(t.path(), "a");
    assert_eq!(
        errors(&opts),
        vec![
            format!("{d}/ha.cf:0: cannot read: No such file or directory (os error 2)"),
            format!("{d}/haresources:0: cannot read: No such file or directory (os error 2)"),
            format!("{d}/authkeys:0: cannot read: No such file or directory (os error 2)"),
        ]
    );
    t.write("ha.cf", b"", 0o644);
    t.write("haresources", b"", 0o644);
    t.write("authkeys", b"", 0o600);
    assert_eq!(
        errors(&opts),
        vec![
            format!("{d}/ha.cf:0: file is empty: no directives"),
            format!(
                "{d}/authkeys:0: missing auth directive: add 'auth N' naming the key to sign with"
            ),
        ]
    );
}

#[test]
fn autojoin_any_adds_the_local_node() {
    let t = from_fixture("classic");
    t.write(
        "ha.cf",
        b"bcast eth1\nautojoin any\nauto_failback on\n",
        0o644,
    );
    t.write("haresources", b"", 0o644);
    let c = load(&options(&t, "newnode")).unwrap();
    assert_eq!(c.ha_cf.nodes, vec!["newnode"]);
}

#[test]
fn default_script_dirs_are_resource_d_then_init_d() {
    assert_eq!(
        default_script_dirs(Path::new("/etc/ha.d")),
        vec![
            PathBuf::from("/etc/ha.d/resource.d"),
            PathBuf::from("/etc/init.d")
        ]
    );
    assert_eq!(
        LoadOptions::new("/x", "n").script_dirs,
        vec![PathBuf::from("/x/resource.d"), PathBuf::from("/etc/init.d")]
    );
}

/// Heartbeat's ha.cf(5): "ucast directives which go to the local machine are effectively
/// ignored. This allows the ha.cf directives on all machines to be identical." hb leaves such a
/// medium out (no link, no heartbeats sent to itself), with a warning naming the line.
#[test]
fn a_ucast_to_this_machine_is_left_out_so_one_ha_cf_serves_both_nodes() {
    let t = TempDir::new("ucast-self");
    t.write(
        "ha.cf",
        b"keepalive 1\ndeadtime 10\nudpport 694\nucast eth1 10.0.0.1\nucast eth1 10.0.0.2\n\
          node a\nnode b\nauto_failback on\n",
        0o644,
    );
    t.write("haresources", b"a 10.0.0.100\n", 0o644);
    t.write("authkeys", b"auth 1\n1 sha1 secret\n", 0o600);
    let ucast = |a: &str| Media::Ucast {
        iface: "eth1".into(),
        addr: a.parse().unwrap(),
    };
    let d = t.path().display();
    // Node a, whose address is 10.0.0.1 (among others).
    let mut opts = options(&t, "a");
    opts.local_addrs = vec!["127.0.0.1".parse().unwrap(), "10.0.0.1".parse().unwrap()];
    let c = load(&opts).unwrap();
    assert_eq!(c.ha_cf.media, vec![ucast("10.0.0.2")]);
    let w: Vec<String> = c.warnings.iter().map(ToString::to_string).collect();
    assert!(
        w.contains(&format!(
            "{d}/ha.cf:4: ucast eth1 10.0.0.1: an address of this machine; ignored, as \
             Heartbeat does (one ha.cf can serve every node)"
        )),
        "{w:?}"
    );
    // Node b, the same file.
    let mut opts = options(&t, "b");
    opts.local_addrs = vec!["10.0.0.2".parse().unwrap()];
    assert_eq!(load(&opts).unwrap().ha_cf.media, vec![ucast("10.0.0.1")]);
    // Addresses not known (the default): every line is a medium, as before.
    assert_eq!(
        load(&options(&t, "a")).unwrap().ha_cf.media,
        vec![ucast("10.0.0.1"), ucast("10.0.0.2")]
    );
    // Nothing left: refused, at the first line left out.
    opts.local_addrs = vec!["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()];
    let e = errors(&opts);
    assert!(
        e.contains(&format!(
            "{d}/ha.cf:4: no heartbeat medium left: every ucast line names an address of this \
             machine; add one with the peer's address"
        )),
        "{e:?}"
    );
}
