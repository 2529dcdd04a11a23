//! Configuration files loaded whole: each section's values read, and each invalid value refused
//! with its key named.

use std::path::PathBuf;
use std::time::Duration;

use connectors::sinks::FluvioSettings;

use super::*;

#[test]
fn durations_are_parsed_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tidemark.toml");
    std::fs::write(
        &file,
        "[engine]\ntick = \"250ms\"\n[sender]\nretry_max = \"2m\"\n",
    )
    .unwrap();
    let config = Config::load(Some(&file)).unwrap();
    assert_eq!(config.engine.tick.get(), Duration::from_millis(250));
    assert_eq!(config.sender.retry_max.get(), Duration::from_secs(120));
    std::fs::write(&file, "[sender]\nretry_base = \"1 fortnight\"\n").unwrap();
    let e = Config::load(Some(&file)).unwrap_err().to_string();
    assert!(e.contains("sender.retry_base"), "{e}");
}

#[test]
fn ingest_section_loads_and_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tidemark.toml");
    let range = Config::default().ingest.event_time_range();
    assert_eq!(range, operators::EventTimeRange::default());
    std::fs::write(
        &file,
        "[ingest]\nmin_event_time = \"2015-06-01T09:00:00+09:00\"\nmax_future = \"2h\"\n",
    )
    .unwrap();
    let range = Config::load(Some(&file)).unwrap().ingest.event_time_range();
    assert_eq!(
        (range.earliest_ms, range.max_future_ms),
        (1_433_116_800_000, 7_200_000)
    );
    std::fs::write(&file, "[ingest]\nmin_event_time = \"last year\"\n").unwrap();
    let e = Config::load(Some(&file)).unwrap_err().to_string();
    assert!(e.contains("ingest.min_event_time"), "{e}");
}

#[test]
fn templates_section_loads_and_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tidemark.toml");
    assert_eq!(
        Config::default().templates.limits(),
        crate::generate::TemplateLimits::default()
    );
    std::fs::write(
        &file,
        "[templates]\nfuel = 5000\nmax_bytes = 2048\ntimeout = \"250ms\"\n",
    )
    .unwrap();
    let limits = Config::load(Some(&file)).unwrap().templates.limits();
    assert_eq!(
        (limits.fuel, limits.max_bytes, limits.timeout),
        (5000, 2048, Duration::from_millis(250))
    );
    std::fs::write(&file, "[templates]\nfuel = 10\n").unwrap();
    let e = Config::load(Some(&file)).unwrap_err().to_string();
    assert!(e.contains("templates.fuel"), "{e}");
    std::fs::write(&file, "[templates]\ntimeout = \"0s\"\n").unwrap();
    let e = Config::load(Some(&file)).unwrap_err().to_string();
    assert!(e.contains("templates.timeout"), "{e}");
}

#[test]
fn crm_section_loads_and_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tidemark.toml");
    assert_eq!(
        Config::default().crm.membership_log_retention.get(),
        Duration::from_secs(90 * 86_400)
    );
    std::fs::write(&file, "[crm]\nmembership_log_retention = \"30d\"\n").unwrap();
    let config = Config::load(Some(&file)).unwrap();
    assert_eq!(
        config.crm.membership_log_retention.get(),
        Duration::from_secs(30 * 86_400)
    );
    for (value, problem) in [
        ("\"12h\"", "must be at least 1d"),
        ("\"90 days\"", "unknown unit"),
        ("\"-5d\"", "not a duration"),
    ] {
        std::fs::write(
            &file,
            format!("[crm]\nmembership_log_retention = {value}\n"),
        )
        .unwrap();
        let e = Config::load(Some(&file)).unwrap_err().to_string();
        assert!(
            e.contains("crm.membership_log_retention") && e.contains(problem),
            "{value}: {e}"
        );
    }
    std::fs::write(&file, "[crm]\naudience_workers = 1\n").unwrap();
    assert_eq!(Config::load(Some(&file)).unwrap().crm.audience_workers, 1);
    for workers in [0, 65] {
        std::fs::write(&file, format!("[crm]\naudience_workers = {workers}\n")).unwrap();
        let e = Config::load(Some(&file)).unwrap_err().to_string();
        assert!(
            e.contains("crm.audience_workers") && e.contains("out of range 1..=64"),
            "{workers}: {e}"
        );
    }
    std::fs::write(&file, "[crm]\nmembership_log_retension = \"30d\"\n").unwrap();
    let e = Config::load(Some(&file)).unwrap_err().to_string();
    assert!(e.contains("membership_log_retension"), "{e}");
}

#[test]
fn defaults_are_valid() {
    Config::default().validate().unwrap();
}

#[test]
fn errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tidemark.toml");
    std::fs::write(&file, "[engine]\nworkers = \"many\"\n").unwrap();
    let e = Config::load(Some(&file)).unwrap_err().to_string();
    assert!(e.contains("engine.workers"), "{e}");
    std::fs::write(&file, "[engine]\ntick = \"soon\"\n").unwrap();
    let e = Config::load(Some(&file)).unwrap_err().to_string();
    assert!(e.contains("engine.tick"), "{e}");
    std::fs::write(&file, "[server]\nlisten = \"localhost\"\n").unwrap();
    let e = Config::load(Some(&file)).unwrap_err().to_string();
    assert!(e.contains("server.listen"), "{e}");
    std::fs::write(&file, "[sever]\nlisten = \"127.0.0.1:1\"\n").unwrap();
    let e = Config::load(Some(&file)).unwrap_err().to_string();
    assert!(e.contains("sever"), "{e}");
}

#[test]
fn dashboard_section_loads_and_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tidemark.toml");
    std::fs::write(&file, "data_dir = \"d\"\n[dashboard]\ncache_ttl = \"0s\"\n").unwrap();
    let config = Config::load(Some(&file)).unwrap();
    assert_eq!(config.warehouse_dir(), PathBuf::from("d/warehouse"));
    assert_eq!(config.pgwire_addr().unwrap(), None);
    std::fs::write(&file, "[dashboard]\npgwire_listen = \"127.0.0.1:5433\"\n").unwrap();
    let config = Config::load(Some(&file)).unwrap();
    assert_eq!(config.pgwire_addr().unwrap().map(|a| a.port()), Some(5433));
    std::fs::write(&file, "[dashboard]\npgwire_listen = \"localhost\"\n").unwrap();
    let e = Config::load(Some(&file)).unwrap_err().to_string();
    assert!(e.contains("dashboard.pgwire_listen"), "{e}");
    std::fs::write(&file, "[dashboard]\nquery_timeout = \"forever\"\n").unwrap();
    let e = Config::load(Some(&file)).unwrap_err().to_string();
    assert!(e.contains("dashboard.query_timeout"), "{e}");
}

#[test]
fn outbound_section_loads_and_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tidemark.toml");
    assert!(Config::default().outbound.allow_private_networks.is_empty());
    std::fs::write(
        &file,
        "[outbound]\nallow_private_networks = [\"127.0.0.1/32\", \"10.0.0.0/8\"]\n\
         max_timeout = \"5s\"\n[sender]\nper_tenant = 4\n",
    )
    .unwrap();
    let config = Config::load(Some(&file)).unwrap();
    assert_eq!(config.sender.per_tenant, 4);
    let settings = config.outbound.sink_settings(Vec::new()).unwrap();
    assert_eq!(settings.max_timeout, Duration::from_secs(5));
    assert!(settings.outbound.allows_private_networks());
    std::fs::write(
        &file,
        "[outbound]\nallow_private_networks = [\"intranet\"]\n",
    )
    .unwrap();
    let e = Config::load(Some(&file)).unwrap_err().to_string();
    assert!(
        e.contains("outbound.allow_private_networks") && e.contains("intranet"),
        "{e}"
    );
}

#[test]
fn fluvio_sink_section_loads_and_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tidemark.toml");
    assert!(Config::default().sinks.fluvio.is_none());
    let settings = Config::default().sink_settings(Vec::new()).unwrap();
    assert!(settings.fluvio.is_none() && settings.reserved_topics.is_empty());

    std::fs::write(&file, "[sinks.fluvio]\nendpoint = \"127.0.0.1:9003\"\n").unwrap();
    let config = Config::load(Some(&file)).unwrap();
    let fluvio = config.sink_settings(Vec::new()).unwrap().fluvio.unwrap();
    assert_eq!(fluvio, FluvioSettings::new("127.0.0.1:9003"));
    assert_eq!(fluvio.topic_prefix, "{tenant}-");
    assert_eq!(fluvio.timeout, Duration::from_secs(10));

    std::fs::write(
        &file,
        "[sinks.fluvio]\nendpoint = \"fluvio.internal:9003\"\n\
         topic_prefix = \"tm-{tenant}-\"\ntimeout = \"2s\"\n",
    )
    .unwrap();
    let fluvio = Config::load(Some(&file)).unwrap().sinks.fluvio.unwrap();
    assert_eq!(fluvio.settings().prefix_for("acme"), "tm-acme-");
    assert_eq!(fluvio.timeout.get(), Duration::from_secs(2));

    for (text, expected) in [
        (
            "endpoint = \"localhost\"",
            "sinks.fluvio.endpoint: 'localhost' is not host:port",
        ),
        (
            "endpoint = \"127.0.0.1:9003\"\ntopic_prefix = \"shared-\"",
            "sinks.fluvio.topic_prefix: 'shared-' does not contain {tenant}",
        ),
        (
            "endpoint = \"127.0.0.1:9003\"\ntopic_prefix = \"{tenant}_\"",
            "sinks.fluvio.topic_prefix: '{tenant}_' may hold only",
        ),
        (
            "endpoint = \"127.0.0.1:9003\"\ntimeout = \"soon\"",
            "sinks.fluvio.timeout",
        ),
        (
            "endpoint = \"127.0.0.1:9003\"\ntimeout = \"0s\"",
            "sinks.fluvio.timeout",
        ),
        ("topic_prefix = \"{tenant}-\"", "endpoint"),
        ("endpoint = \"127.0.0.1:9003\"\ntopic = \"x\"", "topic"),
    ] {
        std::fs::write(&file, format!("[sinks.fluvio]\n{text}\n")).unwrap();
        let e = Config::load(Some(&file)).unwrap_err().to_string();
        assert!(e.contains(expected), "{text}: {e}");
    }
}

#[test]
fn source_topics_are_reserved_from_fluvio_destinations() {
    use connectors::sinks::SinkConfig;
    use connectors::sinks::fluvio::config::FluvioConfig;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tidemark.toml");
    std::fs::write(
        &file,
        "[[tenants]]\nid = \"acme\"\napi_key = \"tm_acme_0123456789abcdef\"\n\
         [sinks.fluvio]\nendpoint = \"127.0.0.1:9003\"\n\
         [[sources.fluvio]]\nendpoint = \"127.0.0.1:9003\"\ntopic = \"acme-orders\"\ntenant = \"acme\"\n\
         [[sources.fluvio]]\nname = \"orders-again\"\nendpoint = \"127.0.0.1:9003\"\ntopic = \"acme-orders\"\ntenant = \"acme\"\n",
    )
    .unwrap();
    let config = Config::load(Some(&file)).unwrap();
    let settings = config.sink_settings(Vec::new()).unwrap();
    assert_eq!(settings.reserved_topics, ["acme-orders"]);
    let refused = FluvioConfig::new("acme-orders")
        .validate(&settings)
        .unwrap_err();
    assert!(
        refused.to_string().contains("reads events from"),
        "{refused}"
    );
    FluvioConfig::new("acme-alerts")
        .validate(&settings)
        .unwrap();
}

#[test]
fn query_limits_load_and_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tidemark.toml");
    std::fs::write(
        &file,
        "[dashboard.limits]\nquery_memory_mb = 8\ntotal_memory_mb = 64\nquery_threads = 1\n",
    )
    .unwrap();
    let config = Config::load(Some(&file)).unwrap();
    let limits = config.dashboard.limits.query_limits();
    assert_eq!(limits.query_memory_bytes, 8 * 1024 * 1024);
    assert_eq!(config.dashboard.limits.max_expr_depth, 256);
    for (text, key) in [
        (
            "query_memory_mb = 128\ntotal_memory_mb = 64",
            "query_memory_mb",
        ),
        ("max_expr_depth = 100000", "max_expr_depth"),
        ("query_threads = 0", "query_threads"),
        ("max_sql_bytez = 1", "max_sql_bytez"),
    ] {
        std::fs::write(&file, format!("[dashboard.limits]\n{text}\n")).unwrap();
        let e = Config::load(Some(&file)).unwrap_err().to_string();
        assert!(e.contains(key), "{e}");
    }
}

#[test]
fn secrets_section_loads_and_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tidemark.toml");
    std::fs::write(
        &file,
        "data_dir = \"d\"\n[secrets]\nkek = \"aws\"\nrewrap_batch = 50\n\
         [secrets.aws]\nsecret_id = \"tidemark/kek\"\nregion = \"ap-northeast-2\"\n",
    )
    .unwrap();
    let config = Config::load(Some(&file)).unwrap();
    assert_eq!(config.secrets.kek, KekProvider::Aws);
    assert_eq!(config.secrets.aws.region.as_deref(), Some("ap-northeast-2"));
    assert_eq!(config.secrets.aws.endpoint_url, None);
    assert_eq!(config.key_file_path(), PathBuf::from("d/secrets.kek"));
    std::fs::write(&file, "[secrets]\nkek = \"aws\"\n").unwrap();
    let e = Config::load(Some(&file)).unwrap_err().to_string();
    assert!(e.contains("secrets.aws.secret_id"), "{e}");
    std::fs::write(&file, "[secrets]\nkek = \"vault\"\n").unwrap();
    let e = Config::load(Some(&file)).unwrap_err().to_string();
    assert!(e.contains("secrets.kek"), "{e}");
}
