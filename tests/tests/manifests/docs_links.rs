//! The docs must point at things that exist: relative links (and their
//! `#anchors`), and repository paths written in backticks.

use std::path::Path;

/// GitHub's heading anchor: lower case, spaces to '-', punctuation dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(markdown: &str) -> Vec<String> {
    markdown
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| slug(l.trim_start_matches('#')))
        .collect()
}

/// Problems with the links and paths in one markdown file of `docs/`.
pub fn check_doc(repo: &Path, name: &str, text: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let docs = repo.join("docs");
    let mut rest = text;
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        let Some(end) = rest.find(')') else { break };
        let target = &rest[..end];
        if target.starts_with("http") || target.contains(' ') {
            continue;
        }
        let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
        let file_text = if file.is_empty() {
            Some(text.to_string())
        } else {
            std::fs::read_to_string(docs.join(file)).ok()
        };
        match file_text {
            None => errs.push(format!("docs/{name}: link to missing {file}")),
            Some(t) if !anchor.is_empty() && !anchors(&t).iter().any(|a| a == anchor) => {
                errs.push(format!("docs/{name}: link to missing anchor {target}"))
            }
            _ => {}
        }
    }
    for (i, chunk) in text.split('`').enumerate() {
        let is_code = i % 2 == 1;
        let is_path = ["manifests/", "hack/", "images/", "tests/", "docs/"]
            .iter()
            .any(|p| chunk.starts_with(p));
        if !is_code || !is_path || chunk.contains([' ', '*', '<', '{']) {
            continue;
        }
        if !repo.join(chunk.trim_end_matches('/')).exists() {
            errs.push(format!("docs/{name}: `{chunk}` does not exist"));
        }
    }
    errs
}
