//! Kustomization structure: what each `kustomization.yaml` pulls in.
//!
//! Only plain `resources:` lists are modelled (files and directories with their
//! own kustomization), which is all lvmpin's manifests use; `kubectl apply -k`
//! then applies exactly the objects resolved here.

use std::collections::{BTreeMap, BTreeSet};

use super::load::{FileContent, Object};

/// One object and the file (and document index) it came from.
#[derive(Clone, Debug)]
pub struct Located {
    pub origin: String,
    pub object: Object,
}

pub type Tree = BTreeMap<String, FileContent>;

/// Directory part of a relative path ("" for the root).
fn dir_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(d, _)| d)
}

/// Joins and normalises `dir/entry`, resolving "..". None if it leaves the tree.
fn join(dir: &str, entry: &str) -> Option<String> {
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for p in entry.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

fn kustomization_file(dir: &str) -> String {
    if dir.is_empty() {
        "kustomization.yaml".into()
    } else {
        format!("{dir}/kustomization.yaml")
    }
}

/// The objects `kubectl apply -k <dir>` would apply, and the files it reads.
pub fn resolve(
    tree: &Tree,
    dir: &str,
    files_used: &mut BTreeSet<String>,
) -> Result<Vec<Located>, Vec<String>> {
    let kfile = kustomization_file(dir);
    let Some(FileContent::Kustomization(k)) = tree.get(&kfile) else {
        return Err(vec![format!("{kfile}: no kustomization here")]);
    };
    files_used.insert(kfile.clone());
    let mut out = Vec::new();
    let mut errs = Vec::new();
    for entry in &k.resources {
        let Some(target) = join(dir, entry) else {
            errs.push(format!(
                "{kfile}: resource {entry} leaves the manifests tree"
            ));
            continue;
        };
        match tree.get(&target) {
            Some(FileContent::Objects(objs)) => {
                files_used.insert(target.clone());
                out.extend(objs.iter().enumerate().map(|(i, o)| Located {
                    origin: format!("{target}#{i}"),
                    object: o.clone(),
                }));
            }
            Some(_) => errs.push(format!(
                "{kfile}: resource {entry} is not a file of Kubernetes objects"
            )),
            None if tree.contains_key(&kustomization_file(&target)) => {
                match resolve(tree, &target, files_used) {
                    Ok(objs) => out.extend(objs),
                    Err(e) => errs.extend(e),
                }
            }
            None => errs.push(format!(
                "{kfile}: resource {entry} does not exist (no file {target}, no {})",
                kustomization_file(&target)
            )),
        }
    }
    if errs.is_empty() { Ok(out) } else { Err(errs) }
}

/// Kustomization directories that no other kustomization includes.
pub fn top_level(tree: &Tree) -> Vec<String> {
    let dirs: Vec<String> = tree
        .iter()
        .filter(|(_, c)| matches!(c, FileContent::Kustomization(_)))
        .map(|(f, _)| dir_of(f).to_string())
        .collect();
    let mut included = BTreeSet::new();
    for d in &dirs {
        if let Some(FileContent::Kustomization(k)) = tree.get(&kustomization_file(d)) {
            for r in &k.resources {
                if let Some(t) = join(d, r) {
                    included.insert(t);
                }
            }
        }
    }
    dirs.into_iter().filter(|d| !included.contains(d)).collect()
}

/// Files of objects that no kustomization lists: `kubectl apply -k` would
/// silently skip them.
pub fn unlisted_files(tree: &Tree, used: &BTreeSet<String>) -> Vec<String> {
    tree.iter()
        .filter(|(f, c)| matches!(c, FileContent::Objects(_)) && !used.contains(*f))
        .map(|(f, _)| format!("{f} is listed in no kustomization.yaml"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_resolves_parent_directories() {
        assert_eq!(join("control-plane", "../base").as_deref(), Some("base"));
        assert_eq!(join("", "base/x.yaml").as_deref(), Some("base/x.yaml"));
        assert_eq!(join("", "../x"), None);
    }
}
