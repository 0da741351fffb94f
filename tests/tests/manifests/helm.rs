//! The Helm chart (`charts/lvmpin`) as the real helm renders it
//! (`hack/helm/build.sh` builds helm.sh/helm/v3 cmd/helm): the renders are
//! compared object by object with the kustomize installs, and fed to the same
//! checks as `manifests/` (references, RBAC, flags, host access).

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::kustomize::Located;
use super::load;

pub use lvmpin_e2e::helm::{chart_dir, helm, run};

/// `helm template` of the chart into namespace lvmpin-system with `--set`s.
pub fn template(helm: &Path, sets: &[&str]) -> Result<String, String> {
    let chart = chart_dir();
    let chart = chart.to_string_lossy();
    let mut args = vec![
        "template",
        "lvmpin",
        chart.as_ref(),
        "--namespace",
        "lvmpin-system",
    ];
    for s in sets {
        args.extend(["--set", s]);
    }
    run(helm, &args)
}

/// The YAML documents of a multi-document text, as JSON values.
pub fn documents(text: &str) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let v = Value::deserialize(de).map_err(|e| format!("document {i}: {e}"))?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

/// (kind, namespace, name) of a document.
pub fn key(v: &Value) -> String {
    let s = |p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or("");
    format!(
        "{} {}/{}",
        s("/kind"),
        s("/metadata/namespace"),
        s("/metadata/name")
    )
}

/// Rendered documents as typed objects for the install checks.
pub fn located(docs: &[Value]) -> Result<Vec<Located>, Vec<String>> {
    let mut out = Vec::new();
    let mut errs = Vec::new();
    for (i, d) in docs.iter().enumerate() {
        match load::parse_object(d) {
            Ok(object) => out.push(Located {
                origin: format!("helm template#{i} ({})", key(d)),
                object,
            }),
            Err(e) => errs.push(format!("helm template#{i} ({}): {e}", key(d))),
        }
    }
    if errs.is_empty() { Ok(out) } else { Err(errs) }
}

/// Object-by-object differences between two sets of documents, by key;
/// `left`/`right` name the sides in the messages.
pub fn compare(left: (&str, &[Value]), right: (&str, &[Value])) -> Vec<String> {
    let index = |docs: &[Value]| -> std::collections::BTreeMap<String, Value> {
        docs.iter().map(|d| (key(d), d.clone())).collect()
    };
    let (l, r) = (index(left.1), index(right.1));
    let mut errs = Vec::new();
    for (k, lv) in &l {
        match r.get(k) {
            None => errs.push(format!("{k}: in {} only", left.0)),
            Some(rv) => {
                let at = load::first_difference(lv, rv, String::new())
                    .or_else(|| load::first_difference(rv, lv, String::new()));
                if let Some(at) = at {
                    errs.push(format!("{k}: {} and {} differ at {at}", left.0, right.0));
                }
            }
        }
    }
    for k in r.keys().filter(|k| !l.contains_key(*k)) {
        errs.push(format!("{k}: in {} only", right.0));
    }
    errs
}

/// The raw documents behind resolved kustomize objects (their origins are
/// `file#index`), so that fields the typed objects drop are compared too.
pub fn raw_documents(
    files: &std::collections::BTreeMap<String, String>,
    objs: &[Located],
) -> Result<Vec<Value>, String> {
    objs.iter()
        .map(|l| {
            let (file, index) = l
                .origin
                .rsplit_once('#')
                .ok_or_else(|| format!("origin {} has no #index", l.origin))?;
            let i: usize = index.parse().map_err(|e| format!("{}: {e}", l.origin))?;
            let docs = documents(files.get(file).map(String::as_str).unwrap_or(""))
                .map_err(|e| format!("{file}: {e}"))?;
            docs.get(i)
                .cloned()
                .ok_or_else(|| format!("{}: no such document", l.origin))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_names_missing_and_changed_objects() {
        let a = documents(
            "kind: A\nmetadata: {name: x}\nspec: {n: 1}\n---\nkind: B\nmetadata: {name: y}\n",
        )
        .unwrap();
        let b = documents(
            "kind: A\nmetadata: {name: x}\nspec: {n: 2}\n---\nkind: C\nmetadata: {name: z}\n",
        )
        .unwrap();
        let errs = compare(("k", &a), ("h", &b));
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].contains("A /x") && errs[0].contains(".spec.n"));
        assert!(compare(("k", &a), ("h", &a)).is_empty());
    }
}
