//! Small helpers around kube's API calls.

use kube::api::Patch;
use serde_json::Value;

use crate::error::Result;

/// A JSON patch (RFC 6902) from its JSON form.
pub fn json_patch(ops: Value) -> Result<Patch<Value>> {
    Ok(Patch::Json(serde_json::from_value::<json_patch::Patch>(
        ops,
    )?))
}

pub fn is_status(err: &kube::Error, code: u16) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == code)
}

pub fn is_not_found(err: &kube::Error) -> bool {
    is_status(err, 404)
}

pub fn is_conflict(err: &kube::Error) -> bool {
    is_status(err, 409)
}
