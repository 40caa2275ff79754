//! What the in-process actor tests share: a node configuration with fast restarts, and
//! starting a node on a data dir.

use std::time::Duration;

use larder_actors::store::Store;
use larder_actors::supervision::RestartPolicy;
use larder_actors::{Node, NodeConfig};

/// Users never idle out during a test; restarts are quick.
pub fn config() -> NodeConfig {
    NodeConfig {
        idle_timeout: Duration::from_secs(3600),
        call_timeout: Duration::from_secs(5),
        restart: RestartPolicy {
            base: Duration::from_millis(20),
            max: Duration::from_millis(200),
            reset_after: Duration::from_secs(60),
        },
        ..NodeConfig::default()
    }
}

pub async fn start(dir: &std::path::Path, config: NodeConfig) -> Node {
    Node::start(Store::open(dir).unwrap(), config)
        .await
        .unwrap()
}
