//! ownerReference garbage collection, run when an owner is removed for good.
//!
//! As the real collector does in background mode: a dependent whose owners
//! are all gone is deleted (honouring its own finalizers); one that still has a
//! live owner only loses the dangling reference. With `Orphan` the dependents
//! keep living and lose the reference to the removed owner.
//!
//! Removing a namespace likewise removes everything in it.

use super::meta;
use super::store::{ObjKey, Store};

impl Store {
    pub(super) fn collect_dependents(&mut self, owner_uid: String, orphan: bool) {
        if owner_uid.is_empty() {
            return;
        }
        let Some(deps) = self.dependents.remove(&owner_uid) else {
            return;
        };
        for (key, ok) in deps {
            self.collect_one(&key, &ok, &owner_uid, orphan);
        }
    }

    /// A removed namespace takes its objects with it (the namespace
    /// controller's job in a real cluster, done at once here).
    pub(super) fn empty_namespace(&mut self, ns: &str) {
        let doomed: Vec<(String, ObjKey)> = self
            .objects
            .iter()
            .flat_map(|(k, m)| {
                m.keys()
                    .filter(|ok| ok.0 == ns)
                    .map(move |ok| (k.clone(), ok.clone()))
            })
            .collect();
        for (k, ok) in doomed {
            self.delete_object(&k, &ok, false);
        }
    }

    fn collect_one(&mut self, key: &str, ok: &ObjKey, owner_uid: &str, orphan: bool) {
        let Some(dep) = self.objects_get(key, ok) else {
            return;
        };
        let live_owner = meta::owner_uids(&dep)
            .iter()
            .any(|u| u != owner_uid && self.uids.contains_key(u));
        if orphan || live_owner {
            let mut new = (*dep).clone();
            let uids = &self.uids;
            meta::retain_owners(&mut new, |u| {
                u != owner_uid && (orphan || uids.contains_key(u))
            });
            if !meta::same_content(&dep, &new) {
                self.write(key, new, Some(dep));
            }
        } else {
            self.delete_object(key, ok, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::apiserver::meta::{self, UpdateScope};
    use crate::apiserver::patch::PatchKind;
    use crate::apiserver::store::{DeleteOptions, Store};
    use serde_json::json;

    fn owned(name: &str, owners: &[&str]) -> serde_json::Value {
        let refs: Vec<_> = owners
            .iter()
            .map(|u| json!({"apiVersion": "v1", "kind": "Pod", "name": "o", "uid": u}))
            .collect();
        json!({"metadata": {"name": name, "ownerReferences": refs}})
    }

    #[test]
    fn deleting_an_owner_deletes_dependents_transitively() {
        let mut s = Store::new(100);
        let pods = s.registry().get("", "v1", "pods").cloned().unwrap();
        let cms = s.registry().get("", "v1", "configmaps").cloned().unwrap();
        let owner = s
            .create(&pods, Some("ns"), json!({"metadata": {"name": "owner"}}))
            .unwrap();
        let ou = meta::uid(&owner).to_string();
        let mid = s.create(&pods, Some("ns"), owned("mid", &[&ou])).unwrap();
        let mu = meta::uid(&mid).to_string();
        s.create(&cms, Some("ns"), owned("leaf", &[&mu])).unwrap();
        s.create(
            &cms,
            Some("ns"),
            json!({"metadata": {"name": "held", "finalizers": ["x"],
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "owner", "uid": ou}]}}),
        )
        .unwrap();
        s.delete(&pods, Some("ns"), "owner", &DeleteOptions::default())
            .unwrap();
        assert_eq!(s.get(&pods, Some("ns"), "mid").unwrap_err().code, 404);
        assert_eq!(s.get(&cms, Some("ns"), "leaf").unwrap_err().code, 404);
        let held = s.get(&cms, Some("ns"), "held").unwrap();
        assert!(
            meta::is_deleting(&held),
            "finalizer keeps it, marked deleting"
        );
        s.patch(
            &cms,
            Some("ns"),
            "held",
            PatchKind::Merge,
            br#"{"metadata":{"finalizers":[]}}"#,
            UpdateScope::Main,
        )
        .unwrap();
        assert_eq!(s.get(&cms, Some("ns"), "held").unwrap_err().code, 404);
    }

    #[test]
    fn a_live_second_owner_keeps_the_dependent() {
        let mut s = Store::new(100);
        let pods = s.registry().get("", "v1", "pods").cloned().unwrap();
        let a = s
            .create(&pods, Some("ns"), json!({"metadata": {"name": "a"}}))
            .unwrap();
        let b = s
            .create(&pods, Some("ns"), json!({"metadata": {"name": "b"}}))
            .unwrap();
        let (au, bu) = (meta::uid(&a).to_string(), meta::uid(&b).to_string());
        s.create(&pods, Some("ns"), owned("d", &[&au, &bu]))
            .unwrap();
        s.delete(&pods, Some("ns"), "a", &DeleteOptions::default())
            .unwrap();
        let d = s.get(&pods, Some("ns"), "d").unwrap();
        assert_eq!(meta::owner_uids(&d), vec![bu]);
        let orphan = DeleteOptions {
            orphan: true,
            ..Default::default()
        };
        s.delete(&pods, Some("ns"), "b", &orphan).unwrap();
        let d = s.get(&pods, Some("ns"), "d").unwrap();
        assert!(meta::owner_uids(&d).is_empty());
    }
}
