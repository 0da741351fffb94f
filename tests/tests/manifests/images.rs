//! The images (images/*.Dockerfile) hold what the binaries run and no more.
//! There is no container engine in CI: the Dockerfiles are parsed, and the
//! programs the agent executes are read from its source.

use std::collections::BTreeSet;

/// Debian package of each program the agent runs (checked with `dpkg -S` on
/// Debian 12). `thin_check` is run by lvm itself when it activates a thin
/// pool (lvm.conf(5), global/thin_check_executable).
pub const PROGRAM_PACKAGES: &[(&str, &str)] = &[
    ("lvm", "lvm2"),
    ("thin_check", "thin-provisioning-tools"),
    ("blkid", "util-linux"),
    ("mkfs.ext4", "e2fsprogs"),
    ("resize2fs", "e2fsprogs"),
    ("mkfs.xfs", "xfsprogs"),
    ("xfs_growfs", "xfsprogs"),
];

/// Programs lvm runs on its own behalf.
pub const RUN_BY_LVM: &[&str] = &["thin_check"];

/// Programs named in source: `run("x"`, `run_unchecked("x"`, match arms
/// `=> ("x", vec![` (program and arguments), and the default of a clap
/// field whose name ends in `_binary`.
pub fn programs_in_source(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for pat in ["run(\"", "run_unchecked(\""] {
        for part in text.split(pat).skip(1) {
            if let Some(p) = part.split('"').next() {
                out.insert(p.to_string());
            }
        }
    }
    for part in text.split("=> (\"").skip(1) {
        if let Some((p, rest)) = part.split_once('"')
            && rest.trim_start().starts_with(", vec![")
        {
            out.insert(p.to_string());
        }
    }
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    for (i, l) in lines.iter().enumerate() {
        if l.starts_with("pub ") && l.contains("_binary:") && i > 0 {
            let attr = lines[i - 1];
            if let Some(v) = attr
                .split("default_value = ")
                .nth(1)
                .and_then(literal_after_quote)
            {
                out.insert(v);
            }
        }
    }
    out
}

fn literal_after_quote(s: &str) -> Option<String> {
    s.strip_prefix('"')?.split('"').next().map(str::to_string)
}

/// The final stage of a Dockerfile: its FROM line and the packages its
/// `apt-get install` lines name.
pub fn final_stage(dockerfile: &str) -> (String, BTreeSet<String>, bool) {
    let text = dockerfile.replace("\\\n", " ");
    let stage: Vec<&str> = text.lines().map(str::trim).collect();
    let start = stage
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .unwrap_or(0);
    let stage = &stage[start..];
    let from = stage.first().map(|l| l.to_string()).unwrap_or_default();
    let mut packages = BTreeSet::new();
    let mut runs = false;
    for l in stage {
        if l.starts_with("RUN ") {
            runs = true;
        }
        for cmd in l.split("&&") {
            let words: Vec<&str> = cmd.split_whitespace().collect();
            if let Some(i) = words.windows(2).position(|w| w == ["apt-get", "install"]) {
                packages.extend(
                    words[i + 2..]
                        .iter()
                        .filter(|w| !w.starts_with('-'))
                        .map(|w| w.to_string()),
                );
            }
        }
    }
    (from, packages, runs)
}

/// Problems of the agent image given the programs the code runs.
pub fn check_agent_image(programs: &BTreeSet<String>, installed: &BTreeSet<String>) -> Vec<String> {
    let mut errs = Vec::new();
    let mut needed = BTreeSet::new();
    for p in programs
        .iter()
        .map(String::as_str)
        .chain(RUN_BY_LVM.iter().copied())
    {
        match PROGRAM_PACKAGES.iter().find(|(prog, _)| *prog == p) {
            Some((_, pkg)) => {
                needed.insert(pkg.to_string());
            }
            None => errs.push(format!(
                "the agent runs {p}: add its Debian package to PROGRAM_PACKAGES in tests/tests/manifests/images.rs"
            )),
        }
    }
    for pkg in needed.difference(installed) {
        errs.push(format!("images/agent.Dockerfile does not install {pkg}"));
    }
    for pkg in installed.difference(&needed) {
        errs.push(format!(
            "images/agent.Dockerfile installs {pkg}, which no program the agent runs needs"
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_and_packages_are_parsed() {
        let src = "let out = command::run_unchecked(\"blkid\", &args, t)?;\n FsType::Ext4 => (\"mkfs.ext4\", vec![x]),\n #[arg(long, default_value = \"lvm\")]\n pub lvm_binary: PathBuf,\n let m = (\"not a program\", 3);";
        let got = programs_in_source(src);
        assert_eq!(got, ["blkid", "lvm", "mkfs.ext4"].map(String::from).into());
        let docker = "FROM rust AS build\nRUN apt-get install -y gcc\nFROM debian:bookworm-slim\nRUN apt-get update \\\n && apt-get install -y --no-install-recommends \\\n      lvm2 e2fsprogs \\\n && rm -rf /x\n";
        let (from, pkgs, runs) = final_stage(docker);
        assert_eq!(from, "FROM debian:bookworm-slim");
        assert_eq!(pkgs, ["e2fsprogs", "lvm2"].map(String::from).into());
        assert!(runs);
        let errs = check_agent_image(
            &["lvm".into(), "mkfs.xfs".into(), "cat".into()].into(),
            &pkgs,
        );
        assert_eq!(errs.len(), 4, "{errs:?}");
    }
}
