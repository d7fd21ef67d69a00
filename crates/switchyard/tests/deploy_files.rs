//! The files under deploy/ match the code: the relay configs load, and every metric that the
//! Grafana dashboard and the Prometheus config refer to is one the server exports.

use std::path::Path;
use std::sync::Arc;

use switchyard::metrics::MetricsSources;

fn repository_file(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

#[test]
fn deploy_relay_configs_load() {
    for name in ["node.toml", "relay-a.toml", "relay-b.toml"] {
        let path = repository_file(&format!("deploy/turn/{name}"));
        let config = switchyard::turn_config::load(&path)
            .unwrap_or_else(|error| panic!("{name} does not load: {error:?}"));
        assert_eq!(
            config.static_auth_secrets,
            ["replace-with-the-shared-secret"],
            "{name} must share the secret of the other relays"
        );
    }
}

#[test]
fn dashboard_metrics_are_exported() {
    let dashboard =
        std::fs::read_to_string(repository_file("deploy/grafana/dashboards/switchyard.json"))
            .expect("read the dashboard");
    let _: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");

    let exported = MetricsSources {
        sfu: Arc::default(),
        turn: Some(Arc::default()),
    }
    .render();
    let families: Vec<&str> = exported
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split(' ').next())
        .collect();

    let mut referenced = 0;
    for (start, _) in dashboard.match_indices("switchyard_") {
        let name: String = dashboard[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let family = name.strip_suffix("_bucket").unwrap_or(&name);
        assert!(
            families.contains(&family),
            "the dashboard uses {name}, which the server does not export"
        );
        referenced += 1;
    }
    assert!(
        referenced > 20,
        "the dashboard refers to only {referenced} metrics"
    );
}
