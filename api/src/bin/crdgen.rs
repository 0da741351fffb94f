//! Prints the CRDs as YAML; `manifests/base/crds.yaml` is this output, checked in
//! (`tests/tests/manifests.rs` fails when it drifts).
#![forbid(unsafe_code)]

use kube::CustomResourceExt;

fn main() -> Result<(), serde_yaml::Error> {
    print!("{}", serde_yaml::to_string(&lvmpin_api::LvmNode::crd())?);
    Ok(())
}
