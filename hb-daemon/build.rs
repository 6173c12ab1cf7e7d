//! Builds the XDP program (`hb-ebpf`) for `bpfel-unknown-none` with the pinned nightly and
//! bpf-linker (installed by `cargo xtask`), and places the object in `OUT_DIR`.
use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

/// The nightly whose LLVM matches bpf-linker's (LLVM 22). Keep in sync with xtask's bootstrap.
const EBPF_TOOLCHAIN: &str = "nightly-2026-05-20";

fn main() -> anyhow::Result<()> {
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("MetadataCommand::exec")?;
    let ebpf_package = packages
        .into_iter()
        .find(|cargo_metadata::Package { name, .. }| name.as_str() == "hb-ebpf")
        .ok_or_else(|| anyhow!("hb-ebpf package not found"))?;
    let cargo_metadata::Package {
        name,
        manifest_path,
        ..
    } = ebpf_package;
    let root_dir = manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {manifest_path}"))?
        .as_str();
    let ebpf_package = aya_build::Package {
        name: name.as_str(),
        root_dir,
        ..Default::default()
    };
    aya_build::build_ebpf([ebpf_package], Toolchain::Custom(EBPF_TOOLCHAIN))
}
