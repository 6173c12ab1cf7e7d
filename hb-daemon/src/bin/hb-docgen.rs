//! `hb-docgen OUTDIR`: the generated parts of the Debian package (`cargo xtask package` runs it;
//! it is not shipped).
//!
//! ```text
//! OUTDIR/man/hbd.8 hbctl.8 hbstat.8      from the clap definitions (clap_mangen)
//! OUTDIR/man/hb-ha.cf.5                   hb's ha.cf additions, from docs/configuration.md
//! OUTDIR/completions/bash/hbd ...         bash, zsh (_hbd) and fish (hbd.fish) completions
//! ```
//!
//! The binaries' own argument definitions are compiled in here (each `src/bin/*.rs` as a
//! module), so a page can never describe options a binary does not have.

use std::{
    fs,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context as _, Result, bail};
use clap::CommandFactory as _;
use clap_complete::Shell;

#[allow(dead_code)]
#[path = "hbd.rs"]
mod hbd;

#[allow(dead_code)]
#[path = "hbctl.rs"]
mod hbctl;

#[allow(dead_code)]
#[path = "hbstat.rs"]
mod hbstat;

/// docs/configuration.md, whose "hb's additions" table becomes hb-ha.cf(5).
const CONFIGURATION_MD: &str = include_str!("../../../docs/configuration.md");

/// Each binary's clap command and its man section.
fn commands() -> Vec<(clap::Command, &'static str)> {
    vec![
        (hbd::Args::command(), "8"),
        (hbctl::Cli::command(), "8"),
        (hbstat::Cli::command(), "8"),
    ]
}

fn write(path: &Path, data: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(path, data).with_context(|| format!("writing {}", path.display()))
}

/// Escapes text for roff: backslashes, and a leading `.` or `'` (a request otherwise).
fn roff_escape(s: &str) -> String {
    let s = s.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

/// Markdown inline code (`x`) to bold, the rest escaped.
fn roff_inline(s: &str) -> String {
    let mut out = String::new();
    for (i, part) in s.split('`').enumerate() {
        if i % 2 == 1 {
            out += &format!("\\fB{}\\fR", roff_escape(part));
        } else {
            out += &roff_escape(part);
        }
    }
    out
}

/// The rows (directive, values, default, meaning) of the table under `### hb's additions`.
fn hb_additions(md: &str) -> Result<Vec<[String; 4]>> {
    let mut rows = Vec::new();
    let mut inside = false;
    for line in md.lines() {
        if line.starts_with("### ") {
            if inside {
                break;
            }
            inside = line.trim() == "### hb's additions";
            continue;
        }
        if !inside || !line.starts_with("| `") {
            continue;
        }
        // Cells may be empty (`| |`); a `|` inside the last cell stays in it.
        let cells: Vec<&str> = line.trim().trim_matches('|').splitn(4, '|').collect();
        let [directive, values, default, meaning] = cells.as_slice() else {
            bail!("docs/configuration.md: a row of hb's additions without 4 cells: {line}");
        };
        let default = match default.trim() {
            "" => "none",
            d => d,
        };
        rows.push([
            directive.trim().to_owned(),
            values.trim().to_owned(),
            default.to_owned(),
            meaning.trim().to_owned(),
        ]);
    }
    if rows.is_empty() {
        bail!("docs/configuration.md has no \"### hb's additions\" table");
    }
    Ok(rows)
}

/// hb-ha.cf(5): the directives hb adds to Heartbeat's ha.cf.
fn ha_cf_page(md: &str, version: &str) -> Result<String> {
    let mut page = format!(
        ".TH HB\\-HA.CF 5 \"\" \"hb {version}\" \"File Formats\"\n\
         .SH NAME\n\
         hb\\-ha.cf \\- hb's additions to Heartbeat's ha.cf\n\
         .SH SYNOPSIS\n\
         .B /etc/ha.d/ha.cf\n\
         .SH DESCRIPTION\n\
         \\fBhbd\\fR(8) reads Heartbeat's \\fI/etc/ha.d/ha.cf\\fR, \\fIharesources\\fR and \
         \\fIauthkeys\\fR unchanged. Every Heartbeat directive hb accepts is either done or warned \
         about by name; \\fBhbd \\-\\-check\\fR prints the effective configuration and every \
         warning. The directives below are hb's own; Heartbeat does not know them, so a file that \
         uses them is for hb only.\n\
         .SH DIRECTIVES\n"
    );
    for [directive, values, default, meaning] in hb_additions(md)? {
        page += &format!(
            ".TP\n{} {}\n{}\n.br\nDefault: {}.\n",
            roff_inline(&directive),
            roff_inline(&values),
            roff_inline(&meaning),
            roff_inline(&default),
        );
    }
    page += ".SH FILES\n\
             .TP\n\\fI/etc/ha.d/ha.cf\\fR\nthe cluster configuration\n\
             .TP\n\\fI/usr/share/doc/hb/examples/\\fR\nexample ha.cf, haresources and authkeys\n\
             .SH SEE ALSO\n\\fBhbd\\fR(8), \\fBhbctl\\fR(8), \\fBhbstat\\fR(8)\n";
    Ok(page)
}

fn generate(out: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (mut cmd, section) in commands() {
        let name = cmd.get_name().to_owned();
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd.clone())
            .section(section)
            .manual("System Administration")
            .source(format!("hb {}", env!("CARGO_PKG_VERSION")))
            .render(&mut page)
            .with_context(|| format!("rendering {name}.{section}"))?;
        let path = out.join("man").join(format!("{name}.{section}"));
        write(&path, &page)?;
        written.push(path);
        for (shell, dir, file) in [
            (Shell::Bash, "bash", name.clone()),
            (Shell::Zsh, "zsh", format!("_{name}")),
            (Shell::Fish, "fish", format!("{name}.fish")),
        ] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, &name, &mut script);
            let path = out.join("completions").join(dir).join(file);
            write(&path, &script)?;
            written.push(path);
        }
    }
    let path = out.join("man/hb-ha.cf.5");
    write(
        &path,
        ha_cf_page(CONFIGURATION_MD, env!("CARGO_PKG_VERSION"))?.as_bytes(),
    )?;
    written.push(path);
    Ok(written)
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        eprintln!("usage: hb-docgen OUTDIR");
        return ExitCode::from(2);
    };
    match generate(Path::new(&out)) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hb-docgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ha_cf_page_lists_every_hb_addition() {
        let rows = hb_additions(CONFIGURATION_MD).unwrap();
        let page = ha_cf_page(CONFIGURATION_MD, "0.0.0").unwrap();
        for [directive, ..] in &rows {
            let name = directive.trim_matches('`');
            assert!(
                page.contains(&format!("\\fB{}\\fR", roff_escape(name))),
                "{name} missing from hb-ha.cf.5"
            );
        }
        assert!(rows.iter().any(|r| r[0] == "`xdp`"), "{rows:?}");
        // Nothing from the next section (directives hb ignores) leaks in.
        assert!(!rows.iter().any(|r| r[0].contains("apiauth")), "{rows:?}");
    }

    #[test]
    fn roff_escaping() {
        assert_eq!(roff_escape(".x"), "\\&.x");
        assert_eq!(roff_escape("a\\b-c"), "a\\eb\\-c");
        assert_eq!(
            roff_inline("use `on` or `off`"),
            "use \\fBon\\fR or \\fBoff\\fR"
        );
    }

    #[test]
    fn generates_pages_and_completions() {
        let dir = tempfile::tempdir().unwrap();
        let files = generate(dir.path()).unwrap();
        assert_eq!(files.len(), 3 * 4 + 1, "{files:?}");
        let hbd = fs::read_to_string(dir.path().join("man/hbd.8")).unwrap();
        assert!(hbd.contains("\\-\\-config\\-dir"), "{hbd}");
        let bash = fs::read_to_string(dir.path().join("completions/bash/hbctl")).unwrap();
        assert!(bash.contains("standby"), "{bash}");
    }
}
