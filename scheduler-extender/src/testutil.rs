//! The extender's own test objects (facts), shared by unit tests,
//! integration tests and the benchmark; compiled only for them (feature
//! `testutil`, which the crate's dev-dependency on itself turns on).

use lvmpin_testkit::ClaimBuilder;

use crate::facts::{ClaimFacts, ClassFacts, LvmFacts, NodeLvm, PodFacts, VgState, claim_facts};

/// A ReadWriteOnce claim in namespace `ns` of class `fast`, uid `uid-<name>`,
/// built with the one claim builder of lvmpin-testkit.
pub fn claim_named(name: &str) -> ClaimBuilder {
    ClaimBuilder::new("ns", name, &format!("uid-{name}")).class("fast")
}

/// What the extender keeps of a built claim.
pub trait IntoFacts {
    fn facts(self) -> ClaimFacts;
}

impl IntoFacts for ClaimBuilder {
    fn facts(self) -> ClaimFacts {
        match claim_facts(&self.build()) {
            Some(c) => c,
            None => unreachable!("the builder always sets namespace and name"),
        }
    }
}

pub fn class(name: &str, vg: Option<&str>) -> ClassFacts {
    ClassFacts {
        name: name.into(),
        ours: true,
        volume_group: vg.map(Into::into),
        thin_pool: None,
    }
}

/// A pod `p` (uid `pod-uid`) in namespace `ns` mounting the named claims.
pub fn pod_with(claims: &[&str]) -> PodFacts {
    PodFacts {
        uid: "pod-uid".into(),
        namespace: "ns".into(),
        name: "p".into(),
        node: None,
        owner: None,
        claims: claims.iter().map(|c| c.to_string()).collect(),
    }
}

/// A node report with one healthy VG.
pub fn lvm_node(node: &str, vg: &str, size: u64, free: u64, extent: u64) -> LvmFacts {
    LvmFacts {
        node: node.into(),
        lvm: Some(NodeLvm {
            vgs: vec![VgState {
                name: vg.into(),
                size,
                free,
                extent,
                healthy: true,
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}
