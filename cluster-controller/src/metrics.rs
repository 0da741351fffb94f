//! Prometheus metrics of the controller (prefix `lvmpin_controller_`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    /// reselect, keep, bad_policy, recreate, remove_volume
    pub action: &'static str,
    /// done, skipped (the object changed first), failed
    pub result: &'static str,
}

#[derive(Clone, Default)]
pub struct Metrics {
    pub node_loss_actions: Family<ActionLabels, Counter>,
    pub gone_nodes: Gauge,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("lvmpin_controller");
        r.register(
            "node_loss_actions",
            "Actions taken for claims and volumes of nodes that are gone or whose agent is silent",
            m.node_loss_actions.clone(),
        );
        r.register(
            "gone_nodes",
            "Nodes lvmpin still refers to whose Node object has been gone for the grace period",
            m.gone_nodes.clone(),
        );
        m
    }

    pub fn action(&self, action: &'static str, result: &'static str) {
        self.node_loss_actions
            .get_or_create(&ActionLabels { action, result })
            .inc();
    }
}
